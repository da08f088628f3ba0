"""Extractive answers with citations, and abstention when the corpus has no answer.

No language model: the composer picks sentences (or a whole enumerated block: 一是…二是…,
（一）（二）, 1. 2., 首先…其次…) from the retrieved passages, orders them, and ends each quote with
a citation marker `[n]`. Every quote is a verbatim span of its document's cleaned text, so
`document.text[citation.start:citation.end] == citation.quote` holds by construction.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from rag.chunk import Span, sentence_spans
from rag.clean import Document
from rag.config import Settings
from rag.lexical import bigrams, words
from rag.normalize import compact
from rag.retrieve import Hit, Query
from rag.store import KnowledgeBase

ABSTAIN_TEXT = "知识库中没有找到能回答这个问题的内容。"
RELATED_LABEL = "可能相关"

_NUMBER_Q = re.compile(r"多少|几[个项名人次年天家条位批]|数量|比例|百分之|人次")
_TIME_Q = re.compile(r"哪一年|哪年|何时|什么时候|哪天|哪一天|日期")
_DEFINITION_Q = re.compile(r"是什么|指什么|什么是|是指|含义|定义|定位|意思|内涵|角色|什么叫")
_LIST_Q = re.compile(r"包括|包含|哪些|哪几|几个方面|怎么做|怎样做|如何|怎样|怎么|措施|举措|做法|途径|办法|步骤|方面|表现")
_DEFINES = re.compile(r"(?:主要)?是指|指的是|是|即|就是")
_HAS_NUMBER = re.compile(r"\d|[一二三四五六七八九十百千万两]+(?:项|名|人次|个|条|家|批|次|年|%)")
_HAS_DATE = re.compile(r"\d{4}年|\d{1,2}月|\d{4}[-/.]\d{1,2}")

_ORDINAL = "一二三四五六七八九十"
_MARKERS: list[tuple[str, re.Pattern[str]]] = [
    ("是", re.compile(rf"^([{_ORDINAL}]{{1,2}})是")),
    ("（）", re.compile(rf"^[(（]([{_ORDINAL}]{{1,2}})[)）]")),
    ("、", re.compile(rf"^([{_ORDINAL}]{{1,2}})、")),
    ("第", re.compile(rf"^第([{_ORDINAL}]{{1,2}})[,，、:：]")),
    ("1.", re.compile(r"^(\d{1,2})[.、．)）](?!\d)")),
    ("①", re.compile(r"^([①②③④⑤⑥⑦⑧⑨⑩])")),
    ("首先", re.compile(r"^(首先|其次|再次|最后)")),
]
_SEQUENCE_WORDS = {"首先": 1, "其次": 2, "再次": 3}
_CIRCLED = "①②③④⑤⑥⑦⑧⑨⑩"


@dataclass
class Citation:
    """A verbatim quote from one document: `documents[source].text[start:end] == quote`."""

    id: int
    source: str
    title: str
    heading: str
    quote: str
    start: int
    end: int
    chunk_id: str = ""


@dataclass
class Passage:
    """A retrieved chunk as shown under an answer."""

    rank: int
    source: str
    chunk_id: str
    title: str
    heading: str
    score: float
    text: str
    start: int
    end: int


@dataclass
class Answer:
    """An answer with `[n]` markers into `citations`, or an abstention."""

    question: str
    answer: str
    abstained: bool
    citations: list[Citation] = field(default_factory=list)
    passages: list[Passage] = field(default_factory=list)
    standalone_question: str = ""
    """The question as searched, after a follow-up was completed from the conversation."""
    kind: str = "general"
    truncated: bool = False
    evidence: float = 0.0
    """Share of the question's key terms (IDF-weighted) that the best passage covers."""

    def to_dict(self) -> dict[str, object]:
        """The stable JSON form (see README, “JSON output”)."""
        return {
            "question": self.question,
            "answer": self.answer,
            "abstained": self.abstained,
            "citations": [
                {"id": c.id, "source": c.source, "title": c.title, "quote": c.quote, "start": c.start, "end": c.end}
                for c in self.citations
            ],
            "passages": [
                {"rank": p.rank, "source": p.source, "chunk_id": p.chunk_id, "score": round(p.score, 6), "text": p.text}
                for p in self.passages
            ],
        }


