"""Cleaning read documents into the text that is indexed, quoted and displayed.

Out go pinyin annotations (`責(zé)任` → `責任`), page furniture (navigation and breadcrumbs, link
lists, Q&A-site, share and print chrome, copyright footers, PDF page numbers and running headers)
and hard line wraps. Furniture is known by what it is — a line of page chrome, a link list ending the
page, a menu before the content, a page number or a line repeated at the edges of pages — never by a
line's figures: lines alike but for their figures (`2021年…1203件。`, `2022年…1315件。`) are content.
Every content line stays verbatim, and so do the metadata lines (`发布时间：…`,
`作者：… 单位：…`, `发文字号：…`, a byline `（作者 李金英）` or a photo credit `韩志忠 摄` at a line's end,
a signature block): `rag.ingest.fields` reads their values, which go into `Document.meta`, and their
offsets, which go into `Document.meta_spans`, so an answer can quote them. Metadata is read before any
furniture rule runs. Garbled runs (mojibake) are found by `garbled_runs`; sentence splitting goes
around them. Script and punctuation are kept as written: matching uses `normalize`. `clean_counted`
also says how many characters each step took out (`Removed`), so a step that takes much is reported.
"""

from __future__ import annotations

import itertools
import re
from collections import Counter
from dataclasses import dataclass, field

from rag.ingest.fields import CJK, Field, _signature, is_metadata_line, meta_fields
from rag.ingest.loaders import RawDocument
from rag.model import Document

SENTENCE_END = "。！？!?；;"

_TONED = "āáǎàēéěèīíǐìōóǒòūúǔùǖǘǚǜüńňǹḿ"
_SYLLABLE = re.compile(rf"^(?:zh|ch|sh|[bpmfdtnlgkhjqxrzcsyw])?[aeiouv{_TONED}]+(?:ng|n|r)?$")
_PINYIN = re.compile(rf"(?<=[{CJK}])[(（]([a-z{_TONED}]{{1,7}})[)）]")
_HAS_TONE = re.compile(rf"[{_TONED}]")
_INVISIBLE = re.compile("[\ufeff\u200b\u200c\u200d\u2060]")
_MARKDOWN_HEADING = re.compile(r"^#{1,6}\s+")
PAGE_BREAK = "\f"
"""A page break (a form feed: between a PDF's pages, in `pdftotext` output); kept as a line of its own
until the page step has read the pages."""

STEPS = {
    "pinyin": "拼音注音",
    "furniture": "页面元素（按钮、栏目、版权行等）",
    "links": "链接列表",
    "navigation": "导航菜单",
    "pages": "页码和页眉页脚",
    "title": "与标题重复的行",
}
"""The cleaning steps that take text out, with the name a report gives them."""


@dataclass
class Removed:
    """What cleaning took out of one document: characters by step (`STEPS`), of `total` characters."""

    total: int = 0
    steps: Counter[str] = field(default_factory=Counter)

    def shares(self, above: float) -> dict[str, float]:
        """The steps that took out more than this share of the text, with their shares."""
        total = max(self.total, 1)
        return {step: n / total for step, n in self.steps.items() if n and n / total > above}


# --- page furniture -------------------------------------------------------------------------

