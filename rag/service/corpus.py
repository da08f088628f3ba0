"""The corpus folder of a knowledge base: checked uploads, replacements and removals that keep the old
file in `.versions/`, and the corpus put back as it was when indexing the change fails. Queued uploads
wait in it under hidden names, their jobs in the journal of `.queue/`, so a killed process loses none.

Names are compared ignoring case for a *conflict* (an upload named like a document asks to replace it)
and exactly for *identity* (removing or replacing `case.txt` acts on `case.txt`, never on `Case.txt`)."""

from __future__ import annotations

import errno
import fcntl
import filecmp
import json
import logging
import os
import re
import threading
import time
import unicodedata
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager, suppress
from pathlib import Path
from typing import IO, Any

from rag.config import Settings
from rag.index.commit import IndexWriteError
from rag.index.report import BuildReport
from rag.ingest.loaders import SUPPORTED_SUFFIXES, LoadError, TooLong, load_file

log = logging.getLogger(__name__)

#: What the chat page accepts as uploads (a `.jsonl` collection is indexed with `rag index --corpus`).
UPLOAD_SUFFIXES = frozenset(SUPPORTED_SUFFIXES - {".jsonl"})


class DocumentError(ValueError):
    """A document that cannot be added or removed; the message (Chinese) says why."""


class DocumentExists(DocumentError):
    """An upload has the name of a document already in the corpus: add it with `replace=True` to replace it."""

    def __init__(self, existing: str) -> None:
        super().__init__(f"知识库中已有同名文档“{existing}”；确认替换后才会覆盖（旧版本会保留）。")
        self.existing = existing


_UNSAFE = re.compile(r"[^\w.\-\u3000-\u303f\u3400-\u9fff\uff00-\uffef（）()]+")


MAX_NAME_BYTES = 200
"""Longest corpus file name in UTF-8 bytes (file systems allow 255; `.versions/` adds a time stamp)."""


_VERSIONS = ".versions"
UPLOAD_PREFIX = ".upload-"
"""Hidden files of the corpus folder (never indexed): uploads being copied (`.upload-*.tmp`) and
uploads waiting in the queue (`.upload-*.queued.<type>`)."""


def safe_filename(name: str) -> str:
    """A file name that stays inside the corpus folder: no folders, no leading dots, no odd characters,
    at most `MAX_NAME_BYTES` bytes of UTF-8."""
    base = Path(unicodedata.normalize("NFC", name).replace("\\", "/")).name
    base = _UNSAFE.sub("_", base).lstrip("._")
    stem, dot, suffix = base.rpartition(".")
    if not dot:
        stem, suffix = base, ""
    suffix = suffix.lower()[:16]
    room = MAX_NAME_BYTES - len(suffix.encode()) - 1
    stem = stem.encode()[:room].decode("utf-8", "ignore") or "document"
    return f"{stem}.{suffix}" if suffix else stem


Reindex = Callable[[], BuildReport]
"""Brings the index up to date with the corpus folder (the engine's build)."""


