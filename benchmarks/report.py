"""Quality figures of README.md and docs/tuning.md, regenerated from the code's own evaluation.

    python benchmarks/report.py            # print the figures; exit 1 when the committed ones differ
    python benchmarks/report.py --update   # write them between the marker comments
    python benchmarks/report.py --update --bench   # also drcd_dev_simpq and stard (slow: indexes them)

The dev sets (`../shared/eval/`) and `tests/data/calibration.jsonl` are small: the default run
indexes `corpus/` in a temporary folder (about 25 s) and asks every question (about 20 s). Figures
sit between `<!-- figures:NAME -->` and `<!-- /figures:NAME -->`; `tests/test_report.py` fails when
the committed dev-set figures differ from what the code produces. Latency is not reported here
(it depends on the machine; `benchmarks/bench.py` measures it).
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from rag.service.evaluate import Report, evaluate, load_questions  # noqa: E402

SHARED = ROOT.parent / "shared"
DEV_SETS = {name: SHARED / "eval" / f"{name}.jsonl" for name in ("dev_qa", "dev_kinds", "dev_followups")}
CALIBRATION = ROOT / "tests" / "data" / "calibration.jsonl"
BENCH_SETS = ("drcd_dev_simpq", "stard")
README = ROOT / "README.md"
TUNING = ROOT / "docs" / "tuning.md"
IN_SAMPLE = "in-sample: these sets were used to develop and tune the product"


def run(engine: Any, path: Path) -> Report:
    """Evaluate the engine on one question file, the way `rag eval` does."""
    return evaluate(
        lambda q, history: engine.ask(q, history=history, k=10),
        load_questions(path),
        document_text=lambda source: engine.document(source).text,
    )


def _f(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def dev_figures(engine: Any) -> dict[tuple[Path, str], str]:
    """The dev-set blocks: (file, block name) → Markdown."""
    qa = run(engine, DEV_SETS["dev_qa"]).metrics()
    kinds_report = run(engine, DEV_SETS["dev_kinds"])
    kinds = kinds_report.metrics()
    follow = run(engine, DEV_SETS["dev_followups"]).metrics()
    calibration = run(engine, CALIBRATION)
    no_answer = [o for o in kinds_report.outcomes if not o.question.answerable]
    quality = "\n".join(
        [
            f"Measured by `python benchmarks/report.py` ({IN_SAMPLE}).",
            "",
            "| set | figure | value |",
            "|---|---|---|",
            f"| dev_qa ({qa['answerable']} answerable, {qa['questions'] - qa['answerable']} not) | hit@1 / hit@5 / MRR@10 | {_f(qa['hit@1'])} / {_f(qa['hit@5'])} / {_f(qa['mrr@10'])} |",
            f"| | citation hit | {_f(qa['citation_hit'])} |",
            f"| | abstention precision / recall | {_f(qa['abstention_precision'])} / {_f(qa['abstention_recall'])} |",
            f"| dev_kinds ({kinds['answerable']} answerable, {len(no_answer)} not) | must_contain recall (mean over answerable) | {_f(kinds['must_contain_recall'])} |",
            f"| | no-answer questions abstaining | {sum(o.abstained for o in no_answer)} / {len(no_answer)} |",
            f"| | answerable questions abstaining / invalid quotes | {kinds['false_abstentions']} / {kinds['invalid_quotes']} |",
            f"| dev_followups ({follow['questions']} two-turn) | second-turn must_contain recall | {_f(follow['must_contain_recall'])} |",
            *_calibration_rows(calibration),
        ]
    )
    by_kind = kinds["recall_by_kind"]
    kinds_table = "\n".join(
        [
            f"must_contain recall by kind on dev_kinds ({IN_SAMPLE}); an abstention scores 0:",
            "",
            "| kind | questions | recall |",
            "|---|---|---|",
            *(
                f"| {kind} | {sum(o.question.kind == kind for o in kinds_report.outcomes)} | {_f(value)} |"
                for kind, value in sorted(by_kind.items())
            ),
        ]
    )
    return {
        (README, "quality"): quality,
        (TUNING, "kinds"): kinds_table,
        (TUNING, "calibration"): _calibration_detail(calibration),
    }


def _groups(report: Report) -> dict[str, list[Any]]:
    groups: dict[str, list[Any]] = {}
    for outcome in report.outcomes:
        groups.setdefault(outcome.question.kind or "?", []).append(outcome)
    return groups


def _calibration_rows(report: Report) -> list[str]:
    groups = _groups(report)

    def abstained(name: str) -> str:
        items = groups.get(name, [])
        return f"{sum(o.abstained for o in items)} / {len(items)}"

    return [
        f"| calibration set (tests/data/calibration.jsonl) | off-topic questions abstaining | {abstained('off_topic')} |",
        f"| | near-topic unanswerable questions abstaining | {abstained('near_miss')} |",
        f"| | answerable paraphrases abstaining | {abstained('answerable')} |",
    ]


def _calibration_detail(report: Report) -> str:
    groups = _groups(report)
    lines = [
        f"Calibration set ({IN_SAMPLE}), by group: how many abstain, and why.",
        "",
        "| group | questions | abstained | reasons | confidence range |",
        "|---|---|---|---|---|",
    ]
    for name in ("off_topic", "near_miss", "answerable"):
        items = groups.get(name, [])
        reasons = Counter(o.answer.reason for o in items if o.abstained)
        confidences = [o.answer.confidence for o in items]
        reason_text = ", ".join(f"{r} {n}" for r, n in sorted(reasons.items())) or "–"
        span = f"{min(confidences):.2f} … {max(confidences):.2f}" if confidences else "–"
        lines.append(f"| {name} | {len(items)} | {sum(o.abstained for o in items)} | {reason_text} | {span} |")
    missed = [o.question.id for o in groups.get("near_miss", []) if not o.abstained]
    lines += ["", f"Near-topic questions still answered: {', '.join(missed) or 'none'}."]
    return "\n".join(lines)


def bench_figures(engine_for: Callable[[str], Any]) -> dict[tuple[Path, str], str]:
    """The benchmark block: each bench set indexed as its own knowledge base."""
    rows = [
        "| set | questions | hit@1 | hit@5 | citation hit | answerable questions abstaining |",
        "|---|---|---|---|---|---|",
    ]
    for name in BENCH_SETS:
        metrics = run(engine_for(name), SHARED / "bench" / name / "queries.jsonl").metrics()
        rows.append(
            f"| {name} | {metrics['questions']} | {_f(metrics['hit@1'])} | {_f(metrics['hit@5'])} | "
            f"{_f(metrics['citation_hit'])} | {metrics['false_abstentions']} ({metrics['false_abstentions'] / metrics['questions']:.1%}) |"
        )
    text = "\n".join(
        [
            "Measured by `python benchmarks/report.py --bench` (fusion weights were chosen on drcd_dev_simpq and stard: "
            "in-sample there).",
            "",
            *rows,
        ]
    )
    return {(README, "bench"): text}


def committed(path: Path, name: str) -> str | None:
    """The figures block `name` as committed in `path` (None when the markers are missing)."""
    match = _block(name).search(path.read_text(encoding="utf-8"))
    return match.group(1).strip() if match else None


def write(path: Path, name: str, text: str) -> None:
    content = path.read_text(encoding="utf-8")
    pattern = _block(name)
    if not pattern.search(content):
        raise SystemExit(f"{path}: no <!-- figures:{name} --> … <!-- /figures:{name} --> markers")
    path.write_text(
        pattern.sub(lambda _m: f"<!-- figures:{name} -->\n{text}\n<!-- /figures:{name} -->", content), encoding="utf-8"
    )


def _block(name: str) -> re.Pattern[str]:
    return re.compile(rf"<!-- figures:{re.escape(name)} -->\n(.*?)\n?<!-- /figures:{re.escape(name)} -->", re.S)


def _engine(corpus: Path, index: Path, build: bool = True) -> Any:
    from rag.config import Settings
    from rag.engine import Engine

    engine = Engine.open(Settings(corpus_dir=corpus, index_dir=index), build=build)
    engine.wait_for_judge()
    return engine


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--update", action="store_true", help="write the figures into README.md and docs/tuning.md")
    parser.add_argument("--bench", action="store_true", help="also the benchmark sets (indexes them: slow)")
    parser.add_argument("--index", type=Path, help="index folder for corpus/ (default: a temporary one)")
    parser.add_argument(
        "--bench-index",
        type=Path,
        default=ROOT / "benchmarks" / "work",
        help="folder holding one index folder per bench set (built there when missing)",
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        engine = _engine(ROOT / "corpus", args.index or Path(tmp) / "index")
        figures = dev_figures(engine)
        if args.bench:
            figures |= bench_figures(
                lambda name: _engine(SHARED / "bench" / name / "corpus.jsonl", args.bench_index / name, build=False)
            )
    stale = 0
    for (path, name), text in figures.items():
        print(f"--- {path.name} [{name}]\n{text}\n")
        if committed(path, name) != text:
            stale += 1
            if args.update:
                write(path, name, text)
    if stale and not args.update:
        print(f"{stale} block(s) differ from the committed figures: run with --update", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
