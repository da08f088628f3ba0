"""Milvus collections of builds: the shared client, the schema, writing a build's rows, the alias
that follows the live build, and dropping collections no build names.

The lexical fields hold tokens escaped to `\\w` characters and joined by spaces (`field_text`), so
the server's `whitespace` analyzer and Milvus Lite's `standard` analyzer both cut them exactly as given.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import shutil
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rag.index.layout import LEXICAL, IndexUnavailable

log = logging.getLogger(__name__)

VARCHAR_MAX = 65_535
"""Milvus limits a VARCHAR to this many bytes (UTF-8), not characters."""
INSERT_BATCH = 500
LITE_LOCK = "LOCK"
"""The file Milvus Lite locks (`flock`) while a process has its data folder open."""
_PLAIN = re.compile(r"[^\W_]+")


class MilvusUnavailable(IndexUnavailable):
    """Milvus cannot be reached or refused the request; the message says what to do."""


@dataclass(frozen=True)
class Target:
    """Where the collections live: a Milvus Lite file or a server URI, and the knowledge base's name there."""

    uri: str
    name: str = "zhengce"
    """The alias that follows the live build; collections are named `<name>_<build>`."""
    token: str = ""

    @property
    def lite(self) -> bool:
        """A Milvus Lite file opened in this process (not a server URI)."""
        return not self.uri.startswith(("http://", "https://", "tcp://", "unix:"))


# --- tokens -------------------------------------------------------------------------------------


def escape(token: str) -> str:
    """`token` as one run of lower-case `\\w` characters without `_` left as is; any other character
    becomes `_x<hex>_`. Injective, and both analyzers keep the result as one token."""
    if _PLAIN.fullmatch(token) and token == token.lower():
        return token
    return "".join(c if _PLAIN.fullmatch(c) and c.lower() == c else f"_x{ord(c):x}_" for c in token)


def field_text(tokens: Iterable[str], limit: int = VARCHAR_MAX) -> str:
    """Tokens escaped and joined by spaces, cut at a token boundary to fit `limit` bytes."""
    text = " ".join(escape(t) for t in tokens if t)
    if len(text.encode("utf-8")) <= limit:
        return text
    cut = text.encode("utf-8")[:limit].decode("utf-8", errors="ignore")
    cut = cut[: cut.rfind(" ")] if " " in cut else ""
    log.warning("a chunk's lexical field was cut to %d bytes (Milvus VARCHAR limit)", limit)
    return cut


def _clip(text: str, limit: int) -> str:
    """`text` cut to at most `limit` UTF-8 bytes, on a character boundary."""
    data = text.encode("utf-8")
    return text if len(data) <= limit else data[:limit].decode("utf-8", errors="ignore")


# --- connections --------------------------------------------------------------------------------

_clients: dict[tuple[str, str], Any] = {}
_clients_lock = threading.Lock()
_serving: set[str] = set()
"""Milvus Lite files this process serves (Milvus Lite keeps the server, and its lock, until exit)."""


def client(target: Target) -> Any:
    """One shared `MilvusClient` per URI and token in this process (Milvus Lite allows one process per file)."""
    key = (target.uri, target.token)
    with _clients_lock:
        found = _clients.get(key)
        if found is not None:
            return found
        try:
            from pymilvus import MilvusClient
        except ImportError as exc:
            raise MilvusUnavailable(
                "the Milvus store needs pymilvus and milvus-lite: pip install 'zhengce-wenda[milvus]'"
            ) from exc
        if target.lite:
            Path(target.uri).parent.mkdir(parents=True, exist_ok=True)
            if _lite_path(target) not in _serving:
                _refuse_if_locked(Path(target.uri))
        for name in _TRACEBACK_LOGGERS:
            logger = logging.getLogger(name)
            if not any(isinstance(f, _OneLine) for f in logger.filters):
                logger.addFilter(_OneLine())
        try:
            made = MilvusClient(uri=target.uri, token=target.token)
        except Exception as exc:
            hint = (
                f"is {target.uri} open in another process? Milvus Lite allows one process per file; run "
                f"`milvus-lite server --data-dir {target.uri}` and use --store milvus:http://127.0.0.1:19530"
                if target.lite
                else "is the server running, and RAG_MILVUS_TOKEN right?"
            )
            raise MilvusUnavailable(f"cannot open Milvus at {target.uri} ({exc}): {hint}") from exc
        _clients[key] = made
        if target.lite:
            _serving.add(_lite_path(target))
        return made


_TRACEBACK_LOGGERS = ("pymilvus.decorators", "milvus_lite.adapter.grpc.servicer", "milvus_lite.server_manager")
"""Loggers that log a failed request with its traceback; the failure reaches the user as one clear
error (`MilvusUnavailable`, or `Damaged` naming the collection), so their records keep one line."""


