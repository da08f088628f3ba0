"""Searching a build's Milvus collection: dense, BM25 per lexical field, and server-side hybrid fusion."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from rag.index.backends.milvus_collections import Target, client, field_text


class MilvusDense:
    """Dense search in a build's collection: row indices and cosine similarities, best first."""

    def __init__(self, target: Target, collection: str, size: int, ef: int = 512) -> None:
        self.target, self.collection, self.size, self.ef = target, collection, size, ef

    def search(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        if self.size == 0 or k <= 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        hits = client(self.target).search(
            self.collection,
            data=[np.asarray(query, dtype=np.float32).ravel().tolist()],
            anns_field="vector",
            limit=min(k, self.size),
            output_fields=["row"],
            search_params={"metric_type": "IP", "params": {"ef": max(self.ef, k)}},
        )[0]
        return _arrays(hits)


class MilvusLexical:
    """BM25 search in one lexical field of a build's collection; document frequencies from the build folder."""

    def __init__(
        self,
        target: Target,
        collection: str,
        name: str,
        size: int,
        vocabulary: dict[str, int],
        df: np.ndarray,
        k1: float,
    ):
        self.target, self.collection, self.name, self.size = target, collection, name, size
        self.vocabulary = vocabulary
        self._df = df
        self._scale = 1.0 / (k1 + 1.0)
        """Milvus scores BM25 with the (k1 + 1) factor in the numerator; bm25s, the local store, without."""

    def search(self, tokens: list[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        """Indices and BM25 scores of the `k` best passages with a positive score, best first."""
        text = field_text(tokens)
        if self.size == 0 or k <= 0 or not text:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        hits = client(self.target).search(
            self.collection,
            data=[text],
            anns_field=f"{self.name}_bm25",
            limit=min(k, self.size),
            output_fields=["row"],
            search_params={"metric_type": "BM25"},
        )[0]
        ids, scores = _arrays(hits)
        # Milvus Lite reports BM25 as a negative distance; scaled to the local store's scores, which score
        # fusion compares with the question's ideal score
        return ids, np.abs(scores) * self._scale

    def problem(self) -> str | None:
        """What is inconsistent in the lexicon of the build folder, or None."""
        if len(self._df) != len(self.vocabulary):
            return f"{len(self._df)} document frequencies for {len(self.vocabulary)} words"
        return None

    def document_frequency(self, tokens: list[str]) -> np.ndarray:
        """In how many passages each token occurs (0 for a token the index has never seen)."""
        out = np.zeros(len(tokens), dtype=np.int64)
        for i, token in enumerate(tokens):
            column = self.vocabulary.get(token)
            if column is not None and column < len(self._df):
                out[i] = self._df[column]
        return out


def hybrid_search(
    target: Target, collection: str, vector: np.ndarray, lexical: dict[str, list[str]], depth: int, k: int, rrf_k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Server-side fusion: dense and BM25 rankings fused by Milvus's `RRFRanker` (unweighted), one request.

    Retrieval does not use it: the product's weighted fusion of the three rankings keeps quality
    equal to the local store (docs/benchmarks.md, fusion study); this is what that study measures."""
    from pymilvus import AnnSearchRequest, RRFRanker

    requests = [
        AnnSearchRequest(
            [np.asarray(vector, dtype=np.float32).ravel().tolist()], "vector", {"metric_type": "IP"}, depth
        )
    ]
    for name, tokens in lexical.items():
        text = field_text(tokens)
        if text:
            requests.append(AnnSearchRequest([text], f"{name}_bm25", {"metric_type": "BM25"}, depth))
    hits = client(target).hybrid_search(collection, requests, RRFRanker(rrf_k), limit=k, output_fields=["row"])[0]
    return _arrays(hits)


def _arrays(hits: Sequence[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    ids = np.fromiter((int(h["row"]) for h in hits), dtype=np.int64, count=len(hits))
    scores = np.fromiter((float(h["distance"]) for h in hits), dtype=np.float32, count=len(hits))
    return ids, scores