class CorpusFolder:
    """The corpus folder of `settings`: each change is indexed by `reindex` while `lock` (the engine's
    write lock) is held, and undone when indexing it fails."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @property
    def path(self) -> Path:
        """The corpus folder; `DocumentError` when the corpus is a single file."""
        corpus = Path(self.settings.corpus_dir)
        if not corpus.is_dir():
            raise DocumentError("知识库的语料不是一个文件夹（是单个文件），不能在这里添加或删除文档。")
        return corpus

    def check_upload(self, path: Path, name: str | None = None) -> tuple[str, str | None]:
        """The corpus name an upload gets and the document it would replace (the file of that exact
        name, else one of the same name ignoring case), or None; `DocumentError` when its type or
        size is refused."""
        path = Path(path)
        corpus = self.path
        target = safe_filename(name or path.name)
        if Path(target).suffix.lower() not in UPLOAD_SUFFIXES:
            raise DocumentError(f"不支持这种文件类型，可以上传 {' '.join(sorted(UPLOAD_SUFFIXES))} 文件。")
        try:
            size = path.stat().st_size
        except OSError:
            raise DocumentError("没有收到完整的文件，请重新上传。") from None
        limit = self.settings.max_upload_bytes
        if size > limit:
            raise DocumentError(f"文件过大（{size / 2**20:.1f} MB），单个文件不能超过 {limit / 2**20:g} MB。")
        return target, _conflict(corpus, target)

    def stage(self, path: Path, name: str | None = None) -> str:
        """Copy an upload into the corpus folder under a hidden name (`.upload-*.queued.<type>`, never
        indexed) once its quick checks pass, and return that name: a queued upload waits there for its
        job, so a killed process loses nothing. `DocumentError` when it is refused or cannot be saved."""
        target, _ = self.check_upload(path, name)
        staged = self.path / f"{UPLOAD_PREFIX}{uuid.uuid4().hex[:12]}.queued{Path(target).suffix}"
        try:
            _atomic_copy(Path(path), staged)
        except OSError as exc:
            raise DocumentError(f"文件没有保存：{os_reason(exc)}") from exc
        return staged.name

    def find(self, source: str) -> str | None:
        """The corpus file a name means: the file of exactly that name, else the one file equal to it
        ignoring case, else None. `DocumentError` when several files match only ignoring case."""
        names = _corpus_names(self.path)
        if source in names:
            return source
        matches = sorted(n for n in names if n.casefold() == str(source).casefold())
        if len(matches) > 1:
            listed = "、".join(f"“{n}”" for n in matches)
            raise DocumentError(f"知识库中有几个文件与“{source}”只差大小写：{listed}；请给出确切的文件名。")
        return matches[0] if matches else None

    def holds(self, staged: str, name: str) -> bool:
        """Whether the corpus file an upload would become already holds exactly the staged upload (a
        job interrupted after its copy)."""
        target = _conflict(self.path, safe_filename(name))
        return target is not None and filecmp.cmp(self.path / staged, self.path / target, shallow=False)

    def add(
        self, path: Path, name: str | None, replace: bool, reindex: Reindex, lock: AbstractContextManager[Any]
    ) -> BuildReport:
        """Copy an upload into the folder (atomically; a replaced file is kept in `.versions/`) and index it."""
        path = Path(path)
        target_name, existing = self.check_upload(path, name)
        if existing is not None and not replace:
            raise DocumentExists(existing)
        self._check_text(path)
        corpus = self.path
        with lock:
            existing = _conflict(corpus, target_name)
            if existing is not None and not replace:
                raise DocumentExists(existing)
            target = corpus / (existing or target_name)
            kept = _keep_version(target, move=False) if existing else None
            try:
                _atomic_copy(path, target)
            except OSError as exc:
                raise DocumentError(f"文件没有保存：{os_reason(exc)}") from exc
            report = _reindex(reindex, target, kept, "索引没有更新，文件已撤回")
        if kept:
            report.kept[target.name] = kept
        return report

    def remove(self, source: str, reindex: Reindex, lock: AbstractContextManager[Any]) -> BuildReport:
        """Move a document out of the folder into `.versions/` and index the change."""
        corpus = self.path
        with lock:
            name = self.find(source)
            if not name:
                raise DocumentError(f"知识库中没有文件“{source}”。")
            target = corpus / name
            kept = _keep_version(target, move=True)
            report = _reindex(reindex, target, kept, "索引没有更新，文件已恢复")
        report.kept[name] = kept
        return report

    def _check_text(self, path: Path) -> None:
        """Refuse an unreadable file, or one of more text than an upload may hold, before it enters the corpus."""
        try:
            raw = load_file(path, limit=self.settings.max_upload_chars)  # stops reading once past the cap
        except TooLong as exc:
            raise DocumentError(str(exc)) from exc
        except LoadError as exc:
            raise DocumentError(f"无法读取这个文件：{exc}") from exc
        if len(raw.text) > self.settings.max_upload_chars:
            raise DocumentError(
                f"文档过长：提取出 {len(raw.text):,} 个字符，超过单个文档的上限 {self.settings.max_upload_chars:,} 个字符；"
                "请拆分成几个文件后上传。"
            )


def _reindex(reindex: Reindex, target: Path, kept: str | None, undone: str) -> BuildReport:
    """`reindex()`; when it fails, the corpus file is put back as it was (`undone` says so, with the
    reason of a file-system error)."""
    try:
        return reindex()
    except BaseException as exc:
        _restore(target, target.parent / _VERSIONS / kept if kept else None)
        cause = _os_error(exc)
        if cause is not None:
            raise DocumentError(f"{undone}：{os_reason(cause)}") from exc
        raise


def _corpus_names(corpus: Path) -> set[str]:
    """The names of the corpus folder's document files (hidden files are not documents)."""
    return {p.name for p in corpus.iterdir() if p.is_file() and not p.name.startswith(".")}


