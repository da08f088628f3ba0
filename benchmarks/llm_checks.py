"""How the checks of written answers behave: the verifier on crafted sentences, and whole answers
through a scripted OpenAI-compatible server (no real model: the replies are written by hand).

    .venv/bin/python benchmarks/llm_checks.py [--index DIR]      # writes the figures into docs/llm.md

1. Sentences (`tests/data/written_sentences.jsonl`): each crafted sentence over the real corpus, with
   what should happen to it (kept, recited = kept with a corrected citation, dropped) and its kind
   (verbatim, paraphrase, wrong figure, fabricated, …). For each: its coverage, longest novel run and
   cosine against the quote of the source it should be checked against, and the verifier's verdict.
   A sweep shows how many sentences each choice of thresholds gets wrong.
2. Answers: the sentences of each question joined into one written answer, served by the scripted
   server (`tests/llm_server.py`), asked through `Engine.ask` and `Engine.ask_stream`: sentences kept
   and dropped, answers that fell back, and whether any sentence that should be dropped reached the
   reader; then the same with the server down.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from llm_server import ScriptedLLM, cite, unused_url  # noqa: E402

from rag import Engine, Settings  # noqa: E402
from rag.answer.verify import Verifier, split_sentences  # noqa: E402
from rag.answer.writer import Final, messages, sources_for  # noqa: E402
from rag.text.normalize import compact  # noqa: E402

CASES = ROOT / "tests" / "data" / "written_sentences.jsonl"
DOC = ROOT / "docs" / "llm.md"
BEGIN, END = "<!-- llm_checks: begin -->", "<!-- llm_checks: end -->"


def load_cases() -> list[dict]:
    return [json.loads(line) for line in CASES.read_text(encoding="utf-8").splitlines() if line.strip()]


def sentence_study(engine: Engine, cases: list[dict]) -> tuple[list[str], list[dict]]:
    """Verdicts at the configured thresholds, and the raw measures for a threshold sweep."""
    verifier = Verifier(engine.embedder, engine.settings)
    rows = []
    for case in cases:
        extractive = engine.ask(case["question"], generate=False)
        sources = sources_for(extractive.passages, engine.kb.documents, engine.settings.llm_passages)
        prompt = messages(case["question"], extractive.standalone_question, sources)
        (piece,) = split_sentences(cite(case["sentence"], prompt))
        verdict = verifier.check(piece, sources)
        got = "dropped" if not verdict.kept else "recited" if verdict.recited else "kept"
        # raw measures against the source the sentence should be checked against (for the sweep)
        marker = re.search(r"\[@([^!\]][^\]]*)\]", case["sentence"])
        phrase = case.get("source_holds") or (marker.group(1) if marker else "")
        target = next((s for s in sources if phrase and phrase in s.passage.text), None)
        measure = {"coverage": 0.0, "novel": 99, "similarity": 0.0, "missing": ["(source not retrieved)"]}
        if target is not None:
            quote = verifier.measure(piece, target)
            measure = {
                "coverage": quote.coverage,
                "novel": quote.novel,
                "similarity": quote.similarity or 0.0,
                "missing": [f.text for f in quote.missing],
            }
        rows.append({**case, "got": got, "reason": verdict.reason, **measure})
    lines = ["| kind | sentences | expected | verdicts |", "|---|---|---|---|"]
    by_kind: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        by_kind[row["kind"] + (" (known limit)" if row.get("limit") else "")].append(row)
    for kind, items in sorted(by_kind.items(), key=lambda kv: (kv[1][0]["expect"] == "dropped", kv[0])):
        verdicts = Counter(f"{r['got']}" + (f" ({r['reason']})" if r["reason"] else "") for r in items)
        expected = Counter(r["expect"] for r in items)
        lines.append(f"| {kind} | {len(items)} | {_counts(expected)} | {_counts(verdicts)} |")
    wrong = [r for r in rows if (r["got"] == "dropped") != (r["expect"] == "dropped") and not r.get("limit")]
    limits = [r for r in rows if r.get("limit")]
    lines.append("")
    lines.append(
        f"{len(rows) - len(limits)} sentences; {len(wrong)} with the wrong outcome"
        + (": " + "; ".join(f"{r['kind']} “{r['sentence'][:24]}…” → {r['got']}" for r in wrong) if wrong else ".")
    )
    for r in limits:
        sentence = re.sub(r"\[@!?[^\]]+\]", "", r["sentence"])
        lines.append(f"Known limit ({r['kind']}, not counted above): “{sentence}” → {r['got']}; {r['limit']}.")
    return lines, rows


def sweep(rows: list[dict], settings: Settings) -> list[str]:
    """Sentences on the wrong side for thresholds around the chosen ones (measured on the source the
    sentence should be checked against; figures and names must always be present)."""
    supported = [r for r in rows if r["expect"] != "dropped"]
    unsupported = [r for r in rows if r["expect"] == "dropped" and not r.get("limit")]

    def keeps(r: dict, coverage: float, novel: int, similarity: float) -> bool:
        return not r["missing"] and r["coverage"] >= coverage and r["novel"] <= novel and r["similarity"] >= similarity

    lines = [
        "| min coverage | max novel run | min cosine | supported dropped | unsupported kept |",
        "|---|---|---|---|---|",
    ]
    chosen = (settings.verify_min_coverage, settings.verify_max_novel, settings.verify_min_similarity)
    grid = sorted(
        {chosen}
        | {(c, chosen[1], chosen[2]) for c in (0.5, 0.6, 0.7, 0.8)}
        | {(chosen[0], n, chosen[2]) for n in (4, 6, 8, 99)}
        | {(chosen[0], chosen[1], s) for s in (0.0, 0.85, 0.88, 0.9, 0.92)}
    )
    for c, n, s in grid:
        lost = sum(not keeps(r, c, n, s) for r in supported)
        let = sum(keeps(r, c, n, s) for r in unsupported)
        mark = "**" if (c, n, s) == chosen else ""
        lines.append(
            f"| {mark}{c:g}{mark} | {mark}{n}{mark} | {mark}{s:g}{mark} | {lost} / {len(supported)} | {let} / {len(unsupported)} |"
        )
    lines += [
        "",
        "| | coverage: worst / median | longest novel run: worst / median | cosine: worst / median |",
        "|---|---|---|---|",
    ]
    for label, group, worst in (
        ("should be kept", supported, (min, max, min)),
        ("should be dropped, no missing fact", [r for r in unsupported if not r["missing"]], (max, min, max)),
    ):
        if group:
            cells = [
                f"{pick(r[key] for r in group):{fmt}} / {statistics.median(r[key] for r in group):{fmt}}"
                for pick, key, fmt in zip(worst, ("coverage", "novel", "similarity"), (".2f", "g", ".3f"), strict=True)
            ]
            lines.append(f"| {label} ({len(group)}) | " + " | ".join(cells) + " |")
    return lines


def answer_study(engine: Engine, cases: list[dict]) -> list[str]:
    """Whole written answers through the scripted server: asked, streamed, and with the server down."""
    by_question: dict[str, list[dict]] = defaultdict(list)
    for case in cases:
        by_question[case["question"]].append(case)
    lines = [
        "| run | answers | sentences written | kept (of which re-cited) | dropped | answers shown as written "
        "| fell back | unsupported sentences shown (known limit) | quotes verbatim |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    timings: list[float] = []
    with ScriptedLLM() as llm:
        for run in ("ask", "ask_stream", "server down"):
            settings = engine.settings.replace(
                llm_base_url=unused_url() if run == "server down" else llm.url, llm_model="scripted"
            )
            writer_engine = Engine(settings, engine.embedder)
            writer_engine.reload()
            totals: Counter[str] = Counter()
            for question, items in by_question.items():
                template = "\n".join(i["sentence"] for i in items)
                llm.replies = [lambda m, t=template: cite(t, m)]
                llm._served = 0
                started = time.perf_counter()
                if run == "ask_stream":
                    answer = next(e.answer for e in writer_engine.ask_stream(question) if isinstance(e, Final))
                else:
                    answer = writer_engine.ask(question)
                if run == "ask":
                    timings.append(time.perf_counter() - started)
                g = answer.generation
                totals["answers"] += 1
                totals["sentences"] += g.sentences
                totals["kept"] += g.kept
                totals["recited"] += g.recited
                totals["dropped"] += g.dropped
                totals["generated"] += answer.mode == "generated"
                totals["fell_back"] += g.fell_back
                shown = compact(answer.answer) if answer.mode == "generated" else ""
                for i in items:
                    if i["expect"] == "dropped" and _plain(i["sentence"]) in shown:
                        totals["limit" if i.get("limit") else "bad"] += 1
                totals["quotes"] += len(answer.citations)
                totals["verbatim"] += sum(
                    engine.document(c.source).text[c.start : c.end] == c.quote for c in answer.citations
                )
            lines.append(
                f"| {run} | {totals['answers']} | {totals['sentences']} | {totals['kept']} ({totals['recited']}) "
                f"| {totals['dropped']} | {totals['generated']} | {totals['fell_back']} | {totals['bad']} ({totals['limit']}) "
                f"| {totals['verbatim']} / {totals['quotes']} |"
            )
    lines += [
        "",
        f"Time per answer with the scripted server (it answers at once, so this is the product's own "
        f"work: retrieval, prompt, checks): median {statistics.median(timings) * 1000:.0f} ms, "
        f"max {max(timings) * 1000:.0f} ms on this machine.",
    ]
    return lines


def _plain(sentence: str) -> str:
    """A crafted sentence without its citation placeholders, in matching form."""
    return compact(re.sub(r"\[@!?[^\]]+\]", "", sentence))


def _counts(counter: Counter[str]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counter.items()))


def write_doc(sections: list[str]) -> None:
    text = DOC.read_text(encoding="utf-8")
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    DOC.write_text(text[:start] + "\n" + "\n".join(sections) + "\n" + text[end:], encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--index", type=Path, help="an index of corpus/ to reuse (default: build one in a temp folder)")
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/llm.md alone")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="llm-checks-"))
    try:
        corpus = tmp / "corpus"
        shutil.copytree(ROOT / "corpus", corpus)
        settings = Settings(corpus_dir=corpus, index_dir=args.index or tmp / "index")
        engine = Engine(settings)
        if args.index:
            engine.reload()
        else:
            engine.build(progress=True)
        cases = load_cases()
        sentence_lines, rows = sentence_study(engine, cases)
        sections = [
            f"Made by `benchmarks/llm_checks.py` on {time.strftime('%Y-%m-%d')} with the settings in "
            f"`rag/config.py` (scripted replies, no real model; in-sample: the thresholds were chosen on these sentences).",
            "",
            "**Sentences** (`tests/data/written_sentences.jsonl`, verdict of `rag.answer.verify.Verifier`):",
            "",
            *sentence_lines,
            "",
            "**Thresholds** (measured on the quote of the source each sentence should be checked against):",
            "",
            *sweep(rows, settings),
            "",
            "**Whole answers** (each question's sentences as one written answer, from the scripted server):",
            "",
            *answer_study(engine, cases),
        ]
        print("\n".join(sections))
        if not args.no_write:
            write_doc(sections)
            print(f"\nwritten to {DOC}", file=sys.stderr)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
