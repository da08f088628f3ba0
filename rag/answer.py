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
from typing import TYPE_CHECKING

from rag.chunk import Span, heading_level, sentence_spans
from rag.clean import Document
from rag.config import Settings
from rag.lexical import bigrams, entities
from rag.normalize import compact
from rag.retrieve import Hit, Query
from rag.store import KnowledgeBase

if TYPE_CHECKING:
    from rag.generate import Generation

ABSTAIN_TEXT = "知识库中没有找到能回答这个问题的内容。"
RELATED_LABEL = "可能相关"

_ANNOUNCES_LIST = re.compile(r"[一二三四五六七八九十两几\d]+(?:个|项|条|点|种|大)|以下|如下|主要|包括|[:：]$")
_DEFINES_STRONG = re.compile(r"(?:主要|具体)?(?:是指|指的是|就是|即是|即|包括|主要有|主要是)")
_DEFINES_WEAK = re.compile(r"是")
_ENUMERATES = re.compile(r"既.{6,80}又|包括|主要有|[:：]")
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

    @classmethod
    def from_hit(cls, hit: Hit) -> Passage:
        c = hit.chunk
        return cls(hit.rank, c.source, c.id, c.title, c.heading, hit.score, c.text, c.start, c.end)


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
    confidence: float = 0.0
    """Evidence adjusted by semantic closeness; below `Settings.abstain_below` the answer abstains."""
    mode: str = "extractive"
    """`generated` (written by the language model, every sentence verified) or `extractive`."""
    generation: Generation | None = None
    """What happened with the language model, when one is configured (`rag.generate`)."""

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
            "mode": self.mode,
            "generation": self.generation.to_dict() if self.generation is not None else None,
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
    coverage: float = 0.0


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

    def coverage(self, terms: list[str], weights: list[float], text: str, masks: bool = False) -> float:
        """IDF-weighted share of `terms` found in `text` (compared in matching form).

        With `masks`, where the text has `*` masks (words removed by the publisher), a missing word
        of up to four characters counts half: the mask may stand for it.
        """
        if not terms:
            return 0.0
        haystack = compact(text)
        found = 0.0
        for term, weight in zip(terms, weights, strict=True):
            if term in haystack:
                found += weight
            elif masks and "*" in haystack and len(term) <= 4 and not term.isascii():
                found += weight / 2
        return found / sum(weights)

    def evidence(self, terms: list[str], weights: list[float], hits: list[Hit]) -> float:
        """How well the best of the top passages covers the question's key terms (0..1)."""
        return max(
            (self.coverage(terms, weights, f"{h.chunk.title}\n{h.chunk.heading}\n{h.chunk.text}") for h in hits[:3]),
            default=0.0,
        )

    def missing_name(self, query: Query, hits: list[Hit]) -> str | None:
        """A place, person or organisation the question names that none of the top passages mentions."""
        found = [compact(f"{h.chunk.title}\n{h.chunk.text}") for h in hits[:3]]
        for name in entities(query.lexical):
            if not any(name in text for text in found):
                return name
        return None

    def confidence(self, evidence: float, hits: list[Hit]) -> float:
        """Evidence that the corpus answers the question: term coverage, raised or lowered by how
        close the best passage is in meaning."""
        if not hits:
            return 0.0
        s = self.settings
        return evidence + s.abstain_dense_weight * (max(h.dense for h in hits) - s.abstain_dense_center)

    # --- composing -----------------------------------------------------------------------------

    def compose(
        self,
        question: str,
        query: Query,
        hits: list[Hit],
        exclude: set[tuple[str, int]] | None = None,
    ) -> Answer:
        """The answer to `query` from `hits`; `exclude` holds (source, start) of quotes already given."""
        passages = [Passage.from_hit(h) for h in hits]
        terms = query.key_terms
        weights = self.term_weights(terms)
        evidence = self.evidence(terms, weights, hits)
        confidence = self.confidence(evidence, hits)
        kind = query.kind

        def abstain() -> Answer:
            return Answer(
                question, self._abstention(hits), True, [], passages, query.text, kind, False, evidence, confidence
            )

        if confidence < self.settings.abstain_below or self.missing_name(query, hits):
            return abstain()
        top = hits[: self.settings.answer_passages]
        sentences = self._scored_sentences(query, terms, weights, top, exclude or set())
        if not sentences:
            return abstain()
        picked = None
        if kind in ("list", "general"):
            picked = self._enumeration(query, terms, weights, top, exclude or set(), sentences[0].score)
        as_list = picked is not None
        if picked is None:
            picked = self._select(sentences, kind, top)
        text, citations, truncated = self._render(picked, as_list)
        return Answer(question, text, False, citations, passages, query.text, kind, truncated, evidence, confidence)

    def _enumeration(
        self,
        query: Query,
        terms: list[str],
        weights: list[float],
        hits: list[Hit],
        exclude: set[tuple[str, int]],
        bar: float,
    ) -> list[_Sentence] | None:
        """The items of an enumerated block introduced as what the question asks for, or None.

        A block qualifies when its lead-in (`_intro`) covers most of the question's terms and, with
        a bonus for being a list (more for one announced as such: 五个…, 主要…, 以下) and the same
        credit for the question's focus that sentences get, scores at least as well as the best single
        sentence (`bar`).
        """
        found: list[tuple[float, int, str, list[Span], str]] = []
        focus = query.focus_terms
        focus_weights = self.term_weights(focus)
        for hit in hits:
            document = self.kb.documents[hit.chunk.source]
            for group in self._enumerations(document):
                if any(g is group for *_, g, _ in found):
                    continue
                if not any(hit.chunk.start <= s.start < hit.chunk.end for s in group):
                    continue
                intro = self._intro(document, group[0])
                cover = self.coverage(terms, weights, intro)
                if cover >= 0.6:
                    score = cover + 0.3 + (0.1 if _ANNOUNCES_LIST.search(intro) else 0.0)
                    if focus:
                        score += 0.4 * self.coverage(focus, focus_weights, intro)
                    found.append((score, hit.rank, document.source, group, hit.chunk.id))
        qualified = [f for f in found if f[0] >= bar]
        if not qualified:
            return None
        _score, rank, source, group, chunk_id = max(qualified, key=lambda f: (f[0], -f[1], len(f[3])))
        items = [_Sentence(source, s.start, s.end, rank, chunk_id) for s in group if (source, s.start) not in exclude]
        return items if len(items) >= 2 else None

    def _enumerations(self, document: Document) -> list[list[Span]]:
        """Blocks of numbered items (lead sentence of each item) in a document, cached per document."""
        key = f"{document.source}\0{document.fingerprint}"
        if key not in self._groups:
            self._groups[key] = find_enumerations(document.text)
        return self._groups[key]

    def _intro(self, document: Document, first: Span) -> str:
        """What introduces an enumeration: the sentence before its first item, and the heading above
        it when no other numbered item stands between that heading and the first item."""
        text = document.text
        before = sentence_spans(text, max(0, first.start - 200), first.start)
        lead = text[before[-1].start : before[-1].end] if before else ""
        heading = _heading_before(text, first.start)
        if heading is None:
            return lead
        items = (s.start for group in self._enumerations(document) for s in group)
        if any(heading.end <= start < first.start for start in items):
            return lead
        return f"{text[heading.start : heading.end]}\n{lead}"

    def _scored_sentences(
        self, query: Query, terms: list[str], weights: list[float], hits: list[Hit], exclude: set[tuple[str, int]]
    ) -> list[_Sentence]:
        """Sentences of the top passages, best first, scored by term coverage and question kind."""
        candidates: dict[tuple[str, int], _Sentence] = {}
        subjects = _subjects(query.lexical) if query.kind in ("definition", "list") else []
        focus = query.focus_terms if query.kind != "definition" else []  # definitions: the subject decides
        focus_weights = self.term_weights(focus)
        names = entities(query.lexical)
        for hit in hits:
            text = self.kb.documents[hit.chunk.source].text
            for span in sentence_spans(text, hit.chunk.start, hit.chunk.end):
                key = (hit.chunk.source, span.start)
                if key in candidates or key in exclude or span.end - span.start < 6:
                    continue
                sentence = text[span.start : span.end]
                norm = compact(sentence)
                coverage = self.coverage(terms, weights, sentence, masks=True)
                bonus = _definition_strength(norm, subjects)
                if (query.kind == "number" and _HAS_NUMBER.search(sentence)) or (
                    query.kind == "time" and _HAS_DATE.search(sentence)
                ):
                    bonus = 0.25
                elif query.kind == "list" and _ENUMERATES.search(norm):
                    bonus = max(bonus, 0.2)
                if names and any(name in norm for name in names):
                    bonus += 0.2
                if focus:
                    bonus += 0.4 * self.coverage(focus, focus_weights, sentence)
                score = coverage + bonus + 0.15 / hit.rank
                candidates[key] = _Sentence(
                    hit.chunk.source,
                    span.start,
                    span.end,
                    hit.rank,
                    hit.chunk.id,
                    score,
                    frozenset(bigrams(norm)),
                    coverage,
                )
        return sorted(candidates.values(), key=lambda s: (-s.score, s.rank, s.start))

    def _select(self, ranked: list[_Sentence], kind: str, hits: list[Hit]) -> list[_Sentence]:
        """The best sentence, then others that add to it (MMR), fact-bearing sentence first."""
        limit = 2 if kind in ("number", "time", "definition") else 4
        budget = self.settings.answer_max_chars if limit == 4 else self.settings.answer_max_chars // 2
        head = ranked[0]
        chosen = [head]
        used = head.end - head.start
        pool = [s for s in ranked[1:] if s.score >= 0.6 * head.score and s.coverage >= 0.6 * head.coverage]
        while pool and len(chosen) < limit:
            best = max(pool, key=lambda s: 0.7 * s.score - 0.3 * max(_overlap(s, c) for c in chosen))
            pool.remove(best)
            if max(_overlap(best, c) for c in chosen) > 0.5 or used + best.end - best.start > budget:
                continue
            chosen.append(best)
            used += best.end - best.start
        order = {h.chunk.source: h.rank for h in reversed(hits)}
        rest = sorted(chosen[1:], key=lambda s: (order.get(s.source, 99), s.start))
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
        elif run and (number == run[-1][0] + 1 or (number == 99 and len(run) >= 2)):
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


