"""The corpus folder's file operations: checked upload names, atomic copies, kept versions and restores."""

from __future__ import annotations

import errno
import os
import re
import time
import unicodedata
import uuid
from contextlib import suppress
from pathlib import Path
from typing import TYPE_CHECKING

from rag.index.build import IndexWriteError
from rag.ingest.loaders import SUPPORTED_SUFFIXES

if TYPE_CHECKING:
    pass


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
    """The file-system error behind a failed build: the error itself, or what a `store.IndexWriteError` wraps."""
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
