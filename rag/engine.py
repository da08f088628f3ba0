"""`Engine`: the one public API of the product, used by the CLI, the chat page and scripts.

    engine = Engine.open()                       # loads (and if needed builds) the index
    engine.search("纪委监督责任包括什么", k=5)     # ranked passages
    engine.ask("纪委监督责任包括什么")             # cited answer, or an abstention

An engine is safe to share between threads: questions read an immutable snapshot of the index,
and a rebuild (adding or removing a document) swaps in a new snapshot when it is complete.
"""

from __future__ import annotations

import logging
import re
import shutil
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rag import store
from rag.answer import Answer, Citation, Composer, Passage
from rag.chunk import sentence_spans
from rag.clean import Document
from rag.config import Settings
from rag.embed import Embedder, load_embedder, model_cache_dir
from rag.followup import contextualize, is_more
from rag.loaders import SUPPORTED_SUFFIXES, LoadError, load_file
from rag.retrieve import Retriever
from rag.store import BuildReport, IndexUnavailable, KnowledgeBase

__all__ = ["Answer", "Citation", "DocumentError", "Engine", "IndexUnavailable", "Passage", "QuestionError"]

log = logging.getLogger(__name__)

Turn = str | Answer

#: What the chat page accepts as uploads (a `.jsonl` collection is indexed with `rag index --corpus`).
UPLOAD_SUFFIXES = frozenset(SUPPORTED_SUFFIXES - {".jsonl"})


class QuestionError(ValueError):
    """A question that cannot be asked (empty); the message says what to do."""


class DocumentError(ValueError):
    """A document that cannot be added or removed; the message says why."""


@dataclass(frozen=True)
class DocumentInfo:
    """One indexed document, as listed on the knowledge-base tab."""

    source: str
    title: str
    date: str
    chunks: int
    characters: int


@dataclass(frozen=True)
class _Snapshot:
    kb: KnowledgeBase
    retriever: Retriever
    composer: Composer


