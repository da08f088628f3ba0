"""Progress of long work (index builds): a tqdm bar on a terminal, log lines elsewhere, and a callback.

With stderr not a terminal (a service, CI, `2>log`) a bar would be noise or nothing, so progress is
logged as lines instead — `embed: 120/600 chunks (4.5/s, about 1m 24s left)` — at most every
`interval` seconds and once at the end. A caller that shows progress itself (the chat page) passes
`on_progress(stage, done, total)`, called at the start, after each step and at the end of a stage.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from tqdm.auto import tqdm

log = logging.getLogger(__name__)

LOG_EVERY = 10.0
"""Seconds between progress lines in the log (when there is no bar)."""

OnProgress = Callable[[str, int, int], None]
"""`on_progress(stage, done, total)`; stages of a build: `clean` (documents), `embed` (chunks), `write`."""


class Progress:
    """Progress of one stage; `advance` after each piece of work, `close` at the end."""

    def __init__(
        self,
        stage: str,
        total: int,
        unit: str,
        bar: bool = False,
        on_progress: OnProgress | None = None,
        interval: float | None = None,
    ) -> None:
        self.stage, self.total, self.unit = stage, total, unit
        self.on_progress = on_progress
        self.interval = LOG_EVERY if interval is None else interval
        self.done = 0
        self._start = self._logged = time.monotonic()
        self._bar = tqdm(total=total, desc=stage, unit=unit, leave=False) if bar and total else None
        self._notify()

    def advance(self, count: int = 1) -> None:
        self.done += count
        if self._bar is not None:
            self._bar.update(count)
        elif time.monotonic() - self._logged >= self.interval and self.done < self.total:
            self._log()
        self._notify()

    def close(self) -> None:
        """The stage is complete (all of it done, or what was left not needed)."""
        finished = self.done != self.total
        self.done = self.total
        if finished:
            self._notify()
        if self._bar is not None:
            self._bar.close()
        elif self.total and time.monotonic() - self._start >= self.interval:
            self._log()  # the closing line of a stage long enough to have logged lines

    def line(self) -> str:
        """`embed: 120/600 chunks (4.5/s, about 1m 24s left)`."""
        elapsed = max(time.monotonic() - self._start, 1e-9)
        rate = self.done / elapsed
        text = f"{self.stage}: {self.done:,}/{self.total:,} {self.unit} ({rate:.1f}/s"
        if 0 < self.done < self.total:
            text += f", about {_duration((self.total - self.done) / rate)} left"
        return text + ")"

    def _log(self) -> None:
        self._logged = time.monotonic()
        log.info("%s", self.line())

    def _notify(self) -> None:
        if self.on_progress is not None:
            self.on_progress(self.stage, self.done, self.total)


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"