def _subjects(lexical_question: str) -> list[str]:
    """What a definition question asks about (`纪检监察机关的职责定位` → `纪检监察机关的职责定位`,
    `纪检监察机关`, `职责定位`), longest first."""
    parts = [p.rstrip("是") for p in re.split(r"[\s“”\"'，,。]+", lexical_question) if len(p.rstrip("是")) >= 2]
    pieces = [q for p in parts for q in p.split("的") if len(q) >= 2 and q != p]
    return sorted(dict.fromkeys(parts + pieces), key=len, reverse=True)


def _heading_before(text: str, position: int) -> Span | None:
    """The nearest heading line (or `（一）` paragraph lead) above the line holding `position`."""
    line_start = text.rfind("\n", 0, position) + 1
    while line_start > 0:
        end = line_start - 1
        line_start = text.rfind("\n", 0, end) + 1
        level = heading_level(text[line_start:end])
        if level == 1:
            return Span(line_start, end)
        if level == 2:
            first = sentence_spans(text, line_start, end)
            return first[0] if first else Span(line_start, end)
    return None


def _definition_strength(sentence: str, subjects: list[str]) -> float:
    """How plainly a (normalized) sentence says what one of `subjects` is: 0 (not at all) to 0.6."""
    best = 0.0
    for subject in subjects:
        for size in range(len(subject), min(4, len(subject)) - 1, -1):
            tail = subject[-size:]
            at = sentence.find(tail)
            if at < 0:
                continue
            after = at + len(tail)
            if after < len(sentence) and sentence[after] == "的":
                after += 1
            if _DEFINES_STRONG.match(sentence, after):
                best = max(best, 0.6 if at <= 2 else 0.5)
            elif _DEFINES_WEAK.match(sentence, after):
                best = max(best, 0.5 if at <= 2 else 0.1)
            break
    return best


def _overlap(a: _Sentence, b: _Sentence) -> float:
    if not a.grams or not b.grams:
        return 0.0
    return len(a.grams & b.grams) / len(a.grams | b.grams)


def _clause_cut(text: str, start: int, end: int, limit: int) -> int:
    window = text[start : start + limit]
    cut = max(window.rfind(c) for c in "，,；;：:")
    return start + cut if cut > limit // 3 else start + limit
