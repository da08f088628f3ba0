"""Abstention: whether the corpus answers a question, decided in two steps every answer path uses.

1. `assess(reading, hits)` before composing: evidence (IDF-weighted share of the
   question's key terms in the best of the top passages), confidence (evidence moved by how close
   the best passage is in meaning) and the missing-name rule (a place, person or organisation the
   question names that no top passage mentions; when the top passage is a strong match, only a
   name the knowledge base has never seen).
   With too little confidence, a number the question pins down that no top passage names is said
   to be why.
2. `check_answer(query, quotes, kb, settings, verdict)` after choosing what to quote: near misses, where the
   passages are on the topic but not about what the question pins down: a year, a meeting, a
   《title》 or a name none of the quoted passages mentions, a numbered item (`编号77`, `第45号`,
   `第十二条`) no quote names (in itself or what it stands under); a 多少/几 question whose quotes hold no
   figure; a 何时/哪一年 question whose quotes hold no date; a question for a meeting, a body, a level,
   steps or materials whose quotes name none (`ANSWER_TYPES`).

A written answer (`rag.answer.writer`) is asked for only when the extractive one passed both steps.
`abstention_text` is what the user reads instead of an answer (both paths).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import lru_cache

from rag.answer.enumerations import NUMBER_SIGNS, frame, list_lead_in
from rag.answer.evidence import answers_count, coverage, has_time, identifier_mentioned, mentions, term_weights
from rag.answer.metadata import document_about
from rag.answer.scoring import Reading
from rag.answer.types import ABSTAIN_TEXT, RELATED_LABEL
from rag.config import Settings
from rag.index.knowledge_base import KnowledgeBase
from rag.model import Hit, Passage
from rag.query.question import Identifier, Query
from rag.text.normalize import compact
from rag.text.patterns import RELATIVE_YEARS

#: Why an answer abstained, as the user reads it (`{}` = the missing detail).
REASONS = {
    "no_passages": "",
    "judge": "找到的段落都没有回答这个问题。",
    "no_more": "前面的回答已经给出了找到的相关内容，没有更多了。",
    "low_confidence": "",
    "missing_name": "知识库中没有提到“{}”。",
    "missing_year": "找到的内容没有提到{}年。",
    "missing_number": "找到的内容中没有提到{}。",
    "missing_meeting": "找到的内容没有提到“{}”。",
    "missing_title": "找到的内容没有提到《{}》。",
    "relative_time": "知识库中的文件无法确定“{}”指哪一年。",
    "no_figure": "找到的内容中没有给出具体数字。",
    "no_items": "找到的内容中没有列出问题问的几项内容。",
    "no_date": "找到的内容中没有给出具体时间。",
    "no_quotes": "",
    "no_metadata": "找到的文章没有可以引用的作者、单位、日期或出处信息。",
    "no_meeting": "找到的内容中没有提到是哪次会议。",
    "no_body": "找到的内容中没有提到负责的部门或单位。",
    "no_level": "找到的内容中没有给出级别或待遇。",
    "no_steps": "找到的内容中没有列出步骤或程序。",
    "no_materials": "找到的内容中没有列出需要的材料。",
}


@dataclass(frozen=True)
class AnswerType:
    """A kind of thing a question asks for (`asks`) and what a quote that gives it shows (`shows`)."""

    reason: str
    asks: re.Pattern[str]
    shows: re.Pattern[str]


#: What a question pins down besides figures and dates, and how an answer shows it: a question that
#: asks in which meeting, by which body, at what level, in what steps or with which materials is not
#: answered by quotes that name no meeting, no body, no level, no steps, no materials.
ANSWER_TYPES = (
    AnswerType(
        "no_meeting",
        re.compile(r"哪一?[次届](?:[^，,。？?]{0,8})?(?:全会|会议|大会|会上)|(?:什么|哪个)会议"),
        re.compile(r"全会|会议|大会|会上|全体会"),
    ),
    AnswerType(
        "no_body",
        re.compile(r"(?:哪个|哪些|哪一个|哪家|什么)(?:部门|单位|机关|机构)"),
        re.compile(
            r"委员会|纪委|监委|党委|党组|政府|部门|单位|机关|机构|办公室|组织|[巡工]作?[察视]?组|领导小组|公司|集团|中心|"
            r"大学|学校|银行|电视台|报社|[院厅]|(?<!部)署|(?<![大格布结当开])局(?![面限势部])|(?<![全内外细大局干])部(?![分署])|(?<![社机约])会(?![议上])"
        ),
    ),
    AnswerType(
        "no_level",
        re.compile(r"(?:什么|哪个|哪一|哪)(?:级别|职级|层级|档次)|几级"),
        re.compile(r"级别|职级|待遇|[正副](?:省部|厅局|县处|乡科|处|科|厅|局|部)级|(?:省部|厅局|县处|乡科)级"),
    ),
    AnswerType(
        "no_steps",
        re.compile(r"(?:哪些|哪几个?|什么)(?:步骤|程序|流程)"),
        re.compile(
            r"步骤|程序|流程|首先|其次|然后|最后|[一二三四五六七八九十]是|第[一二三四五六七八九十\d]+(?:步|阶段)"
        ),
    ),
    AnswerType(
        "no_materials",
        re.compile(r"(?:哪些|什么)(?:材料|证明|手续)"),
        re.compile(r"材料|证明|申请书?|报告|表格?|证书|复印件|手续|证件"),
    ),
)


_ITEMS = re.compile(
    rf"[、;；:：]|和|与|及|或|至|到|包括|包含|等|一是|首先|其次|[{NUMBER_SIGNS}]|[(（][一二三四五六七八九十\d][)）]|"
    r"[两二三四五六七八九十\d]+(?:个|项|条|种|类|方面)"
)
"""What a quote that lists things shows: separators, 和/及, ranges (2月至4月), 包括, 等, ordinals, a count of
items (三个月, 五项)."""
_ASKS_ITEMS = re.compile(r"哪些|哪几|包括|包含")
"""A question that asks for several things (not 哪一个)."""


@dataclass(frozen=True)
class Verdict:
    """Whether to abstain, why (`REASONS` key, empty when answering), and the evidence figures."""

    abstain: bool
    reason: str = ""
    detail: str = ""
    evidence: float = 0.0
    confidence: float = 0.0
    strong: bool = False
    """The top passage is a strong match (see `strong_match`): names are not checked against it."""


@dataclass(frozen=True)
class Quote:
    """A quoted sentence, the passage it came from (chunk text, heading, document title) and,
    when known, its whole document (a name the document keeps mentioning is what it is about)."""

    text: str
    context: str
    document: str = ""
    about: str = ""
    """The document's title and metadata (author, unit, byline): names there say what it is about."""
    start: int = -1
    """Where the quote stands in `document` (-1: not given, looked up by its text)."""


