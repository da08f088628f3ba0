"""The dense index study (`--dense-study`): flat vs HNSW at each built size — build time, one question's
latency, recall of the top 50 against flat; its part of the report."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from corpora import load_pool
from measuring import live_build, loadavg, summary_ms

log = logging.getLogger("bench")


def child_dense(params: dict[str, Any]) -> dict[str, Any]:
    """Flat vs HNSW at each size: build time, single-query latency, recall of the top 50 against flat."""
    import faiss  # noqa: F401  (loaded before the model, as this study always has)

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
        row = _compare(size, folder, qv, depth, params["ef"])
        log.info("dense study %s", row)
        out.append(row)
    return {"depth": depth, "queries": len(qv), "rows": out, "loadavg": loadavg()}


def _compare(size: int, folder: Path, qv: Any, depth: int, efs: list[int]) -> dict[str, Any]:
    """Flat and HNSW (each efSearch) on one build's vectors."""
    import faiss
    import numpy as np

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
    for ef in efs:
        hnsw.hnsw.efSearch = ef
        seconds = search_times(hnsw, qv, depth)
        _, found = hnsw.search(qv, depth)
        recall = float(np.mean([len(set(found[i]) & set(exact[i])) / depth for i in range(len(qv))]))
        row["hnsw"].append({"ef": ef, "ms": summary_ms(seconds)["p50"], "recall@50": round(recall, 4)})
    return row


def search_times(index: Any, vectors: Any, depth: int) -> list[float]:
    """Seconds of each one-vector search of `vectors` on a FAISS index."""
    seconds = []
    for i in range(len(vectors)):
        start = time.perf_counter()
        index.search(vectors[i : i + 1], depth)
        seconds.append(time.perf_counter() - start)
    return seconds


def markdown(results: dict[str, Any]) -> list[str]:
    """The study's section of the report (empty when it never ran)."""
    dense = results.get("dense")
    if not dense:
        return []
    lines = [
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
