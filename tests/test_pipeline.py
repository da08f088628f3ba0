"""Index identity (`rag.index.pipeline`): the pipeline version follows the code, and a build re-processes
every document when it changed, re-embedding only chunk texts that changed."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from conftest import run_python

from rag.cli import main
from rag.config import Settings
from rag.engine import Engine
from rag.index.build import build
from rag.index.pipeline import changed_parts, pipeline_version
from rag.ingest import chunk as chunk_module
from rag.ingest import clean

ROOT = Path(__file__).resolve().parent.parent


def test_the_version_is_stable_and_the_same_in_another_process():
    version = pipeline_version(Settings())
    assert pipeline_version(Settings()) == version
    assert set(version["parts"]) == {"clean", "chunk", "index_text", "tokenize"}
    code = "import json; from rag.index.pipeline import pipeline_version; from rag.config import Settings; print(json.dumps(pipeline_version(Settings())))"
    out = run_python(code, PYTHONHASHSEED="12345")
    assert json.loads(out.strip().splitlines()[-1]) == version


def test_a_changed_cleaning_rule_changes_the_clean_part(monkeypatch):
    before = pipeline_version(Settings())
    monkeypatch.setattr(clean, "_DATED_ITEM", re.compile(r"^$"))
    after = pipeline_version(Settings())
    assert changed_parts(before, after) == ["clean"]


def test_chunk_settings_and_index_text_have_their_own_parts(monkeypatch):
    before = pipeline_version(Settings())
    assert changed_parts(before, pipeline_version(Settings(chunk_max=350))) == ["chunk"]
    assert changed_parts(before, pipeline_version(Settings(top_k=9, bm25_k1=1.5))) == []
    monkeypatch.setattr(chunk_module, "index_text", lambda chunk, document: chunk.text)
    assert changed_parts(before, pipeline_version(Settings())) == ["index_text"]


def test_an_unrecorded_version_changed_everything():
    assert changed_parts(None, pipeline_version(Settings())) == ["clean", "chunk", "index_text", "tokenize"]


@pytest.fixture
def real_kb(kb_settings, engine, tmp_path) -> Settings:
    """A private copy of the session's index of the real corpus."""
    settings = kb_settings.replace(corpus_dir=tmp_path / "corpus", index_dir=tmp_path / "index")
    shutil.copytree(kb_settings.corpus_dir, settings.corpus_dir)
    shutil.copytree(kb_settings.index_dir, settings.index_dir)
    return settings


def test_a_changed_cleaning_rule_re_processes_without_rebuild_and_embeds_only_changed_chunks(
    real_kb, embedder, monkeypatch
):
    engine = Engine(real_kb, embedder)
    engine.reload()
    before = {c.id: c.text for c in engine.kb.chunks}
    # the rule that recognises "headline2021/12/13" link entries stops matching: 003's link list is
    # no longer cut where it was, so its last chunk changes; every other chunk stays the same
    monkeypatch.setattr(clean, "_DATED_ITEM", re.compile(r"^$"))
    report = engine.build(progress=False)
    assert report.reprocessed == sorted(
        p.name for p in Path(real_kb.corpus_dir).iterdir() if p.is_file() and not p.name.startswith(".")
    )
    assert report.added == report.changed == report.removed == report.unchanged == []
    assert any("changed: clean" in note for note in report.notes)
    after = {c.id: c.text for c in engine.kb.chunks}
    changed = [chunk_id for chunk_id, text in after.items() if before.get(chunk_id) != text]
    assert changed and all(chunk_id.startswith("003_") for chunk_id in changed)
    assert report.embedded == len(changed) < 4
    assert report.reused_vectors == len(after) - len(changed)
    assert "2021/12/13" in engine.document("003_f1c9c6d7a3f56b9a.txt").text
    assert engine.build(progress=False).changed_anything is False  # and then it is up to date


def test_rag_index_says_why_it_re_processes(kb_small, capsys, caplog, monkeypatch):
    monkeypatch.setattr(clean, "_MARKDOWN_HEADING", re.compile(r"^#{1,3}\s+"))
    assert main(["index", "--index", str(kb_small.index_dir), "--corpus", str(kb_small.corpus_dir)]) == 0
    out = capsys.readouterr().out
    assert "3 re-processed" in out and "(0 embedded, 3 vectors re-used by text)" in out
    assert any("pipeline differs" in r.getMessage() and "changed: clean" in r.getMessage() for r in caplog.records)


@pytest.fixture
def kb_small(tmp_path, embedder) -> Settings:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for name, text in {
        "a.txt": "纪委要履行监督责任。",
        "b.txt": "党委要担负起主体责任。",
        "c.txt": "基层减负要精简会议。",
    }.items():
        (corpus / name).write_text(text, encoding="utf-8")
    settings = Settings(corpus_dir=corpus, index_dir=tmp_path / "index")
    build(settings, embedder, progress=False)
    return settings
