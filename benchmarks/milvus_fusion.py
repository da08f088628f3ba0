"""Fusion study: on the Milvus store, fuse the three rankings in the product (weighted RRF) or on the
server (`hybrid_search` with `RRFRanker`)? Retrieval hit@1 / hit@5 / MRR@5 and search latency per way.

    .venv/bin/python benchmarks/milvus_fusion.py --index /work/cache/base-drcd_dev_simpq \\
        --queries ../shared/bench/drcd_dev_simpq/queries.jsonl --name drcd_dev_simpq

Takes a built local index, writes its build into a fresh Milvus Lite file (vectors and tokens of the
build, nothing re-embedded) and searches both stores with the same question vectors. The figures go
into `benchmarks/work/results.json` (`fusion`), which `bench.py` renders into docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from rag.config import Settings  # noqa: E402
from rag.embedding.embedder import load_embedder  # noqa: E402
from rag.index.backends.base import BuildInput, TokenIds  # noqa: E402
from rag.index.backends.milvus import MilvusBackend  # noqa: E402
from rag.index.backends.milvus_search import hybrid_search  # noqa: E402
from rag.index.knowledge_base import KnowledgeBase, load  # noqa: E402
from rag.index.layout import LEXICAL  # noqa: E402
from rag.query.question import Query  # noqa: E402
from rag.retrieval.retriever import Retriever  # noqa: E402
from rag.service.evaluate import EvalQuestion, load_questions  # noqa: E402
from rag.text.tokenize import bigrams, words  # noqa: E402

log = logging.getLogger("fusion")
WORK = HERE / "work"


def milvus_copy(kb: KnowledgeBase, settings: Settings, work: Path) -> tuple[KnowledgeBase, MilvusBackend]:
    """The live build of `kb` written into a fresh Milvus Lite file, as a knowledge base on the Milvus backend."""
    shutil.rmtree(work, ignore_errors=True)
    folder = work / "index" / kb.folder.name
    folder.mkdir(parents=True)
    tokens = {
        name: TokenIds(
            np.load(kb.folder / f"tokens_{name}.npy"),
            np.load(kb.folder / f"offsets_{name}.npy"),
            kb.lexical[name].vocabulary,
        )
        for name in LEXICAL
    }
    backend = MilvusBackend(settings.replace(store=f"milvus:{work / 'kb.db'}", index_dir=work / "index"))
    start = time.perf_counter()
    meta = backend.write(BuildInput(folder, kb.folder.name, kb.chunks, np.load(kb.folder / "vectors.npy"), tokens))
    log.info("wrote %d chunks into Milvus Lite in %.1f s", len(kb.chunks), time.perf_counter() - start)
    manifest = {**kb.manifest, "store": meta}
    dense, lexical = backend.open(folder, manifest)
    return KnowledgeBase(folder, manifest, kb.documents, kb.chunks, dense, lexical), backend


def score(questions: list[EvalQuestion], ranked: list[list[int]], kb: KnowledgeBase) -> dict[str, Any]:
    ranks: list[int | None] = []
    for question, rows in zip(questions, ranked, strict=True):
        chunks = [kb.chunks[r] for r in rows[:5]]
        ranks.append(next((i for i, c in enumerate(chunks, 1) if question.hit(c.source, c.text)), None))
    n = len(ranks)
    return {
        "questions": n,
        "hit@1": round(sum(r == 1 for r in ranks) / n, 4),
        "hit@5": round(sum(r is not None for r in ranks) / n, 4),
        "mrr@5": round(sum(1 / r for r in ranks if r) / n, 4),
    }


def study(index: Path, queries: Path, name: str, limit: int | None) -> dict[str, Any]:
    settings = Settings()
    embedder = load_embedder()
    local = load(index)
    milvus, backend = milvus_copy(local, settings, WORK / f"fusion-{name}")
    collection = milvus.manifest["store"]["collection"]
    questions = [q for q in load_questions(queries) if q.answerable][:limit]
    on_local, on_milvus = Retriever(local, embedder, settings), Retriever(milvus, embedder, settings)
    asked: list[Query] = [on_local.query(q.question) for q in questions]
    s = settings
    depth = s.candidates

    def product(retriever: Retriever) -> Callable[[Query], list[int]]:
        row_of = {id(chunk): row for row, chunk in enumerate(retriever.kb.chunks)}
        return lambda query: [row_of[id(hit.chunk)] for hit in retriever.search(query, 5)]

    def server(rrf_k: int) -> Callable[[Query], list[int]]:
        def run(query: Query) -> list[int]:
            # the lexical query the product's retrieval tokenizes (`Retriever.search`)
            lexical = {"words": words(query.lexical), "bigrams": bigrams(query.lexical)}
            return hybrid_search(backend.target, collection, query.vector, lexical, depth, 5, rrf_k)[0].tolist()

        return run

    ways: dict[str, Callable[[Query], list[int]]] = {
        "local store, product fusion (weighted RRF)": product(on_local),
        "Milvus Lite, product fusion (3 searches, weighted RRF)": product(on_milvus),
        f"Milvus Lite, hybrid_search RRFRanker(k={s.rrf_k})": server(s.rrf_k),
        "Milvus Lite, hybrid_search RRFRanker(k=60)": server(60),
    }
    rows = []
    for way, run in ways.items():
        run(asked[0])  # warm-up
        ranked, seconds = [], []
        for query in asked:
            start = time.perf_counter()
            ranked.append(run(query))
            seconds.append(time.perf_counter() - start)
        ms = sorted(x * 1000 for x in seconds)
        rows.append(
            {
                "way": way,
                **score(questions, ranked, local),
                "p50_ms": round(statistics.median(ms), 1),
                "p95_ms": round(ms[int(0.95 * (len(ms) - 1))], 1),
            }
        )
        log.info("%s: %s", name, rows[-1])
    return {"set": name, "chunks": len(local.chunks), "rows": rows}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--index", type=Path, required=True, help="a built local index folder")
    p.add_argument("--queries", type=Path, required=True, help="dev_qa.jsonl or a bench queries.jsonl")
    p.add_argument("--name", required=True, help="name of the question set in the report")
    p.add_argument("--limit", type=int, help="only the first N answerable questions")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    logging.getLogger("jieba").setLevel(logging.WARNING)
    import os

    load = os.getloadavg()[0]
    result = study(args.index, args.queries, args.name, args.limit)
    result["loadavg"] = round(max(load, os.getloadavg()[0]), 2)
    results_path = WORK / "results.json"
    results = json.loads(results_path.read_text(encoding="utf-8")) if results_path.exists() else {}
    results.setdefault("fusion", {})[args.name] = result
    WORK.mkdir(parents=True, exist_ok=True)
    results_path.write_text(json.dumps(results, ensure_ascii=False, indent=1), encoding="utf-8")
    print(json.dumps(result, ensure_ascii=False, indent=1))


if __name__ == "__main__":
    main()
