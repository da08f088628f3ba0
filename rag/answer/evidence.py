"""How much of a question a text covers: IDF-weighted key-term coverage, and what a text mentions
(figures, dates, names, the numbers a question pins down).

Shared by the composer (which sentences answer best) and the abstention step (is there an answer).
"""

from __future__ import annotations

import re
from functools import lru_cache

from rag.index.bm25 import idf
from rag.index.knowledge_base import KnowledgeBase
from rag.query.question import Identifier, Query, identifiers
from rag.text.normalize import compact
from rag.text.patterns import (
    BARE_SESSION,
    CHINESE_COUNT,
    CHINESE_NUMERALS,
    DATE_MENTION,
    FIGURE,
    QUOTED_NAME,
    QUOTED_TERM,
    YEAR,
    numeral_value,
)
from rag.text.tokenize import tagged

_ADMINISTRATIVE = "省市县区州盟镇乡村"
_GLUED = "和与及由在对把被从向跟同"  # function words the tagger sometimes glues to a name
_ORDINAL = re.compile(r"第[\d一二两三四五六七八九十百]+")
_TIME_WORDS = re.compile(
    r"世纪|年代|时期|时代|年间|年前|公元|西元|朝代|王朝|[清明元宋唐汉晋隋秦周商]朝|初期|中期|末期|前期|后期|早期|晚期|"
    r"年初|年末|年底|月底|[清明元宋唐汉]末|民初|"
    r"春[天季]|夏[天季]|秋[天季]|冬[天季]|季度|上旬|中旬|下旬"
)
_MEASURES = "人次|个|项|名|人|位|家|条|件|起|次|种|类|级|层|所|支|批|对|份|篇|户|元|天|年|月|日|岁|倍|处|轮|届|期|世纪"
_ASKED_COUNT = re.compile(rf"(?:多少|(?<![哪第这那近前好])几)({_MEASURES})?([\u4e00-\u9fff]{{0,6}})")
_PEOPLE = ("名", "人", "位", "人次", "员")
_ASKS_SHARE = re.compile(r"百分比|百分之|比例|比重|比率|占比|几成|多少成|percentage|proportion")
_SHARE = re.compile(r"\d+(?:\.\d+)?\s*(?:%|％|‰)|百分之[\d一二三四五六七八九十百零点.]+|[一二三四五六七八九十\d]成")
_GENERIC_COUNTED = frozenset("数量 数目 比例 比重 程度 规模 水平 时候".split())
_DURATIONS = frozenset("时间 年 时长 工夫 天数 年限 期限".split())
_DURATION = re.compile(
    r"(?:\d|[一二两三四五六七八九十半几数百千])(?:个)?(?:年|个月|月|天|日|周|星期|小时|分钟|秒|世纪)"
)
_TIME_MEASURES = frozenset("年 月 日 天 岁 世纪".split())
_CHINESE_YEAR = re.compile(rf"(?<![{CHINESE_NUMERALS}])([〇零一二三四五六七八九]{{4}})年")


def term_weights(kb: KnowledgeBase, terms: list[str]) -> list[float]:
    """IDF of each term in the knowledge base (terms it has never seen weigh most)."""
    n = max(1, len(kb.chunks))
    df = kb.lexical["words"].document_frequency(terms)
    return idf(df, n).tolist()


def coverage(terms: list[str], weights: list[float], text: str) -> float:
    """IDF-weighted share of `terms` found in `text` (compared in matching form, `compact`)."""
    if not terms:
        return 0.0
    haystack = compact(text)
    found = sum(weight for term, weight in zip(terms, weights, strict=True) if _found(term, haystack))
    total = sum(weights)
    return found / total if total else 0.0


def mentions(name: str, text: str) -> bool:
    """Whether `text` (matching form) names `name`: as written, without an administrative suffix
    (`浙江省` → `浙江`) or a function word the tagger glued to it (`和浩汉` → `浩汉`), or — four
    characters or more — with one character different or all but one of its character pairs
    (variant writings). Shorter names must match exactly: different places share characters
    (湖北/湖南, 广东省/山东省)."""
    if name in text:
        return True
    if len(name) >= 3 and name[-1] in _ADMINISTRATIVE and name[:-1] in text:
        return True
    if len(name) >= 3 and name[0] in _GLUED and name[1:] in text:
        return True
    if len(name) < 4:
        return False
    pairs = [name[i : i + 2] for i in range(len(name) - 1)]
    if sum(p in text for p in pairs) >= len(pairs) - 1:
        return True
    size = len(name)
    for i in range(len(text) - size + 1):
        window = text[i : i + size]
        if (window[0] == name[0] or window[-1] == name[-1]) and sum(
            a != b for a, b in zip(window, name, strict=True)
        ) <= 1:
            return True
    return False


