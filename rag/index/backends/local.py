"""The local store: FAISS for dense vectors, bm25s files for the lexical rankings."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rag.index.backends.base import LEXICAL, BuildInput, DenseSearch, LexicalSearch, TokenIds
from rag.index.bm25 import BM25
from rag.index.dense import DenseIndex
from rag.index.layout import reading

if TYPE_CHECKING:
    from rag.config import Settings


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
