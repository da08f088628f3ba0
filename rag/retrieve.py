"""Hybrid retrieval: dense (FAISS) and BM25 over words and bigrams, fused by reciprocal rank."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from rag.chunk import Chunk
from rag.config import Settings
from rag.embed import Embedder
from rag.lexical import bigrams, key_terms, strip_question_words, words
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


class Retriever:
    """Searches one knowledge base with one embedding model."""

    def __init__(self, kb: KnowledgeBase, embedder: Embedder, settings: Settings) -> None:
        self.kb, self.embedder, self.settings = kb, embedder, settings

    def query(self, question: str) -> Query:
        """Normalize, cut and embed a question once for all rankings."""
        text = question.strip()[: self.settings.max_query_chars]
        normalized = normalize(text)
        vector = self.embedder.encode_queries([normalized])[0]
        kind = question_kind(normalized)
        return Query(text, normalized, strip_question_words(normalized), vector, kind)

    def search(self, question: str | Query, k: int | None = None) -> list[Hit]:
        """The `k` best chunks for a question, best first."""
        query = question if isinstance(question, Query) else self.query(question)
        k = self.settings.top_k if k is None else k
        s = self.settings
        depth = max(s.candidates, k)
        lexical = query.lexical + _KIND_CUES.get(query.kind, "")
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
