"""Where a build's search structures live: local files (FAISS + bm25s, the default) or Milvus.

A build (see `store.py`) prepares every chunk's vector and both lexical token forms; a `Backend`
writes the search structures for them and opens them again. What it opens is what retrieval and the
answer composer use: a `DenseSearch` and one `LexicalSearch` per lexical index (`words`,
`bigrams`), whose hits are row indices into the build's chunk list. Documents, chunk records and
the manifest stay in the build folder whatever the backend.

    backend = open_backend(settings)          # from `settings.store`: "local" or "milvus:<uri>"
    meta = backend.write(build)               # while the build folder is not live yet
    dense, lexical = backend.open(folder, manifest)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from rag.dense import DenseIndex
from rag.layout import reading
from rag.lexical import BM25

if TYPE_CHECKING:
    from rag.chunk import Chunk
    from rag.config import Settings

LEXICAL = ("words", "bigrams")


class DenseSearch(Protocol):
    """Nearest chunks to a question vector."""

    @property
    def size(self) -> int: ...

    def search(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Row indices and cosine similarities of the `k` nearest chunks, best first."""
        ...


class LexicalSearch(Protocol):
    """BM25 over one token form of the chunks."""

    size: int

    @property
    def vocabulary(self) -> dict[str, int]:
        """Token → id of the indexed tokens (the ids of the build's stored token arrays)."""
        ...

    def search(self, tokens: list[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        """Row indices and BM25 scores of the `k` best chunks with a positive score, best first."""
        ...

    def document_frequency(self, tokens: list[str]) -> np.ndarray:
        """In how many chunks each token occurs (0 for an unknown token)."""
        ...

    def problem(self) -> str | None:
        """What is inconsistent in the opened index, or None."""
        ...


@dataclass
class TokenIds:
    """Every chunk's tokens for one lexical index as ids of `vocab`, concatenated."""

    ids: np.ndarray
    offsets: np.ndarray
    """Chunk `i`'s ids are `ids[offsets[i]:offsets[i + 1]]`."""
    vocab: dict[str, int]

    def tokens(self) -> list[list[str]]:
        """Every chunk's tokens as strings."""
        words = np.empty(len(self.vocab), dtype=object)
        for token, i in self.vocab.items():
            words[i] = token
        return [words[self.ids[lo:hi]].tolist() for lo, hi in zip(self.offsets[:-1], self.offsets[1:], strict=True)]


@dataclass
class BuildInput:
    """What a build hands its backend: the chunks in row order, their vectors and token ids."""

    folder: Path
    """The new build folder (not live yet); a backend may write files into it."""
    name: str
    """The build's name (its folder name), unique per index folder."""
    chunks: list[Chunk]
    vectors: np.ndarray
    tokens: dict[str, TokenIds]
    previous: dict[str, Any] | None = None
    """The live build's manifest, if there is one."""


class Backend(Protocol):
    """Writes and opens the search structures of builds."""

    kind: str

    def write(self, build: BuildInput) -> dict[str, Any]:
        """Write the search structures of a complete build; returns what its manifest records as `store`."""
        ...

    def open(self, folder: Path, manifest: dict[str, Any]) -> tuple[DenseSearch, dict[str, LexicalSearch]]:
        """The search structures of a build written by `write`; `Damaged` when they are damaged or
        gone, `IndexUnavailable` when the store cannot be reached."""
        ...

    def discard(self, meta: dict[str, Any]) -> None:
        """Free what `write` made (its result `meta`) for a build that will not go live."""
        ...

    def activate(self, manifest: dict[str, Any]) -> None:
        """Called once the build of `manifest` is live."""
        ...

    def retire(self, kept: list[dict[str, Any]]) -> None:
        """Free what builds other than those of the `kept` manifests hold (removed or interrupted builds)."""
        ...


class LocalBackend:
    """FAISS (`dense.faiss`) and two bm25s indexes (`bm25_words/`, `bm25_bigrams/`) in the build folder."""

    kind = "local"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def write(self, build: BuildInput) -> dict[str, Any]:
        s = self.settings
        dense = DenseIndex.build(build.vectors, build.vectors.shape[1], s.hnsw_min_vectors)
        dense.save(build.folder / "dense.faiss")
        for name, ids in build.tokens.items():
            bm25 = BM25(s.bm25_k1, s.bm25_b).build_ids(ids.ids, np.diff(ids.offsets), ids.vocab)
            bm25.save(build.folder / f"bm25_{name}")
        return {"kind": self.kind, "dense": type(dense.index).__name__}

    def open(self, folder: Path, manifest: dict[str, Any]) -> tuple[DenseSearch, dict[str, LexicalSearch]]:
        params = manifest["params"]
        size = int(manifest["chunks"])
        with reading(folder, "dense.faiss"):
            dense = DenseIndex.load(folder / "dense.faiss")
        lexical: dict[str, LexicalSearch] = {}
        for name in LEXICAL:
            with reading(folder, f"bm25_{name}"):
                lexical[name] = BM25.load(folder / f"bm25_{name}", size, params["bm25_k1"], params["bm25_b"])
        return dense, lexical

    def discard(self, meta: dict[str, Any]) -> None:
        pass  # everything is in the build folder

    def activate(self, manifest: dict[str, Any]) -> None:
        pass

    def retire(self, kept: list[dict[str, Any]]) -> None:
        pass  # the build folders hold everything; store.py deletes old ones


def store_identity(settings: Settings) -> dict[str, str]:
    """Where builds of `settings` go, as their manifests record it (`store` section)."""
    if store_kind(settings.store) == "local":
        return {"kind": "local"}
    from rag.milvus_store import shown_uri, target_of

    target = target_of(settings)
    return {"kind": "milvus", "uri": shown_uri(target, settings.index_dir), "name": target.name}


def same_store(manifest: dict[str, Any], settings: Settings) -> bool:
    """Is the build of `manifest` on the store `settings` name? (A build without a `store` section is local.)"""
    recorded = manifest.get("store") or {"kind": "local"}
    return all(recorded.get(key) == value for key, value in store_identity(settings).items())


def backend_of(manifest: dict[str, Any], folder: Path, settings: Settings | None) -> Backend:
    """The backend that opens the build of `manifest` (in `folder`): its own kind; for Milvus, the
    connection of `settings` when they name Milvus too, else the one the manifest records."""
    from rag.config import Settings

    recorded = manifest.get("store") or {"kind": "local"}
    settings = settings or Settings(index_dir=folder.parent)
    if recorded.get("kind") == "milvus":
        if store_kind(settings.store) != "milvus":
            from rag.milvus_store import recorded_uri

            settings = settings.replace(store=f"milvus:{recorded_uri(str(recorded.get('uri', '')), folder.parent)}")
        if recorded.get("name"):
            settings = settings.replace(milvus_collection=recorded["name"])
        return open_backend(settings)
    return LocalBackend(settings)


def store_kind(spec: str) -> str:
    """`local` or `milvus` for a `Settings.store` value (`local`, `milvus`, `milvus:<uri>`)."""
    kind = spec.split(":", 1)[0].strip().lower() or "local"
    if kind not in ("local", "milvus"):
        raise ValueError(f"unknown store {spec!r}: use 'local', 'milvus:<file>.db' or 'milvus:http://host:19530'")
    return kind


def open_backend(settings: Settings) -> Backend:
    """The backend `settings.store` names."""
    if store_kind(settings.store) == "local":
        return LocalBackend(settings)
    from rag.milvus_store import MilvusBackend

    return MilvusBackend(settings)


def document_frequencies(ids: np.ndarray, offsets: np.ndarray, n_terms: int) -> np.ndarray:
    """Per token id, the number of chunks it occurs in (chunk `i`'s ids are `ids[offsets[i]:offsets[i+1]]`)."""
    lengths = np.diff(offsets)
    n_docs = len(lengths)
    if n_docs == 0:
        return np.zeros(n_terms, dtype=np.int64)
    doc_of = np.repeat(np.arange(n_docs, dtype=np.int64), lengths)
    keys = np.unique(np.asarray(ids, dtype=np.int64) * n_docs + doc_of)
    return np.bincount(keys // n_docs, minlength=n_terms).astype(np.int64)


def write_lexicons(folder: Path, tokens: dict[str, TokenIds]) -> None:
    """Each lexical index's vocabulary and document frequencies as `lexicon_<name>.json`, for
    backends that keep no vocabulary of their own."""
    for name, ids in tokens.items():
        ordered = sorted(ids.vocab, key=ids.vocab.__getitem__)
        df = document_frequencies(ids.ids, ids.offsets, len(ordered))
        payload = {"tokens": ordered, "df": df.tolist()}
        (folder / f"lexicon_{name}.json").write_text(json.dumps(payload, ensure_ascii=False), encoding="utf-8")


def read_lexicon(folder: Path, name: str) -> tuple[dict[str, int], np.ndarray]:
    """The vocabulary and document frequencies written by `write_lexicons`."""
    payload = json.loads((folder / f"lexicon_{name}.json").read_text(encoding="utf-8"))
    return {token: i for i, token in enumerate(payload["tokens"])}, np.asarray(payload["df"], dtype=np.int64)
