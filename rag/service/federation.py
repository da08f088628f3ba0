"""Asking one knowledge base or several: the search and the composed answer over `Part`s (a knowledge base's
live build with its retriever, narrowed by the question's filters), every citation and passage labelled
with its knowledge base.

Several knowledge bases are searched as one: each ranks its own chunks with the dense cosines normalized on
one scale — the mean and deviation of the best `Settings.candidates` cosines of all of them together
(`rag.retrieval.fusion.dense_scale`), as one index holding them all would — so their fused scores compare
(the BM25 parts are already shares of the question's ideal score; the name and definition lifts absolute);
the hits are merged by that score. The composer then reads them through a merged view (`merged_view`), in
which a document's key is its knowledge base and source (`kb␟source`), so equal file names in two
knowledge bases stay apart; `Asked.restore` gives the answer back its plain sources and `kb` labels.
"""

from __future__ import annotations

import copy
import dataclasses
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from rag.answer.compose import Composer
from rag.answer.types import Answer, Citation
from rag.answer.writer import Event, Final
from rag.config import Settings
from rag.index.knowledge_base import KnowledgeBase
from rag.ingest.chunk import sentence_spans
from rag.model import Chunk, Document, Hit, Passage
from rag.query.followup import resolve
from rag.query.question import Query
from rag.retrieval.fusion import dense_scale
from rag.retrieval.retriever import Retriever

SEPARATOR = "\x1f"
"""Between a knowledge base's name and a source in the merged view's keys (in neither)."""


@dataclass(frozen=True)
class Part:
    """One knowledge base a question is asked in: its name, live build and (narrowed) retriever."""

    name: str
    kb: KnowledgeBase
    retriever: Retriever
    composer: Composer
    """The snapshot's composer (its settings and judge; copied onto a narrowed retriever or merged view)."""


@dataclass
class Asked:
    """An answer as composed (sources may be merged-view keys), what a writer checks it against, and how
    to give it back its plain sources and knowledge-base labels."""

    answer: Answer
    documents: Mapping[str, Document]
    restore: Callable[[Answer], Answer]


@dataclass
class _Setting:
    """What one question is answered with: the knowledge base to read, its retriever and composer, the key of
    an earlier citation in it (None: not from these knowledge bases) and how to restore the answer."""

    kb: KnowledgeBase
    retriever: Retriever | Federation
    composer: Composer
    key: Callable[[Citation], str | None]
    restore: Callable[[Answer], Answer]


def _setting(parts: Sequence[Part], settings: Settings) -> _Setting:
    if len(parts) == 1:
        part = parts[0]
        composer = (
            part.composer if part.composer.retriever is part.retriever else _composer(part, part.kb, part.retriever)
        )
        return _Setting(part.kb, part.retriever, composer, _single_key(part.name), _labelled(part.name))
    federation = Federation(parts, settings)
    composer = _composer(parts[0], federation.view, federation)
    return _Setting(federation.view, federation, composer, _merged_key({p.name for p in parts}), _restored)


def _composer(part: Part, kb: KnowledgeBase, retriever: Retriever | Federation) -> Composer:
    """The snapshot's composer reading `kb` through `retriever` (a narrowed retriever or several)."""
    twin = copy.copy(part.composer)
    twin.kb, twin.retriever = kb, retriever  # type: ignore[assignment]  # a Federation searches like a Retriever
    return twin


def search(parts: Sequence[Part], question: str | Query, k: int, settings: Settings) -> list[Passage]:
    """The `k` best passages of the knowledge bases together, best first, each with its `kb`; with
    `Settings.search_as_answers` the passages the answer to the question quotes come first."""
    setting = _setting(parts, settings)
    query = question if isinstance(question, Query) else setting.retriever.query(question)
    text = question if isinstance(question, str) else question.text
    if settings.search_as_answers:
        hits = setting.retriever.search(query, max(k, settings.answer_passages))
        hits = setting.composer.quoted_first(text, query, hits)[:k]
    else:
        hits = setting.retriever.search(query, k)
    passages = [Passage.from_hit(h) for h in hits]
    return setting.restore(Answer("", "", False, [], passages)).passages


