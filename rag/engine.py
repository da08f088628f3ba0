"""`Engine`: the one public API of the product, used by the CLI, the chat page and scripts.

    engine = Engine.open()                       # loads (and if needed builds) the index
    engine.search("纪委监督责任包括什么", k=5)     # ranked passages
    engine.ask("纪委监督责任包括什么")             # cited answer, or an abstention
    engine.ask_stream("…")                         # written answer (language model) as it is verified

An engine is safe to share between threads: questions read an immutable snapshot of the index,
and a rebuild (adding or removing a document) swaps in a new snapshot when it is complete.

When the live index build is damaged, the engine answers from the last build that verifies and
says so: `engine.health()` (or `engine.warnings`) gives the warnings for the page, in Chinese.
"""

from __future__ import annotations

import logging
import re
import shutil
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from rag import store
from rag.answer import Answer, Citation, Passage
from rag.chunk import sentence_spans
from rag.clean import Document
from rag.compose import Composer
from rag.config import Settings
from rag.embed import Embedder, load_embedder
from rag.followup import resolve
from rag.generate import Delta, Event, Final, Writer
from rag.llm import ChatClient
from rag.loaders import SUPPORTED_SUFFIXES, LoadError, load_file
from rag.retrieve import Retriever
from rag.store import BuildReport, IndexUnavailable, KnowledgeBase
from rag.verify import Verifier

__all__ = [
    "Answer",
    "Citation",
    "Delta",
    "DocumentError",
    "Engine",
    "Final",
    "IndexUnavailable",
    "Passage",
    "QuestionError",
]

log = logging.getLogger(__name__)

Turn = str | Answer | dict
"""An earlier turn: its question, its `Answer`, or that answer's JSON form (`Answer.to_dict()`)."""

