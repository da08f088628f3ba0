"""Checking a written answer sentence by sentence against the passages it cites, without a model.

A sentence is kept when one passage it cites (or, failing that, any source passage) holds a quote —
a run of at most `verify_window` consecutive sentences — that supports it:
- coverage: at least `verify_min_coverage` of the sentence's character bigrams occur in the quote
  (or the passage's title and heading), and no run of more than `verify_max_novel` consecutive
  bigrams is missing from them (a `*` mask in the source counts as the word the sentence has there);
- facts: every figure, date, 《title》, “quoted term” and 第X条 the sentence states occurs in the
  quote; every place or organisation name in the quote or its passage's title and heading; every
  negation in the quote's main sentence; a name found only beside a main sentence that names someone
  else does not count;
- polarity: no term negated in one and stated plainly in the other (`影响使用` against `不影响使用`,
  either way round), no antonym of the domain where the quote has its opposite (`免除` for `追究`);
- meaning: the cosine of sentence and quote (the configured embedder) is at least `verify_min_similarity`.
Everything is compared in matching form (Simplified, half width, lower case, no whitespace).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property, lru_cache

import jieba.posseg
import numpy as np

from rag.answer.masks import fill_from_claim
from rag.config import Settings
from rag.embedding.embedder import Embedder
from rag.ingest.chunk import sentence_spans
from rag.model import Document, Passage
from rag.text.normalize import compact, normalize
from rag.text.patterns import CHINESE_COUNT_FACT, DATE_FACT, NUMBER_FACT, QUOTED_FACT, TITLE_FACT
from rag.text.tokenize import bigrams

_ENDS = "。！？!?；;"
_CLOSERS = "”’」』）)】》\"'"
MARKER = re.compile(r"[\[【]\s*(\d{1,2}(?:\s*[,，、]\s*\d{1,2})*)\s*[\]】]")
_PIECE = re.compile(rf"[^{_ENDS}\n]*(?:[{_ENDS}]+[{_CLOSERS}]*)?(?:[ \t]*{MARKER.pattern})*")
_BULLET = re.compile(r"^(?:[-*•·]\s*|\d{1,2}[.、)）]\s*|#{1,6}\s*)")
_REFERENCES = re.compile(r"^(?:参考资料|参考来源|资料来源|来源|引用|出处)[:：]?$")

_ARTICLE = re.compile(r"第[一二三四五六七八九十百零〇两\d]+[条章节款项编届次版]")
#: Words that negate, forbid, waive or weaken what follows (a sentence may say one only where its quote
#: does), without the words where they negate nothing (不断, 未来, 无论, 没收…); 不得/没有 count as 不/没.
_NEGATIONS = {
    w: re.compile(p)
    for w, p in (("不", r"不(?!断|仅|但|论|少|久|同|过|管)"), ("没", r"没(?!收)"), ("未", r"未(?!来)"),
                 ("无", r"无(?!论)"), ("非", r"非(?!常)"), *((w, w) for w in ("禁止", "严禁", "免除", "削弱", "弱化",
                 "减弱", "从宽", "从轻")))
}  # fmt: skip
#: A negation with the modal it may carry (不能, 无法, 不予, 没有): what it negates starts after both.
_NEGATOR = re.compile("|".join(p.pattern for p in _NEGATIONS.values()))
_MODAL = re.compile(r"能够|能|会|可以|可|应当|应|该|得|再|予以|予|以|准|许|曾|必|要|需|须|法|有")
_SCOPE = re.compile(r"[^\W_]{2,4}")
#: Opposites of the domain, where the direction of a decision matters: a sentence that has one where its
#: quote has the other, beside the same two characters (`既免除主体责任` / `既追究主体责任`), says the opposite.
_ANTONYM_PAIRS = (
    ("追究", "免除"), ("从严", "从宽"), ("从重", "从轻"), ("加强", "削弱"), ("强化", "弱化"), ("增强", "减弱"),
    ("允许", "禁止"), ("允许", "严禁"), ("增加", "减少"), ("提高", "降低"), ("扩大", "缩小"), ("上升", "下降"),
    ("增长", "下降"), ("严格", "宽松"), ("支持", "反对"), ("鼓励", "限制"), ("合法", "违法"),
)  # fmt: skip
_ANTONYMS = _ANTONYM_PAIRS + tuple((b, a) for a, b in _ANTONYM_PAIRS)
_POLARITY_KINDS = ("negation", "polarity", "antonym")


@dataclass
class Piece:
    """One sentence of a written answer, as written (markers included), and where it sits."""

    text: str
    start: int
    end: int
    line_end: bool
    """The answer went on to a new line after it (lists keep their layout)."""

    @cached_property
    def markers(self) -> list[int]:
        """The source numbers it cites, in order, each once (`[1]`, `[1][2]`, `[1, 2]`, `【1】`)."""
        numbers = [int(n) for m in MARKER.finditer(self.text) for n in re.split(r"[,，、\s]+", m.group(1)) if n]
        return list(dict.fromkeys(numbers))

    @cached_property
    def display(self) -> str:
        """The sentence as shown, without its markers."""
        return MARKER.sub("", self.text).strip()

    @cached_property
    def claim(self) -> str:
        """What the sentence states: no markers, list bullets or bold marks."""
        return _BULLET.sub("", self.display.replace("**", "")).strip()

    @property
    def is_reference(self) -> bool:
        """A line of a reference list (`[1] 《…》`, `参考资料：`), not a statement."""
        text = _BULLET.sub("", self.text.strip())
        return bool(MARKER.match(text) or _REFERENCES.match(self.claim) or not re.search(r"\w", self.claim))


def split_sentences(text: str, start: int = 0) -> list[Piece]:
    """Sentences of `text[start:]`: each ends after 。！？；!?; (with closing quotes and the `[n]`
    markers that follow it) or at a line break."""
    pieces: list[Piece] = []
    position = start
    while position < len(text):
        match = _PIECE.match(text, position)
        end = match.end() if match else position
        if end == position:  # a line break
            position += 1
            continue
        raw = text[position:end]
        lead = len(raw) - len(raw.lstrip())
        rest = text[end:].lstrip(" \t")
        if raw.strip():
            pieces.append(Piece(raw.strip(), position + lead, end, not rest or rest.startswith("\n")))
        position = end
    return pieces


@dataclass(frozen=True)
class Fact:
    """Something a sentence states that its quote must hold verbatim (in matching form)."""

    kind: str
    """`title`, `quoted` (a term in quotation marks), `date`, `article`, `number`, `name`, `negation`
    (a word of `_NEGATIONS`, which the quote must have at least as often); found against a quote:
    `polarity` (a term negated in one of sentence and quote only) and `antonym` (the opposite word)."""
    text: str
    count: int = 1

    def found_in(self, text: str) -> bool:
        """Whether the fact occurs in `text`; a number only as a whole number (`22`, not in `122`)."""
        if self.kind == "number":
            return re.search(rf"(?<![\d.]){re.escape(self.text)}(?!\d|\.\d)", text) is not None
        if self.kind == "negation":
            return len(_NEGATIONS[self.text].findall(text)) >= self.count
        return self.text in text


def facts(claim: str) -> list[Fact]:
    """Figures, dates, 《titles》, “quoted terms”, 第X条 articles and place/organisation names a
    sentence states."""
    text = compact(claim)
    found: list[Fact] = []
    for kind, pattern in (("title", TITLE_FACT), ("quoted", QUOTED_FACT), ("date", DATE_FACT), ("article", _ARTICLE)):
        found += [Fact(kind, t) for t in pattern.findall(text)]
        text = pattern.sub("|", text)
    found += [Fact("number", n) for n in NUMBER_FACT.findall(text)]
    found += [Fact("number", m.group()) for m in CHINESE_COUNT_FACT.finditer(text) if m.group(1) != "一"]  # 一个: "a"
    found += [Fact("name", n) for n in names(compact(claim)) if not any(n in f.text for f in found)]
    found += [Fact("negation", word, n) for word, pattern in _NEGATIONS.items() if (n := len(pattern.findall(text)))]
    return list(dict.fromkeys(found))


@lru_cache(maxsize=4096)
def names(text: str) -> tuple[str, ...]:
    """Place and organisation names in normalized text (jieba tags ns / nt; person tags are too noisy)."""
    return tuple(dict.fromkeys(w.word for w in jieba.posseg.cut(text) if w.flag in ("ns", "nt") and len(w.word) > 1))


def polarity_flips(claim: str, quote: str) -> list[Fact]:
    """What sentence and quote (both compact) say with opposite polarity: a term negated in one and
    only stated plainly in the other (`影响使用` / `不影响使用`, either way round), and an antonym where
    the quote has its opposite beside the same characters (`免除主体责任` / `追究主体责任`)."""
    ends = {claim: _negated_at(claim), quote: _negated_at(quote)}
    flips = []
    for one, other in ((claim, quote), (quote, claim)):
        for at in sorted(ends[one]):
            scope = _SCOPE.match(one, at)
            if scope is None or _NEGATOR.match(one, at):
                continue
            term = next((scope.group()[:n] for n in range(len(scope.group()), 1, -1) if scope.group()[:n] in other), "")
            if term and _polarity(term, one, ends[one]).isdisjoint(_polarity(term, other, ends[other])):
                flips.append(Fact("polarity", term))
    for word, opposite in _ANTONYMS:
        for at in _positions(word, claim):
            beside = (claim[max(0, at - 2) : at], claim[at + len(word) : at + len(word) + 2])
            if _beside(opposite, quote, beside) and not _beside(word, quote, beside):
                flips.append(Fact("antonym", word))
    return list(dict.fromkeys(flips))


def _negated_at(text: str) -> set[int]:
    """Where a negated stretch of `text` starts: after each negation, and after the modal it carries."""
    ends = set()
    for match in _NEGATOR.finditer(text):
        ends.add(match.end())
        modal = _MODAL.match(text, match.end())
        if modal:
            ends.add(modal.end())
    return ends


def _positions(word: str, text: str) -> list[int]:
    return [m.start() for m in re.finditer(re.escape(word), text)]


def _polarity(term: str, text: str, negated_at: set[int]) -> set[bool]:
    """Whether `term` occurs negated (True), plainly (False), or both in `text`."""
    return {at in negated_at for at in _positions(term, text)}


def _beside(word: str, text: str, sides: tuple[str, str]) -> bool:
    """Whether `word` occurs in `text` with the same two characters before it or after it."""
    before, after = sides
    found = [(text[max(0, at - 2) : at], text[at + len(word) : at + len(word) + 2]) for at in _positions(word, text)]
    return any((len(before) == 2 and b == before) or (len(after) == 2 and a == after) for b, a in found)


@dataclass
class Source:
    """A passage given to the model as source `[number]`, with its document."""

    number: int
    passage: Passage
    document: Document

    @cached_property
    def spans(self) -> list[tuple[int, int]]:
        """The passage's sentences, as offsets into the document's text."""
        return [(s.start, s.end) for s in sentence_spans(self.document.text, self.passage.start, self.passage.end)]

    @cached_property
    def context(self) -> str:
        """Title and heading of the passage (the model sees them too; the subject of a sentence is
        often named there), in matching form."""
        return compact(f"{self.passage.title}\n{self.passage.heading}")

    @cached_property
    def context_grams(self) -> set[str]:
        return set(bigrams(normalize(f"{self.passage.title}\n{self.passage.heading}")))

    def windows(self, size: int) -> list[tuple[int, int]]:
        """Every run of 1..`size` consecutive sentences, as document offsets."""
        spans = self.spans
        return [(spans[i][0], spans[j][1]) for i in range(len(spans)) for j in range(i, min(i + size, len(spans)))]


@dataclass
class Support:
    """How well one quote (a span of a source's document) supports a sentence."""

    source: Source
    start: int
    end: int
    coverage: float
    novel: int
    """Longest run of consecutive sentence bigrams missing from the quote."""
    missing: list[Fact]
    """Facts of the sentence that the quote does not hold."""
    similarity: float | None = None
    """Cosine of sentence and quote; measured only when the text checks pass."""

    @property
    def quote(self) -> str:
        return self.source.document.text[self.start : self.end]


@dataclass
class Verdict:
    """The outcome for one sentence: kept with its supporting quotes, or dropped and why."""

    piece: Piece
    supports: list[Support] = field(default_factory=list)
    reason: str = ""
    """Empty when kept; else `fact` (a figure, date, title, article or name its quote lacks), `polarity`
    (a negation or antonym where its quote has none, or the reverse), `unsupported` (too little of it in
    any quote), `dissimilar` (the meaning differs) or `not_found` (it says the sources do not answer)."""
    recited: bool = False
    """Kept with another citation than it gave (a wrong number, or none)."""
    closest: Support | None = None
    """The quote that came closest, for the record (also when the sentence is dropped)."""

    @property
    def kept(self) -> bool:
        return not self.reason


class Verifier:
    """Checks written sentences against numbered sources (see the module docstring)."""

    CACHE_SIZE = 50_000

    def __init__(self, embedder: Embedder, settings: Settings) -> None:
        self.embedder, self.settings = embedder, settings
        self._windows: dict[tuple[str, str, int, int], _Window] = {}

    def check(self, piece: Piece, sources: list[Source]) -> Verdict:
        """Keep `piece` with the quotes of its cited sources that support it, else with the best
        supporting quote of another source (`recited`), else say why it is dropped."""
        claim = _Claim(normalize(piece.claim), facts(piece.claim))
        cited = [s for n in piece.markers for s in sources if s.number == n]
        others = [s for s in sources if s not in cited]
        quotes = {s.number: self._best_quote(claim, s) for s in sources}
        chosen = self._passing(claim, [quotes[s.number] for s in cited])
        if not chosen and len(cited) > 1:
            chosen = self._together(claim, [quotes[s.number] for s in cited])
        if chosen:
            return Verdict(piece, chosen, closest=chosen[0])
        passing = self._passing(claim, [quotes[s.number] for s in others])
        if passing:
            best = max(passing, key=lambda q: (q.coverage, q.similarity or 0.0))
            return Verdict(piece, [best], recited=True, closest=best)
        closest = quotes[cited[0].number] if cited else max(quotes.values(), key=self._rank, default=None)
        return Verdict(piece, reason=self._why(closest), closest=closest)

    def measure(self, piece: Piece, source: Source) -> Support:
        """The best quote of one source for a sentence, with every measure taken (for studies)."""
        claim = _Claim(normalize(piece.claim), facts(piece.claim))
        quote = self._best_quote(claim, source)
        self._measure(claim, [quote], [quote.quote])
        return quote

    # --- measures ------------------------------------------------------------------------------

    def _best_quote(self, claim: _Claim, source: Source) -> Support:
        """The window of `source` that supports the sentence best (all facts first, then coverage)."""
        best: Support | None = None
        for start, end in source.windows(self.settings.verify_window):
            support = self._support(claim, [(source, start, end)])
            if best is None or self._rank(support) > self._rank(best):
                best = support
        return best or Support(source, source.passage.start, source.passage.start, 0.0, len(claim.grams), claim.facts)

    def _support(self, claim: _Claim, spans: list[tuple[Source, int, int]]) -> Support:
        """Coverage, novel run and missing facts of the sentence against the quotes `spans` together."""
        quote_grams: set[str] = set()
        text = context = ""
        for source, start, end in spans:
            window = self._window(source, start, end)
            quote_grams |= window.grams | source.context_grams
            if "*" in window.text:  # a masked word counts as the one the sentence has in its place
                quote_grams |= set(bigrams(fill_from_claim(window.text, claim.text)))
            text += window.compact + "|"
            context += source.context + "|"
        distinct = set(claim.grams)
        coverage = len(distinct & quote_grams) / len(distinct) if distinct else 0.0
        novel = run = 0
        for gram in claim.grams:
            run = 0 if gram in quote_grams else run + 1
            novel = max(novel, run)
        missing = [f for f in claim.facts if not f.found_in(text) and not (f.kind == "name" and f.found_in(context))]
        missing += polarity_flips(claim.compact, text)
        if len(spans) == 1:
            missing += self._misattributed(claim, *spans[0], [f for f in claim.facts if f not in missing])
        missing = list(dict.fromkeys(missing))
        source, start, _ = spans[0]
        return Support(source, start, spans[-1][2], coverage, novel, missing)

    def _misattributed(self, claim: _Claim, source: Source, start: int, end: int, found: list[Fact]) -> list[Fact]:
        """Facts that belong to the quote's main sentence (the one sharing most with the claim) but were
        found only in the sentences around it: a negation, and a name when the main sentence names
        someone else (`天津市…10%` against `天津市建立…。山东省…按不低于10%…`); and a polarity
        that differs from the main sentence's, even when a sentence around it agrees."""
        sentences = [(s, e) for s, e in source.spans if start <= s and e <= end]
        if len(sentences) < 2:
            return []
        grams = set(claim.grams)
        main_text = max((self._window(source, *se) for se in sentences), key=lambda w: len(grams & w.grams)).compact
        someone_else = not all(name in claim.compact for name in names(main_text))
        local = [f for f in found if f.kind in ("name", "negation") and not f.found_in(main_text)]
        local = [f for f in local if f.kind == "negation" or (someone_else and not f.found_in(source.context))]
        return local + polarity_flips(claim.compact, main_text)

    def _window(self, source: Source, start: int, end: int) -> _Window:
        """A quote's text in matching form and its bigrams, cached (per document version)."""
        key = (source.document.source, source.document.fingerprint, start, end)
        window = self._windows.get(key)
        if window is None:
            if len(self._windows) >= self.CACHE_SIZE:
                self._windows.clear()
            text = normalize(source.document.text[start:end])
            window = self._windows[key] = _Window(text, compact(text), frozenset(bigrams(text)))
        return window

    def _passing(self, claim: _Claim, quotes: list[Support]) -> list[Support]:
        """The quotes that pass every check (the text checks first; the embedder only for those)."""
        candidates = [q for q in quotes if self._passes_text(q)]
        self._measure(claim, candidates, [q.quote for q in candidates])
        s = self.settings
        return [q for q in candidates if q.similarity is not None and q.similarity >= s.verify_min_similarity]

    def _together(self, claim: _Claim, quotes: list[Support]) -> list[Support]:
        """The quotes of several cited sources, when only together they support the sentence."""
        joint = self._support(claim, [(q.source, q.start, q.end) for q in quotes])
        if not self._passes_text(joint):
            return []
        self._measure(claim, [joint], ["\n".join(q.quote for q in quotes)])
        return quotes if (joint.similarity or 0.0) >= self.settings.verify_min_similarity else []

    def _measure(self, claim: _Claim, supports: list[Support], quotes: list[str]) -> None:
        """Set the cosine of the sentence and each quote (one batch; the sentence embedded once)."""
        if not supports:
            return
        texts = [normalize(q) for q in quotes]
        if claim.vector is None:
            texts.insert(0, claim.text)
        vectors = self.embedder.encode_queries(texts)
        if claim.vector is None:
            claim.vector, vectors = vectors[0], vectors[1:]
        for support, vector in zip(supports, vectors, strict=True):
            support.similarity = float(np.dot(claim.vector, vector))

    def _passes_text(self, support: Support) -> bool:
        s = self.settings
        return not support.missing and support.coverage >= s.verify_min_coverage and support.novel <= s.verify_max_novel

    def _rank(self, support: Support) -> tuple[int, bool, float, int, int, int]:
        """Which quote is the best (and, when none passes, the closest one, whose flaw is reported): all
        the sentence's facts first, then enough coverage, then more coverage, then the same polarity. A
        quote that says the opposite is still the one the sentence is about: it is not passed over for a
        neighbour that happens to share fewer words with the sentence and no polarity with it."""
        s, polar = self.settings, sum(f.kind in _POLARITY_KINDS for f in support.missing)
        covers = support.coverage >= s.verify_min_coverage and support.novel <= s.verify_max_novel
        coverage, length = round(support.coverage, 6), support.end - support.start
        return (polar - len(support.missing), covers, coverage, -polar, -support.novel, -length)

    def _why(self, support: Support | None) -> str:
        s = self.settings
        if support is None:
            return "unsupported"
        if support.missing:
            return "fact" if any(f.kind not in _POLARITY_KINDS for f in support.missing) else "polarity"
        if support.coverage < s.verify_min_coverage or support.novel > s.verify_max_novel:
            return "unsupported"
        return "dissimilar"


@dataclass(frozen=True)
class _Window:
    text: str
    compact: str
    grams: frozenset[str]


@dataclass
class _Claim:
    text: str
    facts: list[Fact]
    vector: np.ndarray | None = None

    @cached_property
    def grams(self) -> list[str]:
        return bigrams(self.text)

    @cached_property
    def compact(self) -> str:
        return compact(self.text)
