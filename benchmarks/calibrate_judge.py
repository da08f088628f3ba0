"""Choose the answer judge's refusal bar: `Settings.judge_threshold` and `judge_confidence_weight`.

    python benchmarks/calibrate_judge.py                       # choose on the near misses of cmrc2018_dev + drcd_dev_simpq
    python benchmarks/calibrate_judge.py --update              # also into docs/tuning.md (judge_calibration)
    JUDGE_FILES=/tmp/judge python benchmarks/calibrate_judge.py   # another trained judge

Every question is answered once with the judge reading but never refusing (threshold 0, weight 0); its
rules' refusal, the judge's best probability (`Answer.judged`: None where the judge does not decide) and
the rules' confidence are kept, and each (weight, threshold) of the grid is decided as the product
decides (`Judgement.answers`). The rule: among the pairs that refuse no answerable question of the
calibration set (`tests/data/calibration.jsonl`), dev_qa or dev_kinds (all in-sample) and at most `--max-false`
of each tuning near-miss set's answerable questions, the one refusing the most of their near misses (ties:
the fewer false refusals, then the lower weight). The `--check` sets are reported, never used to choose.

The judge never trained on the near-miss sets (`training/README.md`), but the two numbers chosen here
are tuned on them: the figures of the chosen pair are in-sample for those two numbers. The held-out check
is in the table's last rows: the pair chosen on each tuning set alone, measured on the other.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import near_miss  # noqa: E402
from report import write  # noqa: E402

DOC = ROOT / "docs" / "tuning.md"
CALIBRATION = ROOT / "tests" / "data" / "calibration.jsonl"
DEV_KINDS = ROOT.parent / "shared" / "eval" / "dev_kinds.jsonl"
DEV_QA = ROOT.parent / "shared" / "eval" / "dev_qa.jsonl"
PROJECT_SETS = ("calibration", "dev_qa", "dev_kinds")
WEIGHTS = (0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0)
THRESHOLDS = (0.005, 0.01, 0.02, 0.03, 0.05, 0.08, 0.1, 0.12, 0.15, 0.2, 0.25, 0.3)
MAX_FALSE = 0.05
READINGS = ROOT / "benchmarks" / "work" / "calibration.json"


@dataclass(frozen=True)
class Reading:
    """One question as answered with the judge reading and not refusing."""

    answerable: bool
    ruled_out: bool
    """Refused by the rules (before the judge's say)."""
    judged: float | None
    confidence: float


def read(engine, questions: list[tuple[str, bool]]) -> list[Reading]:
    """`questions` ((text, answerable) pairs) answered by `engine` (the judge never refusing)."""
    readings = []
    for text, answerable in questions:
        answer = engine.ask(text)
        readings.append(Reading(answerable, answer.abstained, answer.judged, answer.confidence))
    return readings


def open_reading(engine, files: Path | None):
    """`engine` with the judge of `files` (None: the shipped one) reading but never refusing."""
    from rag.engine import Engine

    settings = engine.settings.replace(judge_threshold=0.0, judge_confidence_weight=0.0, judge_files=files)
    other = Engine(settings, engine.embedder)
    other.reload()
    if not other.wait_for_judge():
        raise SystemExit(f"the answer judge did not load: {other.judge.error}")
    return other


def project_sets() -> dict[str, list[tuple[str, bool]]]:
    rows = [json.loads(line) for line in CALIBRATION.read_text(encoding="utf-8").splitlines() if line.strip()]
    kinds = [json.loads(line) for line in DEV_KINDS.read_text(encoding="utf-8").splitlines() if line.strip()]
    qa = [json.loads(line) for line in DEV_QA.read_text(encoding="utf-8").splitlines() if line.strip()]
    return {
        "calibration": [(r["question"], bool(r["gold"])) for r in rows],
        "dev_qa": [(r["question"], bool(r["gold"])) for r in qa],
        "dev_kinds": [(r["question"], bool(r.get("gold_sources"))) for r in kinds],
    }


def near_miss_set(name: str) -> tuple[object, list[tuple[str, bool]]]:
    nms = near_miss.make(name)
    questions = [(q["question"], False) for q in nms.near_misses] + [(q["question"], True) for q in nms.answerable]
    return near_miss.index(nms, None), questions


def refused(reading: Reading, settings) -> bool:
    """Whether the product with `settings` refuses the question `reading` read."""
    from rag.answer.judging import Judgement

    if reading.ruled_out:
        return True
    if reading.judged is None:
        return False
    return not Judgement({("", 0): reading.judged}, []).answers(reading.confidence, settings)


def figures(readings: list[Reading], weight: float, threshold: float) -> tuple[int, int, int, int]:
    """(near misses refused, near misses, answerable refused, answerable)."""
    from rag.config import Settings

    settings = Settings(judge_threshold=threshold, judge_confidence_weight=weight)
    near = [r for r in readings if not r.answerable]
    answerable = [r for r in readings if r.answerable]
    return (
        sum(refused(r, settings) for r in near),
        len(near),
        sum(refused(r, settings) for r in answerable),
        len(answerable),
    )


def choose(sets: dict[str, list[Reading]], tune: list[str], max_false: float) -> tuple[float, float]:
    """The (weight, threshold) the module docstring's rule picks."""
    best: tuple[float, float, float, float] | None = None
    for weight in WEIGHTS:
        for threshold in THRESHOLDS:
            if any(figures(sets[n], weight, threshold)[2] for n in PROJECT_SETS):
                continue
            tuned = [figures(sets[n], weight, threshold) for n in tune]
            if any(f[2] > max_false * f[3] for f in tuned):
                continue
            recall = sum(f[0] for f in tuned) / max(1, sum(f[1] for f in tuned))
            false = sum(f[2] for f in tuned)
            key = (recall, -false, -weight, threshold)
            if best is None or key > best:
                best = key
    if best is None:
        raise SystemExit("no (weight, threshold) of the grid meets the rule")
    return -best[2], best[3]


def markdown(
    sets: dict[str, list[Reading]], tune: list[str], chosen: tuple[float, float], files: str, max_false: float
) -> str:
    names = list(sets)
    lines = [
        f"Measured by `python benchmarks/calibrate_judge.py` (judge: {files}); chosen on "
        f"{' + '.join(tune)} (near misses refused / answerable refused, each) and the in-sample project sets.",
        "",
        "| weight | threshold | " + " | ".join(f"{n}: refused / false" for n in names) + " |",
        "|---|---|" + "---|" * len(names),
    ]
    weight, threshold = chosen
    shown = sorted({(weight, threshold), (0.0, threshold), (weight, 0.05), (0.0, 0.05), (0.0, 0.1)})
    for w, t in shown:
        cells = []
        for n in names:
            near, n_near, false, n_ans = figures(sets[n], w, t)
            cells.append(f"{near}/{n_near} / {false}/{n_ans}")
        mark = " ✅ chosen" if (w, t) == chosen else ""
        lines.append(f"| {w:g}{mark} | {t:g} | " + " | ".join(cells) + " |")
    if len(tune) > 1:
        lines += [
            "",
            "Held out: the pair chosen on one near-miss set alone (and the project sets), measured on the other:",
            "",
        ]
        lines += ["| chosen on | weight | threshold | measured on | near misses refused | answerable refused |"]
        lines += ["|---|---|---|---|---|---|"]
        for alone in tune:
            w, t = choose(sets, [alone], max_false)
            for other in (n for n in tune if n != alone):
                near, n_near, false, n_ans = figures(sets[other], w, t)
                lines.append(
                    f"| {alone} | {w:g} | {t:g} | {other} | {near}/{n_near} ({near / n_near:.2f}) | "
                    f"{false}/{n_ans} ({false / n_ans:.1%}) |"
                )
    return "\n".join(lines)


def read_all(files: Path | None, near_miss_sets: list[str]) -> dict[str, list[Reading]]:
    """The readings of the project sets and of `near_miss_sets` with the judge of `files`."""
    from rag import Engine, Settings

    project = open_reading(Engine.open(Settings.from_env()), files)
    sets = {name: read(project, questions) for name, questions in project_sets().items()}
    for name in near_miss_sets:
        engine, questions = near_miss_set(name)
        sets[name] = read(open_reading(engine, files), questions)
    return sets


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--tune", nargs="+", default=["cmrc2018_dev", "drcd_dev_simpq"], help="near-miss sets to choose on"
    )
    parser.add_argument("--check", nargs="*", default=[], help="near-miss sets only reported")
    parser.add_argument(
        "--max-false", type=float, default=MAX_FALSE, help="answerable refused on a tuning set, at most"
    )
    parser.add_argument("--update", action="store_true", help="write the table into docs/tuning.md")
    parser.add_argument("--reuse", action="store_true", help=f"the readings of the last run ({READINGS.name})")
    args = parser.parse_args(argv)
    files = Path(os.environ["JUDGE_FILES"]) if os.environ.get("JUDGE_FILES") else None
    if args.reuse:
        sets = {n: [Reading(**r) for r in rs] for n, rs in json.loads(READINGS.read_text(encoding="utf-8")).items()}
    else:
        sets = read_all(files, [*args.tune, *args.check])
        READINGS.parent.mkdir(parents=True, exist_ok=True)
        READINGS.write_text(json.dumps({n: [asdict(r) for r in rs] for n, rs in sets.items()}), encoding="utf-8")
    chosen = choose(sets, args.tune, args.max_false)
    text = markdown(sets, args.tune, chosen, "shipped" if files is None else str(files), args.max_false)
    print(text)
    print(json.dumps({"judge_confidence_weight": chosen[0], "judge_threshold": chosen[1]}))
    if args.update:
        write(DOC, "judge_calibration", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
