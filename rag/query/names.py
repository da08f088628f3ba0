"""Names a question asks about — places, organisations, people, years, document titles — and where
each document has them: in its header (title, metadata, first lines) or only somewhere in its text.

A question that names 铁岭市 is about 铁岭市's document: retrieval prefers documents that carry the
name (see `Retriever.search`), and every hit says which of the question's names its document has.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

from rag.model import Document
from rag.text.normalize import normalize, to_traditional
from rag.text.patterns import SHORT_TITLE, YEAR_BEFORE_NIAN
from rag.text.tokenize import dictionary_frequency, tagged

if TYPE_CHECKING:
    from rag.model import Hit

#: Administrative divisions: a word ending in one of these is a place (`铁岭市`, `黔东南州`, `海淀区`).
_ADMIN_SUFFIX = re.compile(r"^[\u4e00-\u9fff]{2,10}?(?:特别行政区|自治区|自治州|自治县|新区|省|市|县|区|州|盟|旗)$")
_ADMIN_STEM = re.compile(r"(?:特别行政区|自治区|自治州|自治县|新区|省|市|县|区|州|盟|旗)$")
#: Words jieba tags as names or that end like a division, but that name no particular place or body.
_GENERIC = frozenset(
    "城市 城区 市区 地区 社区 小区 园区 景区 辖区 山区 郊区 全省 全市 全区 全县 本省 本市 本区 本县 我省 我市 我区 我县 "
    "各省 各市 各区 各县 省市 市县 县区 区县 省区 省级 市级 县级 乡镇 农村 地方 中央 国家 全国 中国 各地 当地 外地 本地 "
    "纪委 监委 党委 政府 人民政府 居民区 行政区 跨地区 各地区 本地区 该地区 开发区 新区 特区 矿区 牧区 林区 灾区 疫区 "
    "试验区 示范区 保护区 功能区 商业区 住宅区 城市区 老城区 主城区 中心城区 贫困县 经济区 自贸区".split()
)
_DIVISIONS = ("省", "市", "县", "区", "州")


@dataclass(frozen=True)
class Name:
    """A name a question asks about, and the shorter forms a document may write it in."""

    text: str
    kind: str
    """`place`, `organisation`, `year` or `title`."""
    forms: tuple[str, ...]
    """Normalized (Simplified) forms: the name and, for a place, its name without the division."""

    def found_in(self, haystack: str) -> bool:
        """Whether normalized text has the name."""
        return any(form in haystack for form in self.forms)

    @property
    def written_forms(self) -> tuple[str, ...]:
        """The forms as a Simplified or Traditional text may write them (for raw, unnormalized text)."""
        return _written_forms(self.forms)


@lru_cache(maxsize=4096)
def _written_forms(forms: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(dict.fromkeys([*forms, *(to_traditional(form) for form in forms)]))


@lru_cache(maxsize=4096)
def question_names(normalized_question: str) -> tuple[Name, ...]:
    """The names a (normalized) question asks about, in order of appearance: 《titles》, years,
    places (a word ending in a division, or one jieba tags as a place and knows with a division:
    深圳 → 深圳市) and long organisation names (jieba `nt`, 5+ characters: 中华全国总工会). Person
    names and short organisation words are left out: jieba's tags for them are mostly guesses
    (许可, 东西, 申请人 come out as names)."""
    found: dict[str, Name] = {}
    for title in SHORT_TITLE.findall(normalized_question):
        found.setdefault(title, Name(title, "title", (title,)))
    for year in YEAR_BEFORE_NIAN.findall(normalized_question):
        found.setdefault(year, Name(year, "year", (year,)))
    for word, tag in tagged(normalized_question):
        if word in _GENERIC or word in found or len(word) < 2 or any(word in name for name in found):
            continue
        if _ADMIN_SUFFIX.match(word):
            found[word] = _place(word)
        elif tag == "ns" and any(dictionary_frequency(word + suffix) for suffix in _DIVISIONS):
            found[word] = Name(word, "place", (word,))
        elif tag == "nt" and len(word) >= 5:
            found[word] = Name(word, "organisation", (word,))
    return tuple(found.values())


def _place(word: str) -> Name:
    stem = _ADMIN_STEM.sub("", word)
    return Name(word, "place", (word, stem) if len(stem) >= 2 and stem not in _GENERIC else (word,))


class DocumentNames:
    """Finds a question's names in documents: in the header — title, metadata values and the first
    `header_chars` characters, normalized once per document and kept for the `keep` most recently
    used ones — or in the text as written (Simplified or Traditional), where a name counts `in_text`."""

    def __init__(self, documents: dict[str, Document], header_chars: int, in_text: float, keep: int = 8192) -> None:
        self.documents = documents
        self.header_chars, self.in_text, self.keep = header_chars, in_text, keep
        self._headers: OrderedDict[str, str] = OrderedDict()

    def header(self, source: str) -> str:
        """A document's title, metadata values and first characters, in matching form."""
        cached = self._headers.get(source)
        if cached is not None:
            self._headers.move_to_end(source)
            return cached
        document = self.documents[source]
        cached = normalize("\n".join([document.title, *_meta_values(document), document.text[: self.header_chars]]))
        self._headers[source] = cached
        if len(self._headers) > self.keep:
            self._headers.popitem(last=False)
        return cached

    def match(self, source: str, names: tuple[Name, ...]) -> tuple[float, tuple[str, ...]]:
        """How well a document carries the names (share of them, a name only in the text counting
        `in_text`) and which names it has."""
        if not names:
            return 0.0, ()
        header = self.header(source)
        text = self.documents[source].text
        score = 0.0
        have: list[str] = []
        for name in names:
            if name.found_in(header):
                score += 1.0
                have.append(name.text)
            elif any(form in text for form in name.written_forms):
                score += self.in_text
                have.append(name.text)
        return score / len(names), tuple(have)


def _meta_values(document: Document) -> list[str]:
    return [str(v) for k, v in document.meta.items() if k != "title_derived" and isinstance(v, str)]


def quotable(hits: list[Hit]) -> list[Hit]:
    """The hits an answer may quote: when some of them come from documents that carry every name
    the question asks for, only those (an answer about 铁岭市 never quotes another place's notice
    as if it were 铁岭市's); otherwise all of them."""
    asked = hits[0].names_asked if hits else ()
    if not asked:
        return hits
    named = [hit for hit in hits if len(hit.names_found) == len(asked)]
    return named or hits
