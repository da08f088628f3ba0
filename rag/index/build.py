"""Building the index: incremental builds that verify before they go live (loading them is
`rag.index.knowledge_base`).

An index folder holds one or two complete builds (`build-*`) and a `CURRENT` file naming the live
one. A build runs in five steps, one function each:

1. `rag.index.reuse.plan`: what earlier builds offer, each part only after its checksums verify —
   documents and their chunks (when the pipeline version is unchanged, `rag.index.pipeline`), vectors by
   (model, embedded-text hash), token ids by text hash (when the tokenizer is unchanged);
2. `rag.index.gather.documents`: unchanged documents keep their chunks; the others are cleaned and chunked;
3. `rag.index.gather.vectors`: only chunk texts that no verified earlier build has a vector for are
   embedded (and `lexical_tokens`: only texts no earlier build tokenized are tokenized);
4. `rag.index.commit.write`: documents, chunks, vectors, tokens, the dense and BM25 indexes and a
   manifest with every file's size and checksum, into a fresh folder;
5. `rag.index.commit.make_live` loads the new build as a reader would and checks documents ↔ chunks ↔
   vectors ↔ tokens; only then does it make it live by atomically replacing `CURRENT`.

A crash, Ctrl-C or a full disk at any step leaves the previous build live and nothing half-written.
"""

from __future__ import annotations

import fcntl
import logging
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from rag.config import Settings
from rag.index import gather, integrity
from rag.index.backends.factory import open_backend
from rag.index.commit import IndexWriteError, after_switch, make_live, remove_old_builds, write
from rag.index.knowledge_base import KnowledgeBase
from rag.index.layout import CURRENT, LEXICAL, current_build, index_folder
from rag.index.progress import OnProgress, Progress
from rag.index.report import BuildReport
from rag.index.reuse import plan
from rag.ingest.loaders import load_corpus

if TYPE_CHECKING:
    from rag.embedding.embedder import Embedder

log = logging.getLogger(__name__)


# --- locks and leftovers -------------------------------------------------------------------------


@contextmanager
def build_lock(index_dir: Path) -> Iterator[None]:
    """One build at a time per index folder, across threads and processes."""
    try:
        index_dir.mkdir(parents=True, exist_ok=True)
        handle = open(index_dir / ".lock", "w")  # noqa: SIM115 - closed by the with below
    except OSError as exc:
        raise IndexWriteError(
            f"cannot write in the index folder {index_dir} ({exc.strerror or exc}): "
            "check its permissions and free space, or give another --index"
        ) from exc
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _remove_leftovers(index_dir: Path) -> None:
    """What builds killed mid-way left (only the lock holder writes, so no other build is running):
    `.CURRENT.<pid>.tmp` pointers and build folders that never got a manifest."""
    live = current_build(index_dir)
    for path in index_dir.glob(f".{CURRENT}.*.tmp"):
        log.info("removing %s, left by an interrupted build", path.name)
        path.unlink(missing_ok=True)
    for folder in index_dir.glob("build-*"):
        if folder.is_dir() and folder != live and not (folder / integrity.MANIFEST).is_file():
            log.info("removing %s, an incomplete build left by an interrupted one", folder.name)
            shutil.rmtree(folder, ignore_errors=True)


# --- the build ---------------------------------------------------------------------------------


def build(
    settings: Settings,
    embedder: Embedder,
    corpus: Path | None = None,
    rebuild: bool = False,
    progress: bool = True,
    live: KnowledgeBase | None = None,
    on_progress: OnProgress | None = None,
) -> BuildReport:
    """Bring the index in `settings.index_dir` up to date with `corpus` (default `settings.corpus_dir`).

    Re-processes every document when the pipeline changed (`report.notes` says why) and repairs a
    damaged live build, re-embedding only chunk texts no verified build has a vector for. `live` is
    the index as loaded now, if it is: it is re-used instead of read again. `progress`: a tqdm bar on
    stderr, else progress lines in the log. `on_progress(stage, done, total)` is called as the
    stages advance: `clean` (documents cleaned and chunked), `embed` (chunks embedded), `write`.
    Raises `IndexWriteError` (the previous index stays live) when the build cannot be written.
    """
    corpus = Path(corpus or settings.corpus_dir)
    index_dir = index_folder(Path(settings.index_dir))
    report = BuildReport()
    clock = time.perf_counter()
    with build_lock(index_dir):
        _remove_leftovers(index_dir)
        reuse = plan(index_dir, settings, embedder, rebuild, live, report.notes)
        raws, report.skipped = load_corpus(corpus)
        report.seconds["load"] = time.perf_counter() - clock

        clock = time.perf_counter()
        parts = gather.documents(raws, reuse, settings, report, progress, on_progress)
        if not raws:
            log.warning("the corpus %s has no readable document: the index will be empty", corpus)
        report.seconds["clean_chunk"] = time.perf_counter() - clock

        report.chunks = sum(len(part.chunks) for part in parts)
        if not report.changed_anything and not reuse.must_write:
            log.info("index is up to date (%d documents, %d chunks)", len(parts), report.chunks)
            return report
        clock = time.perf_counter()
        vectors = gather.vectors(parts, reuse, embedder, report, progress, on_progress)
        report.seconds["embed"] = time.perf_counter() - clock

        clock = time.perf_counter()
        writing = Progress("write", 1, "builds", False, on_progress)
        tokens = {name: gather.lexical_tokens(name, parts, reuse) for name in LEXICAL}
        backend = open_backend(settings)
        folder = write(index_dir, settings, backend, embedder, parts, vectors, tokens, report, reuse.pipeline)
        make_live(index_dir, folder, settings, backend, report)
        writing.advance()
        writing.close()
        remove_old_builds(index_dir, keep=folder, backend=backend)
        after_switch(backend, index_dir, report)
        report.seconds["index"] = time.perf_counter() - clock
    return report
