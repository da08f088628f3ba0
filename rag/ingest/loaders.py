"""Reading source documents: text, Markdown, HTML, Word, PDF and `.jsonl` collections.

A file that cannot be read (unknown type, empty, binary, broken) is reported as a `Skipped`
with a reason a person can act on; the other files are still read.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

TEXT_SUFFIXES = {".txt", ".md", ".markdown", ".text"}
HTML_SUFFIXES = {".html", ".htm", ".xhtml"}
SUPPORTED_SUFFIXES = TEXT_SUFFIXES | HTML_SUFFIXES | {".docx", ".pdf", ".jsonl"}

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


class LoadError(ValueError):
    """A document that cannot be read; the message says why."""


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


def read_text(path: Path) -> RawDocument:
    """`.txt` / `.md`: the decoded text."""
    return RawDocument(path.name, decode_bytes(path.read_bytes()))


def read_html(path: Path) -> RawDocument:
    """`.html`: visible text of the page, without scripts, styles and navigation."""
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(decode_bytes(path.read_bytes()), "html.parser")
    for tag in soup(["script", "style", "noscript", "nav", "header", "footer", "aside", "form"]):
        tag.decompose()
    title = soup.title.get_text(strip=True) if soup.title else None
    if soup.title:
        soup.title.decompose()
    heading = soup.find("h1")
    if heading and title and heading.get_text(strip=True) and heading.get_text(strip=True) in title:
        title = heading.get_text(strip=True)  # "站名 - 标题" → the headline
    for block in soup.find_all(["p", "div", "br", "li", "h1", "h2", "h3", "h4", "h5", "h6", "tr"]):
        block.insert_after("\n")
    text = soup.get_text()
    if not text.strip():
        raise LoadError("网页中没有可见文字 (the page has no visible text)")
    return RawDocument(path.name, text, title=title or None)


def read_docx(path: Path) -> RawDocument:
    """`.docx`: paragraphs and table cells in document order."""
    import docx

    try:
        document = docx.Document(str(path))
    except Exception as exc:  # python-docx raises several types for broken packages
        raise LoadError(f"不是可读的 Word (.docx) 文件 (not a readable .docx file): {exc}") from exc
    lines = [p.text for p in document.paragraphs]
    for table in document.tables:
        for row in table.rows:
            lines.append(" ".join(cell.text for cell in row.cells))
    text = "\n".join(lines)
    if not text.strip():
        raise LoadError("Word 文件中没有文字 (the Word file has no text)")
    title = (document.core_properties.title or "").strip() or None
    return RawDocument(path.name, text, title=title)


def read_pdf(path: Path) -> RawDocument:
    """`.pdf`: the text layer, page by page (scanned pages without text are not read)."""
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(str(path))
        pages = [page.extract_text() or "" for page in reader.pages]
        title = (reader.metadata.title if reader.metadata else None) or None
    except (PdfReadError, OSError, ValueError, KeyError) as exc:
        raise LoadError(f"不是可读的 PDF 文件 (not a readable PDF): {exc}") from exc
    text = "\n".join(pages)
    if not text.strip():
        raise LoadError("PDF 没有文字层，扫描件需要先做 OCR (the PDF has no text layer)")
    return RawDocument(path.name, text, title=title)


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


def load_file(path: Path) -> RawDocument:
    """Read one document file; raises `LoadError` with the reason when it cannot."""
    reader = _READERS.get(path.suffix.lower())
    if reader is None:
        raise LoadError(
            f"不支持的文件类型 (unsupported file type {path.suffix or '(none)'}); 支持 (supported): {supported_types()}"
        )
    try:
        return reader(path)
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
