"""Retrieval quality on every question set, for the current settings and the ablations that show what
each part of retrieval contributes; writes `benchmarks/quality.md` and its section of `docs/benchmarks.md`.

    .venv/bin/python benchmarks/quality.py                          # every set and variant
    .venv/bin/python benchmarks/quality.py --sets dev_qa,stard --variants current,main
    .venv/bin/python benchmarks/quality.py --vectors /work/cache/retrieval-vectors.npz
    .venv/bin/python benchmarks/quality.py --grid                    # the fusion grid of docs/tuning.md

Each set is indexed by the product (`rag.index.build.build`) into `benchmarks/work/quality/`, once per kind of
index text, and every question is asked through `Engine.ask` (what `rag eval` does). Vectors are cached
by model and exact embedded text (`--vectors`), so only texts never embedded before cost embedding
time: the first run embeds about 6,000 passages (1–3 h on 2 cores), later runs take minutes.
Latency is not measured here (cached question vectors); see `benchmarks/bench.py`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

import rag.index.gather  # noqa: E402  (its `index_text` is swapped for each kind of index text)
from rag.config import Settings  # noqa: E402
from rag.index.knowledge_base import load  # noqa: E402
from rag.ingest.chunk import index_text  # noqa: E402
from rag.model import Chunk, Document  # noqa: E402
from rag.text.normalize import normalize  # noqa: E402

log = logging.getLogger("quality")

WORK = HERE / "work" / "quality"
REPORT = ROOT / "docs" / "benchmarks.md"
SECTION = HERE / "quality.md"
BEGIN, END = "<!-- quality:begin (benchmarks/quality.py) -->", "<!-- quality:end -->"
SHARED = ROOT.parent / "shared"

#: name -> (corpus, questions, what the set is)
SETS: dict[str, tuple[Path, Path, str]] = {
    "dev_qa": (ROOT / "corpus", SHARED / "eval" / "dev_qa.jsonl", "the 5 corpus documents, 25 dev questions"),
    "notices": (
        ROOT / "tests" / "data" / "notices",
        ROOT / "tests" / "data" / "notices_questions.jsonl",
        "7 cities' / provinces' rent-relief notices, place only in title or first line; 12 + 2 unanswerable",
    ),
    "drcd_dev_simpq": (
        SHARED / "bench" / "drcd_dev_simpq" / "corpus.jsonl",
        SHARED / "bench" / "drcd_dev_simpq" / "queries.jsonl",
        "Traditional Wikipedia, Simplified questions",
    ),
    "stard": (
        SHARED / "bench" / "stard" / "corpus.jsonl",
        SHARED / "bench" / "stard" / "queries.jsonl",
        "layperson legal questions → statute articles (R@k: any gold in the top k)",
    ),
    "cmrc2018_dev": (
        SHARED / "bench" / "cmrc2018_dev" / "corpus.jsonl",
        SHARED / "bench" / "cmrc2018_dev" / "queries.jsonl",
        "Simplified Wikipedia",
    ),
    "drcd_dev": (
        SHARED / "bench" / "drcd_dev" / "corpus.jsonl",
        SHARED / "bench" / "drcd_dev" / "queries.jsonl",
        "Traditional Wikipedia, Traditional questions",
    ),
}


def _title_heading(chunk: Chunk, document: Document) -> str:
    """The index text of main before the context header: title (unless made up) and heading path."""
    title = "" if document.meta.get("title_derived") else chunk.title
    heading = chunk.heading if chunk.heading and not chunk.text.startswith(chunk.heading[:10]) else ""
    return normalize("\n".join(part for part in (title, heading, chunk.text) if part))


def _plain(chunk: Chunk, document: Document) -> str:
    """The chunk's own text only."""
    return normalize(chunk.text)


#: Kinds of index text: what is embedded and tokenized for each chunk.
INDEX_TEXTS: dict[str, Callable[[Chunk, Document], str]] = {
    "header": index_text,
    "title": _title_heading,
    "plain": _plain,
}

#: name -> (index text, settings changed from the defaults, what it shows)
VARIANTS: dict[str, tuple[str, dict[str, Any], str]] = {
    "main": (
        "title",
        {"fusion": "rrf", "candidates": 50, "pool_weight": 0.0, "weight_names": 0.0},
        "before this work: title + heading indexed, reciprocal-rank fusion",
    ),
    "current": ("header", {}, "the defaults: context header, score fusion, document pooling, names"),
    "no-header": ("plain", {}, "current, chunks indexed with their own text only"),
    "rrf": (
        "header",
        {"fusion": "rrf", "candidates": 50, "weight_names": 0.0},
        "main's fusion (reciprocal rank, depth 50, no names) over the context header",
    ),
    "no-pooling": ("header", {"pool_weight": 0.0}, "current without document pooling"),
    "no-names": ("header", {"weight_names": 0.0}, "current without name matching"),
}


