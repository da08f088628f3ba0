"""Hybrid retrieval: dense (FAISS) and BM25 over words and bigrams, fused (`rag.fusion`), pooled per
document and steered by the names the question asks about (`rag.names`)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from rag.chunk import Chunk
from rag.config import Settings
from rag.embed import Embedder
from rag.fusion import Ranking, fuse_ranks, fuse_scores, pool_documents
from rag.lexical import bigrams, key_terms, strip_question_words, words
from rag.names import DocumentNames, question_names
from rag.normalize import normalize
from rag.store import KnowledgeBase

_NUMBER_Q = re.compile(r"多少|几[个项名人次年天家条位批]|数量|比例|百分之|人次")
_TIME_Q = re.compile(r"哪一年|哪年|何时|什么时候|哪天|哪一天|日期")
_DEFINITION_Q = re.compile(r"是什么|指什么|什么是|是指|含义|定义|定位|意思|内涵|角色|什么叫")
_LIST_Q = re.compile(
    r"包括|包含|哪些|哪几|几个方面|怎么做|怎样做|如何|怎样|怎么|措施|举措|做法|途径|办法|步骤|方面|表现"
)
_ASKING = re.compile(r"如何|怎样|怎么|为什么|为何|什么|哪些|哪几|哪个|多少|几[个项名次年]|是否|何时")
_CLAUSE = re.compile(r"[，,。;；:：!！?？\s]")
#: Words a passage that answers each kind of question tends to contain; added to the lexical query.
_KIND_CUES = {"definition": " 是指"}


def question_kind(normalized_question: str) -> str:
    """`number`, `time`, `definition`, `list` or `general`: what shape the answer should take."""
    for kind, cue in (("number", _NUMBER_Q), ("time", _TIME_Q), ("definition", _DEFINITION_Q), ("list", _LIST_Q)):
        if cue.search(normalized_question):
            return kind
    return "general"


@dataclass
class Query:
    """A question in the forms each ranking needs."""

    text: str
    normalized: str
    lexical: str
    """Normalized, without question words: what BM25 and term coverage look at."""
    vector: np.ndarray
    kind: str = "general"
    """What shape of answer the question wants: see `question_kind`."""

    @cached_property
    def key_terms(self) -> list[str]:
        """Distinct words of the question that carry its topic."""
        return key_terms(self.lexical)

    @cached_property
    def focus_terms(self) -> list[str]:
        """Key terms of what the question asks about: the words right after its question word
        (`…如何设置考核内容`), or right before it when nothing follows (`纪委监督责任包括什么`)."""
        match = _ASKING.search(self.normalized)
        if not match:
            return []
        after = _CLAUSE.split(self.normalized[match.end() :], 1)[0]
        before = _CLAUSE.split(self.normalized[: match.start()])[-1][-8:]
        segment = after if len(key_terms(strip_question_words(after))) else before
        return key_terms(strip_question_words(segment))


@dataclass
class Hit:
    """One retrieved chunk with its fused score and its place in each ranking."""

    rank: int
    chunk: Chunk
    score: float
    dense: float
    """Cosine similarity of question and chunk (0 when the chunk was not among the dense candidates)."""
    ranks: dict[str, int] = field(default_factory=dict)
    names_asked: tuple[str, ...] = ()
    """Places, organisations, people, years and titles the question names (`rag.names`)."""
    names_found: tuple[str, ...] = ()
    """Those of `names_asked` that this chunk's document carries (title, metadata or text)."""


class Retriever:
    """Searches one knowledge base with one embedding model."""

    def __init__(self, kb: KnowledgeBase, embedder: Embedder, settings: Settings) -> None:
        self.kb, self.embedder, self.settings = kb, embedder, settings
        self.document_names = DocumentNames(kb.documents)

    def query(self, question: str) -> Query:
        """Normalize, cut and embed a question once for all rankings."""
        text = question.strip()[: self.settings.max_query_chars]
        normalized = normalize(text)
        vector = self.embedder.encode_queries([normalized])[0]
        kind = question_kind(normalized)
        return Query(text, normalized, strip_question_words(normalized), vector, kind)

    def search(self, question: str | Query, k: int | None = None) -> list[Hit]:
        """The `k` best chunks for a question, best first: the rankings fused (`rag.fusion`), each
        chunk lifted by its document's other good chunks and by the question's names its document
        carries (`rag.names`)."""
        query = question if isinstance(question, Query) else self.query(question)
        k = self.settings.top_k if k is None else k
        s = self.settings
        depth = max(s.candidates, k)
        lexical = query.lexical + _KIND_CUES.get(query.kind, "")
        dense_ids, dense_scores = self.kb.dense.search(query.vector, depth)
        rankings = {"dense": Ranking(dense_ids, dense_scores)}
        for name, tokenize in (("words", words), ("bigrams", bigrams)):
            tokens = tokenize(lexical)
            ids, scores = self.kb.lexical[name].search(tokens, depth)
            rankings[name] = Ranking(ids, scores, self._ideal(name, tokens))
        if s.fusion == "rrf":
            weights = dict(zip(("dense", "words", "bigrams"), s.rrf_weights, strict=True))
            fused = fuse_ranks(rankings, weights, s.rrf_k)
        else:
            weights = {"dense": s.weight_dense, "words": s.weight_words, "bigrams": s.weight_bigrams}
            fused = fuse_scores(rankings, weights)
        fused = pool_documents(fused, lambda idx: self.kb.chunks[idx].source, s.pool_weight, s.pool_damping)
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

    def _ideal(self, name: str, tokens: list[str]) -> float:
        """The question's ideal BM25 score in index `name`: the sum of its distinct terms' IDF
        (a term the corpus lacks counts fully, lowering every passage's share)."""
        distinct = list(dict.fromkeys(tokens))
        if not distinct:
            return 0.0
        n = max(len(self.kb.chunks), 1)
        df = self.kb.lexical[name].document_frequency(distinct)
        return float(np.log(1 + (n - df + 0.5) / (df + 0.5)).sum())


def _place(ids: np.ndarray, idx: int) -> int:
    """1-based position of `idx` in a ranking, 0 when absent."""
    where = np.flatnonzero(ids == idx)
    return int(where[0]) + 1 if where.size else 0