@dataclass
class _Sentence:
    source: str
    start: int
    end: int
    rank: int  # retrieval rank of the passage it came from
    chunk_id: str
    score: float = 0.0
    grams: frozenset[str] = frozenset()


def question_kind(normalized_question: str) -> str:
    """`number`, `time`, `definition`, `list` or `general`: what shape the answer should take."""
    for kind, cue in (("number", _NUMBER_Q), ("time", _TIME_Q), ("definition", _DEFINITION_Q), ("list", _LIST_Q)):
        if cue.search(normalized_question):
            return kind
    return "general"


class Composer:
    """Builds `Answer`s from retrieved hits of one knowledge base."""

    def __init__(self, kb: KnowledgeBase, settings: Settings) -> None:
        self.kb, self.settings = kb, settings
        self._groups: dict[str, list[list[Span]]] = {}

    # --- evidence ------------------------------------------------------------------------------

    def term_weights(self, terms: list[str]) -> list[float]:
        """IDF of each term in the knowledge base (unknown terms weigh most)."""
        n = max(1, len(self.kb.chunks))
        df = self.kb.lexical["words"].document_frequency(terms)
        return [math.log(1 + (n - d + 0.5) / (d + 0.5)) for d in df.tolist()]

    def coverage(self, terms: list[str], weights: list[float], text: str) -> float:
        """IDF-weighted share of `terms` found in `text` (compared in matching form)."""
        if not terms:
            return 0.0
        haystack = compact(text)
        found = sum(w for t, w in zip(terms, weights) if t in haystack)
        return found / sum(weights)

    def evidence(self, query: Query, hits: list[Hit]) -> float:
        """How well the best of the top passages covers the question's key terms (0..1)."""
        terms = query.key_terms
        weights = self.term_weights(terms)
        return max(
            (self.coverage(terms, weights, f"{h.chunk.title}\n{h.chunk.heading}\n{h.chunk.text}") for h in hits[:3]),
            default=0.0,
        )

    def should_abstain(self, evidence: float, hits: list[Hit]) -> bool:
        """Too little of the question is in the corpus, or nothing is even semantically close."""
        if not hits:
            return True
        best_dense = max(h.dense for h in hits)
        return evidence < self.settings.abstain_min_coverage or best_dense < self.settings.abstain_min_dense

    # --- composing -----------------------------------------------------------------------------

    def compose(
        self,
        question: str,
        query: Query,
        hits: list[Hit],
        exclude: set[tuple[str, int]] | None = None,
    ) -> Answer:
        """The answer to `query` from `hits`; `exclude` holds (source, start) of quotes already given."""
        passages = [_passage(h) for h in hits]
        evidence = self.evidence(query, hits)
        kind = question_kind(query.normalized)
        if self.should_abstain(evidence, hits):
            return Answer(question, self._abstention(hits), True, [], passages, query.text, kind, False, evidence)
        terms = query.key_terms
        weights = self.term_weights(terms)
        top = hits[: self.settings.answer_passages]
        exclude = exclude or set()
        picked = None
        if kind in ("list", "general"):
            picked = self._enumeration(terms, weights, top, exclude)
        if picked is None:
            picked = self._sentences(query, kind, terms, weights, top, exclude)
        if not picked:
            return Answer(question, self._abstention(hits), True, [], passages, query.text, kind, False, evidence)
        text, citations, truncated = self._render(picked, as_list=kind == "list" and len(picked) > 1)
        return Answer(question, text, False, citations, passages, query.text, kind, truncated, evidence)

    def _enumeration(
        self, terms: list[str], weights: list[float], hits: list[Hit], exclude: set[tuple[str, int]]
    ) -> list[_Sentence] | None:
        """The items of an enumerated block whose lead-in matches the question, or None."""
        best: tuple[float, int, list[_Sentence]] | None = None
        for hit in hits:
            document = self.kb.documents[hit.chunk.source]
            for group in self._enumerations(document):
                if not any(hit.chunk.start <= s.start < hit.chunk.end for s in group):
                    continue
                intro = self._intro(document, group[0], hit)
                intro_cover = self.coverage(terms, weights, intro)
                items_cover = self.coverage(terms, weights, " ".join(document.text[s.start : s.end] for s in group))
                score = max(intro_cover, 0.5 * intro_cover + 0.5 * items_cover)
                if intro_cover < 0.6 or best is not None and (score, -hit.rank) <= (best[0], best[1]):
                    continue
                items = [
                    _Sentence(document.source, s.start, s.end, hit.rank, hit.chunk.id)
                    for s in group
                    if (document.source, s.start) not in exclude
                ]
                if len(items) >= 2:
                    best = (score, -hit.rank, items)
        return best[2] if best else None

    def _enumerations(self, document: Document) -> list[list[Span]]:
        """Blocks of numbered items (lead sentence of each item) in a document, cached per document."""
        key = f"{document.source}\0{document.fingerprint}"
        if key not in self._groups:
            self._groups[key] = find_enumerations(document.text)
        return self._groups[key]

    def _intro(self, document: Document, first: Span, hit: Hit) -> str:
        """What introduces an enumeration: its heading path and the sentence before its first item."""
        before = sentence_spans(document.text, max(0, first.start - 200), first.start)
        lead = document.text[before[-1].start : before[-1].end] if before else ""
        return f"{hit.chunk.heading}\n{lead}"

    def _sentences(
        self,
        query: Query,
        kind: str,
        terms: list[str],
        weights: list[float],
        hits: list[Hit],
        exclude: set[tuple[str, int]],
    ) -> list[_Sentence]:
        """Best-scoring sentences of the top passages, without repeats (MMR)."""
        candidates: dict[tuple[str, int], _Sentence] = {}
        subject = _subject(query.lexical) if kind == "definition" else ""
        for hit in hits:
            text = self.kb.documents[hit.chunk.source].text
            for span in sentence_spans(text, hit.chunk.start, hit.chunk.end):
                key = (hit.chunk.source, span.start)
                if key in candidates or key in exclude or span.end - span.start < 6:
                    continue
                sentence = text[span.start : span.end]
                score = self.coverage(terms, weights, sentence) + 0.15 / hit.rank
                norm = compact(sentence)
                if kind == "number" and _HAS_NUMBER.search(sentence):
                    score += 0.25
                elif kind == "time" and _HAS_DATE.search(sentence):
                    score += 0.25
                elif kind == "definition" and subject and _defines(norm, subject):
                    score += 0.4
                candidates[key] = _Sentence(
                    hit.chunk.source, span.start, span.end, hit.rank, hit.chunk.id, score, frozenset(bigrams(norm))
                )
        if not candidates:
            return []
        ranked = sorted(candidates.values(), key=lambda s: (-s.score, s.rank, s.start))
        limit = 2 if kind in ("number", "time", "definition") else 4
        budget = self.settings.answer_max_chars if limit == 4 else self.settings.answer_max_chars // 2
        chosen = [ranked[0]]
        used = ranked[0].end - ranked[0].start
        floor = 0.6 * ranked[0].score
        pool = [s for s in ranked[1:] if s.score >= floor]
        while pool and len(chosen) < limit:
            best = max(pool, key=lambda s: 0.7 * s.score - 0.3 * max(_overlap(s, c) for c in chosen))
            pool.remove(best)
            if max(_overlap(best, c) for c in chosen) > 0.5 or used + best.end - best.start > budget:
                continue
            chosen.append(best)
            used += best.end - best.start
        head, rest = chosen[0], chosen[1:]
        order = {h.chunk.source: h.rank for h in hits}
        rest.sort(key=lambda s: (order.get(s.source, 99), s.start))
        return [head, *rest]

    def _render(self, picked: list[_Sentence], as_list: bool) -> tuple[str, list[Citation], bool]:
        """Answer text with `[n]` after each quote; adjacent sentences of one document make one quote."""
        quotes: list[_Sentence] = []
        for sentence in picked:
            last = quotes[-1] if quotes else None
            text = self.kb.documents[sentence.source].text
            if (
                not as_list
                and last is not None
                and last.source == sentence.source
                and last.end <= sentence.start
                and not text[last.end : sentence.start].strip()
            ):
                quotes[-1] = _Sentence(last.source, last.start, sentence.end, last.rank, last.chunk_id)
            else:
                quotes.append(sentence)
        limit = self.settings.answer_max_chars
        lines: list[str] = []
        citations: list[Citation] = []
        used = 0
        truncated = False
        for sentence in quotes:
            document = self.kb.documents[sentence.source]
            start, end = sentence.start, sentence.end
            if as_list and end - start > 120:
                end = _clause_cut(document.text, start, end, 120)
            if citations and used + (end - start) > limit:
                truncated = True
                break
            citation = Citation(
                len(citations) + 1,
                document.source,
                document.title,
                self._heading_of(sentence),
                document.text[start:end],
                start,
                end,
                sentence.chunk_id,
            )
            citations.append(citation)
            ellipsis = "…" if end < sentence.end else ""
            lines.append(f"{citation.quote}{ellipsis}[{citation.id}]")
            used += end - start
        text = ("\n" if as_list else "").join(lines)
        if truncated:
            text += f"\n（内容较长，只列出前 {len(citations)} 条，其余见下方来源段落。）"
        return text, citations, truncated

    def _heading_of(self, sentence: _Sentence) -> str:
        for chunk in self.kb.chunks_of(sentence.source):
            if chunk.start <= sentence.start < chunk.end:
                return chunk.heading
        return ""

    def _abstention(self, hits: list[Hit]) -> str:
        lines = [ABSTAIN_TEXT]
        if hits:
            lines.append(f"{RELATED_LABEL}（不是答案，仅供参考）：")
            for hit in hits[:3]:
                snippet = hit.chunk.text.replace("\n", " ")
                snippet = snippet[:60] + ("…" if len(snippet) > 60 else "")
                lines.append(f"- 《{hit.chunk.title}》 {snippet}")
        return "\n".join(lines)


