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
"""

from __future__ import annotations

import logging
import re
import threading
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rag.index.backends.base import LEXICAL, BuildInput, DenseSearch, LexicalSearch
from rag.index.backends.local import read_lexicon, write_lexicons
from rag.index.integrity import Damaged, Problem
from rag.index.layout import IndexUnavailable, reading

if TYPE_CHECKING:
    from rag.config import Settings

log = logging.getLogger(__name__)

VARCHAR_MAX = 65_535
"""Milvus limits a VARCHAR to this many bytes (UTF-8), not characters."""
INSERT_BATCH = 500
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
        return made


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
        found = _count(milvus, name)
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


def _count(milvus: Any, name: str) -> int:
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
    """Drop this knowledge base's collections that no build folder names (builds removed or interrupted)."""
    milvus = client(target)
    prefix = _prefix(target, kb_id)
    dropped = []
    for name in milvus.list_collections():
        if name.startswith(prefix) and name not in keep:
            milvus.drop_collection(name)
            dropped.append(name)
    return dropped


# --- reading ------------------------------------------------------------------------------------


class MilvusDense:
    """Dense search in a build's collection: row indices and cosine similarities, best first."""

    def __init__(self, target: Target, collection: str, size: int, ef: int = 512) -> None:
        self.target, self.collection, self.size, self.ef = target, collection, size, ef

    def search(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        if self.size == 0 or k <= 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        hits = client(self.target).search(
            self.collection,
            data=[np.asarray(query, dtype=np.float32).ravel().tolist()],
            anns_field="vector",
            limit=min(k, self.size),
            output_fields=["row"],
            search_params={"metric_type": "IP", "params": {"ef": max(self.ef, k)}},
        )[0]
        return _arrays(hits)


class MilvusLexical:
    """BM25 search in one lexical field of a build's collection; document frequencies from the build folder."""

    def __init__(
        self,
        target: Target,
        collection: str,
        name: str,
        size: int,
        vocabulary: dict[str, int],
        df: np.ndarray,
        k1: float,
    ):
        self.target, self.collection, self.name, self.size = target, collection, name, size
        self.vocabulary = vocabulary
        self._df = df
        self._scale = 1.0 / (k1 + 1.0)
        """Milvus scores BM25 with the (k1 + 1) factor in the numerator; bm25s, the local store, without."""

    def search(self, tokens: list[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        """Indices and BM25 scores of the `k` best passages with a positive score, best first."""
        text = field_text(tokens)
        if self.size == 0 or k <= 0 or not text:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        hits = client(self.target).search(
            self.collection,
            data=[text],
            anns_field=f"{self.name}_bm25",
            limit=min(k, self.size),
            output_fields=["row"],
            search_params={"metric_type": "BM25"},
        )[0]
        ids, scores = _arrays(hits)
        # Milvus Lite reports BM25 as a negative distance; scaled to the local store's scores, which score
        # fusion compares with the question's ideal score
        return ids, np.abs(scores) * self._scale

    def problem(self) -> str | None:
        """What is inconsistent in the lexicon of the build folder, or None."""
        if len(self._df) != len(self.vocabulary):
            return f"{len(self._df)} document frequencies for {len(self.vocabulary)} words"
        return None

    def document_frequency(self, tokens: list[str]) -> np.ndarray:
        """In how many passages each token occurs (0 for a token the index has never seen)."""
        out = np.zeros(len(tokens), dtype=np.int64)
        for i, token in enumerate(tokens):
            column = self.vocabulary.get(token)
            if column is not None and column < len(self._df):
                out[i] = self._df[column]
        return out


def hybrid_search(
    target: Target, collection: str, vector: np.ndarray, lexical: dict[str, list[str]], depth: int, k: int, rrf_k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Server-side fusion: dense and BM25 rankings fused by Milvus's `RRFRanker` (unweighted), one request.

    Retrieval does not use it: the product's weighted fusion of the three rankings keeps quality
    equal to the local store (docs/benchmarks.md, fusion study); this is what that study measures."""
    from pymilvus import AnnSearchRequest, RRFRanker

    requests = [
        AnnSearchRequest(
            [np.asarray(vector, dtype=np.float32).ravel().tolist()], "vector", {"metric_type": "IP"}, depth
        )
    ]
    for name, tokens in lexical.items():
        text = field_text(tokens)
        if text:
            requests.append(AnnSearchRequest([text], f"{name}_bm25", {"metric_type": "BM25"}, depth))
    hits = client(target).hybrid_search(collection, requests, RRFRanker(rrf_k), limit=k, output_fields=["row"])[0]
    return _arrays(hits)


def _arrays(hits: Sequence[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    ids = np.fromiter((int(h["row"]) for h in hits), dtype=np.int64, count=len(hits))
    scores = np.fromiter((float(h["distance"]) for h in hits), dtype=np.float32, count=len(hits))
    return ids, scores


# --- the backend ----------------------------------------------------------------------------------


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
        return {
            "kind": self.kind,
            "uri": shown_uri(self.target, self.settings.index_dir),
            "name": self.target.name,
            "collection": collection,
            "kb": kb_id,
            "dense": "FLAT" if len(chunks) < s.hnsw_min_vectors else "HNSW",
        }

    def open(self, folder: Path, manifest: dict[str, Any]) -> tuple[DenseSearch, dict[str, LexicalSearch]]:
        meta = manifest.get("store") or {}
        collection = str(meta.get("collection", ""))
        milvus = client(self.target)
        if meta.get("kind") != self.kind or not milvus.has_collection(collection):
            where = f"Milvus collection {collection or '(none)'}"
            raise Damaged(folder, [Problem(where, f"missing in {shown_uri(self.target, folder.parent)}", "missing")])
        milvus.load_collection(collection)  # Milvus Lite starts with every collection released
        dense = MilvusDense(self.target, collection, _count(milvus, collection))
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
