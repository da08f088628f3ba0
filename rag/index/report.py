"""What a build did (`BuildReport`), filled in step by step as the build runs."""

from __future__ import annotations

from dataclasses import dataclass, field

from rag.index.knowledge_base import KnowledgeBase
from rag.ingest.loaders import Skipped


@dataclass
class BuildReport:
    """What a build did."""

    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    reprocessed: list[str] = field(default_factory=list)
    """Unchanged files cleaned and chunked again: the pipeline changed, or the live build was damaged."""
    skipped: list[Skipped] = field(default_factory=list)
    chunks: int = 0
    embedded: int = 0
    reused_vectors: int = 0
    """Vectors of re-processed or changed documents found by their text in an earlier build."""
    notes: list[str] = field(default_factory=list)
    """Why documents were re-processed, what was damaged and repaired: one line each."""
    seconds: dict[str, float] = field(default_factory=dict)
    verify_seconds: float = 0.0
    """Part of `seconds["index"]`: verifying the new build before it went live."""
    kb: KnowledgeBase | None = field(default=None, repr=False)
    """The new build, loaded and verified (None when nothing was written)."""
    kept: dict[str, str] = field(default_factory=dict)
    """Replaced or removed corpus files kept in the corpus's `.versions/` folder: source -> kept file name."""

    @property
    def changed_anything(self) -> bool:
        return bool(self.added or self.changed or self.removed or self.reprocessed)