#: The fusion grid (`--grid`): settings changed from the defaults, searched on the tuning sets and
#: on cmrc2018_dev, which was not used to choose them.
GRID: list[tuple[str, dict[str, Any]]] = [
    ("main: rank fusion 0.5 / 0.5 / 1.5, rrf_k 10, depth 50", {"fusion": "rrf", "candidates": 50, "weight_names": 0.0}),
    ("rank fusion, dense 1", {"fusion": "rrf", "rrf_weights": (1.0, 0.5, 1.5), "candidates": 50, "weight_names": 0.0}),
    ("rank fusion, dense 2", {"fusion": "rrf", "rrf_weights": (2.0, 0.5, 1.5), "candidates": 50, "weight_names": 0.0}),
    ("score fusion 0.5 / 1.5 / 4, depth 50, no names, no definitions", {"weight_names": 0.0, "weight_defines": 0.0}),
    (
        "score fusion, depth 100, no names, no definitions",
        {"candidates": 100, "weight_names": 0.0, "weight_defines": 0.0},
    ),
    ("depth 100, names 0.5, no definitions (chosen until 2026-12-07)", {"candidates": 100, "weight_defines": 0.0}),
    ("depth 100", {"candidates": 100}),
    ("no definitions", {"weight_defines": 0.0}),
    ("**chosen: score fusion 0.5 / 1.5 / 4, depth 50, names 0.5, definitions 1.5**", {}),
    ("dense 0.4", {"weight_dense": 0.4}),
    ("dense 0.6", {"weight_dense": 0.6}),
    ("dense 1", {"weight_dense": 1.0}),
    ("bigrams 3", {"weight_bigrams": 3.0}),
    ("bigrams 5", {"weight_bigrams": 5.0}),
    ("words 1", {"weight_words": 1.0}),
    ("words 2", {"weight_words": 2.0}),
    ("names 1", {"weight_names": 1.0}),
    ("names 2", {"weight_names": 2.0}),
    ("pooling 0.3 (damping 0.5)", {"pool_weight": 0.3}),
    ("pooling 0.6 (damping 0.5)", {"pool_weight": 0.6}),
    ("definitions 1", {"weight_defines": 1.0}),
    ("definitions 2", {"weight_defines": 2.0}),
]
GRID_SETS = ("dev_qa", "drcd_dev_simpq", "stard", "cmrc2018_dev")
TUNING = ROOT / "docs" / "tuning.md"
GRID_BEGIN, GRID_END = "<!-- fusion-grid:begin (benchmarks/quality.py --grid) -->", "<!-- fusion-grid:end -->"


class CachedEmbedder:
    """The real embedder with its vectors kept by model, task and exact text in one `.npz` file."""

    def __init__(self, inner: Any, path: Path) -> None:
        self.inner, self.path = inner, path
        self.vectors: dict[str, np.ndarray] = {}
        if path.exists():
            with np.load(path) as data:
                self.vectors = dict(zip(data["keys"].tolist(), data["vectors"], strict=True))
        self.embedded = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def _key(self, task: str, text: str) -> str:
        return hashlib.sha1(f"{task}{self.inner.name}\x00{text}".encode()).hexdigest()[:20]

    def _encode(self, texts: Sequence[str], task: str, encode: Callable[[list[str]], np.ndarray]) -> np.ndarray:
        keys = [self._key(task, t) for t in texts]
        missing = list(dict.fromkeys(t for t, k in zip(texts, keys, strict=True) if k not in self.vectors))
        if missing:
            for text, vector in zip(missing, encode(missing), strict=True):
                self.vectors[self._key(task, text)] = vector
            self.embedded += len(missing)
            self.save()
        if not keys:
            return np.zeros((0, self.inner.dimension), np.float32)
        return np.stack([self.vectors[k] for k in keys]).astype(np.float32)

    def encode_documents(self, texts: Sequence[str], progress: bool = False) -> np.ndarray:
        return self._encode(texts, "d", lambda t: self.inner.encode_documents(t, progress=progress))

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(texts, "q", self.inner.encode_queries)

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.stem + ".tmp.npz")
        np.savez(tmp, keys=np.array(list(self.vectors)), vectors=np.stack(list(self.vectors.values())))
        os.replace(tmp, self.path)


