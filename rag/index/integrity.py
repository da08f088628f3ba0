"""Checking a build on disk: the size and checksum of every file, recorded in the manifest when the
build is written, and the agreement of documents, chunks, vectors and tokens.

Three depths, by cost:

- **load** (every start and reload): the manifest is a well-formed object; every recorded file is
  there with its recorded size; every file questions read (`documents.jsonl`, `chunks.jsonl`,
  `dense.faiss`, the BM25 vocabularies and their memory-mapped postings, a Milvus Lite collection's
  files) matches its checksum, so a flipped byte in them cannot give silent wrong answers. Files only
  the next build reads (`vectors.npy`, text hashes, tokens) by size only.
- **reuse** (a build taking vectors or tokens from an earlier build): the checksums of what it takes.
- **full** (`rag doctor`, `rag index --check`): every checksum, and the structure; a build that
  recorded no checksums cannot be verified, which is a problem (kind `unverified`), not health.

A file checked once by this process is not hashed again while its size, modification time and inode
stay the same (a build's own files are registered as it writes them).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MANIFEST = "manifest.json"
LOAD_READS_WHOLE = (
    "documents.jsonl",
    "chunks.jsonl",
    "dense.faiss",
    "vocab.index.json",
    "params.index.json",
    "lexicon_words.json",
    "lexicon_bigrams.json",
    "data.csc.index.npy",
    "indices.csc.index.npy",
    "indptr.csc.index.npy",
)
"""Files (by name) that questions depend on byte by byte, checksummed at load time: those a load reads
whole, and the BM25 postings, memory-mapped and read by questions (hashing them while the load parses
the others costs little: `docs/ingest.md`)."""
SERVING = ("manifest.json", "documents.jsonl", "chunks.jsonl", "dense.faiss", "bm25_", "lexicon_", "Milvus ")
"""Files (by prefix) that questions are answered from; damage elsewhere only affects the next build."""

_verified: dict[tuple[str, int, int, int], str] = {}
"""(path, size, mtime_ns, inode) → sha256 of files this process has hashed or written."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a build: which file, what (in English), and its kind."""

    file: str
    what: str
    kind: str = "structure"
    """`missing`, `size`, `checksum`, `unreadable`, `structure` (files that disagree) or `unverified`
    (no checksums recorded: the file may be whole, but nothing can show it)."""

    @property
    def serves(self) -> bool:
        """Is it in a file questions are answered from?"""
        return self.file.startswith(SERVING)

    def __str__(self) -> str:
        return f"{self.file}: {self.what}"

    def chinese(self) -> str:
        """The problem for the chat page: `dense.faiss 校验和不符（文件已损坏）`."""
        what = {
            "missing": "缺失",
            "size": "大小不符（文件被截断或改动）",
            "checksum": "校验和不符（文件已损坏）",
            "unreadable": "无法读取",
            "unverified": "没有记录校验和，无法验证",
        }.get(self.kind, "与其他索引文件不一致")
        return f"{self.file} {what}"


class Damaged(Exception):
    """A build that does not verify; `problems` says where."""

    def __init__(self, folder: Path, problems: list[Problem]) -> None:
        self.folder = folder
        self.problems = problems
        super().__init__(summary(problems))


def summary(problems: list[Problem], limit: int = 3) -> str:
    """The problems in one line."""
    text = "; ".join(str(p) for p in problems[:limit])
    return text + (f" (and {len(problems) - limit} more)" if len(problems) > limit else "")


def summary_chinese(problems: list[Problem], limit: int = 3) -> str:
    """The problems in one line, in Chinese."""
    text = "；".join(p.chinese() for p in problems[:limit])
    return text + (f"等 {len(problems)} 处" if len(problems) > limit else "")


# --- checksums --------------------------------------------------------------------------------


def _key(path: Path) -> tuple[str, int, int, int]:
    stat = path.stat()
    return (str(path.resolve()), stat.st_size, stat.st_mtime_ns, stat.st_ino)


def digest(path: Path) -> str:
    """sha256 of a file (from this process's memo when the file is unchanged since it was hashed)."""
    key = _key(path)
    known = _verified.get(key)
    if known is None:
        sha = hashlib.sha256()
        buffer = memoryview(bytearray(1 << 20))
        with open(path, "rb", buffering=0) as handle:
            while size := handle.readinto(buffer):
                sha.update(buffer[:size])
        known = _verified[key] = sha.hexdigest()
    return known


def remember(path: Path, sha256: str) -> None:
    """Register the checksum of a file this process just wrote (so it is not hashed again)."""
    _verified[_key(path)] = sha256


def record(folder: Path) -> dict[str, dict[str, Any]]:
    """Size and sha256 of every file of a build but the manifest, by path relative to the build."""
    return record_files(folder, (p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST))


def record_files(root: Path, paths: Iterable[Path]) -> dict[str, dict[str, Any]]:
    """Size and sha256 of files, by path relative to `root`."""
    return {p.relative_to(root).as_posix(): {"size": p.stat().st_size, "sha256": digest(p)} for p in sorted(paths)}


# --- the manifest -----------------------------------------------------------------------------


