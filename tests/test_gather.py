"""Steps 2–3 of a build (`rag/index/gather.py`): what cleaning took out of a document is reported when
it is much — a warning in the index log naming the file, the step and the share, and a line of the
build's notes (what `rag index` and an upload's result show)."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from rag.config import Settings
from rag.index.build import build

DATA = Path(__file__).resolve().parent / "data"


def test_a_cleaning_step_that_takes_much_of_a_document_is_reported(tmp_path, fake_embedder, caplog):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    shutil.copy(DATA / "pages" / "qa_site.txt", corpus)  # a Q&A page: its link list is a quarter of it
    shutil.copy(DATA / "reports" / "statistics_report.txt", corpus)  # a report: nothing of it is furniture
    settings = Settings(corpus_dir=corpus, index_dir=tmp_path / "index")
    with caplog.at_level(logging.WARNING, logger="rag.index.gather"):
        report = build(settings, fake_embedder, progress=False)
    notes = [note for note in report.notes if "qa_site.txt" in note]
    assert any("链接列表" in note and "25%" in note for note in notes), report.notes
    assert any("页面元素" in note and "17%" in note for note in notes), report.notes
    assert not any("statistics_report.txt" in note for note in report.notes)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("qa_site.txt" in w and "links" in w and "25%" in w for w in warnings), warnings


def test_the_share_that_is_reported_is_a_setting(tmp_path, fake_embedder):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    shutil.copy(DATA / "pages" / "qa_site.txt", corpus)
    settings = Settings(corpus_dir=corpus, index_dir=tmp_path / "index", clean_note_share=0.3)
    assert build(settings, fake_embedder, progress=False).notes == []