class Engine:
    """Index, search and answer over one knowledge base (an index folder and its corpus)."""

    def __init__(self, settings: Settings | None = None, embedder: Embedder | None = None) -> None:
        self.settings = settings or Settings.from_env()
        self.embedder = embedder or load_embedder(
            self.settings.model,
            self.settings.query_prompt,
            self.settings.document_prompt,
            self.settings.embed_batch_size,
            self.settings.embed_precision,
            model_cache_dir(self.settings.model_cache, Path(self.settings.index_dir)),
        )
        self._snapshot: _Snapshot | None = None
        self._write_lock = threading.RLock()

    @classmethod
    def open(cls, settings: Settings | None = None, build: bool = False, progress: bool = False) -> Engine:
        """An engine on `settings.index_dir`, built from the corpus when there is no index yet.

        With `build`, the index is first brought up to date with the corpus (only changes are embedded).
        """
        engine = cls(settings)
        if build or store.current_build(Path(engine.settings.index_dir)) is None:
            engine.build(progress=progress)
        else:
            engine.reload()
        return engine

    # --- index ---------------------------------------------------------------------------------

    def build(self, corpus: Path | None = None, rebuild: bool = False, progress: bool = True) -> BuildReport:
        """Index added and changed documents of the corpus, drop deleted ones, and use the result."""
        with self._write_lock:
            live = self._snapshot.kb if self._snapshot is not None else None
            report = store.build(self.settings, self.embedder, corpus, rebuild=rebuild, progress=progress, live=live)
            if report.changed_anything or self._snapshot is None or rebuild:
                self.reload()
        return report

    def reload(self) -> None:
        """Load the live build from disk (after another process rebuilt it)."""
        kb = store.load(Path(self.settings.index_dir))
        if not self.embedder.accepts(kb.manifest["model"]):
            built = kb.manifest["model"]
            built = f"{built.get('name')!r}" + (f" ({built['variant']})" if built.get("variant") else "")
            raise IndexUnavailable(
                f"the index in {self.settings.index_dir} was built with {built}, but the configured "
                f"model is {self.embedder.describe()!r}: run `rag index --rebuild` or configure that model"
            )
        self._snapshot = _Snapshot(kb, Retriever(kb, self.embedder, self.settings), Composer(kb, self.settings))

    @property
    def kb(self) -> KnowledgeBase:
        return self._state().kb

    def _state(self) -> _Snapshot:
        snapshot = self._snapshot
        if snapshot is None:
            raise IndexUnavailable(f"no index loaded from {self.settings.index_dir}: run `rag index` first")
        return snapshot

    # --- questions -----------------------------------------------------------------------------

    def search(self, question: str, k: int | None = None) -> list[Passage]:
        """The `k` best passages for a question, best first."""
        state = self._state()
        return [Passage.from_hit(hit) for hit in state.retriever.search(_checked(question), k)]

    def ask(self, question: str, history: Sequence[Turn] | None = None, k: int | None = None) -> Answer:
        """A cited answer to `question`; `history` holds earlier turns (questions or answers), oldest first."""
        question = _checked(question)
        state = self._state()
        previous = _previous_question(history)
        standalone = contextualize(question, previous)
        exclude: set[tuple[str, int]] = set()
        if is_more(question) and history and isinstance(history[-1], Answer):
            exclude = _quoted_sentences(history[-1], state.kb)
        query = state.retriever.query(standalone)
        hits = state.retriever.search(query, max(k or self.settings.top_k, self.settings.answer_passages))
        answer = state.composer.compose(question, query, hits, exclude)
        answer.passages = answer.passages[: k or self.settings.top_k]
        return answer

    # --- documents -----------------------------------------------------------------------------

    def documents(self) -> list[DocumentInfo]:
        """The indexed documents, in corpus order."""
        kb = self._state().kb
        return [
            DocumentInfo(d.source, d.title, d.meta.get("date", ""), len(kb.chunks_of(d.source)), len(d.text))
            for d in kb.documents.values()
        ]

    def document(self, source: str) -> Document:
        """One indexed document (its cleaned text is what citations point into)."""
        try:
            return self._state().kb.documents[source]
        except KeyError:
            raise DocumentError(f"知识库中没有文档 {source!r} (no such document)") from None

    def add_document(self, path: Path, name: str | None = None) -> BuildReport:
        """Copy a file into the corpus folder under a safe name and index it (incrementally)."""
        path = Path(path)
        corpus = self._corpus_folder()
        target = corpus / safe_filename(name or path.name)
        if target.suffix.lower() not in UPLOAD_SUFFIXES:
            raise DocumentError(
                f"{target.name}: 不支持的文件类型 (unsupported file type); 可上传 {' '.join(sorted(UPLOAD_SUFFIXES))}"
            )
        size = path.stat().st_size
        limit = self.settings.max_upload_bytes
        if size > limit:
            raise DocumentError(f"{target.name}: 文件过大 (too large): {size:,} 字节, 超过上限 {limit / 2**20:g} MiB")
        try:
            load_file(path)  # refuse an unreadable file before it enters the corpus
        except LoadError as exc:
            raise DocumentError(f"{target.name}: 无法读取 (cannot be read): {exc}") from exc
        with self._write_lock:
            shutil.copyfile(path, target)
        return self.build(progress=False)

    def remove_document(self, source: str) -> BuildReport:
        """Delete a document from the corpus folder and from the index."""
        corpus = self._corpus_folder()
        target = corpus / safe_filename(source)
        if target.name != source or not target.is_file():
            raise DocumentError(f"知识库中没有文件 {source!r} (no such file in {corpus})")
        with self._write_lock:
            target.unlink()
        return self.build(progress=False)

    def _corpus_folder(self) -> Path:
        corpus = Path(self.settings.corpus_dir)
        if not corpus.is_dir():
            raise DocumentError(f"语料 {corpus} 不是文件夹，无法增删文档 (the corpus is not a folder)")
        return corpus


_UNSAFE = re.compile(r"[^\w.\-\u3400-\u9fff（）()]+")


def safe_filename(name: str) -> str:
    """A file name that stays inside the corpus folder: no folders, no leading dots, no odd characters."""
    base = Path(name.replace("\\", "/")).name
    base = _UNSAFE.sub("_", base).lstrip("._")
    stem, dot, suffix = base.rpartition(".")
    if not dot:
        stem, suffix = base, ""
    stem = stem[:120] or "document"
    return f"{stem}.{suffix.lower()}" if suffix else stem


def _checked(question: str) -> str:
    if not isinstance(question, str) or not question.strip():
        raise QuestionError("请输入一个问题（问题不能为空）。")
    return question.strip()


def _previous_question(history: Sequence[Turn] | None) -> str | None:
    previous: str | None = None
    for turn in history or []:
        if isinstance(turn, Answer):
            previous = turn.standalone_question or turn.question
        elif isinstance(turn, str) and turn.strip():
            previous = contextualize(turn, previous)
    return previous


def _quoted_sentences(answer: Answer, kb: KnowledgeBase) -> set[tuple[str, int]]:
    quoted: set[tuple[str, int]] = set()
    for citation in answer.citations:
        document = kb.documents.get(citation.source)
        if document is None:
            continue
        for span in sentence_spans(document.text, citation.start, citation.end):
            quoted.add((citation.source, span.start))
    return quoted
