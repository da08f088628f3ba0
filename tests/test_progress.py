"""Progress of index builds (`rag.index.progress`): log lines without a terminal, and the callback."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from rag.cli import main
from rag.config import Settings
from rag.index import progress
from rag.index.build import build
from rag.index.progress import Progress


@pytest.fixture
def kb(small_kb: Settings) -> Settings:
    return small_kb


def test_progress_lines_say_done_total_rate_and_time_left(caplog):
    caplog.set_level(logging.INFO, logger="rag.index.progress")
    work = Progress("embed", 4, "chunks", bar=False, interval=0)
    work.advance(1)
    work.advance(1)
    work.close()
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0].startswith("embed: 1/4 chunks (") and "/s, about " in lines[0] and lines[0].endswith(" left)")
    assert lines[1].startswith("embed: 2/4 chunks (")
    assert lines[-1].startswith("embed: 4/4 chunks (") and "left" not in lines[-1]


def test_no_lines_for_work_shorter_than_the_interval(caplog):
    caplog.set_level(logging.INFO, logger="rag.index.progress")
    work = Progress("clean", 3, "documents", bar=False, interval=60)
    for _ in range(3):
        work.advance()
    work.close()
    assert caplog.records == []


def test_the_callback_sees_every_stage_of_a_build(kb, embedder):
    calls: list[tuple[str, int, int]] = []
    build(kb, embedder, progress=False, on_progress=lambda *call: calls.append(call))
    stages = [stage for stage, _, _ in calls]
    assert stages == sorted(stages, key=["clean", "embed", "write"].index)  # in order, each once
    for stage, total in (("clean", 3), ("embed", 3), ("write", 1)):
        seen = [(done, t) for s, done, t in calls if s == stage]
        assert seen[0] == (0, total) and seen[-1] == (total, total)
        assert [done for done, _ in seen] == sorted(done for done, _ in seen)


def test_only_the_work_to_do_is_counted(kb, embedder):
    build(kb, embedder, progress=False)
    (Path(kb.corpus_dir) / "d.txt").write_text("巡视整改\n巡视整改要压实整改主体责任。", encoding="utf-8")
    calls: list[tuple[str, int, int]] = []
    build(kb, embedder, progress=False, on_progress=lambda *call: calls.append(call))
    assert ("clean", 1, 1) in calls and ("embed", 1, 1) in calls
    assert max(total for _, _, total in calls) == 1


def test_rag_index_without_a_terminal_logs_progress_lines(kb, caplog, capsys, monkeypatch):
    monkeypatch.setattr(progress, "LOG_EVERY", 0.0)
    caplog.set_level(logging.INFO, logger="rag")
    assert main(["index", "--index", str(kb.index_dir), "--corpus", str(kb.corpus_dir)]) == 0  # stderr is captured
    lines = [r.getMessage() for r in caplog.records if r.name == "rag.index.progress"]
    assert any(line.startswith("clean: 1/3 documents") for line in lines)
    assert any(line.startswith("embed: 3/3 chunks") for line in lines)
    assert "\r" not in capsys.readouterr().err  # no bar
