"""Step 1 of a build: what it may re-use of earlier builds, each part only after it verifies.

- documents and their chunks, with their rows, when the pipeline version is unchanged (`rag.index.pipeline`);
- vectors by (model, embedded-text hash): the live build's, or when those do not verify, older builds';
- token ids by text hash, when the tokenizer is unchanged.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rag.config import Settings
from rag.index import integrity
from rag.index.backends.base import TokenIds
from rag.index.backends.factory import backend_of, same_store
from rag.index.integrity import Damaged
from rag.index.layout import (
    FORMAT,
    HASHES,
    LEXICAL,
    IndexUnavailable,
    current_build,
    load_hashes,
    other_builds,
    pointer_problem,
    read_records,
    read_vocabulary,
    vocabulary_file,
)
from rag.index.pipeline import changed_parts, pipeline_version
from rag.model import Chunk, Document

if TYPE_CHECKING:
    from rag.embedding.embedder import Embedder
    from rag.index.knowledge_base import KnowledgeBase

log = logging.getLogger(__name__)


@dataclass
class Rows:
    """The rows of an earlier build, found by the hash of their text; `vectors` when they verify."""

    hashes: np.ndarray
    vectors: np.ndarray | None = None

    @cached_property
    def by_hash(self) -> dict[bytes, int]:
        return {bytes(h): row for row, h in enumerate(self.hashes)}


@dataclass
class Reuse:
    """What a build may re-use of earlier builds; every part verified before it is offered."""

    documents: dict[str, Document] = field(default_factory=dict)
    """Documents whose chunks and rows in the live build may be kept (pipeline unchanged)."""
    chunks: dict[str, list[Chunk]] = field(default_factory=dict)
    rows: dict[str, tuple[int, int]] = field(default_factory=dict)
    """Rows of the kept documents in the live build."""
    live: Rows | None = None
    """The live build's rows (text hashes, and vectors when they verify)."""
    older: list[Rows] = field(default_factory=list)
    """Vectors of other builds that verify (used when the live build's do not)."""
    tokens: dict[str, TokenIds] | None = None
    """Token ids of the live build's rows, when the tokenizer is unchanged and they verify."""
    known: dict[str, str] = field(default_factory=dict)
    """Fingerprint of each document of the live build (for the report)."""
    must_write: bool = True
    """Write a build even when no document changed (none yet, damage, changed settings)."""
    pipeline: dict[str, Any] = field(default_factory=dict)
    """The running code's pipeline version (`rag.index.pipeline`)."""


def _same_vectors(recorded: Any, embedder: Embedder) -> bool:
    """Were vectors recorded under `recorded` made the way `embedder` makes document vectors?"""
    return isinstance(recorded, dict) and embedder.accepts(recorded)


def plan(
    index_dir: Path,
    settings: Settings,
    embedder: Embedder,
    rebuild: bool,
    live: KnowledgeBase | None,
    notes: list[str],
) -> Reuse:
    """What this build may re-use of the live build (and, when that is damaged, of older builds)."""
    reuse = Reuse(pipeline=pipeline_version(settings))
    folder = current_build(index_dir)
    if folder is None:
        return reuse
    pointer = pointer_problem(index_dir)
    if pointer:
        _note(notes, f"CURRENT is unusable ({pointer}): writing a new build from the newest, {folder.name}")
    try:
        manifest = integrity.read_manifest(folder)
    except Damaged as damage:
        _note(notes, f"the live build {folder.name} is damaged ({damage}): rebuilding from the corpus")
        reuse.older = _older_vectors(index_dir, folder, embedder)
        return reuse
    model = manifest["model"]
    if not rebuild and not embedder.accepts(model):
        built = f"{model.get('name')!r}" + (f" ({model['variant']})" if model.get("variant") else "")
        raise IndexUnavailable(
            f"the index in {index_dir} holds vectors of model {built}, not {embedder.describe()!r}; "
            "vectors of different models cannot be mixed: run `rag index --rebuild` to re-embed everything, "
            "or use another --index folder"
        )
    documents = manifest.get("documents")
    reuse.known = {s: str(e.get("fingerprint", "")) for s, e in documents.items() if isinstance(e, dict)}
    if rebuild:
        return reuse
    if manifest.get("format") != FORMAT:
        _note(notes, "the live build has an older format: re-processing every document")
        return reuse
    changed = changed_parts(manifest.get("pipeline"), reuse.pipeline)
    if changed:
        what = "no pipeline version recorded" if "pipeline" not in manifest else f"changed: {', '.join(changed)}"
        _note(notes, f"the indexing pipeline differs from the live build's ({what}): re-processing every document")
    reuse.must_write = bool(pointer or changed) or manifest.get("params") != settings.index_params()
    if not same_store(manifest, settings):
        _note(notes, f"the live build is not on the configured store ({settings.store}): writing it there")
        reuse.must_write = True

    damaged = _damaged(folder, manifest, settings, notes)  # before anything of it is re-used
    reuse.must_write = reuse.must_write or bool(damaged)
    reuse.live = _live_rows(folder, manifest, damaged, embedder)
    if reuse.live is None or reuse.live.vectors is None:
        reuse.older = _older_vectors(index_dir, folder, embedder)
    if reuse.live is not None and not damaged & {"documents.jsonl", "chunks.jsonl"}:
        _reuse_documents(reuse, folder, manifest, damaged, changed, live, notes)
    return reuse


