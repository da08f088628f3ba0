"""Which documents a question may be answered from: `Filters` by source (document ids or title words)
and by the document's date (`Document.meta["date"]`), and the chunks of a knowledge base they allow.

Retrieval applies them before fusion (`restrict`): each ranking is searched deep enough that its first
`Settings.candidates` allowed chunks are found (`depth`), the others are dropped, so the top k are filled
from allowed documents and the dense scores are normalized among allowed chunks, as if the knowledge base
held only those documents.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import PurePath
from typing import Any

import numpy as np

from rag.model import Chunk, Document
from rag.text.normalize import compact

MAX_DEPTH = 16_384
"""The deepest a filtered ranking is searched (Milvus's own limit of one search)."""

_ISO = re.compile(r"\d{4}-\d{2}-\d{2}")
_DOCUMENT_DATE = re.compile(r"((?:19|20)\d{2})\s*[-年/.]\s*(\d{1,2})(?:\s*[-月/.]\s*(\d{1,2}))?")


class FilterError(ValueError):
    """A filter that cannot be applied (a date not written YYYY-MM-DD); the message says what to do."""


@dataclass(frozen=True)
class Filters:
    """Documents allowed: any `sources` entry matches (an id, an id without its extension, or words of the
    title), and the date lies within `date_from`..`date_to` (inclusive). Empty filters allow everything."""

    sources: tuple[str, ...] = ()
    date_from: date | None = None
    date_to: date | None = None

    @classmethod
    def of(
        cls,
        source: Sequence[str] | str | None = None,
        date_from: str | date | None = None,
        date_to: str | date | None = None,
    ) -> Filters:
        """Filters from the API's arguments; raises `FilterError` for a date not written `YYYY-MM-DD`
        or a range that ends before it starts."""
        entries = [source] if isinstance(source, str) else list(source or [])
        sources = tuple(dict.fromkeys(s.strip() for s in entries if isinstance(s, str) and s.strip()))
        start, end = _iso(date_from, "date_from"), _iso(date_to, "date_to")
        if start and end and start > end:
            raise FilterError(f"起始日期 {start} 晚于截止日期 {end}：请检查日期范围 (date_from is after date_to)。")
        return cls(sources, start, end)

    def __bool__(self) -> bool:
        return bool(self.sources or self.date_from or self.date_to)

    def allows(self, document: Document) -> bool:
        """Whether the document passes every filter."""
        if self.sources and not any(_names(entry, document) for entry in self.sources):
            return False
        if self.date_from or self.date_to:
            when = document_date(document)
            if when is None:
                return False
            if (self.date_from and when < self.date_from) or (self.date_to and when > self.date_to):
                return False
        return True

    def mask(self, documents: dict[str, Document], chunks: Sequence[Chunk]) -> np.ndarray:
        """One boolean per chunk: whether its document is allowed."""
        allowed = {source for source, document in documents.items() if self.allows(document)}
        return np.fromiter((chunk.source in allowed for chunk in chunks), dtype=bool, count=len(chunks))


def document_date(document: Document) -> date | None:
    """The document's date (`meta["date"]`: `2022-09-20`, `2022年01月13日`, `2022/1/13`; a month alone
    counts as its first day), or None when it has none that reads as a date."""
    found = _DOCUMENT_DATE.search(document.meta.get("date", ""))
    if found is None:
        return None
    try:
        return date(int(found[1]), int(found[2]), int(found[3] or 1))
    except ValueError:
        return None


def depth(wanted: int, allowed: int, total: int) -> int:
    """How deep to search a ranking so that about `wanted` allowed chunks are among the results, when
    `allowed` of the `total` chunks are (twice the expected depth; all chunks when that is most of them)."""
    if allowed <= 0 or total <= 0:
        return 0
    need = math.ceil(2 * wanted * total / allowed)
    return min(total, MAX_DEPTH, max(wanted, need))


def filtered_search(
    search: Callable[[Any, int], tuple[np.ndarray, np.ndarray]], query: Any, want: int, mask: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """`search(query, want)`, or with a `mask` the first `want` allowed results of a deeper search."""
    if mask is None:
        return search(query, want)
    deep = depth(want, int(mask.sum()), len(mask))
    if deep == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
    ids, scores = search(query, deep)
    return restrict(ids, scores, mask, want)


def restrict(ids: np.ndarray, scores: np.ndarray, mask: np.ndarray, keep: int) -> tuple[np.ndarray, np.ndarray]:
    """A ranking with only the allowed chunks, the first `keep` of them."""
    ids = np.asarray(ids)
    valid = (ids >= 0) & (ids < len(mask))
    chosen = np.flatnonzero(valid)[mask[ids[valid]]][:keep]
    return ids[chosen], np.asarray(scores)[chosen]


def _iso(value: str | date | None, name: str) -> date | None:
    if value is None or isinstance(value, date):
        return value
    text = str(value).strip()
    if not text:
        return None
    try:
        if not _ISO.fullmatch(text):
            raise ValueError(text)
        return date.fromisoformat(text)
    except ValueError:
        raise FilterError(
            f"日期“{text}”无法识别：请写成 YYYY-MM-DD，例如 2022-09-20 ({name} must be an ISO date)。"
        ) from None


def _names(entry: str, document: Document) -> bool:
    """An entry names the document: its id, its id without extension, or words of its title."""
    if entry in (document.source, PurePath(document.source).stem):
        return True
    wanted = compact(entry)
    return bool(wanted) and wanted in compact(document.title)
