"""Reading source documents: text, Markdown, HTML, Word, PDF and `.jsonl` collections.

A file that cannot be read (unknown type, empty, binary, broken) is reported as a `Skipped`
with a reason a person can act on; the other files are still read. An upload is read with a `limit`
on its text: `.docx` and `.html` are parsed as a stream (expat, lxml's HTML parser: constant work per
tag, whatever the nesting) and refused (`TooLong`) as soon as their text passes it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO
from xml.etree import ElementTree
from xml.parsers import expat

log = logging.getLogger(__name__)

TEXT_SUFFIXES = {".txt", ".md", ".markdown", ".text"}
HTML_SUFFIXES = {".html", ".htm", ".xhtml"}
SUPPORTED_SUFFIXES = TEXT_SUFFIXES | HTML_SUFFIXES | {".docx", ".pdf", ".jsonl"}

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


class LoadError(ValueError):
    """A document that cannot be read; the message says why."""


class TooLong(LoadError):
    """A document whose text passes the limit of one upload, found while reading it (reading stops there)."""

    def __init__(self, limit: int, what: str = "") -> None:
        what = what or f"提取出的文字已超过单个文档的上限 {limit:,} 个字符"
        super().__init__(f"文档过长：{what}；请拆分成几个文件后上传。")
        self.limit = limit


class _Text:
    """Text read piece by piece, refused as soon as it passes `limit` characters (None: no limit)."""

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self.parts: list[str] = []
        self.size = 0

    def count(self, characters: int) -> None:
        self.size += characters
        if self.limit is not None and self.size > self.limit:
            raise TooLong(self.limit)

    def add(self, piece: str) -> None:
        self.count(len(piece))
        self.parts.append(piece)


@dataclass
class RawDocument:
    """A document as read, before cleaning."""

    source: str
    """Source id: the file name inside the corpus folder, or the `id` of a `.jsonl` line."""
    text: str
    title: str | None = None
    meta: dict[str, str] = field(default_factory=dict)

    @property
    def fingerprint(self) -> str:
        """Content hash: an index re-embeds a document only when this changes."""
        digest = hashlib.sha256()
        digest.update((self.title or "").encode("utf-8") + b"\0" + self.text.encode("utf-8"))
        return digest.hexdigest()


@dataclass
class Skipped:
    """A file (or `.jsonl` line) that was not read, and why."""

    source: str
    reason: str


# --- bytes → text ---------------------------------------------------------------------------


def decode_bytes(data: bytes) -> str:
    """Decode a text file: UTF-8 (with or without BOM), UTF-16 (BOM or not), GB18030/GBK.

    Raises `LoadError` for empty or binary content.
    """
    if not data.strip():
        raise LoadError(_EMPTY)
    try:
        if data.startswith(b"\xef\xbb\xbf"):
            text = data[3:].decode("utf-8", errors="replace")
        elif data.startswith((b"\xff\xfe", b"\xfe\xff")):
            text = data.decode("utf-16")
        else:
            text = _decode_unmarked(data)
    except UnicodeDecodeError as exc:
        raise LoadError(_BINARY) from exc
    if len(_CONTROL.findall(text[:4096])) > 8:
        raise LoadError(_BINARY)
    if not text.strip():
        raise LoadError(_EMPTY)
    return text


_EMPTY = "文件是空的 (the file is empty)"
_BINARY = "文件像是二进制文件，不是文本 (the file looks binary, not text)"
_TEXTLIKE = re.compile(r"[\u4e00-\u9fff\u3400-\u4dbf\u3000-\u303f\uff00-\uffef\u2000-\u206f\x20-\x7e\s]")


def _decode_unmarked(data: bytes) -> str:
    """UTF-8, else UTF-16 without BOM when it decodes to text-like characters, else GB18030."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    if len(data) % 2 == 0:
        for codec in ("utf-16-le", "utf-16-be"):
            try:
                text = data.decode(codec)
            except UnicodeDecodeError:
                continue
            sample = text[:2048]
            if len(_TEXTLIKE.findall(sample)) >= 0.9 * len(sample):
                return text
    if b"\x00" in data[:4096]:
        raise LoadError(_BINARY)
    try:
        return data.decode("gb18030")
    except UnicodeDecodeError:
        pass
    from charset_normalizer import from_bytes

    best = from_bytes(data).best()
    if best is None:
        raise LoadError("无法识别文本编码，请另存为 UTF-8 (the text encoding could not be recognised)")
    return str(best)