#: How many earlier question-only turns are re-asked to rebuild the previous answer.
_REBUILD_TURNS = 3

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
class Health:
    """The state of the loaded index, for the page: `ok` when nothing is wrong."""

    ok: bool
    build: str
    """The build folder answering questions."""
    created: str
    warnings: list[str]
    """What is wrong, in Chinese (a damaged live build answered from the previous one, damaged files)."""


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
        )
        self._snapshot: _Snapshot | None = None
        self._write_lock = threading.RLock()
        self.llm = ChatClient.from_settings(self.settings)
        """The language-model client (None: answers are extractive only)."""
        self._verifier: Verifier | None = None

    @classmethod
    def open(cls, settings: Settings | None = None, build: bool = False, progress: bool = False) -> Engine:
        """An engine on `settings.index_dir`, built from the corpus when there is no index yet.

        With `build`, the index is first brought up to date with the corpus (only changes are embedded).
        """
        engine = cls(settings)
        if build or store.current_build(Path(engine.settings.index_dir)) is None:
            engine.build(progress=progress)
            return engine
        try:
            engine.reload()
        except store.IndexDamaged as damage:  # no build verifies: rebuild from the corpus
            log.warning("%s; rebuilding", damage)
            engine.build(progress=progress)
        return engine

    # --- index ---------------------------------------------------------------------------------

    def build(
        self,
        corpus: Path | None = None,
        rebuild: bool = False,
        progress: bool = True,
        on_progress: store.OnProgress | None = None,
    ) -> BuildReport:
        """Index added and changed documents of the corpus, drop deleted ones, repair a damaged
        index, and use the result. `on_progress(stage, done, total)`: see `store.build`."""
        with self._write_lock:
            live = self._snapshot.kb if self._snapshot is not None else None
            report = store.build(
                self.settings,
                self.embedder,
                corpus,
                rebuild=rebuild,
                progress=progress,
                live=live,
                on_progress=on_progress,
            )
            if report.kb is not None:
                self._use(report.kb)  # the new build, already loaded and verified
            elif self._snapshot is None or rebuild:
                self.reload()
        return report

    def reload(self) -> None:
        """Load the live build from disk (after another process rebuilt it)."""
        self._use(store.load(Path(self.settings.index_dir)))

    def health(self) -> Health:
        """Is the index whole? Warnings (Chinese) when the live build is damaged and an earlier one answers."""
        kb = self._state().kb
        return Health(not kb.warnings, kb.folder.name, str(kb.manifest.get("created", "")), list(kb.warnings))

    @property
    def warnings(self) -> list[str]:
        """`health().warnings`: empty when the index is whole (or none is loaded)."""
        snapshot = self._snapshot
        return list(snapshot.kb.warnings) if snapshot is not None else []

    def _use(self, kb: KnowledgeBase) -> None:
        if kb.model_name != self.embedder.name:
            raise IndexUnavailable(
                f"the index in {self.settings.index_dir} was built with {kb.model_name!r}, but the configured "
                f"model is {self.embedder.name!r}: run `rag index --rebuild` or configure that model"
            )
        retriever = Retriever(kb, self.embedder, self.settings)
        self._snapshot = _Snapshot(kb, retriever, Composer(kb, self.settings, retriever))

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

    def ask(
        self, question: str, history: Sequence[Turn] | None = None, k: int | None = None, generate: bool | None = None
    ) -> Answer:
        """A cited answer to `question`; `history` holds earlier turns (questions, answers or their
        JSON form), oldest first. A follow-up (`还有呢`, `那上海呢`, `第二点…`) is completed from the
        previous turn; `Answer.standalone_question` is the question as searched.

        With a language model configured (or `generate=True`) the answer is written by the model and
        checked sentence by sentence (`answer.mode == "generated"`); on any failure of the model it is
        the extractive answer with `answer.generation.note` saying why.
        """
        question = _checked(question)
        state = self._state()
        previous = self._previous_answer(history, state)
        follow = resolve(question, previous.standalone_question or previous.question if previous else None)
        standalone = follow.standalone
        exclude: set[tuple[str, int]] = set()
        item: Citation | None = None
        if previous is not None and follow.continues:
            exclude = _quoted_sentences(previous, state.kb)
        if follow.mode == "ordinal" and previous is not None and 0 < (follow.ordinal or 0) <= len(previous.citations):
            item = previous.citations[(follow.ordinal or 1) - 1]
            standalone = f"{item.quote} {question}"
        query = state.retriever.query(standalone)
        hits = state.retriever.search(query, max(k or self.settings.top_k, self.settings.answer_passages))
        answer = state.composer.compose(question, query, hits, exclude, item)
        answer.passages = answer.passages[: k or self.settings.top_k]
        if self._writes(generate):
            return self._writer().answer(answer, state.kb.documents)
        return answer

    def ask_stream(
        self, question: str, history: Sequence[Turn] | None = None, k: int | None = None, generate: bool | None = None
    ) -> Iterator[Event]:
        """`ask` for a page that shows the answer as it is written: `Delta`s of verified text (each
        sentence once it passed the checks), then `Final(answer)` — the answer `ask` would give, which
        replaces the streamed text (it is the extractive answer when the written one fell back).
        Without a language model it is just the `Final` extractive answer. A `QuestionError` is raised
        at once, before iterating."""
        answer = self.ask(question, history, k, generate=False)
        if not self._writes(generate):
            return iter([Final(answer)])
        return self._writer().stream(answer, self._state().kb.documents)

    def _writes(self, generate: bool | None) -> bool:
        if generate is None:
            return self.llm is not None
        if generate and self.llm is None:
            raise ValueError("没有配置语言模型 (no language model configured): set RAG_LLM_BASE_URL or --llm-url")
        return generate

    def _writer(self) -> Writer:
        assert self.llm is not None
        if self._verifier is None:
            self._verifier = Verifier(self.embedder, self.settings)
        return Writer(self.llm, self._verifier, self.settings)

    def _previous_answer(self, history: Sequence[Turn] | None, state: _Snapshot) -> Answer | None:
        """The answer of the last turn: given, read from its JSON form, or rebuilt by asking the
        last question again in its own context (at most `_REBUILD_TURNS` turns back)."""
        turns = [t for t in history or [] if not (isinstance(t, str) and not t.strip())]
        if not turns:
            return None
        last = turns[-1]
        if isinstance(last, Answer):
            return last
        if isinstance(last, dict):
            return Answer.from_dict(last)
        earlier = turns[-_REBUILD_TURNS:-1]
        return self.ask(str(last), history=earlier, generate=False)

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


def _quoted_sentences(answer: Answer, kb: KnowledgeBase) -> set[tuple[str, int]]:
    quoted: set[tuple[str, int]] = set()
    for citation in answer.citations:
        document = kb.documents.get(citation.source)
        if document is None:
            continue
        for span in sentence_spans(document.text, citation.start, citation.end):
            quoted.add((citation.source, span.start))
    return quoted