def evidence(reading: Reading, hits: Sequence[Hit]) -> float:
    """How well the best of the top `Settings.evidence_passages` covers the question's key terms (0..1)."""
    terms, weights = reading.query.key_terms, reading.weights
    top = hits[: reading.settings.evidence_passages]
    return max((coverage(terms, weights, _passage_text(h)) for h in top), default=0.0)


def confidence(query: Query, evidence_: float, hits: Sequence[Hit], settings: Settings) -> float:
    """Evidence that the corpus answers the question: term coverage, raised or lowered by how close
    the best passage is in meaning. A question not written in Chinese shares no key words with a
    Chinese corpus beyond the glossary's terms (`rag.text.glossary`); its confidence rests on the cosine,
    against its own centre, raised by the coverage of those terms where it passes `abstain_below`."""
    if not hits:
        return 0.0
    s = settings
    best = max(h.dense for h in hits)
    if not query.chinese:
        return max(evidence_, s.abstain_below) + s.abstain_dense_weight * (best - s.abstain_crosslingual_center)
    return evidence_ + s.abstain_dense_weight * (best - s.abstain_dense_center)


def strong_match(query: Query, hits: Sequence[Hit], kb: KnowledgeBase, settings: Settings) -> bool:
    """Whether the top passage is a strong match: among the dense ranking's first `Settings.strong_match_rank`
    too, and it covers at least `Settings.strong_match_coverage` of the question's key terms other than names."""
    dense_rank = hits[0].ranks.get("dense") if hits else None  # None: not among the dense candidates
    if dense_rank is None or dense_rank > settings.strong_match_rank:
        return False
    others = [t for t in query.key_terms if not any(t in name or name in t for name in query.places)]
    if not others:
        return False
    return coverage(others, term_weights(kb, others), _passage_text(hits[0])) >= settings.strong_match_coverage


