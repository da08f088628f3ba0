"""Measurements in fresh processes: `bench.py --child KIND`, started once the machine is idle enough."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from measuring import loadavg

log = logging.getLogger("bench")

BENCH = Path(__file__).resolve().parent / "bench.py"

WAIT_IDLE = 0.0
"""`--wait-idle`: before each child, wait up to this many seconds for the 1-minute load average to drop below 0.8."""


def wait_idle() -> None:
    """Wait (up to `WAIT_IDLE` seconds) for the 1-minute load average to fall below 0.8."""
    deadline = time.monotonic() + WAIT_IDLE
    while loadavg() >= 0.8 and time.monotonic() < deadline:
        log.info("waiting for the machine to be idle (load average %.2f)", loadavg())
        time.sleep(15)


def run_child(kind: str, params: dict[str, Any], env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run `bench.py --child kind` in a fresh process; its last stdout line is a JSON result."""
    wait_idle()
    spawned = time.time()
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--child", kind, "--params", json.dumps(params)],
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
