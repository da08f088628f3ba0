"""Steps 2 and 3 of a build: what goes into it, kept from verified earlier builds where it can be.

- `documents`: unchanged documents keep their chunks; the others are cleaned and chunked (`prepare`),
  and a cleaning step that took out much of one is reported (a warning, a line of `BuildReport.notes`);
- `vectors`: only chunk texts that no verified earlier build has a vector for are embedded;
- `lexical_tokens`: stored token ids for kept documents and known texts, the rest tokenized.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np

from rag.config import Settings
from rag.index.backends.base import TokenIds
from rag.index.bm25 import token_ids
from rag.index.progress import OnProgress, Progress
from rag.index.report import BuildReport
from rag.index.reuse import Reuse
from rag.ingest.chunk import chunk_document, index_text, text_hash
from rag.ingest.clean import STEPS, clean_counted
from rag.ingest.loaders import RawDocument
from rag.model import Chunk, Document
from rag.text.tokenize import TOKENIZERS

if TYPE_CHECKING:
    from rag.embedding.embedder import Embedder

log = logging.getLogger(__name__)


@dataclass
class Part:
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


# --- step 2, documents -------------------------------------------------------------------------


def documents(
    raws: list[RawDocument],
    reuse: Reuse,
    settings: Settings,
    report: BuildReport,
    bar: bool,
    on_progress: OnProgress | None,
) -> list[Part]:
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
                Part(reuse.documents[raw.source], reuse.chunks[raw.source], (lo, hi), reuse.live.hashes[lo:hi])
            )
            continue
        if reuse.known.get(raw.source) == raw.fingerprint:
            report.reprocessed.append(raw.source)
        else:
            (report.changed if raw.source in reuse.known else report.added).append(raw.source)
        parts.append(Part(*prepare(raw, settings, report)))
        progress.advance()
    progress.close()
    report.removed = sorted(set(reuse.known) - {raw.source for raw in raws})
    return parts


def prepare(raw: RawDocument, settings: Settings, report: BuildReport | None = None) -> tuple[Document, list[Chunk]]:
    """One document cleaned and chunked; each cleaning step that took out more than
    `settings.clean_note_share` of its text is logged and noted in `report`."""
    document, removed = clean_counted(raw)
    for step, share in removed.shares(settings.clean_note_share).items():
        note = (
            f"{raw.source}：清理步骤“{STEPS[step]}”删去了 {share:.0%} 的文字（{removed.steps[step]:,} / {removed.total:,} 个字符）"
            f" (cleaning step {step} removed {share:.0%} of the text)"
        )
        log.warning("%s", note)
        if report is not None:
            report.notes.append(note)
    chunks = chunk_document(
        document, settings.chunk_target, settings.chunk_max, settings.chunk_min, settings.chunk_overlap
    )
    return document, chunks


# --- step 3, vectors ---------------------------------------------------------------------------


def vectors(
    parts: list[Part],
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


# --- step 3, token ids -------------------------------------------------------------------------


def lexical_tokens(name: str, parts: list[Part], reuse: Reuse) -> TokenIds:
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
    return _renumbered(ids, lengths, vocab)


def _renumbered(ids: list[np.ndarray], lengths: list[np.ndarray], vocab: dict[str, int]) -> TokenIds:
    """The chunks' token ids concatenated; when documents were removed or changed, the tokens still
    in use renumbered and the others dropped from `vocab`."""
    all_ids = np.concatenate(ids).astype(np.int32) if ids else np.zeros(0, np.int32)
    all_lengths = np.concatenate(lengths).astype(np.int64) if lengths else np.zeros(0, np.int64)
    used = np.bincount(all_ids, minlength=len(vocab)) > 0
    if not used.all():
        new_id = np.cumsum(used) - 1
        all_ids = new_id[all_ids].astype(np.int32)
        vocab = {token: int(new_id[i]) for token, i in vocab.items() if used[i]}
    offsets = np.concatenate([[0], np.cumsum(all_lengths)]).astype(np.int64)
    return TokenIds(all_ids, offsets, vocab)
