"""Candidate sentences of the retrieved passages, scored for a question, and the choice among them.

A sentence scores its IDF-weighted coverage of the question's key terms plus what the kind of
question asks for (`ComposerSettings` has every weight): the figure of a 多少 question, the date of a
何时 question, the defining sentence of a 是什么 question, the cause of a 为什么 question, the
spelled-out items of a numbered abbreviation (三转). `select` keeps the best and adds others that say
something new (MMR). A `Reading` holds what one question's answer reads more than once: the key
terms' weights, the sentences of each span of a document, the scorers.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property

from rag.answer.evidence import answers_count, coverage, has_time, term_weights
from rag.answer.masks import fill_with_terms
from rag.answer.metadata import in_metadata
from rag.config import Settings
from rag.index.knowledge_base import KnowledgeBase
from rag.ingest.chunk import heading_level, sentence_spans
from rag.model import Document, Hit, Span
from rag.query.definitions import definition_strength, subjects
from rag.query.question import Query
from rag.text.normalize import compact
from rag.text.tokenize import bigrams

_ENUMERATES = re.compile(r"既.{6,80}又|包括|主要有|[:：]")
_CAUSE = re.compile(
    r"因为|由于|原因(?:就)?(?:在于|是)|之所以|究其原因|根源(?:在于|是)|归因于|的(?:重要|主要|根本|直接|深层次?)?原因|导致|造成"
)
#: A sentence that leans on the one before it: its cause (究其原因…) or its conclusion (所以…).
_LEANS_BACK = re.compile(
    r"^(?:究其原因|其原因|原因(?:就)?在于|这是因为|主要是因为|之所以|所以|因此|因而|可见|由此可见|为此|故而|这说明)"
)
_PURPOSE = re.compile(
    r"是[^。；;]{2,40}?的(?:重要|关键|必然|迫切|根本|基本|有效|内在|客观)?"
    r"(?:举措|路径|需要|要求|保障|前提|基础|途径|手段|体现|选择|任务|抓手|方向|遵循|经验)"
)
#: A question about how two things relate, and sentences that say how (是前提/是保障, 相互…, 既…又…).
_ASKS_RELATION = re.compile(r"关系|联系|区别|异同|不同")
_RELATES = re.compile(
    r"相互|互为|既.{1,24}又|是(?:前提|保障|根本|基础|关键|支撑|核心|统领)|有机整体|辩证|统一|密不可分|相辅相成"
)
#: A question about what two things are to each other (not how they differ)…
_ASKS_ROLES = re.compile(r"关系|联系")
#: …and sentences that say what part each plays (`统一`, `相互` alone are as often about something else).
_STATES_RELATION = re.compile(r"是(?:前提|保障|根本|基础|关键|支撑|核心|统领)|互为|相辅相成|密不可分|有机整体|辩证统一")
_ABBREVIATION = re.compile(r"^([一二三四五六七八九十两])(?:个|项|大|种)?(?!(?:个|项|大|种)$)([\u4e00-\u9fff]{1,2})$")


@dataclass
class Sentence:
    """A quotable span of one document, with its score for the question being answered."""

    source: str
    start: int
    end: int
    rank: int  # retrieval rank of the passage it came from
    chunk_id: str
    score: float = 0.0
    grams: frozenset[str] = field(default=frozenset(), repr=False)
    coverage: float = 0.0

    @property
    def key(self) -> tuple[str, int]:
        return (self.source, self.start)


class Reading:
    """One question read against its passages: the key terms' weights, the sentences of each span of
    a document and the sentence scorers, each computed once per question and shared by abstention,
    scoring, the shapes and the enumerations."""

    def __init__(
        self,
        kb: KnowledgeBase,
        settings: Settings,
        query: Query,
        embed: Callable[[list[str]], list[float]] | None = None,
    ) -> None:
        self.kb, self.settings, self.query = kb, settings, query
        self.embed = embed if not query.chinese else None
        """A question not in Chinese is scored by the cosine of each sentence, plus the coverage of the
        Chinese terms `rag.text.glossary` found in it."""
        self._sentences: dict[tuple[str, int, int], list[Span]] = {}
        self._scorers: dict[tuple[str, ...] | None, SentenceScorer] = {}

    @cached_property
    def weights(self) -> list[float]:
        """IDF of each of the question's key terms."""
        return term_weights(self.kb, self.query.key_terms)

    def sentences(self, document: Document, start: int, end: int) -> list[Span]:
        """The sentences of `document.text[start:end]` (`rag.ingest.chunk.sentence_spans`); the list is shared."""
        key = (document.source, start, end)
        spans = self._sentences.get(key)
        if spans is None:
            spans = self._sentences[key] = sentence_spans(document.text, start, end)
        return spans

    def scorer(self, terms: list[str] | None = None) -> SentenceScorer:
        """The sentence scorer for the question's key terms, or for other `terms` (a comparison's side)."""
        key = None if terms is None else tuple(terms)
        scorer = self._scorers.get(key)
        if scorer is None:
            scorer = self._scorers[key] = SentenceScorer(self, terms)
        return scorer


