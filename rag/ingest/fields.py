"""Reading metadata from a line: labelled fields (`发布时间：…`, `作者：… 单位：…`, `发文字号：…`), a
newspaper line, a 文号 or date line, a byline `（作者 李金英）` or a photo credit `韩志忠 摄` ending a line,
and a closing signature block. Each value comes with its offsets in the line, so an answer can quote it.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import NamedTuple

CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
"""Chinese characters, for a character class: extension A, the basic block, compatibility ideographs."""

_DATE = r"\d{4}\s*[-/.年]\s*\d{1,2}\s*[-/.月]\s*\d{1,2}(?:\s*日)?"
_CN_DATE = "[〇○零一二三四五六七八九]{4}年[一二三四五六七八九十]{1,3}月[一二三四五六七八九十]{1,3}日"
_TIME = r"\d{1,2}[:：]\d{2}(?:[:：]\d{2})?"
_DATE_VALUE = re.compile(_DATE)
_NAME = rf"[{CJK}*＊×·•]{{2,5}}"

#: Label → metadata key. Labels may be spaced out (`索 引 号`, `标　　题`).
LABELS = {
    "发布时间": "date",
    "发布日期": "date",
    "发表时间": "date",
    "发表日期": "date",
    "发稿时间": "date",
    "时间": "date",
    "日期": "date",
    "成文日期": "written_date",
    "成文时间": "written_date",
    "印发日期": "written_date",
    "作者": "author",
    "撰稿": "author",
    "撰文": "author",
    "单位": "affiliation",
    "作者单位": "affiliation",
    "来源": "publisher",
    "信息来源": "publisher",
    "文章来源": "publisher",
    "稿件来源": "publisher",
    "出处": "publisher",
    "文号": "doc_number",
    "发文字号": "doc_number",
    "发文文号": "doc_number",
    "发文机关": "issuer",
    "发文单位": "issuer",
    "发布机构": "issuer",
    "发布单位": "issuer",
    "索引号": "index_number",
    "主题分类": "category",
    "分类": "category",
    "标题": "title",
    "责任编辑": "editor",
    "责编": "editor",
    "编辑": "editor",
    "审核": "reviewer",
    "校对": "reviewer",
}
_GENERIC_LABELS = {"时间", "日期"}
"""Labels that are metadata only in a document's head (in the body `时间：` may be a meeting's)."""
_DATE_KEYS = {"date", "written_date"}
_LABEL = "|".join(r"\s*".join(label) for label in sorted(LABELS, key=len, reverse=True))
_PAIR = re.compile(rf"(?:^|(?<=[\s|｜丨/]))(?P<label>{_LABEL})\s*[:：]\s*")
_USER = r"(?:发布网友|热心网友|匿名用户|网友|提问者|回答者)"
_META_HEAD = re.compile(rf"^(?:(?P<date>{_DATE})(?:\s*{_TIME})?[\s|｜丨]*)?(?:{_USER}\s*)?(?:{_LABEL})\s*[:：]")
_BRACKETED = re.compile(r"^([(（【\[])(.*)([)）】\]])$")
_PUBLICATION = re.compile(rf"^《[^》]{{2,20}}》\s*[(（]\s*(?P<date>{_DATE})\s*(?:第\s*\w{{1,4}}\s*版)?\s*[)）]$")
_DOC_NUMBER = re.compile(rf"^[{CJK}]{{1,12}}\s*[〔\[［【(（]\s*\d{{4}}\s*[〕\]］】)）]\s*第?\s*\d{{1,4}}\s*号$")
_DATE_LINE = re.compile(rf"^(?P<date>{_DATE}|{_CN_DATE})(?:\s*{_TIME})?$")
_DATELINE = re.compile(
    rf"^(?:本报|新华社|中新社|人民网)\S{{0,12}}?电\s*[(（](?:记者|通讯员)\s*(?P<name>{_NAME}(?:[、\s]+{_NAME})*)[)）]"
)
_BYLINE_LINE = re.compile(rf"^(?:文\s*[/｜|]\s*|(?:本报|本网)?记者\s*)(?P<name>{_NAME}(?:\s+{_NAME})*)$")
_TRAILING_BYLINE = re.compile(r"(?:^|(?<=[。！？!?”」』]))\s*(?P<byline>[(（](?P<body>[^()（）。；！？]{2,40})[)）])$")
_BYLINE_FORMS = (
    re.compile(rf"^(?:作者|撰稿|撰文|文)\s*[:：/]?\s*(?P<author>{_NAME})$"),
    re.compile(r"^作者(?:系|为|是|单位[:：]?)\s*(?P<affiliation>.+)$"),
    re.compile(rf"^(?:本报|本网|新华社)?(?:记者|通讯员)\s*(?P<author>{_NAME}(?:\s+{_NAME})*)$"),
    re.compile(rf"^(?P<affiliation>\S[^:：]*?\S)\s+(?P<author>{_NAME})$"),
)
_NAMES = rf"{_NAME}(?:\s*[、\s]\s*{_NAME})*"
_PHOTO_CREDIT = re.compile(
    rf"""(?:^|(?<=[\s。！？!?”]))(?P<credit>[(（]?\s*(?:
        (?:本报|新华社|本网)?记者\s*(?P<reporter>{_NAMES})\s*摄
      | (?P<name>{_NAMES})(?:\s+|\s*[/／]\s*)摄
      | 摄影[:：]?\s*(?P<photographer>{_NAMES})
    )\s*[)）]?)$""",
    re.VERBOSE,
)
"""A photo credit ending a line (`韩志忠 摄`, `（记者 王小明 摄）`, `摄影：张三`)."""
_TAIL = 60
"""A byline or photo credit is found in the last this many characters of a line."""
_SIGNATURE_MAX = 30
"""An issuer line in a closing signature block is at most this long."""


class Field(NamedTuple):
    """One metadata value read from a line: its key, value and `[start, end)` in the line."""

    key: str
    value: str
    start: int
    end: int


def meta_fields(line: str, head: bool = True) -> list[Field]:
    """The metadata a whole line carries (labelled pairs, a newspaper line, a 文号 line, a byline or
    date line), or `[]` for content. `head`: the line is in the document's head, where `时间：` and
    `日期：` are its date."""
    return list(_fields(line, head))


@lru_cache(maxsize=8192)
def _fields(line: str, head: bool) -> tuple[Field, ...]:
    return tuple(_read_fields(line, head))


def _read_fields(line: str, head: bool) -> list[Field]:
    match = _PUBLICATION.match(line)
    if match:
        return [Field("publisher", line, 0, len(line)), _field("date", line, match.start("date"), match.end("date"))]
    if _DOC_NUMBER.match(line):
        return [Field("doc_number", line, 0, len(line))]
    match = _DATE_LINE.match(line)
    if match:
        return [_field("date", line, 0, match.end("date"))] if head else []
    match = _BYLINE_LINE.match(line)
    if match:
        return [Field("byline", line, 0, len(line)), _field("author", line, match.start("name"), len(line))]
    tail = max(0, len(line) - _TAIL)  # bylines and credits end a line: only its tail is searched
    match = _TRAILING_BYLINE.search(line, tail) if line.endswith((")", "）")) else None
    byline = _byline(line, match) if match else []
    if byline:
        return byline
    match = _PHOTO_CREDIT.search(line, tail) if "摄" in line[tail:] else None
    if match:
        names = next(match.group(g) for g in ("reporter", "name", "photographer") if match.group(g))
        start = (
            match.start("reporter")
            if match.group("reporter")
            else match.start("name")
            if match.group("name")
            else match.start("photographer")
        )
        return [
            _field("photo_credit", line, match.start("credit"), match.end("credit")),
            Field("photographer", names, start, start + len(names)),
        ]
    match = _DATELINE.match(line)
    if match:  # `本报北京3月14日电 （记者 张文）…`: the author of a news story, in its first sentence
        return [Field("author", match.group("name"), match.start("name"), match.end("name"))]
    bracketed = _BRACKETED.match(line)
    if bracketed and _META_HEAD.match(bracketed.group(2)):  # `（责编：李明）`, `【责任编辑：刘阳】`
        return [f._replace(start=f.start + 1, end=f.end + 1) for f in _read_fields(bracketed.group(2), head)]
    match = _META_HEAD.match(line)
    if not match:
        return []
    fields = [_field("date", line, match.start("date"), match.end("date"))] if match.group("date") else []
    pairs = list(_PAIR.finditer(line, match.end("date") if match.group("date") else 0))
    for pair, following in zip(pairs, [*pairs[1:], None], strict=True):
        label = re.sub(r"\s+", "", pair.group("label"))
        key = LABELS[label]
        start, end = pair.end(), following.start() if following else len(line)
        if key in _DATE_KEYS:
            date = _DATE_VALUE.search(line, start, end)
            if date:
                start, end = date.start(), date.end()
            elif label in _GENERIC_LABELS:
                continue
        if label in _GENERIC_LABELS and not head:
            continue
        value = _field(key, line, start, end)
        if value.value:
            fields.append(value)
    return fields


def _field(key: str, line: str, start: int, end: int) -> Field:
    """`line[start:end]` as a field, without surrounding spaces and separators."""
    while start < end and line[start] in " \t|｜丨":
        start += 1
    while end > start and line[end - 1] in " \t|｜丨":
        end -= 1
    return Field(key, line[start:end], start, end)


def _byline(line: str, match: re.Match[str]) -> list[Field]:
    """A byline `（作者 李金英）` / `（宁都县委常委、县纪委* 钟恢生）` ending `line`, or `[]`."""
    body, offset = match.group("body"), match.start("body")
    if _PHOTO_CREDIT.search(match.group("byline")):
        return []
    for form in _BYLINE_FORMS:
        found = form.match(body)
        if found:
            fields = [Field("byline", match.group("byline"), match.start("byline"), match.end("byline"))]
            for key in found.groupdict():
                fields.append(_field(key, line, offset + found.start(key), offset + found.end(key)))
            return fields
    return []


def read_meta(line: str) -> dict[str, str] | None:
    """The metadata values a line carries (`时间:…`, `作者:… 单位:…`, `《人民日报》(…)`), or None."""
    fields = meta_fields(line)
    return {f.key: f.value for f in fields} or None


def is_metadata_line(line: str) -> bool:
    """A line that is metadata (a field, a byline, a date, a 文号), not content or a heading."""
    fields = meta_fields(line)
    if fields and fields[0].key == "author" and _DATELINE.match(line):
        return False  # a news story's first sentence
    return bool(fields) and not (fields[0].key in ("byline", "photo_credit") and fields[0].start > 0)


def _signature(lines: list[str]) -> tuple[int, int] | None:
    """A closing signature block: an issuer line directly above a date line, among the last lines."""
    for i in range(len(lines) - 1, max(0, len(lines) - 6), -1):
        if _DATE_LINE.match(lines[i]):
            issuer = lines[i - 1]
            if (
                len(issuer) <= _SIGNATURE_MAX
                and not re.search(r"[。，,；;：:！？]", issuer)
                and not meta_fields(issuer)
            ):
                return i - 1, i
    return None
