"""Dense search: FAISS inner product over L2-normalized vectors (exact, or HNSW for large indexes)."""

from __future__ import annotations

import os
from pathlib import Path

import faiss
import numpy as np

# One question's search is memory-bound: a second OpenMP thread costs more to wake than it saves
# (flat search over 100k vectors: 9 ms with 1 thread, 15 ms with 2; docs/benchmarks.md).
faiss.omp_set_num_threads(1)


class DenseIndex:
    """Vectors in a FAISS index; `search` gives cosine similarities, best first."""

    def __init__(self, index: faiss.Index) -> None:
        self.index = index

    @classmethod
    def build(cls, vectors: np.ndarray, dimension: int, hnsw_min_vectors: int = 200_000) -> DenseIndex:
        """Exact search below `hnsw_min_vectors` vectors, HNSW (M=32) from there on."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1, dimension)
        if len(vectors) < hnsw_min_vectors:
            index = faiss.IndexFlatIP(dimension)
            index.add(vectors)
            return cls(index)
        index = faiss.IndexHNSWFlat(dimension, 32, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = 80
        index.hnsw.efSearch = 512  # recall@50 against exact search: 0.98 at 100k (128: 0.89)
        faiss.omp_set_num_threads(os.cpu_count() or 1)  # building is parallel work
        try:
            index.add(vectors)
        finally:
            faiss.omp_set_num_threads(1)
        return cls(index)

    @property
    def size(self) -> int:
        return int(self.index.ntotal)

    def search(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Indices and cosine similarities of the `k` nearest vectors to one query vector."""
        if self.size == 0 or k <= 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        scores, ids = self.index.search(np.ascontiguousarray(query, dtype=np.float32).reshape(1, -1), min(k, self.size))
        keep = ids[0] >= 0
        return ids[0][keep].astype(np.int64), scores[0][keep]

    def save(self, path: Path) -> None:
        """Written by Python, not by FAISS: FAISS only prints a failed `fclose` (a full disk) and leaves
        a short file, while Python raises `OSError` (ENOSPC) and the build stops there."""
        data = faiss.serialize_index(self.index)
        with open(path, "wb") as out:
            out.write(memoryview(data))

    @classmethod
    def load(cls, path: Path) -> DenseIndex:
        return cls(faiss.read_index(str(path)))