def ask(parts: Sequence[Part], question: str, previous: Answer | None, k: int | None, settings: Settings) -> Asked:
    """The composed answer to `question` (a follow-up of `previous`) from the knowledge bases of `parts`."""
    setting = _setting(parts, settings)
    kb, retriever, composer, key = setting.kb, setting.retriever, setting.composer, setting.key
    follow = resolve(question, previous.standalone_question or previous.question if previous else None)
    standalone = follow.standalone
    exclude: set[tuple[str, int]] = set()
    item: Citation | None = None
    if previous is not None and follow.continues:  # 还有呢: none of what the conversation already gave
        exclude = _quoted_sentences([*previous.earlier, *previous.citations], kb, key)
    if follow.mode == "ordinal" and previous is not None and 0 < (follow.ordinal or 0) <= len(previous.citations):
        cited = previous.citations[(follow.ordinal or 1) - 1]
        standalone = f"{cited.quote} {question}"
        source = key(cited)
        item = dataclasses.replace(cited, source=source) if source else None
    query = retriever.query(standalone)
    hits = retriever.search(query, max(k or settings.top_k, settings.answer_passages))
    answer = composer.compose(question, query, hits, exclude, item)
    answer.passages = answer.passages[: k or settings.top_k]
    if previous is not None and follow.continues:
        answer.earlier = [*previous.earlier, *previous.citations]
    return Asked(answer, kb.documents, setting.restore)


class Federation:
    """Several knowledge bases searched as one (the composer's retriever for a question asked in all)."""

    def __init__(self, parts: Sequence[Part], settings: Settings) -> None:
        self.parts, self.settings = list(parts), settings
        self.embedder = parts[0].retriever.embedder
        self.view, self._chunks = merged_view(parts)

    def query(self, question: str) -> Query:
        return self.parts[0].retriever.query(question)

    def search(self, question: str | Query, k: int | None = None) -> list[Hit]:
        """The `k` best chunks of all knowledge bases by fused score on one dense scale, as merged-view hits."""
        query = question if isinstance(question, Query) else self.query(question)
        k = self.settings.top_k if k is None else k
        scale = dense_scale([p.retriever.dense(query)[1] for p in self.parts], self.settings.candidates)
        hits = []
        for part in self.parts:
            chunks = self._chunks[part.name]
            for hit in part.retriever.search(query, k, dense_scale=scale):
                hits.append(dataclasses.replace(hit, chunk=chunks[hit.chunk.id]))
        hits.sort(key=lambda hit: -hit.score)  # stable: ties keep the order of the knowledge bases
        return [dataclasses.replace(hit, rank=rank) for rank, hit in enumerate(hits[:k], 1)]


class _SummedFrequencies:
    """The lexical statistics the composer reads (document frequencies) of several indexes together."""

    def __init__(self, parts: list[object]) -> None:
        self.parts = parts

    def document_frequency(self, tokens: list[str]) -> np.ndarray:
        return np.sum([part.document_frequency(tokens) for part in self.parts], axis=0)  # type: ignore[attr-defined]


_VIEWS: dict[tuple[tuple[str, int], ...], tuple[KnowledgeBase, dict[str, dict[str, Chunk]], list]] = {}
_VIEWS_LOCK = threading.Lock()
_VIEWS_KEPT = 4