# --- one reader per format ------------------------------------------------------------------


def read_text(path: Path, limit: int | None = None) -> RawDocument:
    """`.txt` / `.md`: the decoded text."""
    text = decode_bytes(path.read_bytes())
    _Text(limit).count(len(text))
    return RawDocument(path.name, text)


# --- HTML: lxml's parser with a target, constant work per tag ----------------------------------

_UNSEEN = frozenset("script style noscript nav header footer aside template title select button textarea".split())
"""Not the page's content. A `<form>` is: many sites (ASP.NET) wrap the whole page in one; its controls are not."""
_BLOCKS = frozenset("p div br li ul ol dt dd h1 h2 h3 h4 h5 h6 tr table caption section article blockquote pre".split())
_CELLS = frozenset({"td", "th"})


class _PageText:
    """An lxml parser target: the visible text of a page — a block ends a line, table cells are spaced —
    with its `<title>` and first `<h1>`. No tree is built: nesting costs nothing."""

    def __init__(self, limit: int | None) -> None:
        self.text = _Text(limit)
        self.unseen = 0
        self.title: list[str] | None = None
        self.heading: list[str] | None = None
        self.reading: list[str] | None = None  # the title or heading being read
        self.line_start = True

    def start(self, tag: str, attrib: object) -> None:
        if tag == "title" and self.title is None:
            self.reading = self.title = []
        elif tag == "h1" and self.heading is None and not self.unseen:
            self.reading = self.heading = []
        self.unseen += tag in _UNSEEN
        self._block(tag)

    def end(self, tag: str) -> None:
        self.reading = None if tag in ("title", "h1") else self.reading
        self.unseen = max(0, self.unseen - (tag in _UNSEEN))
        self._block(tag)
        if tag in _CELLS and not self.unseen:
            self.text.add(" ")

    def data(self, data: str) -> None:
        if self.reading is not None:
            self.reading.append(data.strip())
        if self.unseen or (self.line_start and data.isspace()):
            return
        self.text.add(data)
        self.line_start = False

    def close(self) -> None:
        return None

    def _block(self, tag: str) -> None:
        if tag in _BLOCKS and not self.unseen and not self.line_start:
            self.text.add("\n")
            self.line_start = True


def read_html(path: Path, limit: int | None = None) -> RawDocument:
    """`.html`: visible text of the page, without scripts, styles and navigation; its headline as the
    title when the `<title>` holds it (`站名 - 标题`)."""
    from lxml import etree

    data = decode_bytes(path.read_bytes()).encode("utf-8")
    page = _PageText(limit)
    parser = etree.HTMLParser(target=page, encoding="utf-8", no_network=True, remove_comments=True)
    for start in range(0, len(data), 1 << 16):
        parser.feed(data[start : start + (1 << 16)])
    parser.close()
    text = "".join(page.text.parts)
    if not text.strip():
        raise LoadError("网页中没有可见文字 (the page has no visible text)")
    title, heading = "".join(page.title or []), "".join(page.heading or [])
    return RawDocument(path.name, text, title=heading if heading and heading in title else title or None)


# --- Word: the body part streamed through expat --------------------------------------------

_WORD = "http://schemas.openxmlformats.org/wordprocessingml/2006/main}"
_NOT_BODY = frozenset({_WORD + "txbxContent", "http://schemas.openxmlformats.org/markup-compatibility/2006}Fallback"})
"""Text boxes and the fallback copy of alternate content: not read (as python-docx never did)."""
_WORD_TAGS = {_WORD + tag: tag for tag in ("p", "tc", "tr", "r", "t", "tab", "br", "cr")}
_XML_BYTES_PER_CHARACTER = 100
"""Bytes of body XML allowed per character of the limit: a part of far more XML than text is refused early."""


