"""Hybrid retrieval: dense (FAISS) and BM25 over words and bigrams, fused by reciprocal rank."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from rag.chunk import Chunk
from rag.config import Settings
from rag.embed import Embedder
from rag.lexical import bigrams, words
from rag.normalize import normalize
from rag.question import Query, question_kind
from rag.store import KnowledgeBase

__all__ = ["Hit", "Query", "Retriever", "question_kind"]


@dataclass
class Hit:
    """One retrieved chunk with its fused score and its place in each ranking."""

    rank: int
    chunk: Chunk
    score: float
    dense: float
    """Cosine similarity of question and chunk (0 when the chunk was not among the dense candidates)."""
    ranks: dict[str, int] = field(default_factory=dict)


class Retriever:
    """Searches one knowledge base with one embedding model."""

    def __init__(self, kb: KnowledgeBase, embedder: Embedder, settings: Settings) -> None:
        self.kb, self.embedder, self.settings = kb, embedder, settings

    def query(self, question: str) -> Query:
        """Normalize, cut and embed a question once for all rankings."""
        text = question.strip()[: self.settings.max_query_chars]
        normalized = normalize(text)
        vector = self.embedder.encode_queries([normalized])[0]
        return Query.of(text, normalized, vector)

    def search(self, question: str | Query, k: int | None = None) -> list[Hit]:
        """The `k` best chunks for a question, best first."""
        query = question if isinstance(question, Query) else self.query(question)
        k = self.settings.top_k if k is None else k
        s = self.settings
        depth = max(s.candidates, k)
        lexical = query.lexical
        rankings: dict[str, tuple[np.ndarray, np.ndarray]] = {
            "dense": self.kb.dense.search(query.vector, depth),
            "words": self.kb.lexical["words"].search(words(lexical), depth),
            "bigrams": self.kb.lexical["bigrams"].search(bigrams(lexical), depth),
        }
        weights = {"dense": s.weight_dense, "words": s.weight_words, "bigrams": s.weight_bigrams}
        fused: dict[int, float] = {}
        places: dict[int, dict[str, int]] = {}
        for name, (ids, _scores) in rankings.items():
            for rank, idx in enumerate(ids.tolist(), 1):
                fused[idx] = fused.get(idx, 0.0) + weights[name] / (s.rrf_k + rank)
                places.setdefault(idx, {})[name] = rank
        dense_scores = dict(zip(rankings["dense"][0].tolist(), rankings["dense"][1].tolist(), strict=True))
        best = sorted(fused, key=lambda idx: (-fused[idx], idx))[:k]
        return [
            Hit(rank, self.kb.chunks[idx], fused[idx], float(dense_scores.get(idx, 0.0)), places[idx])
            for rank, idx in enumerate(best, 1)
        ]
