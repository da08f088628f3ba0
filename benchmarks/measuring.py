"""Tools every measurement of `bench.py` uses: percentiles and latency summaries, a timing loop, the
load average, peak memory, folder sizes, and the identity of the machine and of the code measured."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def percentile(values: Sequence[float], q: float) -> float | None:
    """The `q`-th percentile of `values` (nearest rank), None when there are none."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def summary_ms(seconds: Sequence[float]) -> dict[str, float | None]:
    """Count, p50, p95 and mean in milliseconds of durations in seconds."""
    ms = [s * 1000 for s in seconds]
    return {
        "n": len(ms),
        "p50": rounded(percentile(ms, 50)),
        "p95": rounded(percentile(ms, 95)),
        "mean": rounded(statistics.fmean(ms)) if ms else None,
    }


def rounded(x: float | None, digits: int = 1) -> float | None:
    """`x` rounded, None kept."""
    return None if x is None else round(x, digits)


def timed(call: Callable[[str], Any], questions: Sequence[str]) -> list[float]:
    """Seconds of `call` on each question, one at a time."""
    seconds = []
    for question in questions:
        start = time.perf_counter()
        call(question)
        seconds.append(time.perf_counter() - start)
    return seconds


def folder_bytes(folder: Path) -> int:
    """Bytes of the files under `folder`."""
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def loadavg() -> float:
    """The 1-minute load average now."""
    return round(os.getloadavg()[0], 2)


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MB."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def machine() -> dict[str, Any]:
    """Cores, CPU model, RAM, Python and kernel of this machine."""
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


def live_build(index_dir: Path) -> Path | None:
    """The live build folder of an index, if it has one."""
    from rag.index.layout import current_build

    return current_build(index_dir)