class _WordText:
    """An expat handler: a Word body's paragraphs and table rows (cells spaced), in document order."""

    def __init__(self, limit: int | None) -> None:
        self.text = _Text(limit)
        self.paragraph: list[str] | None = None
        self.run = self.in_text = False
        self.hidden = 0  # inside text boxes or fallbacks
        self.cells: list[list[str]] = []
        self.rows: list[list[str]] = []

    def start(self, name: str, attrs: dict[str, str]) -> None:
        tag = _WORD_TAGS.get(name)
        if self.hidden or tag is None:
            self.hidden += name in _NOT_BODY
            return
        if tag == "p":
            self.paragraph = []
        elif tag == "tc":
            self.cells.append([])
        elif tag == "tr":
            self.rows.append([])
        elif tag == "r":
            self.run = True
        elif self.run and self.paragraph is not None:
            self.in_text = tag == "t"
            if tag == "tab" or (tag in ("br", "cr") and attrs.get(_WORD + "type", "textWrapping") == "textWrapping"):
                self.paragraph.append("\t" if tag == "tab" else "\n")

    def end(self, name: str) -> None:
        tag = _WORD_TAGS.get(name)
        if self.hidden or tag is None:
            self.hidden -= self.hidden > 0 and name in _NOT_BODY
            return
        if tag == "t":
            self.in_text = False
        elif tag == "r":
            self.run = False
        elif tag == "p" and self.paragraph is not None:
            self._line("".join(self.paragraph))
            self.paragraph = None
        elif tag == "tc" and self.cells:
            cell = "\n".join(self.cells.pop())
            if self.rows:
                self.rows[-1].append(cell)
        elif tag == "tr" and self.rows:
            self._line(" ".join(self.rows.pop()))

    def data(self, data: str) -> None:
        if self.in_text and not self.hidden and self.paragraph is not None:
            self.text.count(len(data))
            self.paragraph.append(data)

    def _line(self, line: str) -> None:
        if self.cells:
            self.cells[-1].append(line)
        else:
            self.text.count(1)
            self.text.parts.append(line)


def _word_body(stream: BinaryIO, limit: int | None) -> str:
    """The text of a Word body part, parsed as it is decompressed and refused as soon as it passes `limit`."""
    handler = _WordText(limit)
    parser = expat.ParserCreate(namespace_separator="}")
    parser.buffer_text = True
    parser.StartElementHandler = handler.start
    parser.EndElementHandler = handler.end
    parser.CharacterDataHandler = handler.data
    budget = None if limit is None else limit * _XML_BYTES_PER_CHARACTER
    read = 0
    while chunk := stream.read(1 << 16):
        read += len(chunk)
        if budget is not None and read > budget:
            raise TooLong(limit or 0, f"Word 正文解压后已超过 {budget / 1e6:.0f} MB（单个文档上限 {limit:,} 个字符）")
        parser.Parse(chunk, False)
    parser.Parse(b"", True)
    return "\n".join(handler.text.parts)


def _package(archive: zipfile.ZipFile) -> tuple[str, str | None]:
    """A Word package's main part (named in `_rels/.rels`) and the title of its core properties."""
    parts = {"/officeDocument": "word/document.xml", "/core-properties": ""}
    if archive.getinfo("_rels/.rels").file_size < 1 << 20:
        for relation in ElementTree.fromstring(archive.read("_rels/.rels")):
            kind = next((k for k in parts if relation.get("Type", "").endswith(k)), None)
            parts.update({kind: relation.get("Target", "").lstrip("/")} if kind else {})
    core = parts["/core-properties"]
    if not core or core not in archive.namelist() or archive.getinfo(core).file_size >= 1 << 20:
        return parts["/officeDocument"], None
    title = ElementTree.fromstring(archive.read(core)).find("{http://purl.org/dc/elements/1.1/}title")
    return parts["/officeDocument"], (title.text or "").strip() or None if title is not None else None


def read_docx(path: Path, limit: int | None = None) -> RawDocument:
    """`.docx`: paragraphs and table rows (cells spaced) in document order, streamed."""
    try:
        with zipfile.ZipFile(path) as archive:
            main, title = _package(archive)
            with archive.open(main) as stream:
                text = _word_body(stream, limit)
    except LoadError:
        raise
    except (zipfile.BadZipFile, zlib.error, KeyError, EOFError, ValueError, RuntimeError, NotImplementedError,
            expat.ExpatError, ElementTree.ParseError) as exc:  # fmt: skip
        raise LoadError(f"不是可读的 Word (.docx) 文件 (not a readable .docx file): {exc}") from exc
    if not text.strip():
        raise LoadError("Word 文件中没有文字 (the Word file has no text)")
    return RawDocument(path.name, text, title=title)