def _conflict(corpus: Path, name: str) -> str | None:
    """The document an upload named `name` would replace: the file of exactly that name, else the
    first (by name) equal to it ignoring case; None when there is none."""
    names = _corpus_names(corpus)
    if name in names:
        return name
    return min((n for n in names if n.casefold() == name.casefold()), default=None)


def _atomic_copy(source: Path, target: Path) -> None:
    """Copy `source` to `target` through a hidden temporary file beside it, renamed into place when complete."""
    temporary = target.parent / f"{UPLOAD_PREFIX}{uuid.uuid4().hex[:12]}.tmp"
    try:
        with open(source, "rb") as data:
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            try:
                while block := data.read(1 << 20):
                    view = memoryview(block)
                    while view:
                        view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _keep_version(file: Path, move: bool) -> str:
    """Keep `file` in `.versions/` beside it (moved, or copied atomically); the kept file's name."""
    folder = file.parent / _VERSIONS
    folder.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    kept = folder / f"{file.stem}.{stamp}{file.suffix}"
    count = 1
    while kept.exists():
        count += 1
        kept = folder / f"{file.stem}.{stamp}-{count}{file.suffix}"
    try:
        if move:
            os.replace(file, kept)
        else:
            _atomic_copy(file, kept)
    except OSError as exc:
        raise DocumentError(f"旧版本没能备份，没有做任何改动：{os_reason(exc)}") from exc
    return kept.name


def _restore(target: Path, kept: Path | None) -> None:
    """Undo a corpus change whose build failed: the kept version back in place, or the new file removed."""
    with suppress(OSError):
        if kept is not None:
            os.replace(kept, target)
        else:
            target.unlink(missing_ok=True)


def _os_error(exc: BaseException) -> OSError | None:
    """The file-system error behind a failed build: the error itself, or what an `IndexWriteError` wraps."""
    if isinstance(exc, OSError):
        return exc
    if isinstance(exc, IndexWriteError) and isinstance(exc.__cause__, OSError):
        return exc.__cause__
    return None


def os_reason(exc: OSError) -> str:
    """Why a file operation failed, in Chinese, without paths."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return "磁盘空间不足。请清理服务器磁盘后重试。"
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return "没有写入权限（文件夹只读）。请联系管理员。"
    if exc.errno == errno.ENAMETOOLONG:
        return "文件名过长。请改短文件名后重试。"
    return f"写入失败（{errno.errorcode.get(exc.errno or 0, '未知错误')}）。请稍后重试或联系管理员。"


# --- the queue journal: changes accepted and not yet made, kept across a killed process -----------------

QUEUE = ".queue"
"""The corpus folder's journals of queued jobs: `<owner>.json` per worker, `<owner>.lock` locked while it lives."""
_ENTRY = {"token": str, "action": str, "name": str, "user": str, "queued_at": (int, float)}