class SentenceScorer:
    """Scores the sentences of retrieved passages for one question (made by `Reading.scorer`)."""

    def __init__(self, reading: Reading, terms: list[str] | None = None) -> None:
        kb, query = reading.kb, reading.query
        self.reading, self.kb, self.query = reading, kb, query
        self.settings, self.cfg = reading.settings, reading.settings.composer
        self.terms = query.key_terms if terms is None else terms
        self.weights = reading.weights if terms is None else term_weights(kb, self.terms)
        self._covered: dict[str, float] = {}
        kind = query.kind
        self.focus = query.focus_terms if kind != "definition" else []  # definitions: the subject decides
        if terms is not None:  # other terms (a comparison's topic): the focus only where it is among them
            self.focus = [t for t in self.focus if t in terms]
        self.focus_weights = term_weights(kb, self.focus)
        self.subjects = subjects(query.lexical) if kind in ("definition", "list") else []
        self.names = list(query.names)
        self.abbreviations = abbreviations(query) if kind in ("definition", "list", "general", "comparison") else []
        self.relation = bool(_ASKS_RELATION.search(query.normalized))
        self.embed = reading.embed

    def abbreviation_terms(self, spelled: list[str]) -> list[str]:
        """The question's words for the abbreviations `spelled` (`3转` → `三转`), as it writes them."""
        terms = (*self.query.quoted, *self.query.key_terms)
        return [t for t in terms if (m := _ABBREVIATION.match(t)) and f"{_number(m.group(1))}{m.group(2)}" in spelled]

    def cover(self, text: str) -> float:
        """IDF-weighted coverage of the scorer's terms, a masked word (`*`) counting where it stands in
        the question's place (`rag.answer.masks.fill_with_terms`); each text measured once."""
        covered = self._covered.get(text)
        if covered is None:
            filled = fill_with_terms(text, self.terms, self.query.lexical)
            covered = self._covered[text] = coverage(self.terms, self.weights, filled)
        return covered

    def candidates(self, hits: list[Hit], exclude: set[tuple[str, int]] | None = None) -> list[Sentence]:
        """Sentences of `hits`, best first (metadata lines and excluded sentences left out)."""
        exclude = exclude or set()
        found: dict[tuple[str, int], Sentence] = {}
        for hit in hits:
            document = self.kb.documents[hit.chunk.source]
            spans = self.reading.sentences(document, hit.chunk.start, hit.chunk.end)
            for i, span in enumerate(spans):
                key = (document.source, span.start)
                if key in found or key in exclude or not self.quotable(document, span):
                    continue
                found[key] = self.score(document, span, hit, spans[i - 1] if i else self._before(document, span))
        ranked = list(found.values())
        if self.embed is not None and ranked:
            texts = [self.kb.documents[s.source].text[s.start : s.end] for s in ranked]
            for sentence, cosine in zip(ranked, self.embed(texts), strict=True):
                sentence.score += float(cosine)  # on top of the coverage of the glossary's terms, if any
                sentence.coverage = float(cosine)
        return sorted(ranked, key=lambda s: (-s.score, s.rank, s.start))

    def _before(self, document: Document, span: Span) -> Span | None:
        """The sentence before `span` in its paragraph (line), if any."""
        line_start = document.text.rfind("\n", 0, span.start) + 1
        before = self.reading.sentences(document, line_start, span.start)
        return before[-1] if before else None

    def quotable(self, document: Document, span: Span) -> bool:
        """Long enough, not a metadata line (byline, date, source) of the document."""
        return span.end - span.start >= self.cfg.min_sentence_chars and not in_metadata(document, span.start, span.end)

    def score(self, document: Document, span: Span, hit: Hit, previous: Span | None = None) -> Sentence:
        """One sentence scored for the question; a why-question's cause that leans on the sentence
        before it (`究其原因…`, `所以…`) is quoted together with that sentence."""
        cfg, kind = self.cfg, self.query.kind
        text = document.text[span.start : span.end]
        norm = compact(text)
        cover = self.cover(text)
        bonus = definition_strength(norm, self.subjects, cfg.definition_bonus, cfg)
        if (kind == "number" and answers_count(self.query, text)) or (kind == "time" and has_time(text)):
            bonus = max(bonus, cfg.figure_bonus)
        elif kind == "list" and _ENUMERATES.search(norm):
            bonus = max(bonus, cfg.list_bonus)
        start = span.start
        if kind == "why":
            if previous is not None and _LEANS_BACK.match(norm) and _same_line(document.text, previous, span):
                start = previous.start  # quoted with the sentence it explains or concludes
                text = document.text[start : span.end]
                cover = max(cover, self.cover(text))
            if _CAUSE.search(norm):
                bonus += cfg.cause_bonus
            elif _PURPOSE.search(norm):
                opens = "是" in norm[: cfg.purpose_subject_chars] and (
                    self.cover(norm[: norm.find("是") + 1]) >= cfg.purpose_subject_coverage
                )
                bonus += cfg.purpose_bonus * (2 if opens else 1)
        spelled = [f"{n}{key}" for n, key in self.abbreviations if spells_out(norm, n, key)]
        if spelled:  # `转职能、转方式、转作风` covers the question's `三转`
            bonus += cfg.abbreviation_bonus
            cover = max(cover, self.cover(f"{text}\n{' '.join(self.abbreviation_terms(spelled))}"))
        if self.relation and _RELATES.search(norm):
            bonus += cfg.relation_bonus
        if self.names and any(name in norm for name in self.names):
            bonus += cfg.name_bonus
        if self.focus:
            bonus += cfg.focus_weight * coverage(self.focus, self.focus_weights, text)
        if is_heading(document.text, span):
            bonus -= cfg.heading_penalty
        score = cover + bonus + cfg.rank_weight / hit.rank
        return Sentence(
            document.source, start, span.end, hit.rank, hit.chunk.id, score, frozenset(bigrams(norm)), cover
        )


