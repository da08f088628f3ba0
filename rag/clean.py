"""Cleaning web text into the document text that is indexed, quoted and displayed.

Pinyin annotations (`責(zé)任` → `責任`), page furniture (link lists, Q&A-site chrome, photo
credits) and metadata lines (`时间:`, `作者:`, `发布时间`) come out; metadata goes into
`Document.meta`. Script and punctuation are kept as written: matching uses `normalize`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from rag.loaders import RawDocument

CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"

_TONED = "āáǎàēéěèīíǐìōóǒòūúǔùǖǘǚǜüńňǹḿ"
_SYLLABLE = re.compile(rf"^(?:zh|ch|sh|[bpmfdtnlgkhjqxrzcsyw])?[aeiouv{_TONED}]+(?:ng|n|r)?$")
_PINYIN = re.compile(rf"(?<=[{CJK}])[(（]([a-z{_TONED}]{{1,7}})[)）]")
_HAS_TONE = re.compile(rf"[{_TONED}]")

_INVISIBLE = re.compile("[\ufeff\u200b\u200c\u200d\u2060]")
SENTENCE_END = "。！？!?；;"

# Lines that are page chrome, not content.
_FURNITURE_LINE = re.compile(
    r"""^(?:
        [-–—·•*]+                                   # a lone bullet of a link list
      | .{2,80}\d{4}[/-]\d{1,2}[/-]\d{1,2}           # "headline2021/12/13" link entries
      | 发布网友|热心网友|网友|我来回答|展开全部|收起|举报|分享|评论|相关推荐|相关阅读|相关新闻
      | 共\d+(?:个|条)回答
      | (?:上一篇|下一篇|返回顶部|打印本页|关闭窗口)(?:[:：].*)?
      | (?:责任编辑|编辑|审核|校对)[:：].{0,30}
    )$""",
    re.VERBOSE,
)
_META_KEYS = {
    "发布时间": "date",
    "时间": "date",
    "日期": "date",
    "发布日期": "date",
    "作者": "author",
    "来源": "publisher",
    "单位": "affiliation",
}
_META_LINE = re.compile(r"^(发布时间|发布日期|时间|日期|作者|来源)[:：]\s*(.+)$")
_META_PAIR = re.compile(r"(发布时间|发布日期|时间|日期|作者|来源|单位)[:：]\s*(\S+)")
_PUBLICATION = re.compile(r"^《[^》]{2,20}》\s*[(（]\s*\d{4}年.{0,30}[)）]$")
_PHOTO_CAPTION = re.compile(rf"\s*(?:图为|图片为|上图为)[^。\n]{{0,200}}。?\s*[{CJK}]{{2,4}}\s*摄\s*$")
_LINK_ITEM = re.compile(r"^[-–—·•]\s.{0,80}$")  # "- headline": a link list when it ends the page
_MARKDOWN_HEADING = re.compile(r"^#{1,6}\s+")
_PHOTO_CREDIT = re.compile(rf"^[(（]?(?:\S{{0,8}}记者)?\s*[{CJK}]{{2,4}}\s*摄[)）]?$")
_TRAILING_AUTHOR = re.compile(r"\s*[(（]作者[:：\s]*([^()（）]{1,40})[)）]\s*$")


@dataclass
class Document:
    """A cleaned document; chunk offsets and citation quotes refer to `text`."""

    source: str
    title: str
    text: str
    meta: dict[str, str] = field(default_factory=dict)
    fingerprint: str = ""
    meta_spans: dict[str, list[int]] = field(default_factory=dict)
    """Metadata key → [start, end] of its quotable value in `text` (filled by cleaning)."""


def strip_pinyin(text: str) -> str:
    """Remove pinyin in brackets after Chinese characters: `責(zé)任` → `責任`."""

    def drop(match: re.Match[str]) -> str:
        syllable = match.group(1)
        return "" if _SYLLABLE.match(syllable) and _HAS_TONE.search(syllable) else match.group(0)

    return _PINYIN.sub(drop, text)


def is_furniture(line: str) -> bool:
    """A line of page chrome: link lists, Q&A-site labels, photo credits."""
    return bool(_FURNITURE_LINE.match(line) or _PHOTO_CREDIT.match(line))


def read_meta(line: str) -> dict[str, str] | None:
    """Metadata carried by a line (`时间:…`, `作者:… 单位:…`, `《人民日报》(…)`), or None."""
    if _PUBLICATION.match(line):
        return {"publisher": line}
    if not _META_LINE.match(line):
        return None
    return {_META_KEYS[key]: value.strip() for key, value in _META_PAIR.findall(line)}


def clean_text(text: str) -> tuple[list[str], dict[str, str]]:
    """Content lines of `text` and the metadata found in it."""
    text = _INVISIBLE.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))
    text = strip_pinyin(text)
    lines: list[str] = []
    meta: dict[str, str] = {}
    for raw_line in text.split("\n"):
        line = _MARKDOWN_HEADING.sub("", raw_line.replace("\u3000", " ").replace("\xa0", " ").strip())
        if not line or is_furniture(line):
            continue
        found = read_meta(line)
        if found is not None:
            for key, value in found.items():
                meta.setdefault(key, value)
            continue
        line = _PHOTO_CAPTION.sub("", line)
        author = _TRAILING_AUTHOR.search(line)
        if author:
            meta.setdefault("author", author.group(1).strip())
            line = line[: author.start()]
        if line.strip():
            lines.append(line.strip())
    trailing = 0
    while trailing < len(lines) and _LINK_ITEM.match(lines[-1 - trailing]):
        trailing += 1
    if trailing >= 3 and trailing < len(lines):  # short "- …" lines ending the page: a news-link list
        del lines[-trailing:]
    return lines, meta


def looks_like_title(line: str) -> bool:
    """Short and not ending a sentence: a title or heading line."""
    return len(line) <= 60 and line[-1] not in SENTENCE_END


def derive_title(lines: list[str]) -> str:
    """A title from the first clause of the text, when the document has none."""
    first = lines[0] if lines else ""
    clause = re.split(r"[，,。！？!?；;：:]", first, maxsplit=1)[0]
    return clause[:40] + ("…" if len(clause) > 40 else "")


def clean(raw: RawDocument) -> Document:
    """Clean a read document; its title comes from the file, its first line or its first clause."""
    lines, meta = clean_text(raw.text)
    meta = {**raw.meta, **meta}
    title = (raw.title or "").strip()
    if not title and lines and looks_like_title(lines[0]) and len(lines) > 1:
        title = lines.pop(0)
    if title:
        lines = [line for line in lines if line != title]
    if not title:
        title = derive_title(lines) or raw.source
        meta["title_derived"] = "yes"
    return Document(raw.source, title, "\n".join(lines), meta, raw.fingerprint)