_BUTTONS = re.compile(r"\s*【\s*(?:打印|关闭|关闭窗口|打印本页|收藏|纠错|分享|字[体号][:：]?[^】]{0,12})\s*】")
_COUNTERS = re.compile(
    r"\s*(?:(?:浏览次数|阅读次数|点击数|点击量|阅读量|浏览量|访问量)[:：]\s*\d*|字[体号][:：]\s*[大中小\s]+|分享到[:：]?)"
)
"""Chrome inside a metadata line: `浏览次数：123`, `字号：大 中 小`, `分享到：`."""
_MAYBE_COUNTER = re.compile("浏览|阅读|点击|访问|字体|字号|分享到")
_FURNITURE_LINE = re.compile(
    r"""^(?:
        [-–—·•*|｜]+                                           # a lone bullet or separator
      | 发布网友|热心网友|匿名用户|网友|提问者|我来回答|展开全部|收起|展开|举报|分享|评论|点赞|收藏
      | 其他回答|更多回答|查看更多|已采纳|最佳答案|满意答案|返回顶部|返回首页|打印本页|关闭窗口|打印|关闭
      | (?:上一篇|下一篇)(?:[:：].{0,60})?
      | 共\s*\d+\s*(?:个|条)(?:回答|评论)
      | (?:(?:赞|踩|点赞|收藏|评论|分享|举报|回复|收起|展开)\s*\d*\s*)+   # a row of buttons and counts
      | 分享到[:：]?.{0,30}
      | (?:当前位置|您现在的位置|您的位置|所在位置)[:：].*             # breadcrumb
      | (?:[^>＞»›。，,；;]{1,12}\s*[>＞»›]\s*){2,}[^>＞»›。，,；;]{1,12}
      | 首页\s*(?:[>＞»›/]\s*[^>＞»›/]{1,20}\s*)+
      | (?!.*\d)(?:[^\s|｜丨。，,；;！？]{1,8}\s*[|｜丨]\s*){2,}[^\s|｜丨。，,；;！？]{1,8}   # "首页 | 新闻 | 政务公开"
      | (?![^。；]*[。；]).{0,80}(?:版权所有|Copyright|©|ICP备|ICP证|公网安备|网站标识码|网站地图|联系我们|技术支持[:：]).{0,80}
      | 扫一扫.{0,30}
    )$""",
    re.VERBOSE | re.IGNORECASE,
)
_PAGE_MARK = re.compile(
    r"^(?:[-–—－]\s*\d{1,4}\s*[-–—－]|第\s*\d{1,4}\s*页(?:\s*[,，/]?\s*共\s*\d{1,4}\s*页)?|\d{1,4}\s*/\s*\d{1,4}"
    r"|page\s*\d{1,4}(?:\s*of\s*\d{1,4})?)$",
    re.IGNORECASE,
)
_LONE_NUMBER = re.compile(r"^\d{1,3}$")
_PAGE_NUMBER = re.compile(r"^(\d{1,4})\s+|\s+(\d{1,4})$|[-–—－]\s*(\d{1,4})\s*[-–—－]|第\s*(\d{1,4})\s*页")
"""A page number inside a running header or footer (`公报 3`, `— 3 —`, `第3页`)."""
_RELATED = re.compile(
    r"^(?:相关(?:推荐|阅读|新闻|问答|文章|链接|专题)|为你推荐|猜你喜欢|(?:热门|热点|精彩)(?:推荐|文章|新闻)|延伸阅读|推荐阅读"
    r"|更多阅读|往期(?:回顾|推荐)|最新文章)[:：]?$"
)
_BULLET_ITEM = re.compile(r"^[-–—·•]\s.{0,80}$")
_DATED_ITEM = re.compile(r"^.{2,80}?(?:\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|[(（\[]\d{1,2}-\d{1,2}[)）\]]|\d+个回答.*)$")
_NUMBERED = re.compile(
    r"^(?:\d{1,3}[.、．)）]|[(（][一二三四五六七八九十\d]{1,3}[)）]|[一二三四五六七八九十]+(?:[、.．]|是)"
    r"|第[一二三四五六七八九十百\d]+[批项条章节部]|[①-⑳⑴-⒇])"
)
"""An item of a numbered list (`1.`, `（一）`, `一是`, `第2批`, `①`): content, not a link."""
_TABLE_CELLS = re.compile(r"\s*[|｜]\s*")
_TABLE_RULE = re.compile(r"\s*[|｜]?(?:\s*:?-{2,}:?\s*[|｜]?)+")


def is_furniture(line: str) -> bool:
    """A line of page chrome: UI labels and buttons, breadcrumbs, navigation, footers."""
    return bool(_FURNITURE_LINE.match(line))


