"""Near misses from a retrieval set: does the product refuse when the passage that answered is gone?

    python benchmarks/near_miss.py drcd_dev_simpq cmrc2018_dev            # print the figures
    python benchmarks/near_miss.py drcd_dev_simpq cmrc2018_dev --update   # also into docs/benchmarks.md

For each set under `../shared/bench/<set>/`: a seeded sample of questions has its gold passages removed
from the corpus while the rest of their articles stays (an article = the passages sharing an id prefix,
`drcd-dev-1147-5` → `drcd-dev-1147`); a sampled question whose answer string still occurs anywhere in the
reduced corpus (Simplified or Traditional) is dropped, the others are near misses and should be refused.
Answerable questions are another sample of the same size whose gold passages all stayed: they should be
answered, and cited from a gold passage. The reduced corpus is indexed as a knowledge base of its own
(`benchmarks/work/near_miss/<set>/`); with `--base-index DIR` (an index of the full set, e.g. the one
`benchmarks/report.py --bench` builds) its vectors are re-used instead of embedding again.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from report import committed, write  # noqa: E402

BENCH = ROOT.parent / "shared" / "bench"
WORK = ROOT / "benchmarks" / "work" / "near_miss"
DOC = ROOT / "docs" / "benchmarks.md"
SEED = 20261207
SAMPLE = 250


@dataclass
class NearMissSet:
    """A reduced corpus with the questions it can no longer answer and those it still can."""

    name: str
    corpus: list[dict[str, Any]]
    near_misses: list[dict[str, Any]]
    answerable: list[dict[str, Any]]
    removed: int
    dropped: int
    """Sampled questions whose answer string is still in the reduced corpus (not near misses)."""


def article(passage_id: str) -> str:
    """The article a passage belongs to: its id without the last `-part`."""
    return passage_id.rsplit("-", 1)[0]


def _read(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def make(name: str, sample: int = SAMPLE, seed: int = SEED) -> NearMissSet:
    """The near-miss set of bench set `name`: deterministic for a seed."""
    from rag.text.normalize import to_simplified

    corpus = _read(BENCH / name / "corpus.jsonl")
    queries = [q for q in _read(BENCH / name / "queries.jsonl") if q.get("gold_ids") and q.get("answers")]
    rng = random.Random(seed)
    order = rng.sample(queries, len(queries))
    sampled, rest = order[:sample], order[sample:]
    gone = {gold for q in sampled for gold in q["gold_ids"]}
    kept = [p for p in corpus if p["id"] not in gone]
    text = "\n".join(to_simplified(p["text"]) for p in kept)
    near, dropped = [], 0
    for question in sampled:
        if any(to_simplified(answer) in text for answer in question["answers"] if answer.strip()):
            dropped += 1
        else:
            near.append(question)
    answerable = [q for q in rest if not gone & set(q["gold_ids"])][: len(near)]
    return NearMissSet(name, kept, near, answerable, len(gone), dropped)


def index(nms: NearMissSet, base_index: Path | None) -> Any:
    """An engine over the reduced corpus, built in `benchmarks/work/near_miss/<set>/`."""
    from rag import Engine, Settings

    folder = WORK / nms.name
    corpus = folder / "corpus.jsonl"
    corpus.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps(p, ensure_ascii=False) for p in nms.corpus]
    corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
    if base_index is not None and not (folder / "index").exists():
        shutil.copytree(base_index, folder / "index")  # its vectors are re-used; removed passages dropped
    engine = Engine.open(Settings(corpus_dir=corpus, index_dir=folder / "index"), build=True)
    engine.wait_for_judge()
    return engine


def measure(engine: Any, nms: NearMissSet) -> dict[str, Any]:
    """Refusals on near misses, refusals and cited hits on answerable questions."""
    refused = [engine.ask(q["question"]).abstained for q in nms.near_misses]
    answered = [engine.ask(q["question"]) for q in nms.answerable]
    false = sum(a.abstained for a in answered)
    cited = sum(
        bool(a.citations) and a.citations[0].source in q["gold_ids"]
        for a, q in zip(answered, nms.answerable, strict=True)
    )
    return {
        "set": nms.name,
        "near_misses": len(nms.near_misses),
        "refused": sum(refused),
        "answerable": len(answered),
        "false_refusals": false,
        "cited_hit1": cited / max(1, len(answered) - false),
        "removed_passages": nms.removed,
        "dropped": nms.dropped,
    }


def markdown(rows: list[dict[str, Any]], sample: int, seed: int) -> str:
    """The `near_miss` block of docs/benchmarks.md."""
    lines = [
        f"Measured by `python benchmarks/near_miss.py` ({sample} sampled questions per set, seed {seed}; "
        "extractive answers, default settings).",
        "",
        "| set | near misses refused | answerable refused | cited hit@1 (answered) | gold passages removed | "
        "sampled questions dropped (answer still in the corpus) |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['set']} | {r['refused']} / {r['near_misses']} ({r['refused'] / max(1, r['near_misses']):.2f}) | "
            f"{r['false_refusals']} / {r['answerable']} ({r['false_refusals'] / max(1, r['answerable']):.1%}) | "
            f"{r['cited_hit1']:.3f} | {r['removed_passages']} | {r['dropped']} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sets", nargs="+", help="bench sets under ../shared/bench/ (e.g. drcd_dev_simpq cmrc2018_dev)")
    parser.add_argument("--sample", type=int, default=SAMPLE, help="questions sampled per set")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--base-index", type=Path, help="folder holding an index of each full set (<DIR>/<set>)")
    parser.add_argument("--update", action="store_true", help="write the figures into docs/benchmarks.md")
    args = parser.parse_args(argv)
    rows = []
    for name in args.sets:
        nms = make(name, args.sample, args.seed)
        base = args.base_index / name if args.base_index and (args.base_index / name).is_dir() else None
        rows.append(measure(index(nms, base), nms))
        print(json.dumps(rows[-1], ensure_ascii=False), flush=True)
    text = markdown(rows, args.sample, args.seed)
    print(text)
    if args.update:
        write(DOC, "near_miss", text)
    elif committed(DOC, "near_miss") not in (None, text):
        print("docs/benchmarks.md [near_miss] differs: run with --update", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
