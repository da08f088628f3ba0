"""The read side of an index: loading the live build (`KnowledgeBase`, or the last good one when it is
damaged) and checking every build in full (`check`, for `rag doctor`)."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rag.config import Settings
from rag.index import integrity
from rag.index.backends.base import Backend, DenseSearch, LexicalSearch
from rag.index.backends.factory import backend_of, same_store
from rag.index.integrity import Damaged, Problem
from rag.index.layout import (
    CURRENT,
    FORMAT,
    IndexUnavailable,
    current_build,
    index_folder,
    other_builds,
    pointer_problem,
    read_records,
    stored_rows,
)
from rag.index.pipeline import changed_parts, pipeline_version
from rag.model import Chunk, Document

log = logging.getLogger(__name__)


class IndexDamaged(IndexUnavailable):
    """No build of the index verifies; `rag index` rebuilds it from the corpus."""


@dataclass
class KnowledgeBase:
    """A loaded, read-only build: documents, chunks and the three search structures."""

    folder: Path
    manifest: dict[str, Any]
    documents: dict[str, Document]
    chunks: list[Chunk]
    dense: DenseSearch
    lexical: dict[str, LexicalSearch]
    """Searched by `Retriever`; local files or Milvus (`rag.index.backends`), hits are rows of `chunks`."""
    warnings: list[str] = field(default_factory=list)
    """What is wrong with the index (in Chinese, for the page): a damaged live build answered from the
    previous one, or damaged files that only the next build needs. Empty when all is well."""

    _by_source: dict[str, list[Chunk]] = field(default_factory=dict, repr=False)

    @property
    def model_name(self) -> str:
        return str(self.manifest["model"]["name"])

    def chunks_of(self, source: str) -> list[Chunk]:
        """The chunks of one document, in order."""
        if not self._by_source:
            for chunk in self.chunks:
                self._by_source.setdefault(chunk.source, []).append(chunk)
        return self._by_source.get(source, [])


def load(index_dir: Path, settings: Settings | None = None) -> KnowledgeBase:
    """Load the live build of `index_dir`, verified at load depth (`rag.index.integrity`).

    When it is damaged, the newest earlier build that verifies is loaded instead, with a warning in
    `KnowledgeBase.warnings`; so is the newest build when `CURRENT` cannot be read. Raises
    `IndexUnavailable` (saying what to do) when there is no index or no build verifies. `settings`
    say how to reach Milvus for a build on the Milvus store (by default the connection its manifest
    records).
    """
    live = current_build(index_dir)
    if live is None:
        raise IndexUnavailable(f"no index in {index_dir}: build it with `rag index` (or start `python app.py`)")
    pointer = pointer_problem(index_dir)
    if pointer:
        log.warning(
            "%s is unusable (%s): answering from the newest build that verifies until `rag index` replaces it",
            Path(index_dir) / CURRENT,
            pointer,
        )
    try:
        kb = load_build(live, settings=settings)
    except Damaged as damage:
        log.warning("the live index build %s is damaged: %s", live.name, damage)
        kb = _previous(Path(index_dir), live, damage, settings)
    if pointer:
        kb.warnings.insert(
            0,
            f"索引指针文件 CURRENT 已损坏，正在使用最新的完好索引（{kb.manifest.get('created', '')} 建立）；"
            "请运行 rag index 修复。",
        )
    return kb


def _previous(index_dir: Path, live: Path, damage: Damaged, settings: Settings | None) -> KnowledgeBase:
    """The newest build but `live` that verifies, with a warning; `IndexDamaged` when none does."""
    for folder in other_builds(index_dir, exclude=live):
        with suppress(Damaged, IndexUnavailable):
            kb = load_build(folder, settings=settings)
            created = kb.manifest.get("created", "")
            kb.warnings.insert(
                0,
                f"当前索引已损坏（{integrity.summary_chinese(damage.problems)}），正在使用上一个完好的索引"
                f"（{created} 建立），最近增删的文档可能不在其中；请运行 rag index 修复。",
            )
            log.warning("answering from the previous build %s (%s)", folder.name, created)
            return kb
    raise IndexDamaged(
        f"the index in {index_dir} is damaged ({damage}) and no earlier build verifies: "
        "run `rag index` to rebuild it from the corpus"
    ) from None


def on_store(settings: Settings) -> bool:
    """Is the live build of `settings.index_dir` on the store `settings.store` names? (True when it
    cannot tell: a damaged manifest is `load`'s business.)"""
    folder = current_build(Path(settings.index_dir))
    if folder is None:
        return True
    try:
        return same_store(integrity.read_manifest(folder), settings)
    except Damaged:
        return True


def load_build(folder: Path, strict: bool = False, settings: Settings | None = None) -> KnowledgeBase:
    """One build, verified; raises `Damaged`. Damage in files that questions do not read (vectors,
    tokens) becomes a warning, or with `strict` an error too."""
    manifest = integrity.read_manifest(folder)
    if manifest.get("format") != FORMAT:
        raise IndexUnavailable(
            f"the index in {folder.parent} has an older format: rebuild it with `rag index --rebuild`"
        )
    backend = backend_of(manifest, folder, settings)
    problems = integrity.check_files(folder, manifest, "sizes")
    if not any(p.serves for p in problems):
        problems += backend.problems(folder, manifest, "load")  # before the store opens what it holds
    if any(p.serves for p in problems):
        raise Damaged(folder, problems)
    with ThreadPoolExecutor(1) as pool:  # hash what questions read while reading it (hashing releases the GIL)
        hashing = pool.submit(integrity.check_files, folder, manifest, "load")
        try:
            documents, chunks, dense, lexical = _read_build(folder, manifest, backend)
        except Damaged as unreadable:
            corrupted = [p for p in hashing.result() if p.serves]
            raise Damaged(folder, corrupted or unreadable.problems) from None
        problems = hashing.result()
    if any(p.serves for p in problems):
        raise Damaged(folder, problems)
    milvus = (manifest.get("store") or {}).get("collection")
    searched = f"Milvus collection {milvus}" if milvus else "dense.faiss"
    counts = {searched: dense.size, **stored_rows(folder)}
    problems += integrity.check_structure(documents, chunks, manifest, counts)
    lexicon = "lexicon_{}.json" if milvus else "bm25_{}"
    problems += [Problem(lexicon.format(n), p) for n, index in lexical.items() if (p := index.problem())]
    if (strict and problems) or any(p.serves for p in problems):
        raise Damaged(folder, problems)
    warnings = []
    if problems:
        summary = integrity.summary(problems)
        log.warning("index build %s: %s (questions are not affected; `rag index` repairs it)", folder.name, summary)
        warnings.append(
            f"索引文件损坏（{integrity.summary_chinese(problems)}）；问答不受影响，运行 rag index 即可修复。"
        )
    return KnowledgeBase(folder, manifest, documents, chunks, dense, lexical, warnings)


def _read_build(
    folder: Path, manifest: dict[str, Any], backend: Backend
) -> tuple[dict[str, Document], list[Chunk], DenseSearch, dict[str, LexicalSearch]]:
    """Documents, chunks and the search structures of a build, as stored (`Damaged` when unreadable;
    `IndexUnavailable` when its store cannot be reached)."""
    documents, chunks = read_records(folder)
    dense, lexical = backend.open(folder, manifest)
    return documents, chunks, dense, lexical


@dataclass
class BuildCheck:
    """The full verification of one build."""

    folder: Path
    live: bool
    problems: list[Problem]
    manifest: dict[str, Any] | None
    stale: list[str] = field(default_factory=list)
    """Parts of the pipeline that changed since the build (`rag index` will re-process)."""

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def unverified(self) -> bool:
        """Nothing found wrong, but the build recorded no checksums to verify it by (not healthy either)."""
        return bool(self.problems) and all(p.kind == "unverified" for p in self.problems)


def check(index_dir: Path, settings: Settings | None = None) -> list[BuildCheck]:
    """Verify every build of an index in full (checksums and structure), changing nothing; live first.

    When `CURRENT` cannot be read, the first result is `CURRENT` itself (live, with that problem),
    and every build follows as a previous one."""
    index_dir = index_folder(index_dir)
    pointer = pointer_problem(index_dir)
    live = None if pointer else current_build(index_dir)
    results = []
    if pointer:
        results.append(BuildCheck(index_dir / CURRENT, True, [Problem(CURRENT, pointer, "unreadable")], None))
    for folder in ([live] if live else []) + other_builds(index_dir, exclude=live):
        manifest = None
        try:
            manifest = integrity.read_manifest(folder)
            problems = integrity.check_files(folder, manifest, "full")
            problems += backend_of(manifest, folder, settings).problems(folder, manifest, "full")
            if not problems:
                load_build(folder, strict=True, settings=settings)
        except Damaged as damage:
            problems = damage.problems
        except IndexUnavailable as exc:
            problems = [Problem("manifest.json", str(exc), "unreadable")]
        stale = changed_parts(manifest.get("pipeline"), pipeline_version(settings or Settings())) if manifest else []
        results.append(BuildCheck(folder, folder == live, problems, manifest, stale))
    return results
