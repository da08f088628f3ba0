"""The contract of a store backend: what a build hands it (`BuildInput`) and what it opens (`DenseSearch`,
`LexicalSearch`), for local files (FAISS + bm25s, the default) or Milvus.

A build (see `rag.index.build`) prepares every chunk's vector and both lexical token forms; a `Backend`
writes the search structures for them and opens them again. What it opens is what retrieval and the
answer composer use: a `DenseSearch` and one `LexicalSearch` per lexical index (`words`,
`bigrams`), whose hits are row indices into the build's chunk list. Documents, chunk records and
the manifest stay in the build folder whatever the backend.

    backend = open_backend(settings)          # from `settings.store`: "local" or "milvus:<uri>"
    meta = backend.write(build)               # while the build folder is not live yet
    dense, lexical = backend.open(folder, manifest)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

if TYPE_CHECKING:
    from rag.index.integrity import Problem
    from rag.model import Chunk


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

    def problems(self, folder: Path, manifest: dict[str, Any], depth: str) -> list[Problem]:
        """Damage in what the store keeps of a build outside its folder (a Milvus Lite collection's
        files), checked at `depth` as `rag.index.integrity.check_files` checks the folder's files,
        without opening it: the store may change what it opens (Milvus Lite's recovery deletes files)."""
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