def find_enumerations(text: str) -> list[list[Span]]:
    """Runs of sentences led by consecutive ordinals of one style (一是/二是, （一）/（二）, 1./2., …)."""
    items: list[tuple[str, int, Span]] = []
    for span in sentence_spans(text):
        sentence = text[span.start : span.end].lstrip("“\"'「 ")
        for style, marker in _MARKERS:
            match = marker.match(sentence)
            if match:
                items.append((style, _ordinal(match.group(1)), span))
                break
    groups: list[list[Span]] = []
    open_runs: dict[str, list[tuple[int, Span]]] = {}
    for style, number, span in items:
        run = open_runs.get(style)
        if number == 1:
            if run and len(run) >= 2:
                groups.append([s for _, s in run])
            open_runs[style] = [(1, span)]
        elif run and (number == run[-1][0] + 1 or number == 99 and len(run) >= 2):
            run.append((number, span))
        elif run is not None:
            if len(run) >= 2:
                groups.append([s for _, s in run])
            del open_runs[style]
    groups.extend([s for _, s in run] for run in open_runs.values() if len(run) >= 2)
    return sorted(groups, key=lambda g: g[0].start)


def _ordinal(token: str) -> int:
    if token.isdigit():
        return int(token)
    if token in _CIRCLED:
        return _CIRCLED.index(token) + 1
    if token in _SEQUENCE_WORDS:
        return _SEQUENCE_WORDS[token]
    if token == "最后":
        return 99
    if token == "十":
        return 10
    if len(token) == 2 and token[0] == "十":
        return 10 + _ORDINAL.index(token[1]) + 1
    if len(token) == 2 and token[1] == "十":
        return (_ORDINAL.index(token[0]) + 1) * 10
    return _ORDINAL.index(token[0]) + 1


def _subject(lexical_question: str) -> str:
    """The thing a definition question asks about (`党委主体责任具体指什么` → `党委主体责任`)."""
    parts = [p for p in re.split(r"[\s“”\"'，,。]+", lexical_question) if p]
    return max(parts, key=len) if parts else ""


def _defines(sentence: str, subject: str) -> bool:
    """The sentence says what `subject` (or its last 4+ characters) is."""
    for size in range(len(subject), min(3, len(subject)) - 1, -1):
        tail = subject[-size:]
        at = sentence.find(tail)
        if at >= 0 and _DEFINES.match(sentence, at + len(tail)):
            return True
    return False


def _overlap(a: _Sentence, b: _Sentence) -> float:
    if not a.grams or not b.grams:
        return 0.0
    return len(a.grams & b.grams) / len(a.grams | b.grams)


def _clause_cut(text: str, start: int, end: int, limit: int) -> int:
    window = text[start : start + limit]
    cut = max(window.rfind(c) for c in "，,；;：:")
    return start + cut if cut > limit // 3 else start + limit


def _passage(hit: Hit) -> Passage:
    c = hit.chunk
    return Passage(hit.rank, c.source, c.id, c.title, c.heading, hit.score, c.text, c.start, c.end)
