"""What an `Engine` holds: its knowledge bases (listed, created, renamed, deleted; each opened as a sibling
engine sharing the model) and the documents of each (listed, added, removed, through the background worker).

`Library` is the part of `rag.engine.Engine` that manages them; the engine supplies the index (`build`,
`_state`, its corpus folder and locks). The folders and rules are `rag.service.kbs`'s.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from rag.config import Settings
from rag.index.progress import OnProgress
from rag.index.report import BuildReport
from rag.model import Document
from rag.service.corpus import CorpusFolder, DocumentError
from rag.service.kbs import KnowledgeBaseInfo, OpenEngines
from rag.service.worker import IndexWorker

E = TypeVar("E", bound="Library")


@dataclass(frozen=True)
class DocumentInfo:
    """One indexed document, as listed on the knowledge-base tab."""

    source: str
    title: str
    date: str
    chunks: int
    characters: int


class Library:
    """Knowledge bases and documents (the `Engine` is one of these)."""

    settings: Settings
    embedder: Any
    name: str
    _library: OpenEngines
    _corpus: CorpusFolder
    _write_lock: threading.RLock
    _worker_lock: threading.Lock
    _worker: IndexWorker | None

    if TYPE_CHECKING:

        def build(self, *args: Any, **kwargs: Any) -> BuildReport: ...

        def _state(self) -> Any: ...

    # --- knowledge bases -----------------------------------------------------------------------

    def knowledge_bases(self) -> list[KnowledgeBaseInfo]:
        """The knowledge bases: `default` first, then the others by name (`rag.service.kbs`)."""
        return self._library.kbs.infos()

    def create_kb(self, name: str, user: str = "") -> KnowledgeBaseInfo:
        """A new, empty knowledge base (`KnowledgeBaseError` for a bad or taken name)."""
        return self._library.kbs.create(name, user)

    def rename_kb(self, old: str, new: str, user: str = "") -> KnowledgeBaseInfo:
        """Rename a knowledge base (not `default`); its index, store and change log go with it."""
        return self._library.rename(old, new, user)

    def delete_kb(self, name: str, user: str = "") -> Path:
        """Delete a knowledge base (not `default`): its documents go to a dated archive folder (returned)."""
        return self._library.delete(name, user)

    def engine_for(self: E, kb: str | None) -> E:
        """The engine of knowledge base `kb` (None = `default`), opened when first asked for; it shares
        this engine's model and offers the same API (`worker`, `documents`, `health`, …)."""
        return self._library.get(kb)

    def _sibling(self: E, name: str, settings: Settings) -> E:
        engine = type(self).open(settings, embedder=self.embedder)  # type: ignore[attr-defined]
        engine.name, engine._library = name, self._library
        if any((Path(settings.corpus_dir) / ".queue").glob("*")):  # jobs a stopped process left: finish them
            _ = engine.worker
        return engine

    # --- documents (`kb`: of another knowledge base than this engine's) -------------------------

    def documents(self, kb: str | None = None) -> list[DocumentInfo]:
        """The indexed documents, in corpus order."""
        if kb is not None:
            return self.engine_for(kb).documents()
        kb = self._state().kb
        return [
            DocumentInfo(d.source, d.title, d.meta.get("date", ""), len(kb.chunks_of(d.source)), len(d.text))
            for d in kb.documents.values()
        ]

    def document(self, source: str, kb: str | None = None) -> Document:
        """One indexed document (its cleaned text is what citations point into)."""
        if kb is not None:
            return self.engine_for(kb).document(source)
        try:
            return self._state().kb.documents[source]
        except KeyError:
            raise DocumentError(f"知识库中没有文档“{source}”。") from None

    def check_upload(self, path: Path, name: str | None = None, kb: str | None = None) -> tuple[str, str | None]:
        """Quick checks of an upload (type, size, name) before it is queued.

        Returns the corpus file name it gets and the document it would replace (a corpus file of the
        same name once sanitized, ignoring case), or None. Raises `DocumentError` with the reason.
        """
        return self.engine_for(kb)._corpus.check_upload(path, name) if kb else self._corpus.check_upload(path, name)

    def add_document(
        self,
        path: Path,
        name: str | None = None,
        replace: bool = False,
        on_progress: OnProgress | None = None,
        kb: str | None = None,
    ) -> BuildReport:
        """Copy a file into the corpus folder under a safe name and index it (incrementally).

        The file is written beside the corpus under a hidden temporary name and renamed into place when
        complete, so a failed write leaves nothing behind. A document of the same name (ignoring case)
        is replaced only with `replace`; the replaced file is kept in the corpus's `.versions/` folder
        (`BuildReport.kept`). If indexing fails, the corpus is restored as it was.
        """
        if kb is not None:
            return self.engine_for(kb).add_document(path, name, replace, on_progress)
        reindex = partial(self.build, progress=False, on_progress=on_progress)
        return self._corpus.add(path, name, replace, reindex, self._write_lock)

    def remove_document(self, source: str, on_progress: OnProgress | None = None, kb: str | None = None) -> BuildReport:
        """Delete a document from the corpus folder (it is kept in `.versions/`) and from the index."""
        if kb is not None:
            return self.engine_for(kb).remove_document(source, on_progress)
        reindex = partial(self.build, progress=False, on_progress=on_progress)
        return self._corpus.remove(source, reindex, self._write_lock)

    @property
    def worker(self) -> IndexWorker:
        """The background indexer: uploads, removals and builds queued and run one at a time, with progress."""
        with self._worker_lock:  # not the write lock, which a running build holds
            if self._worker is None:
                self._worker = IndexWorker(self)
            return self._worker
