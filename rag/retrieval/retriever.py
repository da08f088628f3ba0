"""Hybrid retrieval: dense (FAISS) and BM25 over words and bigrams, fused (`rag.retrieval.fusion`), pooled per
document, steered by the names the question asks about (`rag.query.names`) and, for a definition question,
towards the passage that defines its subject (`rag.query.definitions`)."""

from __future__ import annotations

import copy

import numpy as np

from rag.config import Settings
from rag.embedding.embedder import Embedder
from rag.index.bm25 import idf
from rag.index.knowledge_base import KnowledgeBase
from rag.ingest.chunk import sentence_spans
from rag.model import Hit
from rag.query.definitions import definition_strength, subjects
from rag.query.names import DocumentNames, question_names
from rag.query.question import Query
from rag.retrieval.filters import Filters, filtered_search
from rag.retrieval.fusion import Ranking, fuse_ranks, fuse_scores, pool_documents
from rag.text.normalize import compact, normalize
from rag.text.tokenize import bigrams, words


class Retriever:
    """Searches one knowledge base with one embedding model."""

    def __init__(self, kb: KnowledgeBase, embedder: Embedder, settings: Settings) -> None:
        self.kb, self.embedder, self.settings = kb, embedder, settings
        self.document_names = DocumentNames(kb.documents, settings.name_header_chars, settings.name_in_text)
        self.filters, self.mask = Filters(), None
        """Only the chunks `mask` allows are retrieved (`narrowed`); None: all."""

    def narrowed(self, filters: Filters) -> Retriever:
        """This retriever searching only the documents `filters` allow (itself when they allow all)."""
        if not filters:
            return self
        twin = copy.copy(self)
        twin.filters, twin.mask = filters, filters.mask(self.kb.documents, self.kb.chunks)
        return twin

    def query(self, question: str) -> Query:
        """Normalize, cut and embed a question once for all rankings."""
        text = question.strip()[: self.settings.max_query_chars]
        normalized = normalize(text)
        vector = self.embedder.encode_queries([normalized])[0]
        return Query.of(text, normalized, vector)

    def search(
        self, question: str | Query, k: int | None = None, dense_scale: tuple[float, float] | None = None
    ) -> list[Hit]:
        """The `k` best chunks for a question, best first: the rankings fused (`rag.retrieval.fusion`), each
        chunk lifted by its document's other good chunks, by the question's names its document
        carries (`rag.query.names`) and, for a definition question, by a sentence that defines its subject
        (`rag.query.definitions`). `dense_scale`: the mean and deviation to normalize cosines with
        (`rag.retrieval.fusion.dense_scale`, when several knowledge bases are searched together)."""
        query = question if isinstance(question, Query) else self.query(question)
        k = self.settings.top_k if k is None else k
        s = self.settings
        depth = max(s.candidates, k)
        lexical = query.lexical
        dense_ids, dense_scores = self.dense(query, depth)
        rankings = {"dense": Ranking(dense_ids, dense_scores, scale=dense_scale)}
        for name, tokenize in (("words", words), ("bigrams", bigrams)):
            tokens = tokenize(lexical)
            ids, scores = filtered_search(self.kb.lexical[name].search, tokens, depth, self.mask)
            rankings[name] = Ranking(ids, scores, self._ideal(name, tokens))
        if s.fusion == "rrf":
            weights = dict(zip(("dense", "words", "bigrams"), s.rrf_weights, strict=True))
            fused = fuse_ranks(rankings, weights, s.rrf_k)
        else:
            weights = {"dense": s.weight_dense, "words": s.weight_words, "bigrams": s.weight_bigrams}
            fused = fuse_scores(rankings, weights)
        fused = pool_documents(fused, lambda idx: self.kb.chunks[idx].source, s.pool_weight, s.pool_damping)
        if query.kind == "definition" and s.weight_defines:
            about = subjects(query.lexical)
            for idx in fused:
                fused[idx] += s.weight_defines * self._defines(idx, about)
        asked = question_names(query.normalized)
        found: dict[str, tuple[str, ...]] = {}
        if asked:
            share: dict[str, float] = {}
            for idx in fused:
                source = self.kb.chunks[idx].source
                if source not in share:
                    share[source], found[source] = self.document_names.match(source, asked)
                fused[idx] += s.weight_names * share[source]
        best = sorted(fused, key=lambda idx: (-fused[idx], idx))[:k]
        cosines = dict(zip(dense_ids.tolist(), dense_scores.tolist(), strict=True))
        asked_texts = tuple(name.text for name in asked)
        hits = []
        for rank, idx in enumerate(best, 1):
            chunk = self.kb.chunks[idx]
            places = {name: _place(r.ids, idx) for name, r in rankings.items()}
            hits.append(
                Hit(
                    rank,
                    chunk,
                    fused[idx],
                    float(cosines.get(idx, 0.0)),
                    {name: place for name, place in places.items() if place},
                    asked_texts,
                    found.get(chunk.source, ()),
                )
            )
        return hits

    def dense(self, query: Query, depth: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The dense ranking of allowed chunks: indices and cosines, `depth` (default `candidates`) best."""
        return filtered_search(self.kb.dense.search, query.vector, depth or self.settings.candidates, self.mask)

    def _defines(self, idx: int, about: list[str]) -> float:
        """How plainly one of the chunk's sentences says what the question's subject is (0..1), judged
        as the composer judges its sentences (`rag.answer.scoring`)."""
        text = self.kb.chunks[idx].text
        sentences = (compact(text[span.start : span.end]) for span in sentence_spans(text))
        steps = self.settings.composer
        return max(
            (definition_strength(sentence, about, 1.0, steps, plain_is=False) for sentence in sentences), default=0.0
        )

    def _ideal(self, name: str, tokens: list[str]) -> float:
        """The question's ideal BM25 score in index `name`: the sum of its distinct terms' IDF
        (a term the corpus lacks counts fully, lowering every passage's share)."""
        distinct = list(dict.fromkeys(tokens))
        if not distinct:
            return 0.0
        n = max(len(self.kb.chunks), 1)
        df = self.kb.lexical[name].document_frequency(distinct)
        return float(idf(df, n).sum())


def _place(ids: np.ndarray, idx: int) -> int:
    """1-based position of `idx` in a ranking, 0 when absent."""
    where = np.flatnonzero(ids == idx)
    return int(where[0]) + 1 if where.size else 0
