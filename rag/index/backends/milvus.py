"""Milvus backend: a build's dense vectors and both BM25 indexes in one Milvus collection.

One collection per build (`<name>_<build>`), the build's rows in chunk order (primary key = the
chunk's row in `KnowledgeBase.chunks`). The lexical fields hold the very tokens the local backend
indexes (jieba words, character bigrams), escaped to `\\w` characters and joined by spaces, so the
server's `whitespace` analyzer and Milvus Lite's `standard` analyzer both cut them exactly as given;
a BM25 function per field turns them into sparse vectors scored with the same k1 and b.

The collection is written completely before the build folder that names it goes live; the alias
`<name>` then follows the live build for other clients. Collections of builds that are gone (or of
builds interrupted before going live) are dropped by the next build.

Works with Milvus Lite (`uri` = a local `.db` path; one process per file) and with a Milvus
server or cluster (`uri` = `http://host:19530`, `token` = `user:password` or an API key).

The collections are managed in `milvus_collections` and searched in `milvus_search`; this module is
the backend that ties them to build folders.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rag.index import integrity
from rag.index.backends.base import BuildInput, DenseSearch, LexicalSearch, TokenIds
from rag.index.backends.milvus_collections import (
    Rows,
    Target,
    client,
    collection_files,
    drop_unused,
    row_count,
    switch_alias,
    write,
)
from rag.index.backends.milvus_search import MilvusDense, MilvusLexical
from rag.index.bm25 import document_frequencies
from rag.index.integrity import Damaged, Problem
from rag.index.layout import LEXICAL, IndexUnavailable, reading

if TYPE_CHECKING:
    from rag.config import Settings

log = logging.getLogger(__name__)


def target_of(settings: Settings) -> Target:
    """The Milvus target of `settings.store` (`milvus` = a Milvus Lite file `milvus.db` in the index folder)."""
    _, _, uri = settings.store.partition(":")
    uri = uri.strip() or str(Path(settings.index_dir) / "milvus.db")
    return Target(uri, settings.milvus_collection, settings.milvus_token)


IN_INDEX = "<index>/"
"""How a manifest records a Milvus Lite file inside the index folder (so the folder can be moved or copied)."""


def shown_uri(target: Target, index_dir: Path) -> str:
    """Where `target` is, as a manifest records it: a Milvus Lite file inside the index folder as
    `<index>/…`, another as an absolute path; a server's URI without credentials."""
    if not target.lite:
        return re.sub(r"//[^/@]*@", "//", target.uri)
    path = Path(target.uri).expanduser().resolve()
    try:
        return IN_INDEX + path.relative_to(Path(index_dir).expanduser().resolve()).as_posix()
    except ValueError:
        return str(path)


def lite_folder(target: Target, index_dir: Path) -> str:
    """A Milvus Lite file as messages name it: relative to the index folder when inside it."""
    path = Path(target.uri).expanduser().resolve()
    try:
        return path.relative_to(Path(index_dir).expanduser().resolve()).as_posix()
    except ValueError:
        return str(path)


def recorded_uri(uri: str, index_dir: Path) -> str:
    """The URI a manifest records (see `shown_uri`) as a connectable one."""
    return str(Path(index_dir) / uri[len(IN_INDEX) :]) if uri.startswith(IN_INDEX) else uri


def knowledge_base_id(index_dir: Path) -> str:
    """The id that marks this index folder's collections (`KB_ID`, made on first use)."""
    path = Path(index_dir) / "KB_ID"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(uuid.uuid4().hex, encoding="utf-8")
        tmp.replace(path)
    return path.read_text(encoding="utf-8").strip()


