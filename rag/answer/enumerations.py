"""Enumerated blocks in a document (一是…二是…, （一）（二）, 1. 2., (1)(2), ①②, ⑴⑵, ⒈⒉, ㈠㈡, 首先…其次…)
and the one, if any, that answers a list question: its lead-in introduces what the question asks for;
what a sentence stands under (its numbered paragraph, headings, list lead-in); and what a quoted
lead-in announces (`with_what_follows`)."""

from __future__ import annotations

import dataclasses
import re
import unicodedata
from functools import lru_cache

from rag.answer.evidence import coverage
from rag.answer.scoring import Reading, Sentence, SentenceScorer
from rag.ingest.chunk import heading_level, sentence_spans
from rag.model import Document, Hit, Span
from rag.text.normalize import compact

_ORDINAL = "一二三四五六七八九十"
#: Numbers written as one character, each set a marker style of its own: ①…⑳, ⑴…⒇, ⒈…⒛, ㈠…㈩, ❶…❿.
_NUMBER_SIGNS = {
    "①": "①②③④⑤⑥⑦⑧⑨⑩⑪⑫⑬⑭⑮⑯⑰⑱⑲⑳",
    "⑴": "⑴⑵⑶⑷⑸⑹⑺⑻⑼⑽⑾⑿⒀⒁⒂⒃⒄⒅⒆⒇",
    "⒈": "⒈⒉⒊⒋⒌⒍⒎⒏⒐⒑⒒⒓⒔⒕⒖⒗⒘⒙⒚⒛",
    "㈠": "㈠㈡㈢㈣㈤㈥㈦㈧㈨㈩",
    "❶": "❶❷❸❹❺❻❼❽❾❿",
}
#: Every character that numbers an item on its own (a quote holding one lists things).
NUMBER_SIGNS = "".join(_NUMBER_SIGNS.values())
_MARKERS: list[tuple[str, re.Pattern[str]]] = [
    ("是", re.compile(rf"^([{_ORDINAL}]{{1,2}})是")),
    ("（）", re.compile(rf"^[(（]([{_ORDINAL}]{{1,2}})[)）]")),
    ("、", re.compile(rf"^([{_ORDINAL}]{{1,2}})、")),
    ("第", re.compile(rf"^第([{_ORDINAL}]{{1,2}})[,，、:：]")),
    ("1.", re.compile(r"^(\d{1,2})[.、．)）](?!\d)")),
    ("(1)", re.compile(r"^[(（](\d{1,2})[)）]")),
    *((style, re.compile(rf"^([{signs}])")) for style, signs in _NUMBER_SIGNS.items()),
    ("首先", re.compile(r"^(首先|其次|再次|最后)")),
]
#: A sentence that announces what follows it: a colon, a count or 如下/以下, or a closing noun that
#: names parts to come (`…的辩证关系。` before `一是…二是…`).
_ANNOUNCES_PARTS = re.compile(
    r"[:：]$|[一二三四五六七八九十两几\d]+(?:个|项|条|点|种|大)|如下|以下|包括"
    r"|(?:关系|方面|问题|要求|原则|措施|举措|环节|任务|重点|做法|路径)[。.]?$"
)
#: A sentence that defines a term the sentence before it named (`“一本”即…`, `“三转”就是…`).
DEFINES_TERM = re.compile(r"[“\"「][^”\"」]{1,10}[”\"」](?:即|就是|是指|指的是|指)")
_SEQUENCE_WORDS = {"首先": 1, "其次": 2, "再次": 3, "最后": 99}
_ANNOUNCES_LIST = re.compile(r"[一二三四五六七八九十两几\d]+(?:个|项|条|点|种|大)|以下|如下|主要|包括|[:：]$")


def find_enumerations(text: str) -> list[list[Span]]:
    """Runs of sentences led by consecutive ordinals of one style (一是/二是, （一）/（二）, 1./2., …)."""
    items: list[tuple[str, int, Span]] = []
    for span in sentence_spans(text):
        sentence = text[span.start : span.end].lstrip("“\"'「 ")
        for style, marker in _MARKERS:
            match = marker.match(sentence)
            if match:
                items.append((style, ordinal(match.group(1)), span))
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


