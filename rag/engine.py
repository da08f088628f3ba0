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
from pathlib import Path

from rag.answer.compose import Composer
from rag.answer.judge import shared_judge
from rag.answer.llm_client import ChatClient
from rag.answer.types import Answer
from rag.answer.verify import Verifier
from rag.answer.writer import Event, Final, Writer
from rag.config import Settings
from rag.embedding.embedder import Embedder, default_model_folder, load_embedder, model_cache_dir
from rag.index.build import build
from rag.index.knowledge_base import IndexDamaged, KnowledgeBase, load, on_store
from rag.index.layout import CURRENT, IndexUnavailable, current_build
from rag.index.progress import OnProgress
from rag.index.report import BuildReport
from rag.library import DocumentInfo, Library
from rag.model import Passage
from rag.retrieval.filters import FilterError, Filters
from rag.retrieval.retriever import Retriever
from rag.service import federation
from rag.service.audit import write_change
from rag.service.corpus import CorpusFolder
from rag.service.federation import Asked, Part
from rag.service.kbs import DEFAULT_KB, KnowledgeBases, OpenEngines
from rag.service.worker import IndexWorker

__all__ = ["DocumentInfo", "Engine", "Health", "QuestionError", "Turn"]

log = logging.getLogger(__name__)

Turn = str | Answer | dict
"""An earlier turn: its question, its `Answer`, or that answer's JSON form (`Answer.to_dict()`)."""


class QuestionError(ValueError):
    """A question that cannot be asked (empty, a filter's date not `YYYY-MM-DD`); the message says what to do."""


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


