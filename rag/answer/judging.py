"""The judge applied to one question's passages: which sentences answer it, how the passages rank by
that, and whether anything answers at all.

The candidates are the best sentences by the rules (`SentenceScorer`) of the first
`Settings.judge_passages` passages — at most `judge_per_passage` of each and `judge_candidates` in all —
so one batch of the judge reads every passage that could rank first and every sentence that could be
quoted.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from rag.answer.judge import Candidate, Judge
from rag.answer.masks import fill_with_terms
from rag.answer.scoring import Reading, Sentence, is_heading, spelling_hits
from rag.config import Settings
from rag.model import Hit, Span
from rag.text.normalize import to_simplified


@dataclass
class Judgement:
    """What the judge found among one question's passages."""

    scores: dict[tuple[str, int], float]
    """P(answers the question) of each judged sentence, by (source, start)."""
    hits: list[Hit]
    """The passages reordered by retrieval score and their best sentence's probability (ranks renumbered)."""

    @property
    def best(self) -> float:
        """The highest probability of any judged sentence (0 when none was judged)."""
        return max(self.scores.values(), default=0.0)

    def answers(self, confidence: float, settings: Settings) -> bool:
        """Whether the best judged sentence answers, its logit moved by the rules' `confidence`
        (`Settings.judge_threshold`, `judge_confidence_weight`, `judge_confidence_center`)."""
        moved = _logit(self.best) + settings.judge_confidence_weight * (confidence - settings.judge_confidence_center)
        return moved >= _logit(settings.judge_threshold)

    def rescored(self, ranked: list[Sentence], rule_weight: float) -> list[Sentence]:
        """`ranked` scored by the judge's probability plus `rule_weight` × the rules' score (as a share of
        the best one: the figure of a 多少 question, the cause of a 为什么 question still count), best
        first; a sentence the judge did not read has only the second part."""
        top = max((s.score for s in ranked), default=0.0)
        for sentence in ranked:
            rules = sentence.score / top if top > 0 else 0.0
            sentence.score = self.scores.get(sentence.key, 0.0) + rule_weight * rules
        return sorted(ranked, key=lambda s: (-s.score, s.rank, s.start))


def _logit(p: float) -> float:
    """log(p / (1 − p)), `p` kept within [1e-6, 1 − 1e-6]."""
    p = min(max(p, 1e-6), 1 - 1e-6)
    return math.log(p / (1 - p))


def candidates(reading: Reading, hits: list[Hit], exclude: set[tuple[str, int]]) -> list[Sentence]:
    """The sentences the judge reads: the rules' best of each of the first passages (and of the passages
    that spell out an abbreviation the question asks about, `scoring.spelling_hits`), then the next best
    overall (at most `judge_per_passage` of a passage) up to `judge_candidates`."""
    settings = reading.settings
    first = hits[: settings.judge_passages]
    ranked = reading.scorer().candidates([*first, *spelling_hits(reading, first)], exclude)
    chosen: dict[tuple[str, int], Sentence] = {}
    seen: set[str] = set()
    for sentence in ranked:
        if sentence.chunk_id not in seen:
            seen.add(sentence.chunk_id)
            chosen[sentence.key] = sentence
    per_chunk = dict.fromkeys(seen, 1)
    for sentence in ranked:
        if len(chosen) >= settings.judge_candidates:
            break
        if sentence.key not in chosen and per_chunk[sentence.chunk_id] < settings.judge_per_passage:
            per_chunk[sentence.chunk_id] += 1
            chosen[sentence.key] = sentence
    for sentence in list(chosen.values()):  # what a heading or a lead-in announces is read too
        text = reading.kb.documents[sentence.source].text
        if is_heading(text, Span(sentence.start, sentence.end)) or text[
            sentence.start : sentence.end
        ].rstrip().endswith(("：", ":")):
            after = [s for s in ranked if s.source == sentence.source and s.start >= sentence.end]
            if after:
                follower = min(after, key=lambda s: s.start)
                chosen.setdefault(follower.key, follower)
    return [s for s in ranked if s.key in chosen]


def as_read(reading: Reading, hits: list[Hit], chosen: list[Sentence]) -> list[Candidate]:
    """The `chosen` sentences as the judge reads them: in Simplified, with up to `judge_context_chars` of
    their line before them and their document's title and heading; a masked word (`*的主体责任`) filled
    where the question has it, as the rules read it (`rag.answer.masks.fill_with_terms`)."""
    kb, settings = reading.kb, reading.settings
    headings = {h.chunk.id: h.chunk.heading for h in hits}
    terms, asked = reading.scorer().terms, reading.query.lexical

    def read(text: str) -> str:
        return to_simplified(fill_with_terms(text, terms, asked))

    texts = []
    for s in chosen:
        document = kb.documents[s.source]
        line_start = document.text.rfind("\n", 0, s.start) + 1
        before = document.text[max(line_start, s.start - settings.judge_context_chars) : s.start]
        title = " ".join(part for part in (document.title, headings.get(s.chunk_id, "")) if part)
        texts.append(Candidate(read(document.text[s.start : s.end]), read(before), to_simplified(title)))
    return texts


def judge_passages(
    reading: Reading, hits: list[Hit], judge: Judge, exclude: set[tuple[str, int]] | None = None
) -> Judgement | None:
    """The judge's reading of `hits` for the question, or None while the judge is not loaded."""
    if not judge.ready:
        judge.start()
        return None
    chosen = candidates(reading, hits, exclude or set())
    settings = reading.settings
    texts = as_read(reading, hits, chosen)
    question = to_simplified(reading.query.text)[: settings.judge_max_tokens // 2]  # the sentence keeps room
    probabilities = judge.probabilities(question, texts, settings.judge_max_tokens)
    if probabilities is None:
        return None
    scores = {s.key: p for s, p in zip(chosen, probabilities, strict=True)}
    return Judgement(scores, rerank(hits, chosen, scores, settings.judge_order_weight))


def rerank(hits: list[Hit], chosen: list[Sentence], scores: dict[tuple[str, int], float], weight: float) -> list[Hit]:
    """The passages by their retrieval score plus `weight` × the probability of their best judged sentence
    (a passage without one adds nothing); ranks renumbered from 1."""
    best: dict[str, float] = {}
    for s in chosen:
        best[s.chunk_id] = max(best.get(s.chunk_id, 0.0), scores[s.key])
    ordered = sorted(hits, key=lambda h: (-(h.score + weight * best.get(h.chunk.id, 0.0)), h.rank))
    return [dataclasses.replace(h, rank=i) for i, h in enumerate(ordered, start=1)]
