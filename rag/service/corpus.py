"""The corpus folder of a knowledge base: checked uploads, replacements and removals that keep the old
file in `.versions/`, and the corpus put back as it was when indexing the change fails."""

from __future__ import annotations

import errno
import os
import re
import time
import unicodedata
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager, suppress
from pathlib import Path
from typing import Any

from rag.config import Settings
from rag.index.commit import IndexWriteError
from rag.index.report import BuildReport
from rag.ingest.loaders import SUPPORTED_SUFFIXES, LoadError, load_file

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
        """The corpus name an upload gets and the document it would replace (same name ignoring case),
        or None; `DocumentError` when its type or size is refused."""
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
        return target, _corpus_names(corpus).get(target.casefold())

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
            existing = _corpus_names(corpus).get(target_name.casefold())
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
            names = _corpus_names(corpus)
            name = source if source in names.values() else names.get(str(source).casefold())
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
            raw = load_file(path)
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


def _corpus_names(corpus: Path) -> dict[str, str]:
    """The corpus folder's document files by case-folded name."""
    return {p.name.casefold(): p.name for p in corpus.iterdir() if p.is_file() and not p.name.startswith(".")}


def _atomic_copy(source: Path, target: Path) -> None:
    """Copy `source` to `target` through a hidden temporary file beside it, renamed into place when complete."""
    temporary = target.parent / f".upload-{uuid.uuid4().hex[:12]}.tmp"
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