class Journal:
    """The jobs one worker accepted and has not finished (dicts with `_ENTRY`'s keys, `staged`,
    `started`), in `<corpus>/.queue/<owner>.json`, rewritten atomically. `<owner>.lock` stays locked
    while the worker lives: a journal whose lock is free was left by a stopped process."""

    def __init__(self, corpus: Path) -> None:
        self.folder = Path(corpus) / QUEUE
        self.owner = uuid.uuid4().hex[:12]
        self._entries: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._held: IO[bytes] | None = None

    def put(self, entry: dict[str, Any], quiet: bool = False) -> None:
        """Record (or update) a job; `OSError` when it cannot be written, unless `quiet`."""
        try:
            with self._lock:
                self._entries[entry["token"]] = entry
                self._write()
        except OSError as exc:
            if not quiet:
                raise
            log.error("cannot write the queue journal in %s: %s", self.folder, exc)

    def drop(self, token: str) -> None:
        """Forget a finished job."""
        try:
            with self._lock:
                if self._entries.pop(token, None) is not None:
                    self._write()
        except OSError as exc:
            log.error("cannot write the queue journal in %s: %s", self.folder, exc)

    def uploads(self) -> set[str]:
        """The staged uploads (`stage`) of every journal in the folder, live ones' too."""
        entries = [*self._entries.values(), *(e for path in self._journals() for e in _read_journal(path))]
        return {e["staged"] for e in entries if e.get("staged")}

    def adopt(self) -> list[dict[str, Any]]:
        """Take over the journals of stopped workers: their jobs, oldest first (written to this
        journal before theirs is deleted, so a crash meanwhile loses none)."""
        adopted: dict[str, dict[str, Any]] = {}
        if not self.folder.is_dir():
            return []
        owners = {p.stem for p in self._journals()} | {p.stem for p in self.folder.glob("*.lock")}
        for owner in sorted(owners - {self.owner}):
            lock = self.folder / f"{owner}.lock"
            try:
                with open(lock, "ab") as handle:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)  # refused while its worker lives
                    journal = self.folder / f"{owner}.json"
                    entries = [e for e in _read_journal(journal) if e["token"] not in adopted]
                    if entries:
                        with self._lock:
                            self._entries |= {e["token"]: e for e in entries}
                            self._write()
                    adopted |= {e["token"]: e for e in entries}
                    for leftover in (journal, lock, self.folder / f"{owner}.tmp"):
                        leftover.unlink(missing_ok=True)
            except BlockingIOError:
                continue
            except OSError as exc:
                log.error("cannot take over the queue journal %s: %s", lock.with_suffix(".json"), exc)
        return sorted(adopted.values(), key=lambda e: e["queued_at"])

    def close(self) -> None:
        """Let go of the journal (deleted when empty: nothing to resume)."""
        with self._lock:
            if self._held is None:
                return
            if not self._entries:
                (self.folder / f"{self.owner}.json").unlink(missing_ok=True)
                (self.folder / f"{self.owner}.lock").unlink(missing_ok=True)
            self._held.close()
            self._held = None

    def _journals(self) -> list[Path]:
        return sorted(self.folder.glob("*.json")) if self.folder.is_dir() else []

    def _write(self) -> None:
        """This worker's journal, replaced atomically (its lock taken on first use)."""
        if self._held is None:
            self.folder.mkdir(exist_ok=True)
            held = open(self.folder / f"{self.owner}.lock", "ab")  # noqa: SIM115 (held while the worker lives)
            fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
            self._held = held
        temporary = self.folder / f"{self.owner}.tmp"
        with open(temporary, "w", encoding="utf-8") as out:
            json.dump(list(self._entries.values()), out, ensure_ascii=False)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, self.folder / f"{self.owner}.json")


def _read_journal(path: Path) -> list[dict[str, Any]]:
    """The well-formed entries of a journal file (none when it cannot be read)."""
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        if path.exists():
            log.error("cannot read the queue journal %s: %s", path, exc)
        return []
    entries = entries if isinstance(entries, list) else [entries]
    good = [e for e in entries if isinstance(e, dict) and all(isinstance(e.get(k), t) for k, t in _ENTRY.items())]
    if len(good) < len(entries):
        log.error("the queue journal %s holds %d malformed entries", path, len(entries) - len(good))
    return [e for e in good if e["action"] in ("add", "replace", "remove", "build", "rebuild")]