class _OneLine(logging.Filter):
    """A log record without its traceback: the message's first line, no `exc_info`."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info or "\n" in message:
            record.msg, record.args = message.split("\n", 1)[0], None
            record.exc_info, record.exc_text = None, None
        return True


def release(target: Target) -> None:
    """Close this process's client of `target`, and stop its Milvus Lite server (the file is then free
    for another process)."""
    with _clients_lock:
        found = _clients.pop((target.uri, target.token), None)
        if found is not None:
            found.close()
        if target.lite and _lite_path(target) in _serving:
            from milvus_lite.server_manager import server_manager_instance

            server_manager_instance.release_server(target.uri)
            _serving.discard(_lite_path(target))


def _lite_path(target: Target) -> str:
    return os.path.abspath(target.uri)


def _refuse_if_locked(data_dir: Path) -> None:
    """One clear line when another process holds the Milvus Lite file (instead of the traceback its
    server prints when it cannot take the lock): Milvus Lite takes an exclusive `flock` on `LOCK`."""
    lock = data_dir / LITE_LOCK
    if not lock.is_file():
        return
    try:
        handle = os.open(lock, os.O_RDWR)
    except OSError:
        return  # Milvus Lite will say what is wrong with the file
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(handle, fcntl.LOCK_UN)
    except BlockingIOError:
        raise MilvusUnavailable(
            f"Milvus Lite 文件 {data_dir} 正被另一个进程使用 (the file is open in another process; Milvus Lite "
            "allows one process per file): stop that process (another `python app.py` or `rag` command), or run "
            f"`milvus-lite server --data-dir {data_dir}` and use --store milvus:http://127.0.0.1:19530"
        ) from None
    finally:
        os.close(handle)


def collection_files(target: Target, collection: str) -> list[Path]:
    """The files Milvus Lite keeps one collection in once it is flushed: its manifest and schema, the
    parquet data and the index files (the vectors); not the write-ahead log nor the manifest's backup."""
    folder = Path(target.uri) / "collections" / collection
    if not folder.is_dir():
        log.warning(
            "Milvus Lite keeps collection %s elsewhere than %s: its files are not checksummed", collection, folder
        )
        return []
    return [
        p
        for p in folder.rglob("*")
        if p.is_file() and "wal" not in p.relative_to(folder).parts[:-1] and not p.name.endswith((".prev", ".tmp"))
    ]


# --- writing ------------------------------------------------------------------------------------


@dataclass
class Rows:
    """What one build puts into its collection, one entry per chunk in row order."""

    chunk_ids: Sequence[str]
    sources: Sequence[str]
    titles: Sequence[str]
    headings: Sequence[str]
    starts: Sequence[int]
    ends: Sequence[int]
    texts: Sequence[str]
    vectors: np.ndarray
    tokens: dict[str, Sequence[Sequence[str]]]
    """Per lexical index, each chunk's tokens (as the local backend indexes them)."""


def _analyzer(milvus: Any) -> dict[str, str]:
    """An analyzer that keeps space-separated escaped tokens as they are: the server's `whitespace`
    tokenizer; Milvus Lite has none, but its `standard` one (`\\w+`, lower case) does the same to them."""
    lite = str(milvus.get_server_version()).lower().startswith(("milvus_lite", "milvus-lite"))
    return {"tokenizer": "standard"} if lite else {"tokenizer": "whitespace"}


def _schema(dimension: int, analyzer: dict[str, str]) -> Any:
    from pymilvus import DataType, Function, FunctionType, MilvusClient

    schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("row", DataType.INT64, is_primary=True)
    schema.add_field("chunk_id", DataType.VARCHAR, max_length=1024)
    schema.add_field("source", DataType.VARCHAR, max_length=1024)
    schema.add_field("title", DataType.VARCHAR, max_length=4096)
    schema.add_field("heading", DataType.VARCHAR, max_length=4096)
    schema.add_field("start", DataType.INT64)
    schema.add_field("end", DataType.INT64)
    schema.add_field("text", DataType.VARCHAR, max_length=VARCHAR_MAX)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dimension)
    for name in LEXICAL:
        schema.add_field(name, DataType.VARCHAR, max_length=VARCHAR_MAX, enable_analyzer=True, analyzer_params=analyzer)
        schema.add_field(f"{name}_bm25", DataType.SPARSE_FLOAT_VECTOR)
        schema.add_function(
            Function(
                name=f"{name}_bm25",
                function_type=FunctionType.BM25,
                input_field_names=[name],
                output_field_names=[f"{name}_bm25"],
            )
        )
    return schema


def _index_params(milvus: Any, rows: int, k1: float, b: float, hnsw_min_vectors: int) -> Any:
    """FLAT (exact) or HNSW inner product over the vectors, as the local backend; BM25 with its k1 and b.

    Build parameters go nested under `params`: pymilvus 3.0 sends top-level ones as separate keys,
    which Milvus Lite 3.2.2 ignores (BM25 silently ran with k1=1.5), while a `params` JSON value is
    read by Lite and by the server alike."""
    params = milvus.prepare_index_params()
    if rows < hnsw_min_vectors:
        params.add_index("vector", index_type="FLAT", metric_type="IP")
    else:
        params.add_index(
            "vector", index_type="HNSW", metric_type="IP", params={"params": {"M": 32, "efConstruction": 80}}
        )
    for name in LEXICAL:
        params.add_index(
            f"{name}_bm25",
            index_type="SPARSE_INVERTED_INDEX",
            metric_type="BM25",
            params={"params": {"bm25_k1": k1, "bm25_b": b}},
        )
    return params


