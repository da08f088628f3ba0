"""Evaluation over question sets: retrieval hit@k / MRR, citations, abstention, answer recall, latency.

Reads four formats, one record per line (`load_questions` tells them apart):
- gold phrases (`../shared/eval/dev_qa.jsonl`): `{"id", "question", "gold": [{"doc", "any": [...]}]}`;
  `doc` is a source-id prefix, `gold: []` means the corpus has no answer;
- passage ids (`../shared/bench/*/queries.jsonl`): `{"id", "question", "answers", "gold_ids"}`;
- answer phrases by kind (`dev_kinds.jsonl`): `{"id", "question", "kind", "gold_sources", "must_contain"}`;
- two-turn conversations (`dev_followups.jsonl`): `{"id", "turns": [q1, q2], "kind", "gold_sources",
  "must_contain"}`: both turns are asked in one conversation and the second answer is scored.
A passage or citation is a hit when it comes from a gold document and (when phrases are given)
contains one of them in matching form (`matching_form`). `must_contain` recall is the share of the
phrases found in the answer text (an abstention scores 0). A question that raises is an error row;
the run goes on.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from rag.answer.types import Answer
from rag.ingest.clean import strip_pinyin
from rag.text.normalize import compact

#: `ask(question, history)`: the system under evaluation (history = earlier answers of the conversation).
Ask = Callable[[str, Sequence[Answer]], Answer]

_FULL_WIDTH = str.maketrans({chr(c): chr(c + 0xFEE0) for c in range(0x21, 0x7F) if not chr(c).isalnum()})


def matching_form(text: str) -> str:
    """How phrases are compared: pinyin stripped, Simplified, whitespace removed, ASCII punctuation
    folded to full width (`../shared/eval/README.md`)."""
    return compact(strip_pinyin(text)).translate(_FULL_WIDTH)


@dataclass
class Gold:
    """One acceptable place for the answer."""

    doc: str
    phrases: list[str]
    exact_id: bool = False
    """True: `doc` is a whole source id (benchmarks, dev_kinds); False: a source-id prefix (dev_qa)."""

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
    kind: str = ""
    must_contain: list[str] = field(default_factory=list)
    """Phrases the answer text should hold (dev_kinds, dev_followups)."""
    history: list[str] = field(default_factory=list)
    """Earlier turns of the conversation, asked first (dev_followups)."""

    @property
    def answerable(self) -> bool:
        return bool(self.gold)

    def hit(self, source: str, text: str) -> bool:
        return any(g.matches(source, text) for g in self.gold)

    def source_hit(self, source: str) -> bool:
        return any(source == g.doc if g.exact_id else source.startswith(g.doc) for g in self.gold)


@dataclass
class Outcome:
    """How one question went (`answer` is None when asking raised: then `error` says what)."""

    question: EvalQuestion
    answer: Answer | None
    seconds: float
    rank: int | None = None  # first retrieved passage that is a hit (1-based), None if none in the top k
    cited: bool = False
    recall: float | None = None  # share of must_contain phrases in the answer text
    missing: list[str] = field(default_factory=list)
    invalid_quotes: int = 0
    source_hit: bool = False
    error: str = ""

    @property
    def abstained(self) -> bool:
        return self.answer is not None and self.answer.abstained

    def to_dict(self, answer: bool = False) -> dict[str, Any]:
        """The eval record as JSON (with the full answer when `answer`)."""
        a = self.answer
        record: dict[str, Any] = {
            "id": self.question.id,
            "question": self.question.question,
            "kind": self.question.kind,
            "rank": self.rank,
            "cited": self.cited,
            "abstained": self.abstained,
            "reason": a.reason if a else "",
            "recall": None if self.recall is None else round(self.recall, 4),
            "missing": self.missing,
            "invalid_quotes": self.invalid_quotes,
            "source_hit": self.source_hit,
            "evidence": round(a.evidence, 4) if a else None,
            "confidence": round(a.confidence, 4) if a else None,
            "ms": round(self.seconds * 1000, 1),
        }
        if self.question.history:
            record["history"] = self.question.history
        if self.error:
            record["error"] = self.error
        if answer and a is not None:
            record["answer"] = a.to_dict()
        return record


def _share(items: list[Outcome], test: Callable[[Outcome], bool]) -> float | None:
    return round(sum(map(test, items)) / len(items), 4) if items else None


def _mean(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 4) if values else None


@dataclass
class Report:
    outcomes: list[Outcome] = field(default_factory=list)

    def metrics(self) -> dict[str, Any]:
        done = [o for o in self.outcomes if not o.error]
        answerable = [o for o in done if o.question.answerable]
        unanswerable = [o for o in done if not o.question.answerable]
        abstained = [o for o in done if o.abstained]
        correct_abstentions = [o for o in abstained if not o.question.answerable]
        latencies = sorted(o.seconds * 1000 for o in done)
        metrics: dict[str, Any] = {
            "questions": len(self.outcomes),
            "answerable": len(answerable),
            "hit@1": _share(answerable, lambda o: o.rank == 1),
            "hit@5": _share(answerable, lambda o: o.rank is not None and o.rank <= 5),
            "mrr@10": round(sum(1 / o.rank for o in answerable if o.rank) / len(answerable), 4) if answerable else None,
            "citation_hit": _share(answerable, lambda o: o.cited),
            "answered_when_answerable": _share(answerable, lambda o: not o.abstained),
            "abstention_precision": round(len(correct_abstentions) / len(abstained), 4) if abstained else None,
            "abstention_recall": round(len(correct_abstentions) / len(unanswerable), 4) if unanswerable else None,
            "false_abstentions": sum(o.abstained for o in answerable),
            "missed_abstentions": sum(not o.abstained for o in unanswerable),
            "invalid_quotes": sum(o.invalid_quotes for o in done),
            "errors": len(self.outcomes) - len(done),
            "latency_ms_p50": round(statistics.median(latencies), 1) if latencies else None,
            "latency_ms_p95": round(latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))], 1)
            if latencies
            else None,
        }
        scored = [o for o in answerable if o.recall is not None]
        if scored:
            metrics["must_contain_recall"] = _mean([o.recall or 0.0 for o in scored])
            metrics["source_hit"] = _share(scored, lambda o: o.source_hit)
            kinds = sorted({o.question.kind for o in scored})
            metrics["recall_by_kind"] = {
                k: _mean([o.recall or 0.0 for o in scored if o.question.kind == k]) for k in kinds
            }
        return metrics

    def worst(self, n: int = 10) -> list[dict[str, Any]]:
        """Questions that went worst: errors, wrong abstentions, misses, low recall, with what came instead."""

        def badness(o: Outcome) -> tuple[float, int]:
            if o.error:
                return (5, 0)
            if o.question.answerable:
                if o.abstained:
                    return (4, 0)
                if o.recall is not None:
                    return (3 * (1 - o.recall), o.rank or 99)
                return (2 if o.rank is None else 1 if not o.cited else 0, o.rank or 99)
            return (4 if not o.abstained else 0, 0)

        rows = []
        for o in sorted(self.outcomes, key=badness, reverse=True)[:n]:
            if badness(o)[0] == 0 and (o.rank or 1) == 1:
                break
            row = o.to_dict()
            row["retrieved"] = [f"{p.source} {p.text[:40]}" for p in o.answer.passages[:3]] if o.answer else []
            rows.append(row)
        return rows


def load_questions(path: Path) -> list[EvalQuestion]:
    """Questions of a `dev_qa`, `queries`, `dev_kinds` or `dev_followups` style file."""
    questions = []
    with Path(path).open(encoding="utf-8-sig") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                questions.append(_question(json.loads(line), number))
            except (json.JSONDecodeError, KeyError, TypeError, IndexError) as exc:
                raise ValueError(f"{path}:{number}: not a question record ({exc})") from exc
    return questions


def _question(record: dict[str, Any], number: int) -> EvalQuestion:
    qid = str(record.get("id", number))
    if "gold_ids" in record:
        answers = [a for a in record.get("answers", []) if a]
        gold = [Gold(str(doc), answers, exact_id=True) for doc in record["gold_ids"]]
        return EvalQuestion(qid, record["question"], gold)
    if "gold_sources" in record:
        phrases = [str(p) for p in record.get("must_contain", [])]
        gold = [Gold(str(doc), phrases, exact_id=True) for doc in record["gold_sources"]]
        turns = [str(t) for t in record["turns"]] if "turns" in record else [record["question"]]
        return EvalQuestion(qid, turns[-1], gold, str(record.get("kind", "")), phrases, turns[:-1])
    gold = [Gold(str(g["doc"]), list(g.get("any", []))) for g in record["gold"]]
    return EvalQuestion(qid, record["question"], gold, str(record.get("kind") or record.get("group", "")))


def score(
    question: EvalQuestion, answer: Answer, seconds: float, document_text: Callable[[str], str] | None = None
) -> Outcome:
    """Score one answer: rank of the first gold passage, cited gold, recall, quote validity."""
    rank = next((p.rank for p in answer.passages if question.hit(p.source, p.text)), None)
    cited = any(question.hit(c.source, c.quote) for c in answer.citations)
    outcome = Outcome(question, answer, seconds, rank, cited)
    outcome.source_hit = any(question.source_hit(c.source) for c in answer.citations)
    if question.must_contain:
        text = "" if answer.abstained else matching_form(answer.answer)
        outcome.missing = [p for p in question.must_contain if matching_form(p) not in text]
        outcome.recall = 1 - len(outcome.missing) / len(question.must_contain)
    if document_text is not None:
        outcome.invalid_quotes = sum(not _valid_quote(c, document_text) for c in answer.citations)
    return outcome


def _valid_quote(citation: Any, document_text: Callable[[str], str]) -> bool:
    try:
        text = document_text(citation.source)
    except (KeyError, ValueError):
        return False
    return text[citation.start : citation.end] == citation.quote and matching_form(citation.quote) in matching_form(
        text
    )


def evaluate(
    ask: Ask,
    questions: list[EvalQuestion],
    progress: bool = False,
    document_text: Callable[[str], str] | None = None,
) -> Report:
    """Ask every question (one at a time, earlier turns first) and score it; `document_text(source)`
    gives a document's text for checking quotes. A question that raises becomes an error row."""
    report = Report()
    for question in tqdm(questions, desc="Evaluating", unit="q", disable=not progress):
        start = time.perf_counter()
        try:
            history: list[Answer] = []
            for turn in question.history:
                history.append(ask(turn, list(history)))
            start = time.perf_counter()
            answer = ask(question.question, history)
        except Exception as exc:  # an eval run reports a failing question and goes on
            seconds = time.perf_counter() - start
            report.outcomes.append(Outcome(question, None, seconds, error=f"{type(exc).__name__}: {exc}"))
            continue
        report.outcomes.append(score(question, answer, time.perf_counter() - start, document_text))
    return report
