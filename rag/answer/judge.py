"""The answer judge: the probability that a sentence (with its title, heading and the sentence before
it) answers a question, from the trained cross-encoder (`rag.embedding.cross_encoder`).

It loads in the background the first time it is wanted; until it is loaded `probabilities` returns
None and answers follow the rules alone (the chat answers while it loads). The trained files live in
`rag/answer/judge_files/` (`judge.json` is their manifest: data, seed, figures).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rag.embedding.cross_encoder import CrossEncoder

log = logging.getLogger(__name__)
FILES = Path(__file__).resolve().parent / "judge_files"


@dataclass(frozen=True)
class Candidate:
    """A sentence as the judge reads it."""

    sentence: str
    before: str = ""
    title: str = ""


_SHARED: dict[tuple[str, str], Judge] = {}
_SHARED_LOCK = threading.Lock()


def shared_judge(cache: Path, base: Callable[[], Path], files: Path | None = None) -> Judge:
    """The one judge of this process for a model cache folder and trained files (None = the shipped
    ones): every engine shares it, as it shares one model in memory."""
    files = files or FILES
    key = (str(cache), str(files))
    with _SHARED_LOCK:
        judge = _SHARED.get(key)
        if judge is None:
            judge = _SHARED[key] = Judge(base, files)
        return judge


class Judge:
    """The trained judge, loaded once in a background thread (`start`), thread-safe to call."""

    def __init__(self, base: Callable[[], Path], files: Path = FILES, batch: int = 16) -> None:
        self._base, self.files, self.batch = base, files, batch
        self._model: CrossEncoder | None = None
        self._loaded = threading.Event()
        self._started = False
        self._lock = threading.Lock()
        self._run = threading.Lock()
        self.error = ""
        """Why the judge could not be loaded ('' = it is loaded or loading)."""

    def start(self) -> None:
        """Begin loading in the background (once)."""
        with self._lock:
            if self._started:
                return
            self._started = True
        threading.Thread(target=self._load, name="judge-load", daemon=True).start()

    def _load(self) -> None:
        try:
            from rag.embedding.cross_encoder import CrossEncoder

            self._model = CrossEncoder.load(self._base(), self.files)
            log.info("answer judge loaded from %s", self.files)
        except Exception as exc:
            self.error = f"{type(exc).__name__}: {exc}"
            log.warning("answer judge not available (%s); answering by the rules", self.error)
        finally:
            self._loaded.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Start loading if needed and wait; whether the judge is usable."""
        self.start()
        self._loaded.wait(timeout)
        return self._model is not None

    @property
    def ready(self) -> bool:
        return self._model is not None

    def probabilities(
        self, question: str, candidates: Sequence[Candidate], max_length: int | None = None
    ) -> list[float] | None:
        """P(answers `question`) of each candidate (each pair cut to `max_length` tokens; default: as
        trained), or None while the judge is not loaded."""
        model = self._model
        if model is None:
            self.start()
            return None
        if not candidates:
            return []
        import torch

        from rag.embedding.cross_encoder import candidate_text

        texts = [candidate_text(c.sentence, c.before, c.title) for c in candidates]
        out: list[float] = []
        with self._run, torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            for i in range(0, len(texts), self.batch):
                part = texts[i : i + self.batch]
                logits = model(**model.batch([question] * len(part), part, max_length)).float()
                out.extend(torch.sigmoid(logits).tolist())
        return out