def _damaged(folder: Path, manifest: dict[str, Any], settings: Settings, notes: list[str]) -> set[str]:
    """The files of the live build that do not verify in full, its store's included (a lost
    `milvus.db`, a damaged collection); noted once."""
    problems = integrity.check_files(folder, manifest, "full")
    problems += backend_of(manifest, folder, settings).problems(folder, manifest, "full")
    if problems:
        state = "cannot be verified" if all(p.kind == "unverified" for p in problems) else "is damaged"
        _note(
            notes,
            f"the live build {folder.name} {state} ({integrity.summary(problems)}): rebuilding it from the "
            "corpus, re-using what still verifies",
        )
    return {p.file for p in problems}


def _live_rows(folder: Path, manifest: dict[str, Any], damaged: set[str], embedder: Embedder) -> Rows | None:
    """The live build's text hashes, with its vectors when they verify and are of this model."""
    if HASHES not in (manifest.get("files") or {}) or HASHES in damaged:
        return None
    hashes = load_hashes(folder)
    if hashes is None or len(hashes) != manifest.get("chunks"):
        return None
    rows = Rows(hashes)
    if _same_vectors(manifest["model"], embedder) and "vectors.npy" not in damaged:
        vectors = np.load(folder / "vectors.npy", mmap_mode="r")
        if vectors.shape == (len(hashes), embedder.dimension):
            rows.vectors = vectors
    return rows


def _reuse_documents(
    reuse: Reuse,
    folder: Path,
    manifest: dict[str, Any],
    damaged: set[str],
    changed: list[str],
    live: KnowledgeBase | None,
    notes: list[str],
) -> None:
    """Offer the live build's documents and chunks (pipeline unchanged) and token ids (tokenizer unchanged)."""
    assert reuse.live is not None
    if live is not None and live.folder == folder and not live.warnings:
        documents, chunks = live.documents, live.chunks
        vocabularies = {name: live.lexical[name].vocabulary for name in LEXICAL}
    else:
        try:
            documents, chunks = read_records(folder)
            vocabularies = {
                name: read_vocabulary(folder, name) if vocabulary_file(folder, name) not in damaged else {}
                for name in LEXICAL
            }
        except Damaged as damage:
            problems = damage.problems
        else:
            problems = integrity.check_structure(documents, chunks, manifest, {HASHES: len(reuse.live.hashes)})
        if problems:
            summary = integrity.summary(problems)
            _note(notes, f"the live build {folder.name} is damaged ({summary}): rebuilding from the corpus")
            reuse.must_write = True
            return
    token_files = {f"{kind}_{name}.npy" for kind in ("tokens", "offsets") for name in LEXICAL}
    token_files |= {vocabulary_file(folder, name) for name in LEXICAL}
    if "tokenize" not in changed and not damaged & token_files:
        reuse.tokens = _stored_tokens(folder, vocabularies, len(reuse.live.hashes))
    if not changed:
        reuse.documents = documents
        for row, chunk in enumerate(chunks):
            reuse.chunks.setdefault(chunk.source, []).append(chunk)
            lo, _ = reuse.rows.get(chunk.source, (row, row))
            reuse.rows[chunk.source] = (lo, row + 1)


def _stored_tokens(folder: Path, vocabularies: dict[str, dict[str, int]], rows: int) -> dict[str, TokenIds] | None:
    tokens = {}
    for name in LEXICAL:
        try:
            ids = np.load(folder / f"tokens_{name}.npy", mmap_mode="r")
            offsets = np.load(folder / f"offsets_{name}.npy")
        except (OSError, ValueError):
            return None
        if len(offsets) != rows + 1 or offsets[-1] != len(ids):
            return None
        tokens[name] = TokenIds(ids, offsets, vocabularies[name])
    return tokens


def _older_vectors(index_dir: Path, live: Path, embedder: Embedder) -> list[Rows]:
    """Vectors of other builds of this index that verify and were made by the same model."""
    sources = []
    for folder in other_builds(index_dir, exclude=live):
        try:
            manifest = integrity.read_manifest(folder)
        except Damaged:
            continue
        if not _same_vectors(manifest["model"], embedder):
            continue
        if integrity.check_files(folder, manifest, only=["vectors.npy", HASHES]) or HASHES not in manifest.get(
            "files", {}
        ):
            continue
        hashes = load_hashes(folder)
        vectors = np.load(folder / "vectors.npy", mmap_mode="r")
        if hashes is not None and vectors.shape == (len(hashes), embedder.dimension):
            sources.append(Rows(hashes, vectors))
            log.info("re-using vectors of the earlier build %s that still verify", folder.name)
    return sources


def _note(notes: list[str], line: str) -> None:
    log.warning("%s", line)
    notes.append(line)
