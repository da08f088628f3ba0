"""The local store: FAISS for dense vectors, bm25s files for the lexical rankings."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rag.index.backends.base import BuildInput, DenseSearch, LexicalSearch
from rag.index.bm25 import BM25
from rag.index.dense import DenseIndex
from rag.index.layout import LEXICAL, reading

if TYPE_CHECKING:
    from rag.config import Settings
    from rag.index.integrity import Problem


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

    def problems(self, folder: Path, manifest: dict[str, Any], depth: str) -> list[Problem]:
        return []  # every file is in the build folder, checked with it

    def discard(self, meta: dict[str, Any]) -> None:
        pass  # everything is in the build folder

    def activate(self, manifest: dict[str, Any]) -> None:
        pass

    def retire(self, kept: list[dict[str, Any]]) -> None:
        pass  # the build folders hold everything; `rag.index.commit` deletes old ones