def build_index(name: str, text_kind: str, embedder: CachedEmbedder) -> Path:
    """Index set `name` with index text `text_kind` (re-done every run; cached vectors make it cheap)."""
    corpus = SETS[name][0]
    index_dir = WORK / f"{name}-{text_kind}"
    settings = Settings(corpus_dir=corpus, index_dir=index_dir)
    original, before = rag.index.gather.index_text, embedder.embedded
    rag.index.gather.index_text = INDEX_TEXTS[text_kind]
    try:
        report = rag.index.build.build(settings, embedder, corpus, rebuild=True, progress=sys.stderr.isatty())
    finally:
        rag.index.gather.index_text = original
    log.info("%s/%s: %d chunks, %d embedded", name, text_kind, report.chunks, embedder.embedded - before)
    return index_dir


def measure(name: str, index_dir: Path, overrides: dict[str, Any], embedder: CachedEmbedder) -> dict[str, Any]:
    from rag.engine import Engine
    from rag.service.evaluate import evaluate, load_questions

    settings = Settings(corpus_dir=SETS[name][0], index_dir=index_dir).replace(**overrides)
    engine = Engine(settings, embedder)
    engine.reload()
    questions = load_questions(SETS[name][1])
    report = evaluate(
        lambda q, history: engine.ask(q, history=history, k=10),
        questions,
        progress=sys.stderr.isatty(),
        document_text=lambda source: engine.document(source).text,
    )
    errors = [o.error for o in report.outcomes if o.error]
    if errors:
        raise RuntimeError(f"{name}: {len(errors)} questions failed, first: {errors[0]}")
    metrics = report.metrics()
    for key in ("latency_ms_p50", "latency_ms_p95"):
        metrics.pop(key, None)
    return metrics


def run(sets: list[str], variants: list[str], vectors: Path) -> dict[str, Any]:
    from rag.embedding.embedder import load_embedder

    embedder = CachedEmbedder(load_embedder(), vectors)
    results: dict[str, Any] = {"sets": {}, "date": time.strftime("%Y-%m-%d"), "code": _code_version()}
    for name in sets:
        if not SETS[name][1].exists():
            log.warning("%s: %s not found, skipped", name, SETS[name][1])
            continue
        indexes: dict[str, Path] = {}
        results["sets"][name] = {}
        for variant in variants:
            text_kind, overrides, _ = VARIANTS[variant]
            if text_kind not in indexes:
                indexes[text_kind] = build_index(name, text_kind, embedder)
            metrics = measure(name, indexes[text_kind], overrides, embedder)
            results["sets"][name][variant] = metrics
            log.info("%s %s: hit@1 %s hit@5 %s", name, variant, metrics["hit@1"], metrics["hit@5"])
    return results


def grid(vectors: Path) -> str:
    """Search-only hit@1 / hit@5 of every `GRID` row on `GRID_SETS` (indexes of the `header` text)."""
    from rag.embedding.embedder import load_embedder
    from rag.retrieval.retriever import Retriever
    from rag.service.evaluate import load_questions

    embedder = CachedEmbedder(load_embedder(), vectors)
    cells: dict[str, list[str]] = {label: [] for label, _ in GRID}
    for name in GRID_SETS:
        kb = load(build_index(name, "header", embedder))
        questions = [q for q in load_questions(SETS[name][1]) if q.answerable]
        queries = [Retriever(kb, embedder, Settings()).query(q.question) for q in questions]
        for label, overrides in GRID:
            retriever = Retriever(kb, embedder, Settings().replace(**overrides))
            ranks = []
            for question, query in zip(questions, queries, strict=True):
                hits = retriever.search(query, 5)
                ranks.append(next((h.rank for h in hits if question.hit(h.chunk.source, h.chunk.text)), None))
            at1 = sum(r == 1 for r in ranks) / len(ranks)
            at5 = sum(r is not None for r in ranks) / len(ranks)
            cells[label].append(f"{at1:.3f} / {at5:.3f}")
            log.info("grid %s %s: %.3f / %.3f", name, label, at1, at5)
    lines = [
        f"Measured {time.strftime('%Y-%m-%d')}, code {_code_version()}, by `python benchmarks/quality.py --grid` "
        "(search only, hit@1 / hit@5; stard: R@1 / R@5). **In-sample** on dev_qa, drcd_dev_simpq and stard "
        "(the weights were chosen on them); cmrc2018_dev was not looked at while choosing.",
        "",
        "| settings | " + " | ".join(GRID_SETS) + " |",
        "|---|" + "---|" * len(GRID_SETS),
    ]
    lines += [f"| {label} | " + " | ".join(cells[label]) + " |" for label, _ in GRID]
    return "\n".join(lines) + "\n"


def merge(path: Path, fresh: dict[str, Any]) -> dict[str, Any]:
    """Earlier results of `path` with the fresh ones on top (a run of some sets keeps the others); saved."""
    results = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {"sets": {}}
    for name, variants in fresh["sets"].items():
        results["sets"].setdefault(name, {}).update(variants)
    results.update(date=fresh["date"], code=fresh["code"])
    results["sets"] = {name: results["sets"][name] for name in SETS if name in results["sets"]}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, ensure_ascii=False, indent=1), encoding="utf-8")
    return results