def read_pdf(path: Path, limit: int | None = None) -> RawDocument:
    """`.pdf`: the text layer, page by page — pages apart by a form feed, for cleaning to see running
    headers — stopped as soon as it passes `limit` (scanned pages without text are not read)."""
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    text = _Text(limit)
    try:
        reader = PdfReader(str(path))
        for number, page in enumerate(reader.pages):
            text.add(("\f" if number else "") + (page.extract_text() or ""))
        title = (reader.metadata.title if reader.metadata else None) or None
    except LoadError:
        raise
    except (PdfReadError, OSError, ValueError, KeyError) as exc:
        raise LoadError(f"不是可读的 PDF 文件 (not a readable PDF): {exc}") from exc
    if not any(part.strip() for part in text.parts):
        raise LoadError("PDF 没有文字层，扫描件需要先做 OCR (the PDF has no text layer)")
    return RawDocument(path.name, "".join(text.parts), title=title)


def read_jsonl(path: Path) -> Iterator[RawDocument | Skipped]:
    """`.jsonl`: one `{"id", "title", "text"}` document per line; the id is the source id."""
    with path.open(encoding="utf-8-sig") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            where = f"{path.name}:{number}"
            try:
                record = json.loads(line)
                source, text = str(record["id"]), record["text"]
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                yield Skipped(where, f'not a {{"id", "title", "text"}} object ({exc})')
                continue
            if not isinstance(text, str) or not text.strip():
                yield Skipped(source, "empty text")
                continue
            yield RawDocument(source, text, title=record.get("title") or None)


_READERS = {".docx": read_docx, ".pdf": read_pdf}
_READERS.update({suffix: read_text for suffix in TEXT_SUFFIXES})
_READERS.update({suffix: read_html for suffix in HTML_SUFFIXES})


def load_file(path: Path, limit: int | None = None) -> RawDocument:
    """Read one document file; raises `LoadError` with the reason when it cannot, `TooLong` as soon
    as its text passes `limit` characters (an upload: `Settings.max_upload_chars`)."""
    reader = _READERS.get(path.suffix.lower())
    if reader is None:
        raise LoadError(
            f"不支持的文件类型 (unsupported file type {path.suffix or '(none)'}); 支持 (supported): {supported_types()}"
        )
    try:
        return reader(path, limit)
    except OSError as exc:
        raise LoadError(f"无法读取文件 (cannot read the file): {exc.strerror or exc}") from exc


def supported_types() -> str:
    return " ".join(sorted(SUPPORTED_SUFFIXES))


def iter_corpus(path: Path) -> Iterator[RawDocument | Skipped]:
    """Every document under `path` (a folder, a document file or a `.jsonl` file), in name order."""
    if not path.exists():
        raise FileNotFoundError(f"corpus not found: {path}")
    files = [path] if path.is_file() else sorted(p for p in path.iterdir() if p.is_file())
    for file in files:
        if file.name.startswith("."):
            continue
        if file.suffix.lower() == ".jsonl":
            try:
                yield from read_jsonl(file)
            except (OSError, UnicodeDecodeError) as exc:
                yield Skipped(file.name, f"cannot read the file: {exc}")
            continue
        try:
            yield load_file(file)
        except LoadError as exc:
            yield Skipped(file.name, str(exc))


def load_corpus(path: Path) -> tuple[list[RawDocument], list[Skipped]]:
    """All readable documents under `path`, and the ones skipped; each skip is logged."""
    documents: list[RawDocument] = []
    skipped: list[Skipped] = []
    seen: set[str] = set()
    for item in iter_corpus(path):
        if isinstance(item, Skipped):
            log.warning("skipped %s: %s", item.source, item.reason)
            skipped.append(item)
        elif item.source in seen:
            skipped.append(Skipped(item.source, "duplicate source id"))
            log.warning("skipped %s: duplicate source id", item.source)
        else:
            seen.add(item.source)
            documents.append(item)
    return documents, skipped