class Engine(Library):
    """Index, search and answer over a knowledge base (an index folder and its corpus): `default`, the
    configured folders; the others (`knowledge_bases()`, `rag.service.kbs`) open as sibling engines sharing
    this one's model, and a question can be asked in several (`kbs=`)."""

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
        cache = model_cache_dir(self.settings.model_cache, Path(self.settings.index_dir))
        self.judge = shared_judge(cache, lambda: default_model_folder(cache)[0], self.settings.judge_files)
        """The answer judge (loads in the background when first wanted; `Settings.judge` switches it off)."""
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
        self.name = DEFAULT_KB
        """The knowledge base this engine serves."""
        self._library = OpenEngines(KnowledgeBases(self.settings), self, self._sibling)

    @classmethod
    def open(
        cls,
        settings: Settings | None = None,
        build: bool = False,
        progress: bool = False,
        embedder: Embedder | None = None,
    ) -> Engine:
        """An engine on `settings.index_dir`, built from the corpus when there is no index yet.

        With `build`, the index is first brought up to date with the corpus (only changes are embedded).
        An index on another store than `settings.store` is written to that store first (nothing is
        re-embedded).
        """
        engine = cls(settings, embedder)
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

    def wait_for_judge(self, timeout: float | None = None) -> bool:
        """Load the answer judge (in the background, once) and wait up to `timeout` seconds; whether it
        is in use. Until it is, answers follow the rules alone (`Settings.judge`)."""
        return self.settings.judge and self.judge.wait(timeout)

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
        if self.settings.judge:
            self.judge.start()
        self._snapshot = _Snapshot(kb, retriever, Composer(kb, self.settings, retriever, self.judge))
        self._stale = ""

    def _state(self) -> _Snapshot:
        self._follow()
        snapshot = self._snapshot
        if snapshot is None:
            raise IndexUnavailable(f"no index loaded from {self.settings.index_dir}: run `rag index` first")
        return snapshot

    # --- questions -----------------------------------------------------------------------------

    def search(
        self,
        question: str,
        k: int | None = None,
        *,
        kbs: Sequence[str] | None = None,
        source: Sequence[str] | str | None = None,
        date_from: str | None = None,
        date_to: str | None = None,
    ) -> list[Passage]:
        """The `k` best passages for a question, best first, in the knowledge bases `kbs` (default: this
        engine's), from the documents the filters allow (see `ask`): the passages the answer to it quotes
        first (`Settings.search_as_answers`), then the others as the answer orders its passages (retrieval
        score moved by the answer judge, `Settings.judge_order_weight`)."""
        question = _checked(question)
        parts = self._parts(kbs, _filters(source, date_from, date_to))
        return federation.search(parts, question, self.settings.top_k if k is None else k, self.settings)

    def ask(
        self,
        question: str,
        history: Sequence[Turn] | None = None,
        k: int | None = None,
        generate: bool | None = None,
        *,
        kbs: Sequence[str] | None = None,
        source: Sequence[str] | str | None = None,
        date_from: str | None = None,
        date_to: str | None = None,
    ) -> Answer:
        """A cited answer to `question`; `history` holds earlier turns (questions, answers or their
        JSON form), oldest first. A follow-up (`还有呢`, `那上海呢`, `第二点…`) is completed from the
        previous turn; `Answer.standalone_question` is the question as searched.

        `kbs`: the knowledge bases to answer from (default: this engine's); with several, their passages
        compete by score and each citation's `kb` says where it is from. `source`: document ids or title
        words; `date_from`/`date_to`: `YYYY-MM-DD`, inclusive, on the document's date (a document with no
        date is left out) — only the documents they allow are searched (`QuestionError` for a bad date).

        With a language model configured (or `generate=True`) the answer is written by the model and
        checked sentence by sentence (`answer.mode == "generated"`); on any failure of the model it is
        the extractive answer with `answer.generation.note` saying why.
        """
        asked = self._asked(question, history, k, kbs, _filters(source, date_from, date_to))
        if self._writes(generate):
            return asked.restore(self._writer().answer(asked.answer, asked.documents))
        return asked.restore(asked.answer)

    def ask_stream(
        self,
        question: str,
        history: Sequence[Turn] | None = None,
        k: int | None = None,
        generate: bool | None = None,
        *,
        kbs: Sequence[str] | None = None,
        source: Sequence[str] | str | None = None,
        date_from: str | None = None,
        date_to: str | None = None,
    ) -> Iterator[Event]:
        """`ask` for a page that shows the answer as it is written: `Delta`s of verified text (each
        sentence once it passed the checks), then `Final(answer)` — the answer `ask` would give, which
        replaces the streamed text (it is the extractive answer when the written one fell back).
        Without a language model it is just the `Final` extractive answer. A `QuestionError` is raised
        at once, before iterating."""
        asked = self._asked(question, history, k, kbs, _filters(source, date_from, date_to))
        if not self._writes(generate):
            return iter([Final(asked.restore(asked.answer))])
        events = self._writer().stream(asked.answer, asked.documents)
        return (federation.restore_event(asked, event) for event in events)

    def _asked(
        self, question: str, history: Sequence[Turn] | None, k: int | None, kbs: Sequence[str] | None, filters: Filters
    ) -> Asked:
        question = _checked(question)
        parts = self._parts(kbs, filters)
        previous = self._previous_answer(history, kbs, filters)
        return federation.ask(parts, question, previous, k, self.settings)

    def _parts(self, kbs: Sequence[str] | None, filters: Filters) -> list[Part]:
        """The live build of each knowledge base asked (this engine's by default), narrowed by the filters."""
        names = [self.name] if not kbs else list(dict.fromkeys(self._library.kbs.resolve(n) for n in kbs))
        parts = []
        for name in names:
            state = self.engine_for(name)._state()
            parts.append(Part(name, state.kb, state.retriever.narrowed(filters), state.composer))
        return parts

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

    def _previous_answer(
        self, history: Sequence[Turn] | None, kbs: Sequence[str] | None, filters: Filters
    ) -> Answer | None:
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
        asked = self._asked(str(last), earlier, None, kbs, filters)
        return asked.restore(asked.answer)


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


def _filters(source: Sequence[str] | str | None, date_from: str | None, date_to: str | None) -> Filters:
    try:
        return Filters.of(source, date_from, date_to)
    except FilterError as exc:
        raise QuestionError(str(exc)) from None
