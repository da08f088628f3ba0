"""Combining the rankings of one question into one score per chunk, and pooling evidence per document.

- `fuse_scores` (the default): a weighted sum of each ranking's scores made comparable — dense
  cosines as z-scores among the dense candidates, BM25 scores as a share of the question's ideal
  score (the sum of its terms' IDF). A question whose words the corpus barely shares gets small
  lexical scores, so the dense ranking decides; a question the text matches word for word is
  decided by BM25. This is how the fusion adapts to lexical confidence.
- `fuse_ranks`: weighted reciprocal-rank fusion, kept for comparison.
- `pool_documents`: lifts every chunk of a document by a damped sum of the scores of that
  document's other good chunks, so the document that matches the question as a whole comes first.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass
class Ranking:
    """One ranking of a question's candidates: chunk indices and scores, best first."""

    ids: np.ndarray
    scores: np.ndarray
    ideal: float | None = None
    """For BM25: the question's ideal score (sum of its distinct terms' IDF); None for dense cosines."""
    scale: tuple[float, float] | None = None
    """For cosines: the mean and standard deviation to z-score them with; None = their own. Several
    knowledge bases searched for one question share one (`dense_scale`), so their scores compare."""


def normalized(ranking: Ranking) -> tuple[dict[int, float], float]:
    """Each candidate's comparable score, and the score of a chunk the ranking did not return."""
    scores = np.asarray(ranking.scores, dtype=np.float64)
    if scores.size == 0:
        return {}, 0.0
    if ranking.ideal is None:  # cosines: z-score among the candidates, a third of a unit per sigma
        mean, std = ranking.scale or (float(scores.mean()), float(scores.std()))
        values = (scores - mean) / (std + 1e-6) / 3
        floor = float(values[-1])
    else:
        values = scores / max(ranking.ideal, 1e-9)
        floor = 0.0
    return dict(zip(ranking.ids.tolist(), values.tolist(), strict=True)), floor


def dense_scale(cosines: list[np.ndarray], depth: int) -> tuple[float, float]:
    """The mean and standard deviation of the best `depth` cosines of several dense rankings together:
    the z-scores of one index holding them all."""
    pooled = np.sort(np.concatenate([np.asarray(c, dtype=np.float64) for c in cosines] or [np.zeros(0)]))[::-1]
    pooled = pooled[:depth]
    return (float(pooled.mean()), float(pooled.std())) if pooled.size else (0.0, 1.0)


def fuse_scores(rankings: dict[str, Ranking], weights: dict[str, float]) -> dict[int, float]:
    """Weighted sum of the normalized scores of every ranking, for every chunk any ranking returned."""
    parts = {name: normalized(r) for name, r in rankings.items() if weights.get(name)}
    candidates = {idx for values, _ in parts.values() for idx in values}
    return {
        idx: sum(weights[name] * values.get(idx, floor) for name, (values, floor) in parts.items())
        for idx in candidates
    }


def fuse_ranks(rankings: dict[str, Ranking], weights: dict[str, float], k: int) -> dict[int, float]:
    """Weighted reciprocal-rank fusion: sum of weight / (k + rank) over the rankings."""
    fused: dict[int, float] = {}
    for name, ranking in rankings.items():
        for rank, idx in enumerate(ranking.ids.tolist(), 1):
            fused[idx] = fused.get(idx, 0.0) + weights.get(name, 0.0) / (k + rank)
    return fused


def pool_documents(
    scores: dict[int, float], document_of: Callable[[int], str], weight: float, damping: float
) -> dict[int, float]:
    """Every chunk's score plus `weight` × the damped sum of its document's other candidate chunks
    (second best × damping, third × damping², …; only positive scores count). The order of the
    chunks within a document is kept."""
    if not weight:
        return scores
    by_document: dict[str, list[float]] = defaultdict(list)
    for idx, score in scores.items():
        by_document[document_of(idx)].append(max(score, 0.0))
    bonus = {}
    for source, values in by_document.items():
        values.sort(reverse=True)
        bonus[source] = weight * sum(v * damping**i for i, v in enumerate(values[1:], 1))
    return {idx: score + bonus[document_of(idx)] for idx, score in scores.items()}