def _table_rows(lines: list[str]) -> list[bool]:
    """Rows of a table written with `|`: a line of two or more cells beside a line of as many (a rule
    line `|---|---|` between them aside). A table's header row is content, never a menu."""

    def cells(line: str) -> int:
        return len(_TABLE_CELLS.split(line.strip(" |｜"))) if "|" in line or "｜" in line else 0

    counts = [cells(line) for line in lines]
    rules = [bool(_TABLE_RULE.fullmatch(line)) for line in lines]

    def beside(i: int) -> list[int]:
        near = [i + step + step * (0 <= i + step < len(lines) and rules[i + step]) for step in (-1, 1)]
        return [counts[j] for j in near if 0 <= j < len(lines)]

    return [n >= 2 and not rules[i] and n in beside(i) for i, n in enumerate(counts)]


def _is_link_item(line: str) -> bool:
    """A short entry of a link list: `- headline` (not a sentence ending in 。) or `headline2021/12/13`;
    never an item of a numbered list."""
    if _NUMBERED.match(line.lstrip("-–—·• ")):
        return False
    return bool((_BULLET_ITEM.match(line) and line[-1] not in "。；;") or _DATED_ITEM.match(line))


def _drop_link_lists(lines: list[str]) -> list[str]:
    """Link lists: the entries after a `相关阅读`-style heading, and a run of at least three entries
    (bullets or headlines ending in a date) that ends the page — unless a heading introduces the run."""
    keep = [True] * len(lines)
    for i, line in enumerate(lines):
        if _RELATED.match(line):
            keep[i] = False
            j = i + 1
            while j < len(lines) and (
                _is_link_item(lines[j]) or (len(lines[j]) <= 40 and lines[j][-1] not in "。！？")
            ):
                keep[j] = False
                j += 1
    end, entries = len(lines), 0
    while end > 0 and (_is_link_item(lines[end - 1]) or is_furniture(lines[end - 1])):
        end -= 1
        entries += _is_link_item(lines[end])
    if entries >= 3 and end > 0 and not _introduces(lines[end - 1]):
        keep[end:] = [False] * (len(lines) - end)
    return [line for line, kept in zip(lines, keep, strict=True) if kept]


def _introduces(line: str) -> bool:
    """A heading or a lead-in (`…如下：`) over a list: what follows it is the document's own list."""
    return line[-1] in "：:" or (looks_like_title(line) and not is_metadata_line(line))


def _drop_navigation(lines: list[str]) -> list[str]:
    """A menu before the content: a run of three or more very short lines at the top of the page
    (without figures: a menu has none)."""
    run = 0
    while run < len(lines) and len(lines[run]) <= 6 and not re.search(r"[。，,；;：:！？\d]", lines[run]):
        run += 1
    return lines[run:] if 3 <= run < len(lines) else lines


def _page_breaks(lines: list[str]) -> set[int]:
    """Where pages end: form feeds, page marks (`- 3 -`, `第3页 共5页`), and lone numbers when they
    count pages (1, 2, 3 … several lines apart) — lone figures of a table count nothing."""
    breaks = {i for i, line in enumerate(lines) if line == PAGE_BREAK or _PAGE_MARK.match(line)}
    lone = [i for i, line in enumerate(lines) if _LONE_NUMBER.match(line)]
    counting = all(int(lines[b]) == int(lines[a]) + 1 and b - a >= 3 for a, b in itertools.pairwise(lone))
    return breaks | set(lone) if len(lone) >= 2 and counting else breaks


def _running_keys(line: str, page: int) -> list[tuple[str, int | None]]:
    """A line at a page's edge as a running header or footer repeats it: as it is, and without a page
    number with that number less the page's (the same on every page when it counts the pages)."""
    if len(line) > 40 or is_metadata_line(line):
        return []
    if _LONE_NUMBER.match(line):
        return [("", int(line) - page)]
    match = _PAGE_NUMBER.search(line)
    if match is None:
        return [(line, None)]
    number = int(next(g for g in match.groups() if g))
    return [(line, None), ("#" + line[: match.start()] + line[match.end() :], number - page)]


