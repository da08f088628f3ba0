"""`ask` and `search` latency with the answer judge on and off, on one index (2 cores: the judge's batch dominates).

    python benchmarks/judge_latency.py                                     # the project's corpus and index
    python benchmarks/judge_latency.py --run "NAME=CORPUS,INDEX,QUESTIONS" --update
    python benchmarks/judge_latency.py --size 10000                        # the 10k-chunk benchmark corpus

`--size N` builds once (in benchmarks/work/judge-size-N/) the N-chunk benchmark corpus of
`benchmarks/corpora.py` (real CMRC/DRCD passages, variants past the pool) with generated vectors derived
from the near-miss indexes' real ones (embedding 10k chunks for real takes ~45 min here; the judge's time
does not depend on the vectors), and times its gold questions.

Questions come from a JSONL file with a `question` field (default: the shared dev_qa questions, or a
bench set's `queries.jsonl`). Each question is asked once untimed (warm-up), then timed with the judge
on (`Settings.judge`, loaded before timing) and off, interleaved question by question so that a busy
machine slows both alike. With `--update` the figures go into docs/benchmarks.md (`judge_latency`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from measuring import percentile  # noqa: E402
from report import write  # noqa: E402

DOC = ROOT / "docs" / "benchmarks.md"
WORK = ROOT / "benchmarks" / "work"
DEV_QA = ROOT.parent / "shared" / "eval" / "dev_qa.jsonl"


def questions_of(path: Path, limit: int) -> list[str]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [r["question"] for r in rows][:limit]


def measure(corpus: Path | None, index: Path | None, questions: list[str]) -> dict[str, Any]:
    """Milliseconds of `ask` with the judge on and off, and the engine's size."""
    from rag import Engine, Settings

    overrides = {"corpus_dir": corpus, "index_dir": index}
    on = Engine.open(Settings.from_env(**overrides))
    if not on.wait_for_judge():
        raise SystemExit(f"the answer judge did not load: {on.judge.error}")
    off = Engine(on.settings.replace(judge=False, search_as_answers=False), on.embedder)
    off.reload()
    times: dict[str, list[float]] = {"on": [], "off": [], "search_on": [], "search_off": []}
    refused = {"on": 0, "off": 0}
    for question in questions:
        for name, engine in (("on", on), ("off", off)):
            engine.ask(question)  # warm-up: the same caches for both
            start = time.perf_counter()
            answer = engine.ask(question)
            times[name].append((time.perf_counter() - start) * 1000)
            refused[name] += answer.abstained
            start = time.perf_counter()
            engine.search(question)
            times[f"search_{name}"].append((time.perf_counter() - start) * 1000)
    return {
        "chunks": len(on.kb.chunks),
        "questions": len(questions),
        **{f"{n}_p50": round(percentile(t, 50), 1) for n, t in times.items()},
        **{f"{n}_p95": round(percentile(t, 95), 1) for n, t in times.items()},
        **{f"{n}_refused": refused[n] for n in refused},
        "load": round(os.getloadavg()[0], 2),
    }


def sized_run(size: int) -> str:
    """`NAME=CORPUS,INDEX,QUESTIONS` of the `size`-chunk benchmark corpus, built first if it is not there."""
    from corpora import load_pool, make_corpus
    from measuring import live_build
    from scale import child_build

    folder = WORK / f"judge-size-{size}"
    if live_build(folder / "index") is None:
        pool, queries = load_pool()
        make_corpus(size, pool, queries).write(folder)
        sources = sorted(str(p / "index") for p in (WORK / "near_miss").glob("*") if (p / "index").is_dir())
        child_build({"folder": str(folder), "policy": "generated", "store": "local", "vector_sources": sources})
    corpus, index, questions = folder / "corpus", folder / "index", folder / "queries.jsonl"
    return f"benchmark corpus, generated vectors={corpus},{index},{questions}"


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        f"Measured by `python benchmarks/judge_latency.py` on {os.cpu_count()} cores ({platform.processor() or platform.machine()}), "
        "each question asked once to warm up, then timed with the judge on and off in turn.",
        "",
        "`search` with the judge on ranks as answers do (`search_as_answers`: it composes the answer); off is "
        "retrieval order alone (`judge=False, search_as_answers=False`).",
        "",
        "| index (chunks) | questions | `ask` p50 / p95 judge on (ms) | judge off (ms) | `search` p50 / p95 on (ms) | off (ms) | refused on / off | load avg |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['name']} ({r['chunks']:,}) | {r['questions']} | {r['on_p50']} / {r['on_p95']} | "
            f"{r['off_p50']} / {r['off_p95']} | {r['search_on_p50']} / {r['search_on_p95']} | "
            f"{r['search_off_p50']} / {r['search_off_p95']} | {r['on_refused']} / {r['off_refused']} | {r['load']} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--run",
        action="append",
        default=[],
        metavar="NAME=CORPUS,INDEX,QUESTIONS",
        help="an index to time (repeatable); default: the project's corpus and index on dev_qa",
    )
    parser.add_argument("--size", type=int, action="append", default=[], help="also time the N-chunk benchmark corpus")
    parser.add_argument("--limit", type=int, default=100, help="questions timed per index")
    parser.add_argument("--update", action="store_true", help="write the figures into docs/benchmarks.md")
    args = parser.parse_args(argv)
    runs = [*args.run, *(sized_run(n) for n in args.size)] or [f"project corpus=,,{DEV_QA}"]
    rows = []
    for run in runs:
        name, _, spec = run.partition("=")
        corpus, index, questions = ([*spec.split(","), "", "", ""])[:3]
        row = measure(
            Path(corpus) if corpus else None,
            Path(index) if index else None,
            questions_of(Path(questions or DEV_QA), args.limit),
        )
        rows.append({"name": name, **row})
        print(json.dumps(rows[-1], ensure_ascii=False), flush=True)
    text = markdown(rows)
    print(text)
    if args.update:
        write(DOC, "judge_latency", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
