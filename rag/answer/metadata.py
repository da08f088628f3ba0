"""Where a document's metadata (author, unit, date, publisher, byline) can be quoted from.

Cleaning keeps metadata lines in the document text and records `Document.meta_spans`: key →
[start, end] of the quotable value. Those spans answer 作者/单位/日期/来源 questions, and sentences
that overlap them are not quoted as content. A document indexed before `meta_spans` existed still
gets its values found verbatim in its text, and a closing byline `(宁都县委常委、县纪委* 钟恢生)`.
"""

from __future__ import annotations

import re
from functools import lru_cache

from rag.model import Document

#: How an answer labels each kind of metadata value.
LABELS = {
    "author": "作者",
    "byline": "作者",
    "affiliation": "单位",
    "date": "日期",
    "publisher": "刊载",
    "source": "来源",
    "doc_number": "文号",
    "issuer": "发文机关",
    "photographer": "摄影",
    "photo_credit": "摄影",
    "photo": "摄影",
}

#: Which metadata a question asks for (normalized question → keys, in the order they are quoted).
_WANTED: list[tuple[re.Pattern[str], tuple[str, ...]]] = [
    (re.compile(r"作者|谁写|撰写|执笔|署名|撰稿|\bwrote\b|\bauthor|\bwritten\b"), ("author", "byline", "affiliation")),
    (re.compile(r"单位|\baffiliat|\borgani[sz]ation\b"), ("affiliation", "byline")),
    (re.compile(r"发布|日期|时间|哪天|哪一天|何时|什么时候|\bwhen\b|\bdate\b"), ("date",)),
    (
        re.compile(r"报纸|刊登|刊发|刊载|登在|发表|第几版|来源|出处|出自|媒体|网站|\bnewspaper\b|\bpublish|\bsource\b"),
        ("publisher", "source"),
    ),
    (re.compile(r"文号"), ("doc_number",)),
    (re.compile(r"发文机关|印发机关|哪个机关|\bissu"), ("issuer",)),
    (re.compile(r"(?:谁|哪位).{0,4}(?:拍|摄)|摄影|\bphoto"), ("photographer", "photo_credit", "photo")),
]
_BYLINE = re.compile(r"[(（](?!作者)[^()（）\n]{2,40}[\s\u3000]+[\u4e00-\u9fff·*]{2,5}[)）]\s*$")
_AUTHOR_NOTE = re.compile(r"[(（]作者[:：\s]*[^()（）\n]{1,40}[)）]\s*$")


def wanted_keys(normalized_question: str) -> list[str]:
    """The metadata keys a question asks for, e.g. `作者是谁?哪个单位的?` → author, byline, affiliation."""
    keys: list[str] = []
    for cue, names in _WANTED:
        if cue.search(normalized_question):
            keys.extend(k for k in names if k not in keys)
    return keys


def meta_spans(document: Document) -> dict[str, tuple[int, int]]:
    """Metadata key → (start, end) of its quotable value in `document.text`."""
    return dict(_spans(document.source, document.fingerprint, document.text, _frozen(document)))


def document_about(document: Document) -> str:
    """A document's title and metadata as text: its values and the lines its metadata spans quote."""
    quoted = [document.text[s:e] for s, e in meta_spans(document).values()]
    return "\n".join([document.title, *map(str, document.meta.values()), *quoted])


def in_metadata(document: Document, start: int, end: int) -> bool:
    """Whether `text[start:end]` overlaps a metadata value (a byline is not content)."""
    return any(s < end and start < e for s, e in meta_spans(document).values())


def _frozen(document: Document) -> tuple[tuple[str, str, int, int], ...]:
    given = getattr(document, "meta_spans", None) or {}
    rows = [(key, "", int(span[0]), int(span[1])) for key, span in given.items() if len(span) == 2]
    rows += [(key, str(value), -1, -1) for key, value in document.meta.items() if key not in given]
    return tuple(rows)


@lru_cache(maxsize=256)
def _spans(
    source: str, fingerprint: str, text: str, rows: tuple[tuple[str, str, int, int], ...]
) -> tuple[tuple[str, tuple[int, int]], ...]:
    spans: dict[str, tuple[int, int]] = {}
    for key, value, start, end in rows:
        if start >= 0 and 0 <= start < end <= len(text):
            spans[key] = (start, end)
        elif value and len(value) >= 2 and key != "title_derived":
            at = text.find(value)
            if at >= 0:
                spans[key] = (at, at + len(value))
    tail = text.rstrip()
    for pattern, key in ((_AUTHOR_NOTE, "author"), (_BYLINE, "byline")):
        match = pattern.search(tail[-80:])
        if match and key not in spans and "byline" not in spans:
            offset = len(tail) - min(80, len(tail))
            spans[key] = (offset + match.start(), offset + match.end())
            break
    return tuple(spans.items())
