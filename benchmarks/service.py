"""The chat page as a service (`bench.py --service`): questions during an upload, and start-up time.

- **Questions while a document is indexed**: the page served in a fresh process on the product corpus;
  questions asked one after another through its HTTP API (`/ask`, gradio_client) while idle, then while
  a 60-chunk upload is indexed, in three ways: as the code did before background indexing (the build
  embeds under the model's one lock, on all cores), with the build on its own lock but all cores, and
  as the page does it now (`engine.worker`: own lock, `Settings.index_threads` = 1 core).
- **Start-up**: `python app.py` on a 10,000-chunk index (generated vectors: start-up does not depend on
  them), spawned fresh; *page* = until `GET /` returns the page, *screen* = until Chromium shows the
  chat box, *first answer* = until the first `/ask` (sent as soon as the page is up) returns.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from corpora import long_report

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
WORK = HERE / "work"
DEV_QA = ROOT.parent / "shared" / "eval" / "dev_qa.jsonl"
UPLOAD_PARAGRAPHS = 60
"""The upload: a report of this many paragraphs, about one chunk each."""
FALLBACK_QUESTIONS = ["纪委监督责任包括什么", "落实两个责任要解决哪些实际问题", "党委主体责任具体指什么"]

log = logging.getLogger("bench.service")


def questions(limit: int = 40) -> list[str]:
    """Questions to time: the dev set's (read at run time), else a few examples."""
    if DEV_QA.exists():
        rows = [json.loads(line) for line in DEV_QA.read_text(encoding="utf-8").splitlines() if line.strip()]
        return [row["question"] for row in rows][:limit]
    return FALLBACK_QUESTIONS


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _summary(seconds: list[float]) -> dict[str, Any]:
    ms = sorted(s * 1000 for s in seconds)
    if not ms:
        return {"n": 0, "p50": None, "p95": None}
    return {
        "n": len(ms),
        "p50": round(statistics.median(ms), 1),
        "p95": round(ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))], 1),
        "max": round(ms[-1], 1),
    }


# --- child: questions while a document is indexed --------------------------------------------------


def child_latency(params: dict[str, Any]) -> dict[str, Any]:
    """In a fresh process: the page on the product corpus, question latency idle and during uploads."""
    sys.path.insert(0, str(ROOT))
    logging.getLogger("httpx").setLevel(logging.WARNING)
    from gradio_client import Client

    from rag.config import Settings
    from rag.engine import Engine
    from ui.layout import build_app, launch

    folder = Path(params["folder"])
    settings = Settings(corpus_dir=folder / "corpus", index_dir=folder / "index")
    engine = Engine(settings)
    engine.build(progress=False)
    demo = build_app(engine, settings)
    port = _free_port()
    launch(demo, settings, "127.0.0.1", port, prevent_thread_lock=True, quiet=True)
    client = Client(f"http://127.0.0.1:{port}/", verbose=False)
    asked = params["questions"]

    def ask() -> float:
        question = asked[ask.count % len(asked)]  # type: ignore[attr-defined]
        ask.count += 1  # type: ignore[attr-defined]
        start = time.perf_counter()
        client.predict(question, api_name="/ask")
        return time.perf_counter() - start

    ask.count = 0  # type: ignore[attr-defined]

    def ask_direct() -> float:
        start = time.perf_counter()
        engine.ask(asked[ask.count % len(asked)])  # type: ignore[attr-defined]
        return time.perf_counter() - start

    for _ in range(5):
        ask()
    result: dict[str, Any] = {"loadavg_before": round(os.getloadavg()[0], 2)}
    result["idle"] = _summary([ask() for _ in range(params["idle"])])
    result["idle_direct"] = _summary([ask_direct() for _ in range(params["idle"])])
    uploads = folder / "uploads"
    uploads.mkdir(exist_ok=True)
    result["modes"] = {}
    for mode in ("before", "own_lock_all_cores", "now"):
        path = long_report(uploads / f"青山县专项检查汇编-{mode}.txt", UPLOAD_PARAGRAPHS)
        result["modes"][mode] = _upload_while_asking(engine, mode, path, ask, ask_direct)
        log.info("%s: %s", mode, result["modes"][mode])
        source = next(d.source for d in engine.documents() if d.source.startswith("青山县专项检查汇编"))
        engine.remove_document(source)
    result["loadavg_after"] = round(os.getloadavg()[0], 2)
    demo.close()
    return result


