"""`Engine`: the one public API of the product, used by the CLI, the chat page and scripts.

    engine = Engine.open()                       # loads (and if needed builds) the index
    engine.search("纪委监督责任包括什么", k=5)     # ranked passages
    engine.ask("纪委监督责任包括什么")             # cited answer, or an abstention
    engine.ask_stream("…")                         # written answer (language model) as it is verified

An engine is safe to share between threads: questions read an immutable snapshot of the index,
and a rebuild (adding or removing a document) swaps in a new snapshot when it is complete.

When the live index build is damaged, the engine answers from the last build that verifies and
says so: `engine.health()` (or `engine.warnings`) gives the warnings for the page, in Chinese. A build
another process made live (`rag index`) is noticed when answering (`CURRENT` is checked at most every
`Settings.index_recheck_seconds`) and switched to; one that cannot be loaded leaves the old one
answering, with a warning.
"""

from __future__ import annotations

import copy
import logging
import os
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from rag.answer.compose import Composer
from rag.answer.llm_client import ChatClient
from rag.answer.types import Answer, Citation
from rag.answer.verify import Verifier
from rag.answer.writer import Event, Final, Writer
from rag.config import Settings
from rag.embedding.embedder import Embedder, load_embedder, model_cache_dir
from rag.index.build import build
from rag.index.knowledge_base import IndexDamaged, KnowledgeBase, load, on_store
from rag.index.layout import CURRENT, IndexUnavailable, current_build
from rag.index.progress import OnProgress
from rag.index.report import BuildReport
from rag.ingest.chunk import sentence_spans
from rag.model import Document, Passage
from rag.query.followup import resolve
from rag.retrieval.retriever import Retriever
from rag.service.audit import write_change
from rag.service.corpus import CorpusFolder, DocumentError
from rag.service.worker import IndexWorker

__all__ = ["DocumentInfo", "Engine", "Health", "QuestionError", "Turn"]

log = logging.getLogger(__name__)

Turn = str | Answer | dict
"""An earlier turn: its question, its `Answer`, or that answer's JSON form (`Answer.to_dict()`)."""