class MilvusBackend:
    """Builds as Milvus collections (`<name>_<build>`); vocabularies and document frequencies, which
    the answer composer needs and Milvus does not expose, as `lexicon_*.json` in the build folder."""

    kind = "milvus"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.target = target_of(settings)

    def write(self, build: BuildInput) -> dict[str, Any]:
        s = self.settings
        kb_id = knowledge_base_id(build.folder.parent)
        chunks = build.chunks
        rows = Rows(
            chunk_ids=[c.id for c in chunks],
            sources=[c.source for c in chunks],
            titles=[c.title for c in chunks],
            headings=[c.heading for c in chunks],
            starts=[c.start for c in chunks],
            ends=[c.end for c in chunks],
            texts=[c.text for c in chunks],
            vectors=build.vectors,
            tokens={name: ids.tokens() for name, ids in build.tokens.items()},
        )
        collection = write(self.target, build.name, kb_id, rows, s.bm25_k1, s.bm25_b, s.hnsw_min_vectors)
        write_lexicons(build.folder, build.tokens)
        meta = {
            "kind": self.kind,
            "uri": shown_uri(self.target, self.settings.index_dir),
            "name": self.target.name,
            "collection": collection,
            "kb": kb_id,
            "dense": "FLAT" if len(chunks) < s.hnsw_min_vectors else "HNSW",
        }
        if self.target.lite:  # flushed and indexed: Milvus Lite does not change these files again
            meta["files"] = integrity.record_files(Path(self.target.uri), collection_files(self.target, collection))
        return meta

    def problems(self, folder: Path, manifest: dict[str, Any], depth: str) -> list[Problem]:
        """A Milvus Lite build: its collection's files (vectors, parquet, Milvus's own manifest) against
        the sizes and checksums recorded when it was written. A server keeps its own storage: the
        collection's presence and row count are checked when it is opened."""
        meta = manifest.get("store") or {}
        if not self.target.lite or meta.get("kind") != self.kind:
            return []
        files = meta.get("files")
        if not isinstance(files, dict) or not files:
            if depth != "full":
                return []
            where = f"Milvus collection {meta.get('collection') or '(none)'}"
            return [Problem(where, "no checksums of its Milvus Lite files recorded: cannot verify", "unverified")]
        shown = f"Milvus {lite_folder(self.target, folder.parent)}/"
        return integrity.check_recorded(Path(self.target.uri), files, depth, shown=shown, all_serve=True)

    def open(self, folder: Path, manifest: dict[str, Any]) -> tuple[DenseSearch, dict[str, LexicalSearch]]:
        meta = manifest.get("store") or {}
        collection = str(meta.get("collection", ""))
        milvus = client(self.target)
        where = f"Milvus collection {collection or '(none)'}"
        with _collection_errors(folder, where):
            if meta.get("kind") != self.kind or not milvus.has_collection(collection):
                missing = Problem(where, f"missing in {shown_uri(self.target, folder.parent)}", "missing")
                raise Damaged(folder, [missing])
            milvus.load_collection(collection)  # Milvus Lite starts with every collection released
            dense = MilvusDense(self.target, collection, row_count(milvus, collection))
        lexical: dict[str, LexicalSearch] = {}
        for name in LEXICAL:
            with reading(folder, f"lexicon_{name}.json"):
                vocabulary, df = read_lexicon(folder, name)
            lexical[name] = MilvusLexical(
                self.target, collection, name, dense.size, vocabulary, df, manifest["params"]["bm25_k1"]
            )
        return dense, lexical

    def discard(self, meta: dict[str, Any]) -> None:
        collection = meta.get("collection")
        if collection and client(self.target).has_collection(collection):
            client(self.target).drop_collection(collection)

    def activate(self, manifest: dict[str, Any]) -> None:
        meta = manifest["store"]
        switch_alias(self.target, meta["collection"], meta["kb"])

    def retire(self, kept: list[dict[str, Any]]) -> None:
        keep = {m["store"]["collection"] for m in kept if m.get("store", {}).get("kind") == self.kind}
        kb_id = knowledge_base_id(Path(self.settings.index_dir))
        for name in drop_unused(self.target, kb_id, keep):
            log.info("dropped Milvus collection %s (a removed or interrupted build)", name)


@contextmanager
def _collection_errors(folder: Path, where: str) -> Iterator[None]:
    """What Milvus raises about one collection (a broken manifest or data file) as `Damaged` naming
    it: the previous build answers, `rag index` writes a new collection; no traceback."""
    try:
        yield
    except (Damaged, IndexUnavailable):
        raise
    except Exception as exc:  # pymilvus raises MilvusException, Milvus Lite its own errors
        message = str(getattr(exc, "message", "") or exc).splitlines()[0][:200]
        raise Damaged(folder, [Problem(where, f"unreadable ({type(exc).__name__}: {message})", "unreadable")]) from None


def write_lexicons(folder: Path, tokens: dict[str, TokenIds]) -> None:
    """Each lexical index's vocabulary and document frequencies as `lexicon_<name>.json` (Milvus
    keeps no vocabulary the answer composer could read)."""
    for name, ids in tokens.items():
        ordered = sorted(ids.vocab, key=ids.vocab.__getitem__)
        df = document_frequencies(ids.ids, ids.offsets, len(ordered))
        payload = {"tokens": ordered, "df": df.tolist()}
        (folder / f"lexicon_{name}.json").write_text(json.dumps(payload, ensure_ascii=False), encoding="utf-8")


def read_lexicon(folder: Path, name: str) -> tuple[dict[str, int], np.ndarray]:
    """The vocabulary and document frequencies written by `write_lexicons`."""
    payload = json.loads((folder / f"lexicon_{name}.json").read_text(encoding="utf-8"))
    return {token: i for i, token in enumerate(payload["tokens"])}, np.asarray(payload["df"], dtype=np.int64)