def _upload_while_asking(engine: Any, mode: str, path: Path, ask: Any, ask_direct: Any) -> dict[str, Any]:
    """Index `path` the way `mode` says and ask questions until it is done (through the page's API and,
    alternately, of the engine in the page's process); their latency."""
    from rag.service.worker import limit_threads

    embedding = threading.Event()
    finished = threading.Event()
    start = time.perf_counter()
    if mode == "now":  # what the page does: the engine's background worker
        job = engine.worker.add(path, user="bench")
        while engine.worker.job(job.id).state in ("queued", "running") and engine.worker.job(job.id).stage != "embed":
            time.sleep(0.02)
    else:  # as the page did before: the build in the request's thread, on all cores

        def progress(stage: str, done: int, total: int) -> None:
            if stage == "embed":
                embedding.set()

        def run() -> None:
            shared = engine._index_embedder
            if mode == "before":  # a build's batches held the one model lock, as questions do
                engine._index_embedder = engine.embedder
            limit_threads(0)
            try:
                engine.add_document(path, on_progress=progress)
            finally:
                engine._index_embedder = shared
                finished.set()

        threading.Thread(target=run, daemon=True).start()
        embedding.wait(600)
    during, direct = [], []
    while not (finished.is_set() if mode != "now" else engine.worker.job(job.id).state in ("done", "failed")):
        during.append(ask())
        direct.append(ask_direct())
    if mode == "now":
        engine.worker.wait()
    else:
        finished.wait()
    return {
        **_summary(during),
        "direct": _summary(direct),
        "upload_s": round(time.perf_counter() - start, 1),
        "chunks": UPLOAD_PARAGRAPHS,
    }


def latency(run_child: Any) -> dict[str, Any]:
    """Questions during an upload, measured in a child process on a copy of the product corpus."""
    folder = WORK / "service-latency"
    if not (folder / "corpus").is_dir():
        shutil.copytree(ROOT / "corpus", folder / "corpus")
    for stray in (folder / "corpus").glob("青山县专项检查汇编*"):  # left by an interrupted run
        stray.unlink()
    return run_child("service_latency", {"folder": str(folder), "questions": questions(), "idle": 60})


# --- start-up ---------------------------------------------------------------------------------------


def startup(run_child: Any, size: int = 10_000, repeats: int = 3, wait: Any = lambda: None) -> dict[str, Any]:
    """`python app.py` on an index of `size` chunks: seconds to the page, the screen and the first answer."""
    logging.getLogger("httpx").setLevel(logging.WARNING)
    folder = WORK / f"service-{size}"
    if not (folder / "index" / "CURRENT").exists():
        from corpora import load_pool, make_corpus

        pool, queries_ = load_pool()
        shutil.rmtree(folder, ignore_errors=True)
        make_corpus(size, pool, queries_).write(folder)
        log.info("building a %d-chunk index with generated vectors for the start-up figures", size)
        run_child("build", {"folder": str(folder), "policy": "generated", "vector_sources": []})
    chunks = json.loads(
        (folder / "index" / (folder / "index" / "CURRENT").read_text().strip() / "manifest.json").read_text()
    )["chunks"]
    runs = []
    for _ in range(repeats):
        wait()
        runs.append({"gradio_import_s": _gradio_import_seconds(), **_start_once(folder)})
    keys = ("gradio_import_s", "page_s", "screen_s", "first_answer_s", "engine_s")
    return {
        "chunks": chunks,
        "runs": runs,
        **{
            key: round(statistics.median(r[key] for r in runs if r.get(key) is not None), 2)
            for key in keys
            if any(r.get(key) is not None for r in runs)
        },
    }


