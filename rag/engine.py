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

import copy
import errno
import logging
import os
import re
import threading
import time
import unicodedata
import uuid
from collections.abc import Iterator, Sequence
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from rag import store
from rag.answer import Answer, Citation, Passage
from rag.chunk import sentence_spans
from rag.clean import Document
from rag.compose import Composer
from rag.config import Settings
from rag.embed import Embedder, load_embedder, model_cache_dir
from rag.followup import resolve
from rag.generate import Delta, Event, Final, Writer
from rag.llm import ChatClient
from rag.loaders import SUPPORTED_SUFFIXES, LoadError, load_file
from rag.retrieve import Retriever
from rag.store import BuildReport, IndexUnavailable, KnowledgeBase
from rag.verify import Verifier

if TYPE_CHECKING:
    from rag.worker import IndexWorker

__all__ = [
    "Answer",
    "Citation",
    "Delta",
    "DocumentError",
    "DocumentExists",
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
    """A document that cannot be added or removed; the message (Chinese) says why."""


class DocumentExists(DocumentError):
    """An upload has the name of a document already in the corpus: add it with `replace=True` to replace it."""

    def __init__(self, existing: str) -> None:
        super().__init__(f"知识库中已有同名文档“{existing}”；确认替换后才会覆盖（旧版本会保留）。")
        self.existing = existing


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
        self.llm = ChatClient.from_settings(self.settings)
        """The language-model client (None: answers are extractive only)."""
        self._verifier: Verifier | None = None
        self._worker: IndexWorker | None = None
        self._worker_lock = threading.Lock()

    @classmethod
    def open(cls, settings: Settings | None = None, build: bool = False, progress: bool = False) -> Engine:
        """An engine on `settings.index_dir`, built from the corpus when there is no index yet.

        With `build`, the index is first brought up to date with the corpus (only changes are embedded).
        An index on another store than `settings.store` is written to that store first (nothing is
        re-embedded).
        """
        engine = cls(settings)
        if build or store.current_build(Path(engine.settings.index_dir)) is None or not store.on_store(engine.settings):
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
        index, and use the result. `on_progress(stage, done, total)`: see `store.build`.

        Questions keep being answered from the current snapshot while it runs (its embedding does not
        wait for theirs, nor theirs for it).
        """
        with self._write_lock:
            live = self._snapshot.kb if self._snapshot is not None else None
            report = store.build(
                self.settings,
                self._index_embedder,
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
        self._use(store.load(Path(self.settings.index_dir), self.settings))

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
        built = kb.manifest["model"]
        if not self.embedder.accepts(built):
            built = f"{built.get('name')!r}" + (f" ({built['variant']})" if built.get("variant") else "")
            raise IndexUnavailable(
                f"the index in {self.settings.index_dir} was built with {built}, but the configured "
                f"model is {self.embedder.describe()!r}: run `rag index --rebuild` or configure that model"
            )
        retriever = Retriever(kb, self.embedder, self.settings)
        self._snapshot = _Snapshot(kb, retriever, Composer(kb, self.settings, retriever))

    @property
    def ready(self) -> bool:
        """Whether an index is loaded (questions can be answered)."""
        return self._snapshot is not None

    @property
    def worker(self) -> IndexWorker:
        """The background indexer: uploads, removals and builds queued and run one at a time, with progress."""
        with self._worker_lock:  # not the write lock, which a running build holds
            if self._worker is None:
                from rag.worker import IndexWorker

                self._worker = IndexWorker(self)
            return self._worker

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
            raise DocumentError(f"知识库中没有文档“{source}”。") from None

    def check_upload(self, path: Path, name: str | None = None) -> tuple[str, str | None]:
        """Quick checks of an upload (type, size, name) before it is queued.

        Returns the corpus file name it gets and the document it would replace (a corpus file of the
        same name once sanitized, ignoring case), or None. Raises `DocumentError` with the reason.
        """
        path = Path(path)
        corpus = self._corpus_folder()
        target = safe_filename(name or path.name)
        if Path(target).suffix.lower() not in UPLOAD_SUFFIXES:
            raise DocumentError(f"不支持这种文件类型，可以上传 {' '.join(sorted(UPLOAD_SUFFIXES))} 文件。")
        try:
            size = path.stat().st_size
        except OSError:
            raise DocumentError("没有收到完整的文件，请重新上传。") from None
        limit = self.settings.max_upload_bytes
        if size > limit:
            raise DocumentError(f"文件过大（{size / 2**20:.1f} MB），单个文件不能超过 {limit / 2**20:g} MB。")
        return target, _corpus_names(corpus).get(target.casefold())

    def add_document(
        self, path: Path, name: str | None = None, replace: bool = False, on_progress: store.OnProgress | None = None
    ) -> BuildReport:
        """Copy a file into the corpus folder under a safe name and index it (incrementally).

        The file is written beside the corpus under a hidden temporary name and renamed into place when
        complete, so a failed write leaves nothing behind. A document of the same name (ignoring case)
        is replaced only with `replace`; the replaced file is kept in the corpus's `.versions/` folder
        (`BuildReport.kept`). If indexing fails, the corpus is restored as it was.
        """
        path = Path(path)
        target_name, existing = self.check_upload(path, name)
        if existing is not None and not replace:
            raise DocumentExists(existing)
        try:
            raw = load_file(path)  # refuse an unreadable file before it enters the corpus
        except LoadError as exc:
            raise DocumentError(f"无法读取这个文件：{exc}") from exc
        if len(raw.text) > self.settings.max_upload_chars:
            raise DocumentError(
                f"文档过长：提取出 {len(raw.text):,} 个字符，超过单个文档的上限 {self.settings.max_upload_chars:,} 个字符；"
                "请拆分成几个文件后上传。"
            )
        corpus = self._corpus_folder()
        with self._write_lock:
            existing = _corpus_names(corpus).get(target_name.casefold())
            if existing is not None and not replace:
                raise DocumentExists(existing)
            target = corpus / (existing or target_name)
            kept = _keep_version(target, move=False) if existing else None
            try:
                _atomic_copy(path, target)
            except OSError as exc:
                raise DocumentError(f"文件没有保存：{_os_reason(exc)}") from exc
            try:
                report = self.build(progress=False, on_progress=on_progress)
            except BaseException as exc:
                _restore(target, corpus / _VERSIONS / kept if kept else None)
                cause = _os_error(exc)
                if cause is not None:
                    raise DocumentError(f"索引没有更新，文件已撤回：{_os_reason(cause)}") from exc
                raise
        if kept:
            report.kept[target.name] = kept
        return report

    def remove_document(self, source: str, on_progress: store.OnProgress | None = None) -> BuildReport:
        """Delete a document from the corpus folder (it is kept in `.versions/`) and from the index."""
        corpus = self._corpus_folder()
        with self._write_lock:
            names = _corpus_names(corpus)
            name = source if source in names.values() else names.get(str(source).casefold())
            if not name:
                raise DocumentError(f"知识库中没有文件“{source}”。")
            target = corpus / name
            kept = _keep_version(target, move=True)
            try:
                report = self.build(progress=False, on_progress=on_progress)
            except BaseException as exc:
                _restore(target, corpus / _VERSIONS / kept)
                cause = _os_error(exc)
                if cause is not None:
                    raise DocumentError(f"索引没有更新，文件已恢复：{_os_reason(cause)}") from exc
                raise
        report.kept[name] = kept
        return report

    def _corpus_folder(self) -> Path:
        corpus = Path(self.settings.corpus_dir)
        if not corpus.is_dir():
            raise DocumentError("知识库的语料不是一个文件夹（是单个文件），不能在这里添加或删除文档。")
        return corpus


_UNSAFE = re.compile(r"[^\w.\-\u3000-\u303f\u3400-\u9fff\uff00-\uffef（）()]+")
MAX_NAME_BYTES = 200
"""Longest corpus file name in UTF-8 bytes (file systems allow 255; `.versions/` adds a time stamp)."""
_VERSIONS = ".versions"


def safe_filename(name: str) -> str:
    """A file name that stays inside the corpus folder: no folders, no leading dots, no odd characters,
    at most `MAX_NAME_BYTES` bytes of UTF-8."""
    base = Path(unicodedata.normalize("NFC", name).replace("\\", "/")).name
    base = _UNSAFE.sub("_", base).lstrip("._")
    stem, dot, suffix = base.rpartition(".")
    if not dot:
        stem, suffix = base, ""
    suffix = suffix.lower()[:16]
    room = MAX_NAME_BYTES - len(suffix.encode()) - 1
    stem = stem.encode()[:room].decode("utf-8", "ignore") or "document"
    return f"{stem}.{suffix}" if suffix else stem


def _corpus_names(corpus: Path) -> dict[str, str]:
    """The corpus folder's document files by case-folded name."""
    return {p.name.casefold(): p.name for p in corpus.iterdir() if p.is_file() and not p.name.startswith(".")}


def _atomic_copy(source: Path, target: Path) -> None:
    """Copy `source` to `target` through a hidden temporary file beside it, renamed into place when complete."""
    temporary = target.parent / f".upload-{uuid.uuid4().hex[:12]}.tmp"
    try:
        with open(source, "rb") as data:
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            try:
                while block := data.read(1 << 20):
                    view = memoryview(block)
                    while view:
                        view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _keep_version(file: Path, move: bool) -> str:
    """Keep `file` in `.versions/` beside it (moved, or copied atomically); the kept file's name."""
    folder = file.parent / _VERSIONS
    folder.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    kept = folder / f"{file.stem}.{stamp}{file.suffix}"
    count = 1
    while kept.exists():
        count += 1
        kept = folder / f"{file.stem}.{stamp}-{count}{file.suffix}"
    try:
        if move:
            os.replace(file, kept)
        else:
            _atomic_copy(file, kept)
    except OSError as exc:
        raise DocumentError(f"旧版本没能备份，没有做任何改动：{_os_reason(exc)}") from exc
    return kept.name


def _restore(target: Path, kept: Path | None) -> None:
    """Undo a corpus change whose build failed: the kept version back in place, or the new file removed."""
    with suppress(OSError):
        if kept is not None:
            os.replace(kept, target)
        else:
            target.unlink(missing_ok=True)


def _os_error(exc: BaseException) -> OSError | None:
    """The file-system error behind a failed build: the error itself, or what a `store.IndexWriteError` wraps."""
    if isinstance(exc, OSError):
        return exc
    if isinstance(exc, store.IndexWriteError) and isinstance(exc.__cause__, OSError):
        return exc.__cause__
    return None


def _os_reason(exc: OSError) -> str:
    """Why a file operation failed, in Chinese, without paths."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return "磁盘空间不足。请清理服务器磁盘后重试。"
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return "没有写入权限（文件夹只读）。请联系管理员。"
    if exc.errno == errno.ENAMETOOLONG:
        return "文件名过长。请改短文件名后重试。"
    return f"写入失败（{errno.errorcode.get(exc.errno or 0, '未知错误')}）。请稍后重试或联系管理员。"


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