class QuestionError(ValueError):
    """A question that cannot be asked (empty); the message says what to do."""


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
            self.settings.embed_precision,
            model_cache_dir(self.settings.model_cache, Path(self.settings.index_dir)),
        )
        self._index_embedder = _own_lock(self.embedder)
        self._snapshot: _Snapshot | None = None
        self._write_lock = threading.RLock()
        self._pointer: tuple[object, ...] | None = None
        """`CURRENT` as it was when the snapshot was loaded (`_pointer_of`)."""
        self._checked = 0.0
        self._stale = ""
        """Why a build another process made live is not used (Chinese), or ''."""
        self.llm = ChatClient.from_settings(self.settings)
        """The language-model client (None: answers are extractive only)."""
        self._verifier: Verifier | None = None
        self._worker: IndexWorker | None = None
        self._worker_lock = threading.Lock()
        self._corpus = CorpusFolder(self.settings)

    @classmethod
    def open(cls, settings: Settings | None = None, build: bool = False, progress: bool = False) -> Engine:
        """An engine on `settings.index_dir`, built from the corpus when there is no index yet.

        With `build`, the index is first brought up to date with the corpus (only changes are embedded).
        An index on another store than `settings.store` is written to that store first (nothing is
        re-embedded).
        """
        engine = cls(settings)
        if build or current_build(Path(engine.settings.index_dir)) is None or not on_store(engine.settings):
            engine.build(progress=progress)
            return engine
        try:
            engine.reload()
        except IndexDamaged as damage:  # no build verifies: rebuild from the corpus
            log.warning("%s; rebuilding", damage)
            engine.build(progress=progress)
        return engine

    # --- index ---------------------------------------------------------------------------------

    def build(
        self,
        corpus: Path | None = None,
        rebuild: bool = False,
        progress: bool = True,
        on_progress: OnProgress | None = None,
        user: str | None = None,
    ) -> BuildReport:
        """Index added and changed documents of the corpus, drop deleted ones, repair a damaged
        index, and use the result. `on_progress(stage, done, total)`: see `rag.index.build.build`.
        With `user` (`rag index` gives the OS user), the run is written to the change log
        (`changes.jsonl`, action `index` or `rebuild`, what changed), failed runs too.

        Questions keep being answered from the current snapshot while it runs (its embedding does not
        wait for theirs, nor theirs for it).
        """
        try:
            with self._write_lock:
                live = self._snapshot.kb if self._snapshot is not None else None
                report = build(
                    self.settings, self._index_embedder, corpus, rebuild, progress, live=live, on_progress=on_progress
                )
                if report.kb is not None:
                    pointer = _pointer_of(Path(self.settings.index_dir))
                    self._use(report.kb)  # the new build, already loaded and verified
                    # made live by this build, unless another process's build replaced it since
                    self._pointer = pointer if pointer[-1] == report.kb.folder.name.encode() else None
                elif self._snapshot is None or rebuild:
                    self.reload()
        except BaseException as exc:
            if user is not None:
                write_change(self.settings.index_dir, _run_record(user, rebuild, None, str(exc) or type(exc).__name__))
            raise
        if user is not None:
            write_change(self.settings.index_dir, _run_record(user, rebuild, report))
        return report

    def reload(self) -> None:
        """Load the live build from disk (after another process rebuilt it)."""
        pointer = _pointer_of(Path(self.settings.index_dir))
        self._use(load(Path(self.settings.index_dir), self.settings))
        self._pointer = pointer

    def _follow(self) -> None:
        """Switch to a build another process made live since the snapshot was loaded: checked at most
        every `index_recheck_seconds`, never while this engine's own build runs (it switches itself).
        A build that cannot be loaded leaves the snapshot as it is, with a warning."""
        now = time.monotonic()
        if self._snapshot is None or now - self._checked < self.settings.index_recheck_seconds:
            return
        self._checked = now
        index_dir = Path(self.settings.index_dir)
        if _pointer_of(index_dir) == self._pointer or not self._write_lock.acquire(blocking=False):
            return
        try:
            pointer = _pointer_of(index_dir)
            if pointer == self._pointer:
                return
            log.info("the live index build changed on disk: loading it")
            try:
                self._use(load(index_dir, self.settings))
            except Exception as exc:  # answering goes on from the snapshot
                log.warning("the index build made live by another process cannot be used: %s", exc)
                self._stale = (
                    "索引已被另一个进程更新，但新的索引无法读取，仍在使用之前的索引（最近的改动可能不在其中）；"
                    "请运行 rag doctor 检查。"
                )
            self._pointer = pointer  # tried once: again only when CURRENT changes again
        finally:
            self._write_lock.release()

    def health(self) -> Health:
        """Is the index whole? Warnings (Chinese) when the live build is damaged and an earlier one answers."""
        kb = self._state().kb
        warnings = self.warnings
        return Health(not warnings, kb.folder.name, str(kb.manifest.get("created", "")), warnings)

    @property
    def warnings(self) -> list[str]:
        """`health().warnings`: empty when the index is whole (or none is loaded)."""
        snapshot = self._snapshot
        if snapshot is None:
            return []
        return [*snapshot.kb.warnings, *([self._stale] if self._stale else [])]

    @property
    def ready(self) -> bool:
        """Whether an index is loaded (questions can be answered)."""
        return self._snapshot is not None

    @property
    def kb(self) -> KnowledgeBase:
        """The loaded knowledge base (`IndexUnavailable` when none is)."""
        return self._state().kb

    def _use(self, kb: KnowledgeBase) -> None:
        built = kb.manifest["model"]
        if not self.embedder.accepts(built):
            built = f"{built.get('name')!r}" + (f" ({built['variant']})" if built.get("variant") else "")
            raise IndexUnavailable(
                f"the index in {self.settings.index_dir} was built with {built}, but the configured "
                f"model is {self.embedder.describe()!r}: run `rag index --rebuild` or configure that model"
            )
        retriever = Retriever(kb, self.embedder, self.settings)
        self._snapshot = _Snapshot(kb, retriever, Composer(kb, self.settings, retriever))
        self._stale = ""

    def _state(self) -> _Snapshot:
        self._follow()
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
        last question again with the turns before it (`settings.followup_rebuild` turns in all)."""
        turns = [t for t in history or [] if not (isinstance(t, str) and not t.strip())]
        if not turns:
            return None
        last = turns[-1]
        if isinstance(last, Answer):
            return last
        if isinstance(last, dict):
            return Answer.from_dict(last)
        keep = self.settings.followup_rebuild
        earlier = turns[-keep:-1] if keep > 1 else []
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
            raise DocumentError(f"知识库中没有文档“{source}”。") from None

    def check_upload(self, path: Path, name: str | None = None) -> tuple[str, str | None]:
        """Quick checks of an upload (type, size, name) before it is queued.

        Returns the corpus file name it gets and the document it would replace (a corpus file of the
        same name once sanitized, ignoring case), or None. Raises `DocumentError` with the reason.
        """
        return self._corpus.check_upload(path, name)

    def add_document(
        self, path: Path, name: str | None = None, replace: bool = False, on_progress: OnProgress | None = None
    ) -> BuildReport:
        """Copy a file into the corpus folder under a safe name and index it (incrementally).

        The file is written beside the corpus under a hidden temporary name and renamed into place when
        complete, so a failed write leaves nothing behind. A document of the same name (ignoring case)
        is replaced only with `replace`; the replaced file is kept in the corpus's `.versions/` folder
        (`BuildReport.kept`). If indexing fails, the corpus is restored as it was.
        """
        reindex = partial(self.build, progress=False, on_progress=on_progress)
        return self._corpus.add(path, name, replace, reindex, self._write_lock)

    def remove_document(self, source: str, on_progress: OnProgress | None = None) -> BuildReport:
        """Delete a document from the corpus folder (it is kept in `.versions/`) and from the index."""
        reindex = partial(self.build, progress=False, on_progress=on_progress)
        return self._corpus.remove(source, reindex, self._write_lock)

    @property
    def worker(self) -> IndexWorker:
        """The background indexer: uploads, removals and builds queued and run one at a time, with progress."""
        with self._worker_lock:  # not the write lock, which a running build holds
            if self._worker is None:
                self._worker = IndexWorker(self)
            return self._worker


def _pointer_of(index_dir: Path) -> tuple[object, ...]:
    """What identifies the `CURRENT` file on disk: replaced atomically by every build, its inode,
    time and content change (an unreadable one is its error)."""
    path = index_dir / CURRENT
    try:
        with open(path, "rb") as pointer:
            stat = os.fstat(pointer.fileno())
            return stat.st_ino, stat.st_mtime_ns, pointer.read(4096).strip()
    except OSError as exc:
        return ("unreadable", exc.errno)


LISTED = 50
"""Most file names of each kind (added, changed, removed) the change-log line of a `rag index` run lists."""


def _run_record(user: str, rebuild: bool, report: BuildReport | None, error: str = "") -> dict[str, object]:
    """The change-log record of a build run by hand (`rag index`): who, and what changed."""
    record: dict[str, object] = {"event": "failed" if error else "done", "user": user or "-"}
    record |= {"action": "rebuild" if rebuild else "index", "file": "", "ok": not error}
    if report is not None:
        for kind in ("added", "changed", "removed"):
            names = list(getattr(report, kind))
            record[kind] = names[:LISTED] + ([f"…（共 {len(names)} 个）"] if len(names) > LISTED else [])
        record["chunks_embedded"] = report.embedded
    if error:
        record["error"] = error
    return record


def _own_lock(embedder: Embedder) -> Embedder:
    """The same model with a lock of its own, for builds: a build's batches do not hold up questions
    (the model is only read; each call has its own buffers)."""
    twin = copy.copy(embedder)
    if hasattr(twin, "_locks"):
        twin._locks = {name: threading.Lock() for name in twin._locks}
    return twin


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