def select(
    ranked: list[Sentence], kind: str, hits: list[Hit], settings: Settings, chinese: bool = True
) -> list[Sentence]:
    """The best sentence, then others that add to it (MMR), the best first and the rest in
    document order."""
    cfg = settings.composer
    short = kind in _SHORT
    limit = _limit(kind, settings)
    budget = settings.answer_max_chars // 2 if short else settings.answer_max_chars
    head = ranked[0]
    chosen = [head]
    used = head.end - head.start
    if chinese:
        pool = [
            s
            for s in ranked[1:]
            if s.score >= cfg.pool_score_ratio * head.score and s.coverage >= cfg.pool_coverage_ratio * head.coverage
        ]
    else:
        pool = [s for s in ranked[1:] if s.coverage >= head.coverage - cfg.crosslingual_margin]
    while pool and len(chosen) < limit:
        best = max(
            pool,
            key=lambda s: cfg.mmr_relevance * s.score - (1 - cfg.mmr_relevance) * max(overlap(s, c) for c in chosen),
        )
        pool.remove(best)
        if max(overlap(best, c) for c in chosen) > cfg.max_overlap or used + best.end - best.start > budget:
            continue
        if any(best.start < c.end and c.start < best.end and best.source == c.source for c in chosen):
            continue  # overlapping spans (a cause quoted with the sentence before it)
        chosen.append(best)
        used += best.end - best.start
    order = {h.chunk.source: h.rank for h in reversed(hits)}
    rest = sorted(chosen[1:], key=lambda s: (order.get(s.source, 99), s.start))
    return [head, *rest]


def with_relation(scorer: SentenceScorer, picked: list[Sentence], ranked: list[Sentence]) -> list[Sentence]:
    """A 关系 question's quotes, one of which says how the things relate (`…是根本、…是保障`): when
    none does, the best candidate that does and scores `ComposerSettings.pool_score_ratio` of the best
    takes the last place (the relation is what is asked; a sentence that defines one side is not it)."""
    if not _ASKS_ROLES.search(scorer.query.normalized) or not picked or any(relates(scorer, s) for s in picked):
        return picked
    bar = scorer.cfg.pool_score_ratio * ranked[0].score
    best = next((s for s in ranked if s.score >= bar and relates(scorer, s)), None)
    if best is None:
        return picked
    limit = _limit(scorer.query.kind, scorer.settings)
    return [*picked[: limit - 1], best] if len(picked) >= limit else [*picked, best]


_SHORT = ("number", "time", "definition", "who", "yes_no")
"""Kinds answered by a fact: fewer quotes, half the length budget."""