def merged_view(parts: Sequence[Part]) -> tuple[KnowledgeBase, dict[str, dict[str, Chunk]]]:
    """One read-only knowledge base of several (documents and chunks keyed `kb␟source`, `kb␟chunk id`; the
    lexical document frequencies summed), and each part's chunk ids → merged chunks. Kept for reuse while
    the builds are live."""
    key = tuple((p.name, id(p.kb)) for p in parts)
    with _VIEWS_LOCK:
        if key in _VIEWS:
            view, chunks, _ = _VIEWS[key]
            return view, chunks
    documents: dict[str, Document] = {}
    merged: list[Chunk] = []
    by_part: dict[str, dict[str, Chunk]] = {}
    for part in parts:
        for source, document in part.kb.documents.items():
            documents[_join(part.name, source)] = dataclasses.replace(document, source=_join(part.name, source))
        own = by_part.setdefault(part.name, {})
        for chunk in part.kb.chunks:
            twin = dataclasses.replace(chunk, id=_join(part.name, chunk.id), source=_join(part.name, chunk.source))
            own[chunk.id] = twin
            merged.append(twin)
    first = parts[0].kb
    lexical = {name: _SummedFrequencies([p.kb.lexical[name] for p in parts]) for name in first.lexical}
    warnings = [w for p in parts for w in p.kb.warnings]
    view = KnowledgeBase(first.folder, first.manifest, documents, merged, first.dense, lexical, warnings)  # type: ignore[arg-type]
    with _VIEWS_LOCK:
        _VIEWS[key] = (view, by_part, [p.kb for p in parts])  # the builds kept alive: their ids stay theirs
        while len(_VIEWS) > _VIEWS_KEPT:
            del _VIEWS[next(iter(_VIEWS))]
    return view, by_part


def split(key: str) -> tuple[str, str]:
    """A merged-view key → (knowledge base, source or chunk id)."""
    kb, _, rest = key.partition(SEPARATOR)
    return (kb, rest) if rest else ("default", key)


def _join(kb: str, source: str) -> str:
    return f"{kb}{SEPARATOR}{source}"


def _single_key(name: str) -> Callable[[Citation], str | None]:
    return lambda c: c.source if c.kb == name else None


def _merged_key(names: set[str]) -> Callable[[Citation], str | None]:
    return lambda c: _join(c.kb, c.source) if c.kb in names else None


def _labelled(name: str) -> Callable[[Answer], Answer]:
    def restore(answer: Answer) -> Answer:
        for item in [*answer.citations, *answer.passages]:
            item.kb = name
        return answer

    return restore


def _restored(answer: Answer) -> Answer:
    """The answer with plain sources and chunk ids, and the knowledge base of each in `kb`."""
    restore_citations(answer.citations)
    _restored_passages(answer.passages)
    return answer


def restore_citations(citations: list[Citation]) -> list[Citation]:
    """Citations of the merged view with plain sources (in place); plain ones are left as they are."""
    for c in citations:
        if SEPARATOR in c.source:
            c.kb, c.source = split(c.source)
            c.chunk_id = split(c.chunk_id)[1] if SEPARATOR in c.chunk_id else c.chunk_id
    return citations


def _restored_passages(passages: list[Passage]) -> list[Passage]:
    for p in passages:
        if SEPARATOR in p.source:
            p.kb, p.source = split(p.source)
            p.chunk_id = split(p.chunk_id)[1]
    return passages


def _quoted_sentences(
    citations: Sequence[Citation], kb: KnowledgeBase, key: Callable[[Citation], str | None]
) -> set[tuple[str, int]]:
    """(document key, sentence start) of every sentence the citations quote from these knowledge bases."""
    quoted: set[tuple[str, int]] = set()
    for citation in citations:
        source = key(citation)
        document = kb.documents.get(source) if source else None
        if document is None:
            continue
        for span in sentence_spans(document.text, citation.start, citation.end):
            quoted.add((source, span.start))
    return quoted


def restore_event(asked: Asked, event: Event) -> Event:
    """A streamed event of `asked` with plain sources and knowledge-base labels."""
    if isinstance(event, Final):
        return Final(asked.restore(event.answer))
    asked.restore(Answer("", "", False, event.citations))  # the citations it introduces, in place
    return event