def _gradio_import_seconds() -> float:
    """A fresh interpreter that only imports gradio: the floor of the page's start-up on this machine now."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import gradio"], check=True, capture_output=True)
    return round(time.perf_counter() - start, 2)


def _start_once(folder: Path) -> dict[str, Any]:
    """Spawn the page on `folder`'s index and time it; the process is stopped afterwards."""
    from gradio_client import Client  # imported before the clock starts

    port = _free_port()
    url = f"http://127.0.0.1:{port}/"
    browser = _chromium()
    log_path = folder / "app.log"
    result: dict[str, Any] = {"loadavg": round(os.getloadavg()[0], 2)}
    with log_path.open("w", encoding="utf-8") as log_file:
        spawned = time.perf_counter()
        process = _spawn_app(folder, port, log_file)
        try:
            _wait_for_page(url, process, spawned, log_path)
            result["page_s"] = round(time.perf_counter() - spawned, 2)
            result.update(_screen_and_first_answer(url, browser, spawned, Client))
        finally:
            process.terminate()
            process.wait(30)
            if browser is not None:
                browser.close()
                browser._playwright.stop()  # type: ignore[attr-defined]
    for line in log_path.read_text(encoding="utf-8").splitlines():
        if "engine ready after" in line:
            result["engine_s"] = float(line.rsplit("after", 1)[1].split()[0])
    return result


def _spawn_app(folder: Path, port: int, log_file: Any) -> subprocess.Popen:
    """`python app.py` on `folder`'s index and corpus, its output into `log_file`."""
    return subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "app.py"),
            "--index",
            str(folder / "index"),
            "--corpus",
            str(folder / "corpus"),
            "--port",
            str(port),
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=log_file,
        stderr=subprocess.STDOUT,
    )


def _wait_for_page(url: str, process: subprocess.Popen, spawned: float, log_path: Path) -> None:
    """Poll until `GET url` returns the page (at most 300 s after `spawned`, and while the process lives)."""
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200 and b"gradio_config" in response.read():
                    return
        except OSError:
            pass
        if process.poll() is not None or time.perf_counter() - spawned > 300:
            raise RuntimeError(f"app.py did not serve: see {log_path}")
        time.sleep(0.02)


def _screen_and_first_answer(url: str, browser: Any, spawned: float, client: Any) -> dict[str, Any]:
    """Ask once through the API (a `gradio_client.Client`) while Chromium (if any) loads the page: seconds
    from `spawned` to the question box on screen and to the answer."""
    result: dict[str, Any] = {}
    answered: dict[str, float] = {}

    def first_answer() -> None:
        client(url, verbose=False).predict(FALLBACK_QUESTIONS[0], api_name="/ask")
        answered["at"] = time.perf_counter()

    asking = threading.Thread(target=first_answer)
    asking.start()
    if browser is not None:
        page = browser.new_page()
        page.goto(url)
        page.wait_for_selector("#question textarea", timeout=120_000)
        result["screen_s"] = round(time.perf_counter() - spawned, 2)
        page.close()
    asking.join(600)
    result["first_answer_s"] = round(answered["at"] - spawned, 2) if "at" in answered else None
    return result


def _chromium() -> Any:
    """A headless Chromium started before the page is (so its start is not counted), or None."""
    executable = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(executable).exists():
        return None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return None
    playwright = sync_playwright().start()
    browser = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox", "--disable-gpu"])
    browser._playwright = playwright  # type: ignore[attr-defined]
    return browser


# --- report -----------------------------------------------------------------------------------------

BEGIN = "<!-- service: generated by benchmarks/bench.py --service -->"
END = "<!-- service: end -->"


