"""Follow-up questions: completing a question that refers back to the previous turn.

A question is a follow-up only when it refers back and does not stand on its own:
- `还有呢` / `还有呢?横向上呢` — more of the same (what was quoted is not repeated);
- `第三点具体指什么` — an item of the previous answer;
- `具体怎么做` / `为什么` / `具体指什么` without a subject — the how / why / detail of the previous topic;
- `那上海呢` / `山西省呢` — the previous question about something else (`北京市如何…` → `上海如何…`);
- `它和主体责任是什么关系` / `考责问责这一环怎么做` — a pronoun or `这一…` standing for the previous topic.
Anything else is asked as it is: `明天北京的天气怎么样` after two turns is a new question.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from rag.query.question import ordinal_reference
from rag.text.patterns import QUOTED_TERM
from rag.text.tokenize import entities, strip_question_words

_END = "?？。!！,，~～ "
_MORE = re.compile(
    r"^(?:那|那么)?(?:还有别的吗|还有其他的吗|还有其他吗|还有呢|还有吗|还有|其他呢|另外呢|更多|继续说?|然后呢|接着说|再说说|再多说一些)[?？。!！,，\s]*"
)
_HOW = re.compile(
    r"^(?:那|那么)?(?:具体)?(?:应该|应当|要|该|又)?(?:怎么做|怎么办|如何做|怎样做|如何落实|怎么落实|怎样落实|如何操作|怎么操作|"
    r"如何开展|怎么开展|如何实现|怎么实现|如何推进|怎么推进)(?:呢)?$"
)
_WHY = re.compile(r"^(?:那|那么)?(?:这|这是|那是)?(?:为什么|为何|什么原因)(?:呢|会这样|这样|这么做|要这样)?$")
_DETAIL = re.compile(r"^(?:那|那么)?具体(?:指|是|包括|有|内容|来说|讲|说|措施|做法|要求)")
_WHAT_ABOUT = re.compile(r"^(?:那|那么)(.{1,16}?)(?:呢|怎么样|如何|怎样|又如何)?$")
_BARE_ABOUT = re.compile(r"^(.{1,8}?)呢$")
_ASKS = re.compile(r"什么|哪|怎|如何|吗|多少|几|谁|为何|为什么|是否")
_LEADING_PRONOUN = re.compile(
    r"^(?:那|那么|而|但|那么|可)?(它们|它|这些|这个|这项|这种|这一|这|该|其|此|上述|那些|那个)"
)
_EMBEDDED_PRONOUN = re.compile(
    r"这一(?:环节?|步|点|块|方面|项|条|部分|做法|机制|制度)|这方面|这些|上述|该(?:项|类|制度|机制|做法)"
)
_HOW_WORDS = re.compile(r"怎么做|如何做|怎样做|怎么办|如何落实|怎么落实")
STANDS_ALONE = 10
"""A question with at least this many characters of its own content stands on its own."""


@dataclass(frozen=True)
class FollowUp:
    """How a question relates to the previous turn, and the question as it is searched."""

    standalone: str
    mode: str = "new"
    """new, more, ordinal, how, why, detail, what_about or pronoun."""
    ordinal: int | None = None

    @property
    def continues(self) -> bool:
        """Whether the answer should leave out what the previous answer already quoted."""
        return self.mode in ("more", "how", "detail")


def is_more(question: str) -> bool:
    """`还有呢` and the like, alone: the same question again, for what was not said yet."""
    match = _MORE.match(question.strip())
    return bool(match) and not question.strip()[match.end() :].strip(_END)


def topic(question: str) -> str:
    """What a question is about: the question without its question words and end punctuation."""
    return re.sub(r"\s+", "", strip_question_words(question.strip().rstrip(_END))).lstrip("是的")


def resolve(question: str, previous: str | None) -> FollowUp:
    """The question made standalone using the previous (standalone) question, and how."""
    question = question.strip()
    if not previous or not question:
        return FollowUp(question)
    previous = previous.strip()
    core = question.rstrip(_END)
    more = _MORE.match(question)
    if more:
        rest = question[more.end() :].strip(_END)
        if not rest:
            return FollowUp(previous, "more")
        inner = resolve(rest, previous)
        standalone = inner.standalone if inner.mode != "new" else f"{topic(previous)} {rest}"
        return FollowUp(standalone, "more")
    number = ordinal_reference(core)
    if number is not None and len(core) <= 16:
        return FollowUp(f"{topic(previous)} {core}", "ordinal", number)
    if _HOW.match(core):
        return FollowUp(f"{topic(previous)}具体怎么做", "how")
    if _WHY.match(core):
        return FollowUp(f"为什么{topic(previous)}", "why")
    if _DETAIL.match(core) and len(core) <= 12:
        return FollowUp(f"{topic(previous)}{core}", "detail")
    about = _WHAT_ABOUT.match(core) or _BARE_ABOUT.match(core)
    if about and not _ASKS.search(about.group(1)) and not _LEADING_PRONOUN.match(core):
        return FollowUp(replace_parallel(previous, about.group(1).strip()), "what_about")
    pronoun = _LEADING_PRONOUN.match(core)
    if pronoun:
        if pronoun.group(1) in ("它", "它们"):
            standalone = core[: pronoun.start(1)] + topic(previous) + core[pronoun.end(1) :]
        else:
            standalone = f"{context(previous)} {core}"
        return FollowUp(standalone, "how" if _HOW_WORDS.search(core) else "pronoun")
    if _EMBEDDED_PRONOUN.search(core) and _content_length(core) < STANDS_ALONE:
        return FollowUp(f"{context(previous)} {core}", "how" if _HOW_WORDS.search(core) else "pronoun")
    return FollowUp(question)


def context(question: str) -> str:
    """What a follow-up with its own subject keeps of the previous question: the places,
    organisations and quoted terms it names (its whole topic when it names none)."""
    named = [e for e in entities(question) if e in question]
    named += [m.group(0) for m in QUOTED_TERM.finditer(question)]
    return " ".join(dict.fromkeys(named)) or topic(question)


def contextualize(question: str, previous: str | None) -> str:
    """The question made standalone using the previous (standalone) question, if it needs it."""
    return resolve(question, previous).standalone


def replace_parallel(previous: str, subject: str) -> str:
    """The previous question about `subject` instead: the place, organisation or quoted term in it
    that `subject` stands parallel to is replaced (`湖北省有什么做法` + `山西省` → `山西省有什么做法`)."""
    candidates: list[str] = []
    if QUOTED_TERM.search(subject):
        candidates = [m.group(0) + _noun_tail(previous, m.end()) for m in QUOTED_TERM.finditer(previous)]
    if not candidates:
        candidates = [e for e in entities(previous) if e in previous]
    if candidates:
        same_end = [c for c in candidates if c[-1] == subject[-1]]
        return previous.replace((same_end or candidates)[0], subject, 1)
    return f"{subject}{topic(previous)}"


def _noun_tail(text: str, position: int) -> str:
    """The characters after a quoted term up to a function word (`“组部”联合监督是…` → `联合监督`)."""
    tail = ""
    for char in text[position : position + 6]:
        if char in "是的有在呢吗和与及、，,。？?！! " or not ("\u4e00" <= char <= "\u9fff"):
            break
        tail += char
    return tail


def _content_length(question: str) -> int:
    stripped = _EMBEDDED_PRONOUN.sub("", strip_question_words(question))
    return len(re.findall(r"[\u4e00-\u9fff\w]", stripped))
