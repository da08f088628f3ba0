"""The cost of adding one document to an index of a given size (`Engine.add_document` on a copy)."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
ADD_DOCUMENT = ROOT / "corpus" / "003_f1c9c6d7a3f56b9a.txt"
"""The document added: a product document of about 10 chunks."""


def add_document(engine: Any, folder: Path) -> dict[str, Any]:
    """Add one product document (about 10 chunks) to a copy of this index through `Engine.add_document`.

    Timed without a profiler (a 1 ms sampling profiler slows this Python-heavy path by about half),
    then profiled on a second copy.
    """
    from pyinstrument import Profiler

    def added(profiler: Profiler | None) -> tuple[float, Any]:
        other = _index_copy(engine, folder)
        if profiler:
            profiler.start()
        start = time.perf_counter()
        report = other.add_document(ADD_DOCUMENT)
        total = time.perf_counter() - start
        if profiler:
            profiler.stop()
        shutil.rmtree(folder / "add-document", ignore_errors=True)
        return total, report

    total, report = added(None)
    profiler = Profiler(interval=0.001)
    profiled_total, _ = added(profiler)
    (folder / "profile-add-document.txt").write_text(profiler.output_text(color=False), encoding="utf-8")
    return {
        "total_s": round(total, 3),
        "seconds": {k: round(v, 3) for k, v in report.seconds.items()},
        "embedded": report.embedded,
        "without_embedding_s": round(total - report.seconds.get("embed", 0.0), 3),
        "profiled_total_s": round(profiled_total, 3),
        "profile": str(folder / "profile-add-document.txt"),
    }


def _index_copy(engine: Any, folder: Path) -> Any:
    """An engine on a copy of this size's corpus and index, loaded."""
    from rag.engine import Engine

    copy = folder / "add-document"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(folder / "corpus", copy / "corpus")
    shutil.copytree(folder / "index", copy / "index")
    other = Engine(engine.settings.replace(corpus_dir=copy / "corpus", index_dir=copy / "index"), engine.embedder)
    other.reload()
    return other