def markdown(results: dict[str, Any]) -> str:
    sets = list(results["sets"])
    variants = [v for v in VARIANTS if any(v in results["sets"][s] for s in sets)]
    lines = [
        "## Retrieval quality on every question set",
        "",
        f"Measured {results['date']}, code {results['code']}, by `benchmarks/quality.py` (every question "
        "asked through `Engine.ask`, as `rag eval` does; passages at k = 10). Cells: hit@1 / hit@5 of the "
        "retrieved passages — for stard R@1 / R@5, a hit when any gold article is in the top k. "
        "**In-sample**: the weights were chosen on dev_qa, drcd_dev_simpq and stard together (cmrc2018_dev "
        "was checked afterwards; `docs/tuning.md`); notices is the test collection of `tests/data/notices`.",
        "",
        "| variant | " + " | ".join(sets) + " |",
        "|---|" + "---|" * len(sets),
    ]
    for variant in variants:
        cells = []
        for name in sets:
            m = results["sets"][name].get(variant)
            cells.append(f"{m['hit@1']:.3f} / {m['hit@5']:.3f}" if m and m["hit@1"] is not None else "—")
        lines.append(f"| `{variant}` | " + " | ".join(cells) + " |")
    lines += ["", "| variant | what it is |", "|---|---|"]
    lines += [f"| `{v}` | {VARIANTS[v][0]} index text; {VARIANTS[v][2]} |" for v in variants]
    lines += [
        "",
        "Index texts: `header` = context header (title, issuing body, document number, date from the "
        "metadata) + heading path + text (`rag.index.gather.index_text`); `title` = title + heading path + text "
        "(main before); `plain` = the chunk's text only.",
        "",
        "More figures of `current` (MRR@10; citation hit = a citation quotes a gold passage; answered = "
        "answerable questions not abstained; abstention recall on unanswerable questions):",
        "",
        "| set | questions | MRR@10 | citation hit | answered | abstention recall | what it is |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in sets:
        m = results["sets"][name].get("current")
        if not m:
            continue

        def fmt(value: Any) -> str:
            return "—" if value is None else f"{value:.3f}"

        lines.append(
            f"| {name} | {m['questions']} | {fmt(m['mrr@10'])} | {fmt(m['citation_hit'])} | "
            f"{fmt(m['answered_when_answerable'])} | {fmt(m['abstention_recall'])} | {SETS[name][2]} |"
        )
    return "\n".join(lines) + "\n"


def write(results: dict[str, Any], report: Path = REPORT) -> None:
    """`benchmarks/quality.md`, and the same text between the markers of `docs/benchmarks.md`."""
    text = markdown(results)
    SECTION.write_text(text, encoding="utf-8")
    splice(report, text)


def splice(report: Path, text: str, begin: str = BEGIN, end: str = END) -> None:
    """Put `text` between the markers of `report` (appended when the markers are missing)."""
    block = f"{begin}\n{text.strip()}\n{end}"
    current = report.read_text(encoding="utf-8") if report.exists() else ""
    if begin in current and end in current:
        head, rest = current.split(begin, 1)
        current = head + block + rest.split(end, 1)[1]
    else:
        current = current.rstrip("\n") + "\n\n" + block + "\n"
    report.write_text(current, encoding="utf-8")


def _code_version() -> str:
    import subprocess

    try:
        out = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "rag"], capture_output=True, text=True)
        return out.stdout.strip() + ("+changes" if dirty.stdout.strip() else "")
    except OSError:
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sets", default=",".join(SETS), help="comma-separated; default: all")
    p.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated; default: all")
    p.add_argument("--vectors", type=Path, default=WORK / "vectors.npz", help="vector cache file")
    p.add_argument("--report", type=Path, default=REPORT)
    p.add_argument("--no-write", action="store_true", help="print the table only")
    p.add_argument("--grid", action="store_true", help="the fusion grid of docs/tuning.md instead")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.grid:
        table = grid(args.vectors)
        print(table)
        if not args.no_write:
            splice(TUNING, table, GRID_BEGIN, GRID_END)
        return 0
    sets = [s for s in args.sets.split(",") if s]
    variants = [v for v in args.variants.split(",") if v]
    unknown = [s for s in sets if s not in SETS] + [v for v in variants if v not in VARIANTS]
    if unknown:
        p.error(f"unknown set or variant: {', '.join(unknown)}")
    results = merge(WORK / "results.json", run(sets, variants, args.vectors))
    print(markdown(results))
    if not args.no_write:
        write(results, args.report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