def ordinal(token: str) -> int:
    """The number an item marker stands for: `3`, `③`, `⑶`, `⒊`, `㈢`, `三`, `十二`, `其次` → 3, 3, 3, 3, 3,
    3, 12, 2 (`最后` → 99: last, whatever the count)."""
    if token in NUMBER_SIGNS:  # before isdecimal-like tests: '②'.isdigit() is True
        return int(unicodedata.numeric(token))
    if token.isascii() and token.isdecimal():
        return int(token)
    if token in _SEQUENCE_WORDS:
        return _SEQUENCE_WORDS[token]
    if token == "十":
        return 10
    if len(token) == 2 and token[0] == "十":
        return 10 + _ORDINAL.index(token[1]) + 1
    if len(token) == 2 and token[1] == "十":
        return (_ORDINAL.index(token[0]) + 1) * 10
    return _ORDINAL.index(token[0]) + 1


class Enumerations:
    """The enumerated blocks of a knowledge base's documents, found once per document."""

    def __init__(self) -> None:
        self._groups: dict[str, list[list[Span]]] = {}

    def of(self, document: Document) -> list[list[Span]]:
        key = f"{document.source}\0{document.fingerprint}\0{len(document.text)}"
        if key not in self._groups:
            self._groups[key] = find_enumerations(document.text)
        return self._groups[key]

    def group_at(self, document: Document, position: int) -> list[Span] | None:
        """The block one of whose items starts at `position`."""
        return next((g for g in self.of(document) if any(s.start == position for s in g)), None)

    def answer(
        self, scorer: SentenceScorer, hits: list[Hit], exclude: set[tuple[str, int]], bar: float
    ) -> list[Sentence] | None:
        """The items of an enumerated block introduced as what the question asks for, or None.

        A block qualifies when its lead-in (`intro`) covers most of the question's key terms or
        names a term the question quotes, and, with a bonus for being a list (more for one announced
        as such: 五个…, 主要…, 以下) and the same credit for the question's focus that sentences get,
        scores at least as well as the best single sentence (`bar`).
        """
        cfg = scorer.cfg
        query = scorer.query
        quoted = [compact(q) for q in query.quoted]
        found: list[tuple[float, int, str, list[Span], str]] = []
        intros: dict[tuple[str, int], str] = {}  # a block overlaps several hits: its lead-in is read once
        for hit in hits:
            document = scorer.kb.documents[hit.chunk.source]
            for group in self.of(document):
                if any(g is group for *_, g, _ in found):
                    continue
                if not any(hit.chunk.start <= s.start < hit.chunk.end for s in group):
                    continue
                key = (document.source, group[0].start)
                if key not in intros:
                    intros[key] = self.intro(document, group[0])
                intro = intros[key]
                cover = scorer.cover(intro)
                names_quoted = any(q in compact(intro) for q in quoted)
                if cover < cfg.list_intro_coverage and not names_quoted:
                    continue
                score = cover + cfg.list_block_bonus
                score += cfg.list_announced_bonus if _ANNOUNCES_LIST.search(intro) else 0.0
                score += cfg.list_quoted_bonus if names_quoted else 0.0
                if scorer.focus:
                    score += cfg.focus_weight * coverage(scorer.focus, scorer.focus_weights, intro)
                found.append((score, hit.rank, document.source, group, hit.chunk.id))
        qualified = [f for f in found if f[0] >= bar]
        if not qualified:
            return None
        _score, rank, source, group, chunk_id = max(qualified, key=lambda f: (f[0], -f[1], len(f[3])))
        items = [Sentence(source, s.start, s.end, rank, chunk_id) for s in group if (source, s.start) not in exclude]
        return items if len(items) >= 2 else None

    def intro(self, document: Document, first: Span) -> str:
        """What introduces an enumeration: the sentence before its first item, and the heading above
        it when no other numbered item stands between that heading and the first item."""
        text = document.text
        lead = _lead_in(text, first)
        heading = heading_before(text, first.start)
        if heading is None:
            return lead
        items = (s.start for group in self.of(document) for s in group)
        if any(heading.end <= start < first.start for start in items):
            return lead
        return f"{text[heading.start : heading.end]}\n{lead}"


