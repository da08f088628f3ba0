"""The `measure` child: a fresh process that only opens one size's index, and what it measures there —
start-up by stage, memory, latency (`latency.py`), retrieval quality (hit@k), profiles of `ask` and of
loading, and adding one document (`add_document.py`)."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from add_document import add_document
from corpora import Query
from latency import latency_figures
from measuring import loadavg, peak_rss_mb


def child_measure(params: dict[str, Any]) -> dict[str, Any]:
    """Open the index in this fresh process and measure it (see benchmarks/README.md, *How it measures*)."""
    t0 = time.perf_counter()
    import psutil

    engine, startup, ready_at = open_engine(params, t0)
    process = psutil.Process()
    rss_open = process.memory_info().rss
    folder = Path(params["folder"])
    queries = [Query(**json.loads(line)) for line in (folder / "queries.jsonl").open(encoding="utf-8")]
    questions = latency_questions([q.question for q in queries], params["queries"])
    first = time.perf_counter()
    engine.ask(questions[0])
    startup["first_ask_s"] = round(time.perf_counter() - first, 3)
    rss_first = process.memory_info().rss
    for question in questions[:10]:  # warm-up
        engine.ask(question)
    result: dict[str, Any] = {
        "ready_at": ready_at,
        "loadavg_before": loadavg(),
        "startup": startup,
        "rss_mb": {"open": round(rss_open / 2**20, 1), "first_ask": round(rss_first / 2**20, 1)},
    }
    result.update(latency_figures(engine, questions, params["concurrency"]))
    result["rss_mb"]["after_queries"] = round(process.memory_info().rss / 2**20, 1)
    result["rss_mb"]["peak"] = round(peak_rss_mb(), 1)
    if params["quality"] and queries:
        result["quality"] = quality(engine, queries[: params["quality_max"]])
    if params["profile"]:
        result["profile"] = profile_ask(engine, questions[:50], folder)
    if params["add_document"]:
        result["add_document"] = add_document(engine, folder)
    result["loadavg_after"] = loadavg()
    return result


def open_engine(params: dict[str, Any], t0: float) -> tuple[Any, dict[str, float], float]:
    """The engine on the size's index, opened from scratch: seconds since `t0` to import, load the model and
    open the index, and when it was ready."""
    from rag.engine import Engine

    t_import = time.perf_counter()
    from rag.config import Settings
    from rag.embedding.embedder import load_embedder

    folder = Path(params["folder"])
    settings = Settings(corpus_dir=folder / "corpus", index_dir=folder / "index", store=params.get("store", "local"))
    embedder = load_embedder(batch_size=settings.embed_batch_size)
    t_model = time.perf_counter()
    engine = Engine(settings, embedder)
    engine.reload()
    t_index = time.perf_counter()
    startup = {
        "import_s": round(t_import - t0, 3),
        "model_s": round(t_model - t_import, 3),
        "index_s": round(t_index - t_model, 3),
        "in_process_s": round(t_index - t0, 3),
    }
    return engine, startup, time.time()


def latency_questions(questions: list[str], n: int) -> list[str]:
    """The first `n` gold questions; small corpora repeat theirs."""
    chosen = questions[:n]
    if len(chosen) < n:
        chosen = (chosen * (n // max(1, len(chosen)) + 1))[:n]
    return chosen


def quality(engine: Any, queries: Sequence[Query]) -> dict[str, Any]:
    """hit@1, hit@5 and MRR@5 of `search` (a hit: a passage from a gold passage id)."""
    ranks: list[int | None] = []
    for q in queries:
        passages = engine.search(q.question, k=5)
        gold = set(q.gold_ids)
        ranks.append(next((p.rank for p in passages if p.source in gold), None))
    n = len(ranks)
    return {
        "questions": n,
        "hit@1": round(sum(r == 1 for r in ranks) / n, 3),
        "hit@5": round(sum(r is not None for r in ranks) / n, 3),
        "mrr@5": round(sum(1 / r for r in ranks if r) / n, 3),
    }


def profile_ask(engine: Any, questions: Sequence[str], folder: Path) -> dict[str, str]:
    """pyinstrument profiles of `ask` (warm) and of opening the index; text reports in the size folder."""
    from pyinstrument import Profiler

    from rag.index.knowledge_base import load

    paths = {}
    profiler = Profiler(interval=0.0005)
    profiler.start()
    for question in questions:
        engine.ask(question)
    profiler.stop()
    paths["ask"] = str(folder / "profile-ask.txt")
    Path(paths["ask"]).write_text(profiler.output_text(show_all=False, color=False), encoding="utf-8")
    profiler = Profiler(interval=0.001)
    profiler.start()
    load(engine.settings.index_dir, engine.settings)
    profiler.stop()
    paths["load"] = str(folder / "profile-load.txt")
    Path(paths["load"]).write_text(profiler.output_text(show_all=False, color=False), encoding="utf-8")
    return paths