def read_manifest(folder: Path) -> dict[str, Any]:
    """The manifest of a build; raises `Damaged` when it is missing, not JSON, or lacks a section."""
    path = folder / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise Damaged(folder, [Problem(MANIFEST, "missing", "missing")]) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise Damaged(folder, [Problem(MANIFEST, f"unreadable ({exc})", "unreadable")]) from None
    problems = []
    if not isinstance(manifest, dict):
        problems.append(Problem(MANIFEST, f"not an object but {type(manifest).__name__}", "unreadable"))
    else:
        model = manifest.get("model")
        if not isinstance(model, dict) or not isinstance(model.get("name"), str):
            problems.append(Problem(MANIFEST, "no model section (name of the embedding model)"))
        if not isinstance(manifest.get("params"), dict):
            problems.append(Problem(MANIFEST, "no params section"))
        if not isinstance(manifest.get("documents"), dict) or not isinstance(manifest.get("chunks"), int):
            problems.append(Problem(MANIFEST, "no documents or chunks count"))
        if "files" in manifest and not isinstance(manifest["files"], dict):
            problems.append(Problem(MANIFEST, "files section is not an object"))
    if problems:
        raise Damaged(folder, problems)
    return manifest


# --- files ------------------------------------------------------------------------------------


def check_files(
    folder: Path, manifest: dict[str, Any], depth: str = "load", only: Iterable[str] | None = None
) -> list[Problem]:
    """Problems of the recorded files of a build at `depth` (`sizes`, `load`, `full`); `only` limits
    the check to some files, which are then all checksummed (the `reuse` depth). A build written
    before checksums were recorded has nothing to check but, at `full` depth, says it cannot be verified."""
    files: dict[str, dict[str, Any]] = manifest.get("files") or {}
    if not files and depth == "full" and only is None:
        return [Problem(MANIFEST, "no checksums recorded: cannot verify the build's files", "unverified")]
    return check_recorded(folder, files, depth, only)


def check_recorded(
    root: Path,
    files: dict[str, dict[str, Any]],
    depth: str = "load",
    only: Iterable[str] | None = None,
    shown: str = "",
    all_serve: bool = False,
) -> list[Problem]:
    """Problems of `files` (path under `root` → recorded size and sha256) at `depth`, as in
    `check_files`; a problem names its file as `shown` + its path. `all_serve`: every file is read by
    questions (a Milvus Lite collection's), so each is checksummed at `load` depth."""
    names = list(files) if only is None else [name for name in only if name in files]
    problems = []
    for name in names:
        expected = files[name]
        path = root / name
        label = shown + name
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            problems.append(Problem(label, "missing", "missing"))
            continue
        except OSError as exc:
            problems.append(Problem(label, f"unreadable ({exc.strerror or exc})", "unreadable"))
            continue
        if size != expected.get("size"):
            short = "truncated" if size < expected.get("size", 0) else "longer than written"
            problems.append(Problem(label, f"{size:,} bytes, {expected.get('size', 0):,} written ({short})", "size"))
            continue
        questions_read = all_serve or Path(name).name in LOAD_READS_WHOLE
        whole = only is not None or depth == "full" or (depth == "load" and questions_read)
        if whole and digest(path) != expected.get("sha256"):
            problems.append(Problem(label, "checksum differs (corrupted)", "checksum"))
    return problems


def check_structure(
    documents: dict[str, Any], chunks: list[Any], manifest: dict[str, Any], counts: dict[str, int]
) -> list[Problem]:
    """Do documents, chunks and the other structures agree? `counts` holds the number of rows of each
    other structure (dense index, vectors, BM25 indexes, token offsets - 1), all of which must equal
    the number of chunks."""
    problems = []
    n = len(chunks)
    if manifest.get("chunks") != n:
        problems.append(Problem("chunks.jsonl", f"{n} chunks, the manifest says {manifest.get('chunks')}"))
    for name, count in counts.items():
        if count != n:
            problems.append(Problem(name, f"{count} rows for {n} chunks"))
    listed = manifest.get("documents", {})
    if list(documents) != list(listed):
        problems.append(Problem("documents.jsonl", f"{len(documents)} documents, the manifest lists {len(listed)}"))
    order = {source: i for i, source in enumerate(documents)}
    expected_next: dict[str, int] = {}
    finished: set[str] = set()
    previous_source = None
    for row, chunk in enumerate(chunks):
        document = documents.get(chunk.source)
        where = f"chunk {row} ({chunk.id})"
        if document is None:
            problems.append(Problem("chunks.jsonl", f"{where} belongs to no document"))
        elif not 0 <= chunk.start < chunk.end <= len(document.text):
            problems.append(Problem("chunks.jsonl", f"{where} has offsets outside its document's text"))
        if chunk.source != previous_source:
            if chunk.source in finished or order.get(chunk.source, -1) < order.get(previous_source, -1):
                problems.append(Problem("chunks.jsonl", f"{where} is out of order"))
            if previous_source is not None:
                finished.add(previous_source)
            previous_source = chunk.source
        number = expected_next.get(chunk.source, 0)
        if chunk.id != f"{chunk.source}#{number}":
            problems.append(Problem("chunks.jsonl", f"{where} is out of order (expected #{number})"))
        expected_next[chunk.source] = number + 1
        if len(problems) > 20:
            break
    for source, entry in listed.items():
        if isinstance(entry, dict) and entry.get("chunks") != expected_next.get(source, 0):
            problems.append(
                Problem(
                    "chunks.jsonl", f"{source} has {expected_next.get(source, 0)} chunks, {entry.get('chunks')} written"
                )
            )
            break
    return problems