def has_figure(text: str) -> bool:
    """Whether a sentence gives a count or share (`28万个`, `70%`, `十二项`), not only years,
    ordinals (`第一种`) or numbers inside quoted names (`“两个责任”`)."""
    text = QUOTED_NAME.sub("", compact(text))
    text = _ORDINAL.sub("", text)
    text = DATE_MENTION.sub("", text)
    return bool(FIGURE.search(text) or CHINESE_COUNT.search(text))


def has_date(text: str) -> bool:
    """Whether a sentence gives a year, month or day."""
    return bool(DATE_MENTION.search(compact(text)))


def has_time(text: str) -> bool:
    """Whether a sentence says when: a date, a year, a century, era or season."""
    text = compact(text)
    return bool(DATE_MENTION.search(text) or _TIME_WORDS.search(text) or re.search(r"\d\s*(?:年|月|日|号)", text))


def answers_count(query: Query, text: str) -> bool:
    """Whether a sentence gives the figure a 多少/几 question asks for: a count in the question's
    measure word (多少项 → 12项; 名/人/位/人次 alike), or next to what it counts (多少问题 → 问题28万个);
    a year or date when it asks 几年/哪年; without a measure word, a figure in a sentence that
    names what is asked about (比例是多少 → 比例…70%)."""
    asked = _ASKED_COUNT.search(query.normalized)
    measure, after = (asked.group(1) or "", asked.group(2) or "") if asked else ("", "")
    words = tagged(after)[:1] if after else []
    noun = words[0][0] if words and words[0][1].startswith("n") and words[0][0] not in _GENERIC_COUNTED else ""
    if measure in _TIME_MEASURES or noun in _DURATIONS:
        return has_date(text) or has_figure(text) or bool(_DURATION.search(compact(text)))
    if not has_figure(text):
        return False
    norm = compact(text)
    if _ASKS_SHARE.search(query.normalized) and _SHARE.search(norm):  # 占多少百分比 → 约占20%
        return True
    if measure:
        units = _PEOPLE if measure in _PEOPLE else (measure,)
        unit = "|".join(map(re.escape, units))
        counts = QUOTED_TERM.sub("", norm)  # “两个责任” names a term, it counts nothing
        if re.search(rf"(?:\d|[一二两三四五六七八九十百千万亿])(?:[.\d]*)(?:多|余)?(?:[万亿千百])?(?:{unit})", counts):
            return True
    if noun and len(noun) >= 2:  # what is counted stands next to a figure: 查处相关问题28万个, 22名纪检委员
        near = [norm[max(0, m.start() - 8) : m.end() + 8] for m in FIGURE.finditer(norm)]
        near += [norm[max(0, m.start() - 8) : m.end() + 8] for m in CHINESE_COUNT.finditer(norm)]
        return any(noun in window for window in near)
    if measure:
        return False
    focus = [t for t in query.focus_terms if len(t) >= 2]
    return not focus or any(t in norm for t in focus)


def identifier_mentioned(identifier: Identifier, text: str) -> bool:
    """Whether `text` (matching form) names the number a question pins down: the year in digits or
    Chinese numerals (二〇二二年), the numbered item by its kind and value whether written in digits or
    Chinese numerals (`第十二条` = `第12条`; a session also without its 第, `四届`) and never as part of a
    longer number (`编号7` ≠ `编号77`)."""
    if identifier.kind == "年":
        return identifier.text in YEAR.findall(text) or identifier.value in _chinese_years(text)
    if identifier.kind == "届" and any(numeral_value(n) == identifier.value for n in BARE_SESSION.findall(text)):
        return True  # 第四届 written 四届
    return any(i.kind == identifier.kind and i.value == identifier.value for i in identifiers(text))


def _chinese_years(text: str) -> list[int]:
    return [numeral_value(y) for y in _CHINESE_YEAR.findall(text)]


def _found(term: str, haystack: str) -> bool:
    """A key term in a text: a numbered item by its number (`identifier_mentioned`), a word as written."""
    item = _as_item(term)
    return identifier_mentioned(item, haystack) if item is not None else term in haystack


@lru_cache(maxsize=256)
def _as_item(term: str) -> Identifier | None:
    """The numbered item a key term is (`编号77`, `第十二条`), or None for a word."""
    found = identifiers(term)
    return found[0] if len(found) == 1 and found[0].text == term else None
