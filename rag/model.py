"""The data types every stage shares: a cleaned `Document`, its `Chunk`s and `Span`s, a retrieved `Hit`
and the `Passage` shown under an answer. Nothing else lives here."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Document:
    """A cleaned document; chunk offsets and citation quotes refer to `text`."""

    source: str
    title: str
    text: str
    meta: dict[str, str] = field(default_factory=dict)
    """Metadata values: date, author, affiliation, publisher, doc_number, issuer, written_date, byline, …"""
    fingerprint: str = ""
    meta_spans: dict[str, list[int]] = field(default_factory=dict)
    """Metadata key → `[start, end]` of its quotable value in `text` (`text[start:end] == meta[key]`).
    Sentences overlapping a span are metadata, not content."""


@dataclass
class Chunk:
    """A passage of one document, with where it sits in that document."""

    id: str
    source: str
    title: str
    heading: str
    """Heading path, outermost first, joined with ` > ` (empty before the first heading)."""
    start: int
    end: int
    doc_text: str = field(repr=False, compare=False)
    """The cleaned text of the whole document (shared by its chunks, not copied)."""

    @property
    def text(self) -> str:
        """The chunk's text: `doc_text[start:end]`."""
        return self.doc_text[self.start : self.end]

    def to_dict(self) -> dict[str, object]:
        """The chunk without its document's text (stored once, with the document)."""
        return {k: v for k, v in self.__dict__.items() if k != "doc_text"}


@dataclass
class Span:
    start: int
    end: int


@dataclass
class Hit:
    """One retrieved chunk with its fused score and its place in each ranking."""

    rank: int
    chunk: Chunk
    score: float
    dense: float
    """Cosine similarity of question and chunk (0 when the chunk was not among the dense candidates)."""
    ranks: dict[str, int] = field(default_factory=dict)
    names_asked: tuple[str, ...] = ()
    """Places, organisations, people, years and titles the question names (`rag.query.names`)."""
    names_found: tuple[str, ...] = ()
    """Those of `names_asked` that this chunk's document carries (title, metadata or text)."""


@dataclass
class Passage:
    """A retrieved chunk as shown under an answer."""

    rank: int
    source: str
    chunk_id: str
    title: str
    heading: str
    score: float
    text: str
    start: int
    end: int
    kb: str = "default"
    """The knowledge base the document is in."""

    @classmethod
    def from_hit(cls, hit: Hit) -> Passage:
        c = hit.chunk
        return cls(hit.rank, c.source, c.id, c.title, c.heading, hit.score, c.text, c.start, c.end)

    def to_dict(self) -> dict[str, Any]:
        """The stable JSON form (README, “JSON output”)."""
        return {
            "rank": self.rank,
            "source": self.source,
            "chunk_id": self.chunk_id,
            "title": self.title,
            "heading": self.heading,
            "score": round(self.score, 6),
            "text": self.text,
            "kb": self.kb,
        }