def missing_name(
    query: Query, hits: Sequence[Hit], kb: KnowledgeBase, settings: Settings, strong: bool = False
) -> str | None:
    """A name the question gives that none of the top `Settings.evidence_passages` mentions (nor their
    documents' titles and metadata), or None. With a `strong` top passage only a name the
    knowledge base has never seen counts: a known one is then most likely written another way
    there, or not a name at all (part-of-speech tags are guesses)."""
    top = hits[: settings.evidence_passages]
    texts = [compact(f"{_passage_text(h)}\n{document_about(kb.documents[h.chunk.source])}") for h in top]
    for name in distinctive_names(query, kb, settings):
        if any(mentions(name, t) for t in texts):
            continue
        if strong and _known(name, kb):
            continue
        return name
    return None


def missing_identifier(query: Query, hits: Sequence[Hit], settings: Settings) -> Identifier | None:
    """A number the question pins down (a year, a numbered item) that none of the top
    `Settings.evidence_passages` names, or None."""
    texts = [compact(_passage_text(h)) for h in hits[: settings.evidence_passages]]
    return next((i for i in query.identifiers if not any(identifier_mentioned(i, t) for t in texts)), None)


def assess(reading: Reading, hits: Sequence[Hit]) -> Verdict:
    """Step 1: is there evidence that the corpus answers the question at all?"""
    if not hits:
        return Verdict(True, "no_passages")
    query, kb, settings = reading.query, reading.kb, reading.settings
    ev = evidence(reading, hits)
    conf = confidence(query, ev, hits, settings)
    strong = strong_match(query, hits, kb, settings)
    if conf < settings.abstain_below:
        unnamed = missing_identifier(query, hits, settings)
        reason, detail = _missing_identifier(unnamed) if unnamed else ("low_confidence", "")
        return Verdict(True, reason, detail, ev, conf, strong)
    if query.kind != "comparison":  # a comparison reports a side it has nothing for, side by side
        name = missing_name(query, hits, kb, settings, strong)
        if name:
            return Verdict(True, "missing_name", name, ev, conf, strong)
    return Verdict(False, "", "", ev, conf, strong)


def check_answer(
    query: Query, quotes: Sequence[Quote], kb: KnowledgeBase, settings: Settings, verdict: Verdict | None = None
) -> Verdict:
    """Step 2: are the chosen quotes about what the question pins down? Returns `verdict` (or a
    plain yes) when they are, an abstaining verdict naming the first thing missing when not."""
    verdict = verdict or Verdict(False)
    if not quotes:
        return replace(verdict, abstain=True, reason="no_quotes")
    contexts = [compact(q.context) for q in quotes]
    texts = [q.text for q in quotes]

    def missing(reason: str, detail: str = "") -> Verdict:
        return replace(verdict, abstain=True, reason=reason, detail=detail)

    for identifier in query.identifiers:
        if not any(_names(identifier, q, c) for q, c in zip(quotes, contexts, strict=True)):
            return missing(*_missing_identifier(identifier))
    for meeting in query.meetings:
        if not any(_meeting_in(meeting, c) for c in contexts):
            return missing("missing_meeting", meeting)
    for title in query.titles:
        if not any(compact(title) in c for c in contexts):
            return missing("missing_title", title)
    if query.kind != "comparison" and not verdict.strong:
        for name in distinctive_names(query, kb, settings):
            if not any(mentions(name, c) for c in contexts) and not any(_about(name, q) for q in quotes):
                return missing("missing_name", name)
    if query.kind in ("number", "time") and query.relative_time:
        return missing("relative_time", _relative(query))
    if _ASKS_ITEMS.search(query.normalized) and query.kind == "list" and not any(_ITEMS.search(t) for t in texts):
        return missing("no_items")
    if query.kind == "number" and query.chinese and not any(answers_count(query, t) for t in texts):
        return missing("no_figure")
    if query.kind == "time" and query.chinese and not any(has_time(t) for t in texts):
        return missing("no_date")
    for answer_type in ANSWER_TYPES:
        if not answer_type.asks.search(query.normalized):
            continue
        shown = [*texts, *_lead_ins(quotes)]  # list items are what their lead-in says (需提供以下材料：)
        if not any(answer_type.shows.search(compact(t)) for t in shown):
            return missing(answer_type.reason)
    return verdict


