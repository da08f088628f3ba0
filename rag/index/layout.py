"""The layout of an index folder and its builds: file names, the live build, reading records back.

An index folder holds `CURRENT` (the name of the live build) and one or two `build-*` folders, each
complete: manifest.json, documents.jsonl, chunks.jsonl, vectors.npy, text_hashes.npy, dense.faiss,
bm25_words/ and bm25_bigrams/, tokens_*.npy and offsets_*.npy (`index/README.md` says what each is).
A build on the Milvus store has `lexicon_words.json` and `lexicon_bigrams.json` instead of
dense.faiss and the bm25 folders, whose place takes a Milvus collection (`rag.index.backends.milvus`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import numpy as np

from rag.index.integrity import MANIFEST, Damaged, Problem
from rag.model import Chunk, Document
from rag.text.tokenize import TOKENIZERS

FORMAT = 1
CURRENT = "CURRENT"
LEXICAL = tuple(TOKENIZERS)
"""The lexical indexes of a build, one per tokenizer (`words`, `bigrams`)."""
HASHES = "text_hashes.npy"


class IndexUnavailable(RuntimeError):
    """The index is missing, damaged or was built with another model; the message says what to do."""


def index_folder(index_dir: Path) -> Path:
    """`index_dir` as a path; refused (with what to do) when it is a file."""
    index_dir = Path(index_dir)
    if index_dir.exists() and not index_dir.is_dir():
        raise IndexUnavailable(
            f"{index_dir} is a file, not a folder: give --index (or RAG_INDEX) the folder that holds, "
            "or will hold, the index"
        )
    return index_dir


def current_build(index_dir: Path) -> Path | None:
    """The build folder `CURRENT` names (it may be damaged), or None when the index was never built.

    When `CURRENT` cannot be read (see `pointer_problem`), the newest build folder with a manifest
    stands in for it: loading verifies it (and falls back further), and `rag index` re-uses what of
    it verifies, then replaces `CURRENT`."""
    index_dir = index_folder(index_dir)
    name, problem = _read_pointer(index_dir / CURRENT)
    if problem is not None:
        complete = [folder for folder in builds(index_dir) if (folder / MANIFEST).is_file()]
        return complete[0] if complete else None
    return None if name is None else index_dir / name


def pointer_problem(index_dir: Path) -> str | None:
    """What is wrong with `CURRENT` (`a folder, not a file`, `not UTF-8 text`, `unreadable (…)`,
    `no build name (…)`), or None when it is a readable pointer or absent."""
    return _read_pointer(index_folder(index_dir) / CURRENT)[1]


def _read_pointer(pointer: Path) -> tuple[str | None, str | None]:
    """(build name, None), (None, None) when there is no `CURRENT`, or (None, what is wrong with it)."""
    try:
        if not pointer.exists() and not pointer.is_symlink():
            return None, None
        if not pointer.is_file():
            return None, "a folder, not a file" if pointer.is_dir() else "not a file"
        name = pointer.read_bytes().decode("utf-8").strip()
    except UnicodeDecodeError:
        return None, "not UTF-8 text"
    except OSError as exc:
        return None, f"unreadable ({exc.strerror or exc})"
    if not name.startswith("build-") or "/" in name or "\\" in name:
        return None, f"no build name ({name[:40]!r})"
    return name, None


def read_records(folder: Path) -> tuple[dict[str, Document], list[Chunk]]:
    """The documents and chunks of a build (`Damaged` when a file cannot be parsed)."""
    with reading(folder, "documents.jsonl"):
        documents = {d.source: d for d in (Document(**r) for r in read_jsonl(folder / "documents.jsonl"))}
    with reading(folder, "chunks.jsonl"):
        chunks = [chunk_record(r, documents) for r in read_jsonl(folder / "chunks.jsonl")]
    return documents, chunks


def stored_rows(folder: Path) -> dict[str, int]:
    """How many chunks `vectors.npy`, the text hashes and the token offsets hold (read from the headers)."""
    rows = {}
    for name in ("vectors.npy", HASHES, *(f"offsets_{n}.npy" for n in LEXICAL)):
        path = folder / name
        if path.is_file():
            try:
                shape = np.load(path, mmap_mode="r").shape
                rows[name] = shape[0] - (1 if name.startswith("offsets_") else 0)
            except (OSError, ValueError):
                rows[name] = -1
    return rows


@contextmanager
def reading(folder: Path, name: str) -> Iterator[None]:
    """Turn any failure to read one file of a build into `Damaged` naming that file."""
    try:
        yield
    except IndexUnavailable:  # e.g. the Milvus server cannot be reached: not damage of this build
        raise
    except (OSError, ValueError, KeyError, TypeError, RuntimeError, AttributeError, IndexError) as exc:
        problem = Problem(name, f"unreadable ({type(exc).__name__}: {str(exc)[:120]})", "unreadable")
        raise Damaged(folder, [problem]) from None


def chunk_record(record: dict[str, Any], documents: dict[str, Document]) -> Chunk:
    """A chunk record of `chunks.jsonl` over its document's text (a `text` field, as older builds wrote, is ignored)."""
    record.pop("text", None)
    document = documents.get(record["source"])
    return Chunk(**record, doc_text=document.text if document is not None else "")  # (no document: see check_structure)


def read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            if line.strip():
                yield json.loads(line)


def builds(index_dir: Path) -> list[Path]:
    """Build folders, newest first."""
    folders = [p for p in index_dir.glob("build-*") if p.is_dir()]
    return sorted(folders, key=lambda p: p.stat().st_mtime, reverse=True)


def other_builds(index_dir: Path, exclude: Path | None) -> list[Path]:
    """Build folders but `exclude`, newest first."""
    return [p for p in builds(index_dir) if exclude is None or p.name != exclude.name]


def vocabulary_file(folder: Path, name: str) -> str:
    """Which file of a build holds the vocabulary of lexical index `name`: the bm25s index's of a
    local build, `lexicon_<name>.json` of a Milvus build."""
    lexicon = f"lexicon_{name}.json"
    return lexicon if (folder / lexicon).is_file() else f"bm25_{name}/vocab.index.json"


def read_vocabulary(folder: Path, name: str) -> dict[str, int]:
    """The vocabulary (token → id) of lexical index `name` of a build."""
    file = vocabulary_file(folder, name)
    with reading(folder, file):
        path = folder / file
        if not path.is_file():
            return {}
        payload = json.loads(path.read_text(encoding="utf-8"))
        if file.startswith("lexicon_"):
            return {token: i for i, token in enumerate(payload["tokens"])}
        return payload


def load_hashes(folder: Path) -> np.ndarray | None:
    """The text hashes of a build's chunks (n × 16 bytes), or None."""
    with suppress(OSError, ValueError):
        hashes = np.load(folder / HASHES)
        if hashes.ndim == 2 and hashes.shape[1] == 16 and hashes.dtype == np.uint8:
            return hashes
    return None
