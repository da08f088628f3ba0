"""Loading the index (`rag.index.knowledge_base`): the live build, what is missing or damaged, older formats.

Each test builds a small index of a few one-chunk documents with the real default model.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rag.config import Settings
from rag.index.build import build
from rag.index.knowledge_base import load
from rag.index.layout import CURRENT, FORMAT, IndexUnavailable, current_build


@pytest.fixture
def built(small_kb: Settings, embedder) -> Settings:
    """A small index, built once."""
    build(small_kb, embedder, progress=False)
    return small_kb


def test_loading_a_missing_index_says_how_to_build_it(tmp_path):
    with pytest.raises(IndexUnavailable, match=r"no index in .*rag index"):
        load(tmp_path / "nowhere")
    assert current_build(tmp_path / "nowhere") is None


def test_a_pointer_to_a_missing_build_is_no_index(tmp_path):
    (tmp_path / CURRENT).write_text("build-gone", encoding="utf-8")
    with pytest.raises(IndexUnavailable, match="rag index"):
        load(tmp_path)


def test_chunk_texts_are_stored_once_with_their_document(built):
    folder = current_build(Path(built.index_dir))
    records = [json.loads(line) for line in (folder / "chunks.jsonl").read_text(encoding="utf-8").splitlines()]
    assert records and all("text" not in r for r in records)
    loaded = load(Path(built.index_dir))
    for chunk in loaded.chunks:
        document = loaded.documents[chunk.source]
        assert chunk.doc_text is document.text  # shared, not copied
        assert chunk.text == document.text[chunk.start : chunk.end] and chunk.text


def test_a_damaged_build_without_an_earlier_one_asks_for_rag_index(built):
    (current_build(Path(built.index_dir)) / "chunks.jsonl").write_text("{broken", encoding="utf-8")
    with pytest.raises(IndexUnavailable, match=r"chunks.jsonl.*no earlier build verifies: run `rag index`"):
        load(Path(built.index_dir))


def test_an_older_format_asks_for_a_rebuild(built):
    manifest_path = current_build(Path(built.index_dir)) / "manifest.json"
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    manifest["format"] = FORMAT - 1
    manifest_path.write_text(json.dumps(manifest), encoding="utf-8")
    with pytest.raises(IndexUnavailable, match=r"older format.*--rebuild"):
        load(Path(built.index_dir))