def abstention_text(passages: Sequence[Passage], settings: Settings, verdict: Verdict | None = None) -> str:
    """The abstention: it says so, says why when `verdict` can, and lists the first
    `Settings.related_passages` of `passages` as 可能相关."""
    lines = [ABSTAIN_TEXT]
    why = REASONS.get(verdict.reason, "") if verdict is not None else ""
    if why:
        lines.append(why.format(verdict.detail))
    if passages:
        lines.append(f"{RELATED_LABEL}（不是答案，仅供参考）：")
        for passage in passages[: settings.related_passages]:
            snippet = passage.text.replace("\n", " ")
            snippet = snippet[: settings.related_chars] + ("…" if len(snippet) > settings.related_chars else "")
            lines.append(f"- 《{passage.title}》 {snippet}")
    return "\n".join(lines)


def _names(identifier: Identifier, quote: Quote, context: str) -> bool:
    """Whether a quote names a number the question pins down: a year anywhere in its passage (a year
    dates what a passage reports); a numbered item in the quote itself, what it stands under
    (`rag.answer.enumerations.frame`: its numbered paragraph, list lead-in, heading) or its document's
    title and metadata — not in the items around it (`编号7` is not the answer to `编号8`)."""
    if identifier.kind == "年":
        return identifier_mentioned(identifier, context)
    if identifier_mentioned(identifier, compact(quote.text)) or identifier_mentioned(identifier, _compact(quote.about)):
        return True
    position = _position(quote)
    return position >= 0 and any(identifier_mentioned(identifier, compact(t)) for t in frame(quote.document, position))


def _lead_ins(quotes: Sequence[Quote]) -> list[str]:
    """The lead-ins of the lists whose items the quotes are (`rag.answer.enumerations.list_lead_in`)."""
    positions = [(q, _position(q)) for q in quotes]
    return [lead for q, at in positions if at >= 0 and (lead := list_lead_in(q.document, at))]


def _position(quote: Quote) -> int:
    """Where a quote stands in its document (-1 when its document is not known)."""
    if quote.start >= 0 or not quote.document:
        return quote.start
    return quote.document.find(quote.text)


def _missing_identifier(identifier: Identifier) -> tuple[str, str]:
    """The `REASONS` key and detail of a number no quote names."""
    return ("missing_year", identifier.text) if identifier.kind == "年" else ("missing_number", identifier.text)


def _passage_text(hit: Hit) -> str:
    return f"{hit.chunk.title}\n{hit.chunk.heading}\n{hit.chunk.text}"


def distinctive_names(query: Query, kb: KnowledgeBase, settings: Settings) -> list[str]:
    """The places and organisations of the question that identify something: not words found in at
    least `Settings.common_name_passages` passages and `Settings.common_name_share` of them."""
    n = len(kb.chunks)
    df = kb.lexical["words"].document_frequency(list(query.places)).tolist() if query.places else []
    common = max(settings.common_name_passages, settings.common_name_share * n)
    return [name for name, d in zip(query.places, df, strict=True) if d < common]


def _known(name: str, kb: KnowledgeBase) -> bool:
    """Whether the knowledge base's vocabulary holds the name (as one of its indexed words)."""
    return bool(kb.lexical["words"].document_frequency([name])[0])


def _about(name: str, quote: Quote) -> bool:
    """A quote's document is about a name its title or metadata gives, or that it mentions twice."""
    return mentions(name, _compact(quote.about)) or _compact(quote.document).count(name) >= 2


@lru_cache(maxsize=64)
def _compact(text: str) -> str:
    return compact(text)


def _meeting_in(meeting: str, text: str) -> bool:
    return meeting in text or meeting.replace("中央", "") in text.replace("中央", "")


def _relative(query: Query) -> str:
    for word in RELATIVE_YEARS:
        if word in query.normalized:
            return word
    return ""
