"""Sentence-aware chunking for Chinese policy text.

Chunks are spans of a document's cleaned text (`doc.text[chunk.start:chunk.end] == chunk.text`),
about `chunk_target` characters, cut after 。！？； and never inside a sentence unless one
sentence alone is too long. Headings (`一、` `（一）` `第X条` or a short line without a full stop)
stay with the body that follows and are recorded as the chunk's heading path; metadata lines
(`时间：…`, a byline, a signature) are never headings. Sentences end around a garbled run
(`clean.garbled_runs`), which belongs to no sentence.
"""

from __future__ import annotations

import hashlib
import re

from rag.ingest.clean import SENTENCE_END, garbled_runs, looks_like_title
from rag.ingest.fields import is_metadata_line
from rag.model import Chunk, Document, Span
from rag.text.normalize import normalize

_CLOSERS = "”’」』）)】》\"'"
# A sentence ends at 。！？； (and ; ! ? which web text uses alike), with its closing quotes; an ASCII
# "?" glued to the next character is usually mojibake, not a question mark, and does not end one.
_TERMINATOR = rf"(?:[。！？；;!]|\?(?=[\s{_CLOSERS}]|$))"
_SENTENCE = re.compile(rf"(?:[^。！？；;!?\n]|\?(?![\s{_CLOSERS}]|$))*(?:{_TERMINATOR}+[{_CLOSERS}]*|(?=\n)|$)")
_CLAUSE_END = "，,、：:"
_NUMERAL = "一二三四五六七八九十百零〇"
_LEVEL1 = re.compile(rf"^(?:[{_NUMERAL}]+[、.．]|第[{_NUMERAL}\d]+(?:章|节|部分|编))")
_ARTICLE = re.compile(rf"^第[{_NUMERAL}\d]+条")
_LEVEL2 = re.compile(rf"^[(（][{_NUMERAL}\d]+[)）]")


_OPENERS = "“‘「『（(【《"
_SEPARATORS = "，,、：:；;"


def sentence_spans(text: str, start: int = 0, end: int | None = None) -> list[Span]:
    """Sentences of `text[start:end]` as spans, each ending after its 。！？； and closing quotes.

    A garbled run ends the sentence before it (without a dangling opening quote or comma) and the
    text after it starts a new one, so the readable parts on both sides survive whole.
    """
    end = len(text) if end is None else end
    spans: list[Span] = []
    position = start
    for run_start, run_end in [*garbled_runs(text, start, end), (end, end)]:
        for match in _SENTENCE.finditer(text, position, run_start):
            s, e = match.start(), match.end()
            while s < e and (text[s].isspace() or (s == position and position > start and text[s] in _SEPARATORS)):
                s += 1
            while e > s and (text[e - 1].isspace() or (e == run_start < end and text[e - 1] in _OPENERS + _SEPARATORS)):
                e -= 1
            if e > s:
                spans.append(Span(s, e))
        position = run_end
    return spans