def frame(text: str, position: int) -> list[str]:
    """What the sentence at `position` stands under, nearest first: the lead of its numbered paragraph
    (`第十二条…`, `（一）…`; its own or the nearest above), the lead-in of the enumerated block it is an
    item of, and the nearest heading line above it."""
    found: list[str] = []
    line = _line(text, position)
    lead = heading_level(text[line.start : line.end]) == 2
    if lead:
        own = sentence_spans(text, line.start, line.end)
        found.append(text[own[0].start : own[0].end] if own else text[line.start : line.end])
    lead_in = list_lead_in(text, position)
    if lead_in:
        found.append(lead_in)
    above = heading_before(text, position)
    while above is not None:
        heading = _line(text, above.start)
        if heading_level(text[heading.start : heading.end]) == 1:
            found.append(text[above.start : above.end])
            break
        if not lead:  # a paragraph lead above: the one the sentence is under, not its siblings
            found.append(text[above.start : above.end])
            lead = True
        above = heading_before(text, above.start)
    return found


def list_lead_in(text: str, position: int) -> str:
    """The lead-in of the enumerated block one of whose items holds `position` (`需提供以下材料：`
    for `⒈财务票据；`), or "": what the items are is said there."""
    group = next((g for g in _blocks(text) if any(s.start <= position < s.end for s in g)), None)
    return _lead_in(text, group[0]) if group is not None else ""


def block_after(text: str, lead: Span) -> list[Span] | None:
    """The enumerated block `text[lead.start:lead.end]` is the lead-in of (its first item follows it
    with nothing but a line break between), or None."""
    return next((g for g in _blocks(text) if g[0].start >= lead.end and not text[lead.end : g[0].start].strip()), None)


def _line(text: str, position: int) -> Span:
    """The line of `text` that holds `position`."""
    end = text.find("\n", position)
    return Span(text.rfind("\n", 0, position) + 1, len(text) if end < 0 else end)


@lru_cache(maxsize=16)
def _blocks(text: str) -> list[list[Span]]:
    return find_enumerations(text)


def _lead_in(text: str, first: Span) -> str:
    """The sentence before an enumeration's first item."""
    before = sentence_spans(text, max(0, first.start - 200), first.start)
    return text[before[-1].start : before[-1].end] if before else ""


def heading_before(text: str, position: int) -> Span | None:
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


def with_what_follows(reading: Reading, picked: list[Sentence], budget: int) -> list[Sentence]:
    """Quotes, each lead-in followed by what it announces, within `budget` characters in all: the
    items of the enumerated block it introduces (`必须准确把握…的辩证关系。` → `一是…` `二是…`: each
    item's first sentence, then each one's second), the rest of its paragraph after a colon, or the
    sentences right after it that define the terms it names (`打出“一本一书”组合拳。` → `“一本”即…`
    `“一书”即…`). A lead-in alone says that something follows, not what."""
    used = sum(s.end - s.start for s in picked)
    out = list(picked)
    for sentence in picked:
        document = reading.kb.documents[sentence.source]
        text = document.text
        own = text[sentence.start : sentence.end].strip()
        block = block_after(text, Span(sentence.start, sentence.end)) if _ANNOUNCES_PARTS.search(own) else None
        if block is not None:
            lines = [reading.sentences(document, item.start, _line(text, item.start).end) for item in block]
            following = [spans[i] for i in range(2) for spans in lines if i < len(spans)]
        else:
            following = reading.sentences(document, sentence.end, _line(text, sentence.end).end)
            if not own.endswith((":", "：")):  # else only the terms it names, each defined (“一本”即…)
                defined = [s for s in following if DEFINES_TERM.match(text, s.start)]
                following = following[: next((i for i, s in enumerate(following) if s not in defined), len(following))]
            if not following:
                continue
        added = []
        for span in following:
            if used + span.end - span.start > budget or any(
                o.source == sentence.source and o.start == span.start for o in [*out, *added]
            ):
                continue
            used += span.end - span.start
            added.append(
                dataclasses.replace(
                    sentence, start=span.start, end=span.end, score=0.0, grams=frozenset(), coverage=0.0
                )
            )
        at = out.index(sentence) + 1
        out[at:at] = sorted(added, key=lambda s: s.start)
    return out