def collection_name(target: Target, kb_id: str, build: str) -> str:
    """The collection of one build: `<name>_<knowledge base id>_<build>` in letters, digits and `_`.

    The id (see `knowledge_base_id`) marks a knowledge base's own collections: Milvus Lite keeps no
    collection description or properties to mark them with."""
    return re.sub(r"\W", "_", f"{_prefix(target, kb_id)}{build}", flags=re.ASCII)


def _prefix(target: Target, kb_id: str) -> str:
    return re.sub(r"\W", "_", f"{target.name}_{kb_id[:12]}_", flags=re.ASCII)


def write(target: Target, build: str, kb_id: str, rows: Rows, k1: float, b: float, hnsw_min_vectors: int) -> str:
    """Write one build's rows into a new collection and check it is complete; returns its name.

    On any failure the half-written collection is dropped, and the live build is untouched."""
    milvus = client(target)
    name = collection_name(target, kb_id, build)
    n = len(rows.chunk_ids)
    if milvus.has_collection(name):
        milvus.drop_collection(name)
    milvus.create_collection(
        name,
        schema=_schema(rows.vectors.shape[1], _analyzer(milvus)),
        description=f"zhengce-wenda knowledge base {kb_id}, {build}",
        consistency_level="Bounded",  # written once, then only read; the row count below is checked Strong
    )
    try:
        # without sync=False, pymilvus polls each index's state every 0.5 s (and Lite has no AllocTimestamp)
        milvus.create_index(name, _index_params(milvus, n, k1, b, hnsw_min_vectors), sync=False)
        milvus.load_collection(name)
        for lo in range(0, n, INSERT_BATCH):
            hi = min(n, lo + INSERT_BATCH)
            milvus.insert(name, [_row(rows, i) for i in range(lo, hi)])
        milvus.flush(name)
        found = row_count(milvus, name)
        if found != n:
            raise MilvusUnavailable(f"collection {name} holds {found} rows after writing {n}")
    except BaseException:
        milvus.drop_collection(name)
        raise
    return name


def _row(rows: Rows, i: int) -> dict[str, Any]:
    return {
        "row": i,
        "chunk_id": _clip(rows.chunk_ids[i], 1024),
        "source": _clip(rows.sources[i], 1024),
        "title": _clip(rows.titles[i], 4096),
        "heading": _clip(rows.headings[i], 4096),
        "start": int(rows.starts[i]),
        "end": int(rows.ends[i]),
        "text": _clip(rows.texts[i], VARCHAR_MAX),
        "vector": rows.vectors[i].tolist(),
        **{name: field_text(rows.tokens[name][i]) for name in LEXICAL},
    }


def row_count(milvus: Any, name: str) -> int:
    result = milvus.query(name, filter="", output_fields=["count(*)"], consistency_level="Strong")
    return int(result[0]["count(*)"])


def switch_alias(target: Target, collection: str, kb_id: str) -> None:
    """Point the alias `target.name` at `collection` (the live build), unless another knowledge base owns it."""
    milvus = client(target)
    if target.name not in milvus.list_aliases().get("aliases", []):
        if milvus.has_collection(target.name):
            log.warning("a collection is named %r: the alias for the live build is not set", target.name)
            return
        milvus.create_alias(collection, target.name)
        return
    current = milvus.describe_alias(target.name).get("collection_name", "")
    if current == collection:
        return
    if not current.startswith(_prefix(target, kb_id)) and milvus.has_collection(current):
        raise MilvusUnavailable(
            f"the Milvus alias {target.name!r} points at {current!r}, a collection of another knowledge base: "
            "give this one another name with RAG_MILVUS_COLLECTION (or drop that collection if it is an old copy)"
        )
    milvus.alter_alias(collection, target.name)


def drop_unused(target: Target, kb_id: str, keep: set[str]) -> list[str]:
    """Drop this knowledge base's collections that no build folder names (builds removed or interrupted).

    Milvus Lite's collections are listed from its folder (listing them through Milvus fails while one
    is damaged), and one too damaged to drop has its folder removed."""
    milvus = client(target)
    prefix = _prefix(target, kb_id)
    dropped = []
    for name in _lite_collections(target) if target.lite else milvus.list_collections():
        if name.startswith(prefix) and name not in keep:
            try:
                milvus.drop_collection(name)
            except Exception as exc:  # pymilvus's MilvusException: the collection cannot be read
                folder = Path(target.uri) / "collections" / name
                if not (target.lite and folder.is_dir()):
                    raise
                log.warning("Milvus collection %s cannot be dropped (%s): removing its folder", name, exc)
                shutil.rmtree(folder)
            dropped.append(name)
    return dropped


def _lite_collections(target: Target) -> list[str]:
    folder = Path(target.uri) / "collections"
    return sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []
