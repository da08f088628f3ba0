"""Opening the engine behind a page that is already serving.

Importing torch and sentence-transformers takes several seconds; the page is served first and the
engine opened in a background thread (`EngineLoader`). A question asked meanwhile waits for it and says
so. Once open, the engine answers from the index on disk at once, and brings the index up to date
with the corpus in its background worker (for a first build: `正在建立索引 n/N 段`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rag import Engine
    from rag.config import Settings

log = logging.getLogger("app")


class EngineLoader:
    """An engine being opened in a background thread; `wait` for it, or look whether it is there."""

    def __init__(self, open_engine: Callable[[], Engine]) -> None:
        self._open_engine = open_engine
        self._engine: Engine | None = None
        self._error = ""
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self.started = 0.0
        self.seconds = 0.0
        """How long opening the engine took (0 until it is open)."""

    @classmethod
    def of(cls, engine: Engine) -> EngineLoader:
        """A loader whose engine is already open."""
        loader = cls(lambda: engine)
        loader._engine = engine
        loader._done.set()
        return loader

    def start(self) -> EngineLoader:
        """Open the engine in a background thread (once)."""
        with self._start_lock:
            if self._thread is None and not self._done.is_set():
                self.started = time.perf_counter()
                self._thread = threading.Thread(target=self._run, name="rag-engine-loader", daemon=True)
                self._thread.start()
        return self

    def start_after(self, seconds: float) -> EngineLoader:
        """Open the engine `seconds` from now, or sooner if `start` is called (a page has loaded): its
        imports then do not slow down the first page's scripts and styles, which the same process serves."""
        timer = threading.Timer(seconds, self.start)
        timer.daemon = True
        timer.start()
        return self

    def _run(self) -> None:
        try:
            self._engine = self._open_engine()
            self.seconds = time.perf_counter() - self.started
            log.info("engine ready after %.1f s", self.seconds)
        except Exception as exc:
            log.error("cannot open the knowledge base: %s", exc, exc_info=not isinstance(exc, (ValueError, OSError)))
            self._error = str(exc)
        finally:
            self._done.set()

    @property
    def engine(self) -> Engine | None:
        """The engine, or None while it is being opened (or when it could not be)."""
        return self._engine

    @property
    def loading(self) -> bool:
        return not self._done.is_set()

    @property
    def error(self) -> str:
        """Why the engine could not be opened ('' when it is open or still opening)."""
        return self._error

    def wait(self, timeout: float | None = None) -> Engine | None:
        """The engine once open (None on timeout or failure); starts opening it if that has not begun."""
        self.start()
        self._done.wait(timeout)
        return self._engine


def open_engine(settings: Settings, update: bool = True) -> Engine:
    """The engine on `settings`, answering from the index on disk if there is one; the index is then
    brought up to date with the corpus (or first built) by the engine's background worker."""
    from rag import Engine, IndexUnavailable

    engine = Engine(settings)
    try:
        engine.reload()
    except IndexUnavailable as exc:  # none yet (or unreadable): the worker builds one
        log.info("%s", exc)
    if update or not engine.ready:
        engine.worker.build(user="系统（启动）")
    return engine
