"""What verifying an index costs: loading with and without the load-time checks, the full check
(`rag doctor`), and the checksums a build records, on an existing index.

    .venv/bin/python benchmarks/integrity_cost.py --index benchmarks/work/size-100000/index
    .venv/bin/python benchmarks/integrity_cost.py --index … --index … --update docs/ingest.md

Each figure is the median of `--repeat` runs in this process with the files in the page cache (the
first, cold run is dropped), and with the checksum memo of `rag.index.integrity` emptied before each run, so
every run hashes what it checks. `--update FILE` replaces the table between the
`<!-- integrity-cost:start -->` and `<!-- integrity-cost:end -->` markers of FILE.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rag.index import integrity  # noqa: E402
from rag.index.knowledge_base import check, load  # noqa: E402
from rag.index.layout import current_build  # noqa: E402

START, END = "<!-- integrity-cost:start -->", "<!-- integrity-cost:end -->"


def timed(call: Callable[[], Any], repeat: int) -> float:
    """Median seconds of `repeat` warm runs (after one cold run), the checksum memo emptied each time."""
    runs = []
    for _ in range(repeat + 1):
        integrity._verified.clear()
        start = time.perf_counter()
        call()
        runs.append(time.perf_counter() - start)
    return statistics.median(runs[1:])


def unchecked_load(index_dir: Path) -> None:
    """`rag.index.knowledge_base.load` with the integrity checks switched off: what loading cost before they existed."""
    files, structure = integrity.check_files, integrity.check_structure
    integrity.check_files = lambda *a, **k: []  # type: ignore[assignment]
    integrity.check_structure = lambda *a, **k: []  # type: ignore[assignment]
    try:
        load(index_dir)
    finally:
        integrity.check_files, integrity.check_structure = files, structure


def measure(index_dir: Path, repeat: int) -> dict[str, Any]:
    folder = current_build(index_dir)
    manifest = integrity.read_manifest(folder)
    files = manifest["files"]
    total = sum(f["size"] for f in files.values())
    whole = sum(f["size"] for name, f in files.items() if Path(name).name in integrity.LOAD_READS_WHOLE)
    return {
        "chunks": manifest["chunks"],
        "mb": total / 2**20,
        "load_hashed_mb": whole / 2**20,
        "load_unchecked_s": timed(lambda: unchecked_load(index_dir), repeat),
        "load_s": timed(lambda: load(index_dir), repeat),
        "full_s": timed(lambda: check(index_dir), repeat),
        "record_s": timed(lambda: integrity.record(folder), repeat),
    }


def table(results: list[dict[str, Any]]) -> str:
    code = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout
    rows = [
        f"Measured {time.strftime('%Y-%m-%d')} on {platform.processor() or platform.machine()}, "
        f"{_cores()} cores (1-minute load average {_load():.1f}: the machine is shared), code {code.strip()}, by "
        "`benchmarks/integrity_cost.py` (warm page cache, median). Load with checks hashes the files it reads "
        "whole in a second thread while it parses them.",
        "",
        "| chunks | build on disk (MB) | load without checks (s) | load with checks (s) | of which hashed (MB) "
        "| full check, `rag doctor` (s) | checksums a build records (s) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        extra = r["load_s"] - r["load_unchecked_s"]
        rows.append(
            f"| {r['chunks']:,} | {r['mb']:.1f} | {r['load_unchecked_s']:.3f} | {r['load_s']:.3f} (+{extra:.3f}) "
            f"| {r['load_hashed_mb']:.1f} | {r['full_s']:.3f} | {r['record_s']:.3f} |"
        )
    return "\n".join(rows)


def _cores() -> int:
    return os.cpu_count() or 1


def _load() -> float:
    return os.getloadavg()[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--index", type=Path, action="append", required=True, help="an index folder (repeatable)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--update", type=Path, help="write the table into this Markdown file between the markers")
    args = parser.parse_args()
    results = [measure(index, args.repeat) for index in args.index]
    print(json.dumps(results, indent=1))
    text = table(sorted(results, key=lambda r: r["chunks"]))
    print(text)
    if args.update:
        document = args.update.read_text(encoding="utf-8")
        head, _, rest = document.partition(START)
        _, _, tail = rest.partition(END)
        args.update.write_text(f"{head}{START}\n{text}\n{END}{tail}", encoding="utf-8")


if __name__ == "__main__":
    main()