def _split_long(text: str, span: Span, limit: int) -> list[Span]:
    """Cut a sentence longer than `limit` after commas, or hard at `limit`."""
    pieces: list[Span] = []
    start = span.start
    while span.end - start > limit:
        window = text[start : start + limit]
        cut = max(window.rfind(c) for c in _CLAUSE_END)
        stop = start + (cut + 1 if cut > limit // 3 else limit)
        pieces.append(Span(start, stop))
        start = stop
    pieces.append(Span(start, span.end))
    return pieces


def heading_level(line: str) -> int:
    """1 for a heading line, 2 for a paragraph led by `（一）` or `第X条`, 0 for body text and metadata."""
    if is_metadata_line(line):
        return 0
    if _ARTICLE.match(line):
        return 2
    if looks_like_title(line) and line[-1] not in "：:" and (_LEVEL1.match(line) or not _LEVEL2.match(line)):
        return 1  # (a line ending in a colon leads in: `各单位：`, `现将有关事项通知如下：`)
    if _LEVEL1.match(line) and len(line) <= 80:
        return 1
    if _LEVEL2.match(line):
        return 2
    return 0


def _heading_text(text: str, span: Span) -> str:
    first = sentence_spans(text, span.start, span.end)
    head = text[first[0].start : first[0].end] if first else text[span.start : span.end]
    return head.rstrip(SENTENCE_END)[:60]


def chunk_document(
    doc: Document,
    target: int = 300,
    maximum: int = 400,
    minimum: int = 150,
    overlap: int = 80,
) -> list[Chunk]:
    """Cut a document into chunks; see the module docstring for the rules."""
    text = doc.text
    chunks: list[Chunk] = []
    path: list[str] = []
    current: list[Span] = []  # spans of the chunk being built
    fresh = 0  # how many of them are not in an emitted chunk yet
    heading = ""  # heading path of the chunk being built
    lead: Span | None = None  # heading line(s) waiting for their body

    def size() -> int:
        return current[-1].end - current[0].start if current else 0

    def flush(keep_overlap: bool) -> None:
        nonlocal current, fresh
        if fresh:
            start, end = current[0].start, current[-1].end
            chunks.append(Chunk(f"{doc.source}#{len(chunks)}", doc.source, doc.title, heading, start, end, text))
        carried: list[Span] = []
        if keep_overlap and fresh:
            used = 0
            for span in reversed(current[1:]):
                used += span.end - span.start
                if used > overlap:
                    break
                carried.insert(0, span)
        current, fresh = carried, 0

    def add(span: Span) -> None:
        nonlocal heading, fresh
        if current and span.end - current[0].start > maximum:
            flush(keep_overlap=True)
        if not current:
            heading = " > ".join(path)
        current.append(span)
        fresh += 1

    metadata = [span for span in doc.meta_spans.values() if len(span) == 2]
    position = 0
    for line in text.split("\n"):
        line_span = Span(position, position + len(line))
        position += len(line) + 1
        if not line.strip():
            continue
        level = heading_level(line)
        if level and any(line_span.start <= s and e <= line_span.end for s, e in metadata):
            level = 0  # a signature's issuer line, say: metadata, not a heading
        if level == 1:
            name = line.rstrip(SENTENCE_END)[:60]
            if lead is None:
                flush(keep_overlap=False)
                path = [name]
            else:  # a heading right under another: the first one becomes text of this section
                add(lead)
                path = [*path[:1], name]
            lead = line_span
            continue
        if level == 2:
            if size() >= minimum or fresh == 0:
                flush(keep_overlap=False)
            path = [*path[:1], _heading_text(text, line_span)]
        sentences: list[Span] = []
        for span in sentence_spans(text, line_span.start, line_span.end):
            sentences.extend(_split_long(text, span, maximum))
        if lead is not None:
            sentences[0] = Span(lead.start, sentences[0].end)
            lead = None
        for span in sentences:
            add(span)
        if size() >= target:
            flush(keep_overlap=True)
    if lead is not None:
        add(lead)
    flush(keep_overlap=False)
    return chunks


#: Metadata that says which document a chunk belongs to, in the order it goes into the header.
HEADER_META = ("issuer", "publisher", "doc_number", "written_date", "date")


def context_header(chunk: Chunk, document: Document) -> str:
    """What a chunk is part of: its document's title (unless made up from the text) and issuing
    body, document number and date where the metadata has them. Indexed, never quoted."""
    parts = [] if document.meta.get("title_derived") else [chunk.title]
    for key in HEADER_META:
        value = str(document.meta.get(key) or "").strip()[:80]
        if value and not any(value in part for part in parts):
            parts.append(value)
    return " ".join(part for part in parts if part)


def index_text(chunk: Chunk, document: Document) -> str:
    """What is embedded and tokenized for a chunk: its context header, heading path and text."""
    heading = chunk.heading if chunk.heading and not chunk.text.startswith(chunk.heading[:10]) else ""
    return normalize("\n".join(part for part in (context_header(chunk, document), heading, chunk.text) if part))


def text_hash(text: str) -> bytes:
    """The key of the vector and token caches: blake2b-128 of an embedded (index) text."""
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).digest()
