"""How far the answer judge should move the passages: `Settings.judge_order_weight`, hit@1 / hit@5 of the
answer's passages for a grid of weights, on every question set.

    python benchmarks/judge_order.py                  # dev_qa, drcd_dev_simpq, stard, cmrc2018_dev
    python benchmarks/judge_order.py --update         # also the table into docs/tuning.md (judge_order)
    python benchmarks/judge_order.py --sets dev_qa --limit 100

Every answerable question is retrieved once at the depth `ask` uses and the judge reads the sentences the
product gives it (`rag.answer.judging.candidates` and `judge_passages`); each weight then orders the
passages as the product does (`rag.answer.judging.rerank`). Weight 0 is retrieval order. Each set is
indexed as its own knowledge base under `--index-dir` (built there when missing). The weight was chosen on
dev_qa, drcd_dev_simpq and stard (in-sample there); cmrc2018_dev was not looked at while choosing.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from report import write  # noqa: E402

from rag.answer.judging import candidates, judge_passages, rerank  # noqa: E402
from rag.answer.scoring import Reading, Sentence  # noqa: E402
from rag.config import Settings  # noqa: E402
from rag.engine import Engine  # noqa: E402
from rag.model import Hit  # noqa: E402
from rag.service.evaluate import EvalQuestion, load_questions  # noqa: E402

SHARED = ROOT.parent / "shared"
SETS = ("dev_qa", "drcd_dev_simpq", "stard", "cmrc2018_dev")
CHOSEN_ON = ("dev_qa", "drcd_dev_simpq", "stard")
WEIGHTS = (0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 4.0)
DOC = ROOT / "docs" / "tuning.md"
log = logging.getLogger("judge_order")


@dataclasses.dataclass
class Read:
    """One question's passages and the judge's probabilities of their sentences."""

    question: EvalQuestion
    hits: list[Hit]
    chosen: list[Sentence]
    scores: dict[tuple[str, int], float]


def _files(name: str) -> tuple[Path | None, Path]:
    """(corpus, questions) of a set; corpus None = the project's `corpus/`."""
    if name == "dev_qa":
        return None, SHARED / "eval" / "dev_qa.jsonl"
    return SHARED / "bench" / name / "corpus.jsonl", SHARED / "bench" / name / "queries.jsonl"


def read_set(name: str, index_dir: Path, limit: int | None) -> list[Read]:
    """Every answerable question of `name` retrieved and read by the judge once."""
    corpus, questions = _files(name)
    settings = Settings(corpus_dir=corpus or ROOT / "corpus", index_dir=index_dir / name)
    engine = Engine.open(settings, build=True)
    if not engine.wait_for_judge():
        raise SystemExit(f"the answer judge did not load: {engine.judge.error}")
    state = engine._state()
    reads = []
    for question in [q for q in load_questions(questions) if q.answerable][:limit]:
        query = state.retriever.query(question.question)
        hits = state.retriever.search(query, max(10, settings.answer_passages))
        reading = Reading(state.kb, settings, query, None)
        judgement = judge_passages(reading, hits, engine.judge)
        scores = judgement.scores if judgement is not None else {}
        reads.append(Read(question, hits, candidates(reading, hits, set()), scores))
    return reads


def figures(reads: list[Read], weight: float) -> tuple[float, float]:
    """hit@1, hit@5 of the passages ordered with `weight`."""
    one = five = 0
    for read in reads:
        ordered = rerank(read.hits, read.chosen, read.scores, weight)
        gold = [read.question.hit(h.chunk.source, h.chunk.text) for h in ordered]
        one += gold[0] if gold else 0
        five += any(gold[:5])
    return one / max(len(reads), 1), five / max(len(reads), 1)


def table(results: dict[str, list[Read]], chosen: float) -> str:
    names = list(results)
    rows = [
        "| judge_order_weight | " + " | ".join(f"{n} ({len(results[n])}) hit@1 / hit@5" for n in names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for weight in WEIGHTS:
        label = (
            f"**{weight:g} (chosen)**"
            if weight == chosen
            else ("0 (retrieval order)" if weight == 0 else f"{weight:g}")
        )
        cells = [" / ".join(f"{v:.3f}" for v in figures(results[n], weight)) for n in names]
        rows.append(f"| {label} | " + " | ".join(cells) + " |")
    held_out = [n for n in names if n not in CHOSEN_ON]
    return "\n".join(
        [
            "Measured by `python benchmarks/judge_order.py` (the answer's passages, stard: R@1 / R@5). "
            f"In-sample on {', '.join(n for n in names if n in CHOSEN_ON)} (the weight was chosen on them)"
            + (f"; {', '.join(held_out)} was not looked at while choosing." if held_out else "."),
            "",
            *rows,
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sets", default=",".join(SETS), help="comma-separated, from " + ", ".join(SETS))
    parser.add_argument("--index-dir", type=Path, help="one index folder per set (default: a temporary folder)")
    parser.add_argument("--limit", type=int, help="at most this many questions per set")
    parser.add_argument("--update", action="store_true", help="write the table into docs/tuning.md (judge_order)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    chosen = Settings().judge_order_weight
    with tempfile.TemporaryDirectory() as tmp:
        index_dir = args.index_dir or Path(tmp)
        results = {}
        for name in args.sets.split(","):
            log.info("reading %s", name)
            results[name] = read_set(name, index_dir, args.limit)
    text = table(results, chosen)
    print(text)
    if args.update:
        write(DOC, "judge_order", text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