def markdown(service: dict[str, Any]) -> list[str]:
    """The report's section on the chat page as a service."""
    lines = [BEGIN, "## The chat page as a service", ""]
    measured = service.get("latency")
    if measured:
        idle = measured["idle"]
        lines += [
            f"Questions through the page's HTTP API (`/ask`), one after another, on the product corpus (59 chunks), "
            f"while a {UPLOAD_PARAGRAPHS}-chunk upload is indexed (code {service.get('code', '?')}, "
            f"{service.get('date', '?')}, load average {measured['loadavg_before']} → {measured['loadavg_after']}). "
            "Target: p50 during an upload within 2× of idle p50.",
            "",
            "| while | questions | p50 (ms) | p95 (ms) | max (ms) | p50 / idle p50 | `engine.ask` in the page's process: p50 / p95 (ms) | upload took (s) |",
            "|---|---|---|---|---|---|---|---|",
            f"| idle | {idle['n']} | {idle['p50']} | {idle['p95']} | {idle['max']} | 1.0 | "
            f"{_pair(measured.get('idle_direct'))} | — |",
        ]
        labels = {
            "before": "upload, as before (build on the model's one lock, all cores)",
            "own_lock_all_cores": "upload, build on its own lock, all cores",
            "now": "upload, as now (background worker: own lock, 1 core)",
        }
        for mode, label in labels.items():
            figure = measured["modes"].get(mode)
            if not figure:
                continue
            ratio = f"{figure['p50'] / idle['p50']:.1f}" if figure["p50"] and idle["p50"] else "—"
            mark = ""
            if mode == "now" and figure["p50"] and idle["p50"]:
                mark = " ✅" if figure["p50"] <= 2 * idle["p50"] else " ❌"
            lines.append(
                f"| {label} | {figure['n']} | {figure['p50']} | {figure['p95']} | {figure['max']} | {ratio}{mark} | "
                f"{_pair(figure.get('direct'))} | {figure['upload_s']} |"
            )
        lines.append("")
    started = service.get("startup")
    if started:
        lines += [
            f"`python app.py` on a {started['chunks']:,}-chunk index (generated vectors), median of "
            f"{len(started['runs'])} fresh starts (load average {', '.join(str(r['loadavg']) for r in started['runs'])}). "
            "The page is served first; the engine is opened once the first page has loaded (or 3 s after "
            "serving), so its imports do not slow the page's own scripts. Before, the page was served only "
            "once the engine was open and the index checked. Target: page ≤ 3 s; importing gradio alone, "
            "measured just before each start, is most of it (the last column is the rest).",
            "",
            "| page served (s) | chat box on screen, Chromium (s) | engine open (s, from the start of opening) "
            "| first answer (s) | `import gradio` alone, same moment (s) | page minus `import gradio` (s) |",
            "|---|---|---|---|---|---|",
            f"| {started.get('page_s', '—')}{' ✅' if started.get('page_s', 99) <= 3 else ' ❌'} | "
            f"{started.get('screen_s', '—')} | {started.get('engine_s', '—')} | {started.get('first_answer_s', '—')} | "
            f"{started.get('gradio_import_s', '—')} | {_overhead(started)} |",
            "",
        ]
    lines.append(END)
    return lines


def _overhead(started: dict[str, Any]) -> str:
    """Median over the runs of the page's own start-up beyond importing gradio."""
    gaps = [r["page_s"] - r["gradio_import_s"] for r in started["runs"] if "gradio_import_s" in r and "page_s" in r]
    return f"{statistics.median(gaps):.2f}" if gaps else "—"


def _pair(figure: dict[str, Any] | None) -> str:
    return f"{figure['p50']} / {figure['p95']}" if figure else "—"


def update_report(path: Path, service: dict[str, Any]) -> None:
    """Replace the service section of an existing report (or append it), leaving the rest as it is."""
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    section = "\n".join(markdown(service))
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + section + rest.split(END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.write_text(text, encoding="utf-8")
