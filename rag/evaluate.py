"""Evaluation over question sets: retrieval hit@k / MRR, citation hits, abstention, latency.

Reads two formats, one question per line:
- gold phrases (`../shared/eval/dev_qa.jsonl`): `{"id", "question", "gold": [{"doc", "any": [...]}]}`;
  `doc` is a source-id prefix, `gold: []` means the corpus has no answer;
- passage ids (`../shared/bench/*/queries.jsonl`): `{"id", "question", "answers", "gold_ids"}`.
A passage or citation is a hit when it comes from a gold document and (when phrases are given)
contains one of them after Traditional→Simplified, pinyin stripping and whitespace removal.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from rag.answer import Answer
from rag.clean import strip_pinyin
from rag.normalize import compact


@dataclass
class Gold:
    """One acceptable place for the answer."""

    doc: str
    phrases: list[str]
    exact_id: bool = False
    """True: `doc` is a whole source id (benchmarks); False: a source-id prefix (dev set)."""

    def matches(self, source: str, text: str) -> bool:
        if not (source == self.doc if self.exact_id else source.startswith(self.doc)):
            return False
        if not self.phrases:
            return True
        haystack = matching_form(text)
        return any(matching_form(p) in haystack for p in self.phrases)


@dataclass
class EvalQuestion:
    id: str
    question: str
    gold: list[Gold]

    @property
    def answerable(self) -> bool:
        return bool(self.gold)

    def hit(self, source: str, text: str) -> bool:
        return any(g.matches(source, text) for g in self.gold)


@dataclass
class Outcome:
    """How one question went."""

    question: EvalQuestion
    answer: Answer
    seconds: float
    rank: int | None  # first retrieved passage that is a hit (1-based), None if none in the top k
    cited: bool


@dataclass
class Report:
    outcomes: list[Outcome] = field(default_factory=list)

    def metrics(self) -> dict[str, Any]:
        answerable = [o for o in self.outcomes if o.question.answerable]
        unanswerable = [o for o in self.outcomes if not o.question.answerable]
        abstained = [o for o in self.outcomes if o.answer.abstained]
        correct_abstentions = [o for o in abstained if not o.question.answerable]
        latencies = sorted(o.seconds * 1000 for o in self.outcomes)

        def share(items: list[Outcome], test: Callable[[Outcome], bool]) -> float | None:
            return round(sum(map(test, items)) / len(items), 4) if items else None

        return {
            "questions": len(self.outcomes),
            "answerable": len(answerable),
            "hit@1": share(answerable, lambda o: o.rank == 1),
            "hit@5": share(answerable, lambda o: o.rank is not None and o.rank <= 5),
            "mrr@10": round(sum(1 / o.rank for o in answerable if o.rank) / len(answerable), 4) if answerable else None,
            "citation_hit": share(answerable, lambda o: o.cited),
            "answered_when_answerable": share(answerable, lambda o: not o.answer.abstained),
            "abstention_precision": round(len(correct_abstentions) / len(abstained), 4) if abstained else None,
            "abstention_recall": round(len(correct_abstentions) / len(unanswerable), 4) if unanswerable else None,
            "latency_ms_p50": round(statistics.median(latencies), 1) if latencies else None,
            "latency_ms_p95": round(latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))], 1)
            if latencies
            else None,
        }

    def worst(self, n: int = 10) -> list[dict[str, Any]]:
        """Questions that went worst: wrong abstentions, misses, low ranks, with what came instead."""

        def badness(o: Outcome) -> tuple[int, int]:
            if o.question.answerable:
                return (3 if o.answer.abstained else 2 if o.rank is None else 1 if not o.cited else 0, o.rank or 99)
            return (3 if not o.answer.abstained else 0, 0)

        rows = []
        for o in sorted(self.outcomes, key=badness, reverse=True)[:n]:
            if badness(o)[0] == 0 and (o.rank or 1) == 1:
                break
            rows.append(
                {
                    "id": o.question.id,
                    "question": o.question.question,
                    "rank": o.rank,
                    "cited": o.cited,
                    "abstained": o.answer.abstained,
                    "evidence": round(o.answer.evidence, 3),
                    "confidence": round(o.answer.confidence, 3),
                    "retrieved": [f"{p.source} {p.text[:40]}" for p in o.answer.passages[:3]],
                }
            )
        return rows


def matching_form(text: str) -> str:
    """Pinyin stripped, Simplified, whitespace removed: how gold phrases are compared."""
    return compact(strip_pinyin(text))


def load_questions(path: Path) -> list[EvalQuestion]:
    """Questions of a `dev_qa.jsonl`-style or `queries.jsonl`-style file."""
    questions = []
    with Path(path).open(encoding="utf-8-sig") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                if "gold_ids" in record:
                    answers = [a for a in record.get("answers", []) if a]
                    gold = [Gold(str(doc), answers, exact_id=True) for doc in record["gold_ids"]]
                else:
                    gold = [Gold(str(g["doc"]), list(g.get("any", []))) for g in record["gold"]]
                questions.append(EvalQuestion(str(record.get("id", number)), record["question"], gold))
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise ValueError(f"{path}:{number}: not a question record ({exc})") from exc
    return questions


def evaluate(ask: Callable[[str], Answer], questions: list[EvalQuestion], progress: bool = False) -> Report:
    """Ask every question (one at a time) and score retrieval, citations and abstention."""
    report = Report()
    for question in tqdm(questions, desc="Evaluating", unit="q", disable=not progress):
        start = time.perf_counter()
        answer = ask(question.question)
        seconds = time.perf_counter() - start
        rank = next((p.rank for p in answer.passages if question.hit(p.source, p.text)), None)
        cited = any(question.hit(c.source, c.quote) for c in answer.citations)
        report.outcomes.append(Outcome(question, answer, seconds, rank, cited))
    return report