def _limit(kind: str, settings: Settings) -> int:
    """At most this many quotes answer a question of `kind`."""
    cfg = settings.composer
    return cfg.short_sentences if kind in _SHORT else cfg.why_sentences if kind == "why" else cfg.sentences


def relates(scorer: SentenceScorer, sentence: Sentence) -> bool:
    """Whether a sentence says what role each thing plays for the other (是前提/是保障, 互为…, 有机整体)."""
    return bool(
        _STATES_RELATION.search(compact(scorer.kb.documents[sentence.source].text[sentence.start : sentence.end]))
    )


def overlap(a: Sentence, b: Sentence) -> float:
    """Jaccard overlap of two sentences' character bigrams."""
    if not a.grams or not b.grams:
        return 0.0
    return len(a.grams & b.grams) / len(a.grams | b.grams)


def abbreviations(query: Query) -> list[tuple[int, str]]:
    """Numbered abbreviations the question asks about: `“三转”` → (3, `转`), `四风` → (4, `风`)."""
    found = []
    for term in (*query.quoted, *query.key_terms):
        match = _ABBREVIATION.match(term)
        if match:
            found.append((_number(match.group(1)), match.group(2)))
    return list(dict.fromkeys(found))


def _number(numeral: str) -> int:
    return "一二三四五六七八九十".find(numeral) + 1 or 2  # 两 = 2


def spelling_hits(reading: Reading, hits: list[Hit]) -> list[Hit]:
    """For a question about a numbered abbreviation (`哪三转`) that none of `hits` spells out (each one on
    its own: `两个维护` spelled out does not answer for `三转`): the other passages that do (`转职能、转方式、
    转作风`, written where the abbreviation is not) in the documents of the first
    `Settings.evidence_passages` hits and of the hits that name it, each ranked as its document's best hit.
    An abbreviation and its items seldom share a passage, and retrieval finds the abbreviation."""
    asked = abbreviations(reading.query) if reading.query.kind in ("definition", "list", "general") else []
    pairs = [pair for pair in asked if not any(_spelled(hit.chunk.text, [pair]) for hit in hits)]
    if not pairs:  # each abbreviation is spelled out in the hits already
        return []
    found: list[Hit] = []
    seen = {hit.chunk.id for hit in hits}
    named = [hit for hit in hits if any(_names(hit.chunk.text, n, key) for n, key in pairs)]
    for hit in [*hits[: reading.settings.evidence_passages], *named]:
        for chunk in reading.kb.chunks_of(hit.chunk.source):
            if chunk.id not in seen and _spelled(chunk.text, pairs):
                seen.add(chunk.id)
                found.append(dataclasses.replace(hit, chunk=chunk))
    return found


def spells_abbreviation(query: Query, text: str) -> bool:
    """Whether `text` spells out a numbered abbreviation the question asks about (`三转` → `转职能、转方式、
    转作风`): an answer the judge cannot see (it never learnt abbreviations) and the rules can."""
    pairs = abbreviations(query)
    return bool(pairs) and _spelled(text, pairs)


def _names(text: str, number: int, key: str) -> bool:
    """Whether `text` writes the abbreviation itself (`三转`, `三个转`)."""
    numeral = "一二三四五六七八九十"[number - 1] + ("两" if number == 2 else "")
    return re.search(f"[{numeral}](?:个|项|大|种)?{re.escape(key)}", compact(text)) is not None


def _spelled(text: str, pairs: list[tuple[int, str]]) -> bool:
    norm = compact(text)
    return any(spells_out(norm, n, key) for n, key in pairs)


def spells_out(sentence: str, number: int, key: str) -> bool:
    """Whether a sentence lists `number` items joined by 、 that each hold the characters of `key`
    (`转职能、转方式、转作风` for (3, `转`))."""
    for run in re.findall(r"[^，,。；;：:（）()]+", sentence):  # quotation marks stay inside items
        items = run.split("、")
        if len(items) >= number and sum(all(c in item for c in key) for item in items) >= number:
            return True
    return False


def is_heading(text: str, span: Span) -> bool:
    """Whether a span is a whole heading line of `text`."""
    line_start = text.rfind("\n", 0, span.start) + 1
    line_end = text.find("\n", span.end)
    line_end = len(text) if line_end < 0 else line_end
    line = text[line_start:line_end]
    return span.start == line_start and span.end == line_end and heading_level(line) == 1


def _same_line(text: str, a: Span, b: Span) -> bool:
    return "\n" not in text[a.end : b.start]