def _drop_page_marks(lines: list[str]) -> list[str]:
    """Page breaks, and running headers and footers: a short line at the edge of a page (among its
    first or last two lines) that is the same on several pages — but for a page number counting them."""
    breaks = _page_breaks(lines)
    if not breaks:
        return lines
    bounds = [-1, *sorted(breaks), len(lines)]
    pages = [range(a + 1, b) for a, b in itertools.pairwise(bounds) if b - a > 1]
    seen: dict[str, list[tuple[int, int, int | None]]] = {}
    for number, page in enumerate(pages):
        for i in sorted({*page[:2], *page[-2:]}):
            for key, value in _running_keys(lines[i], number):
                seen.setdefault(key, []).append((number, i, value))
    need = max(2, len(pages) // 3)
    running = {
        i
        for places in seen.values()
        if len({page for page, _, _ in places}) >= need and len({value for _, _, value in places}) == 1
        for _, i, _ in places
    }
    return [line for i, line in enumerate(lines) if i not in breaks and i not in running]


# --- hard-wrapped text (PDF) ----------------------------------------------------------------

_BLOCK_START = re.compile(
    r"^(?:[一二三四五六七八九十]+[、.．]|第[一二三四五六七八九十百\d]+[章节条]|[(（][一二三四五六七八九十\d]+[)）]|\d+[.、．]|附件)"
)


def _unwrap(lines: list[str]) -> list[str]:
    """Join the lines of hard-wrapped paragraphs (PDF text): when most long lines have about the same
    length and most of those end mid-sentence, a line that long and not ending a sentence continues on
    the next line (a table row or a list item never does)."""
    long = sorted(len(line) for line in lines if len(line) >= 10)
    if len(long) < 6:
        return lines
    width = long[int(0.9 * (len(long) - 1))]
    full = [line for line in lines if len(line) >= 0.85 * width]
    if len(full) < 0.4 * len(long) or sum(line[-1] not in SENTENCE_END + "：:" for line in full) < 0.5 * len(full):
        return lines
    out: list[str] = []
    previous = ""  # the last physical line joined into out[-1]
    for line in lines:
        if (
            out
            and len(previous) >= 0.85 * width
            and previous[-1] not in SENTENCE_END + "：:"
            and not _BLOCK_START.match(line)
            and not _TABLE_CELLS.search(previous + line)
            and not _BULLET_ITEM.match(line)
            and not is_metadata_line(line)
            and not is_metadata_line(previous)
        ):
            space = " " if previous[-1].isascii() and previous[-1].isalnum() and line[0].isascii() else ""
            out[-1] += space + line
        else:
            out.append(line)
        previous = line
    return out


# --- garbled runs ---------------------------------------------------------------------------

_ANCHOR = re.compile(
    "[\ufffd\ue000-\uf8ff\U000f0000-\U0010ffff\x80-\x9f?\u3041-\u30fa\u30fc-\u30ff\u2460-\u257f"
    "\u3400-\u4dbf\U00020000-\U0003ffff\u00a1-\u00b6\u00b8-\u00d6\u00d8-\u00f6\u00f8-\u017f\u01cd-\u01dc]"
)
"""Characters unlikely in Chinese text (a `?` only when glued to what follows, see `_kind`)."""
_NOT_GLUED = frozenset(" \t\r\n\u3000”’」』）)】》\"'")
_GARBLED_GAP = 5
"""Anchors at most this many characters apart belong to one run."""


def _kind(text: str, position: int, end: int) -> str | None:
    """What kind of unlikely character `text[position]` is (None: a `?` that ends a question)."""
    char = text[position]
    code = ord(char)
    if char == "?":
        return "qmark" if position + 1 < end and text[position + 1] not in _NOT_GLUED else None
    if char == "\ufffd" or 0xE000 <= code <= 0xF8FF or code >= 0xF0000 or 0x80 <= code <= 0x9F:
        return "strong"  # replacement, private use, C1 controls
    if 0x3041 <= code <= 0x30FF:
        return "kana"
    if 0x2460 <= code <= 0x257F:
        return "symbol"  # circled numbers, box drawing
    if 0x3400 <= code <= 0x4DBF or code >= 0x20000:
        return "rare"  # CJK extensions
    return "latin"


def garbled_runs(text: str, start: int = 0, end: int | None = None) -> list[tuple[int, int]]:
    """Mojibake in `text[start:end]` as `(start, end)` runs: replacement or private-use characters, or
    a cluster of unlikely characters — ASCII `?` glued to the next character, kana, circled numbers,
    box drawing, rare CJK extensions, stray Latin letters — of at least two kinds (or three `?` or
    three Latin letters, two of them adjacent). A lone `?` or kana is not enough."""
    end = len(text) if end is None else end
    runs: list[tuple[int, int]] = []
    cluster: list[tuple[int, str]] = []
    anchors = ((m.start(), _kind(text, m.start(), end)) for m in _ANCHOR.finditer(text, start, end))
    for anchor in [*((p, k) for p, k in anchors if k is not None), None]:
        if anchor is not None and (not cluster or anchor[0] - cluster[-1][0] - 1 <= _GARBLED_GAP):
            cluster.append(anchor)
            continue
        if cluster and _is_garbled(cluster):
            run_end = cluster[-1][0] + 1
            while run_end < end and ((text[run_end].isascii() and text[run_end].isalpha()) or text[run_end] in ")）"):
                run_end += 1  # the rest of a pinyin fragment: `?zhèn)`
            runs.append((cluster[0][0], run_end))
        cluster = [anchor] if anchor is not None else []
    return runs


def _is_garbled(cluster: list[tuple[int, str]]) -> bool:
    kinds = Counter(kind for _, kind in cluster)
    if kinds["strong"] or kinds["qmark"] >= 3 or len(kinds) >= 2:
        return True
    if kinds["latin"] >= 3:
        return any(b[0] == a[0] + 1 for a, b in itertools.pairwise(cluster))
    return False


# --- the whole document ---------------------------------------------------------------------


def strip_pinyin(text: str) -> str:
    """Remove pinyin in brackets after Chinese characters: `責(zé)任` → `責任`."""

    def drop(match: re.Match[str]) -> str:
        syllable = match.group(1)
        return "" if _SYLLABLE.match(syllable) and _HAS_TONE.search(syllable) else match.group(0)

    return _PINYIN.sub(drop, text)


def clean_lines(text: str, removed: Removed | None = None) -> list[str]:
    """The content and metadata lines of `text`, trimmed, without furniture and hard wraps; what each
    step took out is added to `removed`."""
    removed = Removed() if removed is None else removed
    text = _INVISIBLE.sub("", text.replace("\r\n", "\n").replace("\r", "\n")).replace(PAGE_BREAK, "\n\f\n")
    removed.total += sum(len(line.strip()) for line in text.split("\n"))
    without_pinyin = strip_pinyin(text)
    removed.steps["pinyin"] += len(text) - len(without_pinyin)
    raw_lines = [
        line if line == PAGE_BREAK else line.replace("\u3000", " ").replace("\xa0", " ").strip()
        for line in without_pinyin.split("\n")
    ]
    table = _table_rows(raw_lines)
    lines: list[str] = []
    for raw_line, row in zip(raw_lines, table, strict=True):
        line = bare = _MARKDOWN_HEADING.sub("", raw_line)
        if "【" in line:
            line = _BUTTONS.sub("", line).strip()
        fields_only = _COUNTERS.sub("", line).strip() if _MAYBE_COUNTER.search(line) else line
        kept = ""
        if fields_only and is_metadata_line(fields_only):  # metadata first: never taken for furniture
            kept = fields_only
        elif line and (row or not is_furniture(line)):
            kept = line
        lines.extend([kept] if kept else [])
        removed.steps["furniture"] += len(bare) - len(kept)
    for step, drop in (("pages", _drop_page_marks), ("links", _drop_link_lists), ("navigation", _drop_navigation)):
        after = drop(lines)
        removed.steps[step] += sum(map(len, lines)) - sum(map(len, after))
        lines = after
    return _unwrap(lines)


def looks_like_title(line: str) -> bool:
    """Short and not ending a sentence: a title or heading line."""
    return len(line) <= 60 and line[-1] not in SENTENCE_END


def derive_title(lines: list[str]) -> str:
    """A title from the first clause of the text, when the document has none."""
    first = lines[0] if lines else ""
    clause = re.split(r"[，,。！？!?；;：:]", first, maxsplit=1)[0]
    return clause[:40] + ("…" if len(clause) > 40 else "")


def _is_body(line: str) -> bool:
    """A line of running text: the document's head (where `时间：` is its date) ends before the first."""
    return not is_metadata_line(line) and (len(line) >= 50 or line[-1] in SENTENCE_END)


_DOCUMENT_TYPE = re.compile(
    r"(?:通知|通报|意见|决定|办法|规定|方案|报告|请示|批复|函|纪要|公告|通告|决议|条例|细则|规则|要点|计划)$"
)


def _wrapped_title(lines: list[str]) -> None:
    """Join a title wrapped over two lines (`…关于印发《…党风廉政` / `建设责任制考核办法》的通知`)."""
    if len(lines) < 3 or lines[0][-1] in SENTENCE_END + "，,：:" or len(lines[0]) + len(lines[1]) > 60:
        return
    if _DOCUMENT_TYPE.search(lines[1]) and not _DOCUMENT_TYPE.search(lines[0]):
        lines[:2] = [lines[0] + lines[1]]


def clean(raw: RawDocument) -> Document:
    """Clean a read document; its title comes from the file, a `标题：` field, its first line or its
    first clause."""
    return clean_counted(raw)[0]


def clean_counted(raw: RawDocument) -> tuple[Document, Removed]:
    """`clean`, and how many characters each step took out of the document."""
    removed = Removed()
    lines = clean_lines(raw.text, removed)
    _wrapped_title(lines)
    title = (raw.title or "").strip()
    if not title:
        title = next((f.value for line in lines[:12] for f in meta_fields(line) if f.key == "title"), "")
    headline = len(lines) > 1 and len(lines[0]) <= 60 and lines[0][-1] not in "。；;，,：:"
    if not title and headline and not is_metadata_line(lines[0]):  # a headline, or a Q&A page's question
        title = lines.pop(0)
    if title:
        removed.steps["title"] += sum(len(line) for line in lines if line == title)
        lines = [line for line in lines if line != title]
    meta: dict[str, str] = dict(raw.meta)
    spans: dict[str, list[int]] = {}
    if not title:
        title = derive_title(lines) or raw.source
        meta["title_derived"] = "yes"

    def record(fields: list[Field], offset: int, written: bool = False) -> None:
        for key, value, start, end in fields:
            key = "written_date" if written and key == "date" else key
            if key not in spans:
                meta[key] = value
                spans[key] = [offset + start, offset + end]

    signature = _signature(lines)
    head = True
    offset = 0
    for number, line in enumerate(lines):
        head = head and not _is_body(line)
        if signature and number == signature[0]:
            record([Field("issuer", line, 0, len(line))], offset)
        elif signature and number == signature[1]:
            record(meta_fields(line), offset, written=True)
        else:
            record(meta_fields(line, head), offset)
        offset += len(line) + 1
    return Document(raw.source, title, "\n".join(lines), meta, raw.fingerprint, spans), removed
