"""The public API: questions in all shapes, documents added and removed, shared use."""

import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from rag import Engine
from rag.engine import QuestionError
from rag.service.corpus import MAX_NAME_BYTES, DocumentError, DocumentExists, safe_filename


@pytest.mark.parametrize("question", ["", "   ", "\n\t"])
def test_empty_question_gets_a_clear_message(engine, question):
    with pytest.raises(QuestionError, match="问题"):
        engine.ask(question)
    with pytest.raises(QuestionError):
        engine.search(question)


def test_ten_thousand_character_question_is_answered(engine):
    answer = engine.ask("纪委监督责任包括什么" + "。" * 9990)
    assert answer.question.startswith("纪委监督责任包括什么")
    assert not answer.abstained
    assert any(c.source.startswith("004") and "监督责任" in c.quote for c in answer.citations)


@pytest.mark.parametrize("question", ["紀委監督責任包括什麼？", "纪委监督责任包括什么？！"])
def test_traditional_and_full_width_questions_find_the_same_answer(engine, question):
    plain = engine.ask("纪委监督责任包括什么")
    answer = engine.ask(question)
    assert (answer.citations[0].source, answer.citations[0].start) == (
        plain.citations[0].source,
        plain.citations[0].start,
    )
    same = {(c.source, c.start) for c in answer.citations} & {(c.source, c.start) for c in plain.citations}
    assert len(same) >= len(plain.citations) / 2


def test_mixed_english_question_is_answered_from_its_chinese_words(engine):
    answer = engine.ask("What does 纪委监督责任 include?")
    assert not answer.abstained
    assert any(c.source.startswith("004") and "监督责任" in c.quote for c in answer.citations)


def test_a_bare_latin_word_abstains(engine):
    assert engine.ask("ＰＹＴＨＯＮ").abstained


def test_documents_are_listed_with_titles_and_chunk_counts(engine):
    documents = engine.documents()
    assert [d.source for d in documents] == sorted(
        p.name for p in Path(engine.settings.corpus_dir).iterdir() if p.is_file()
    )
    assert all(d.title and d.chunks > 0 for d in documents)
    assert any(d.date == "2022-09-20" for d in documents)


@pytest.fixture
def own_engine(kb_settings, embedder, engine, tmp_path):
    """An engine on a private copy of the session's corpus and index (so changes stay here)."""
    settings = kb_settings.replace(corpus_dir=tmp_path / "corpus", index_dir=tmp_path / "index")
    shutil.copytree(kb_settings.corpus_dir, settings.corpus_dir)
    shutil.copytree(kb_settings.index_dir, settings.index_dir)
    return _open(settings, embedder)


def _open(settings, embedder):
    engine = Engine(settings, embedder)
    engine.reload()
    return engine


def test_added_document_is_searchable_at_once_and_removed_again(own_engine, tmp_path):
    upload = tmp_path / "青山县 通报.txt"
    upload.write_text("青山县纪委在2024年开展了“清风行动”专项检查，共检查单位37家。", encoding="utf-8")
    report = own_engine.add_document(upload)
    assert report.added == ["青山县_通报.txt"] and report.embedded == 1
    answer = own_engine.ask("青山县纪委开展了什么专项检查?")
    assert answer.citations and answer.citations[0].source == "青山县_通报.txt"
    assert "清风行动" in answer.answer

    report = own_engine.remove_document("青山县_通报.txt")
    assert report.removed == ["青山县_通报.txt"]
    assert "青山县_通报.txt" not in {d.source for d in own_engine.documents()}
    assert own_engine.ask("青山县纪委开展了什么专项检查?").abstained


def test_bad_uploads_are_refused_with_a_reason(own_engine, tmp_path):
    binary = tmp_path / "bad.txt"
    binary.write_bytes(b"\x00\x01\x02" * 100)
    with pytest.raises(DocumentError, match="无法读取"):
        own_engine.add_document(binary)
    program = tmp_path / "tool.exe"
    program.write_bytes(b"MZ")
    with pytest.raises(DocumentError, match="不支持这种文件类型"):
        own_engine.add_document(program)
    assert not (Path(own_engine.settings.corpus_dir) / "bad.txt").exists()
    with pytest.raises(DocumentError):
        own_engine.remove_document("../corpus")


def test_concurrent_questions_get_the_same_answers_as_one_by_one(engine):
    questions = [
        "纪委监督责任包括什么",
        "北京市如何强化压力传导?",
        "明天北京的天气怎么样?",
        "廉政谈话开展了多少人次?",
    ] * 3
    alone = [engine.ask(q).answer for q in questions]
    with ThreadPoolExecutor(max_workers=6) as pool:
        together = list(pool.map(lambda q: engine.ask(q).answer, questions))
    assert together == alone


# --- documents: atomic, versioned, bounded ----------------------------------------------------------


def _corpus(engine) -> dict[str, bytes]:
    """Every file under the corpus folder but kept versions: name -> content."""
    root = Path(engine.settings.corpus_dir)
    return {p.name: p.read_bytes() for p in root.iterdir() if p.is_file()}


def test_a_failed_upload_write_leaves_no_partial_file(own_engine, tmp_path, monkeypatch):
    """Disk full half-way through writing an upload: nothing enters the corpus, the message says why."""
    import errno
    import os

    upload = tmp_path / "大文件.txt"
    upload.write_text("青山县纪委开展了“清风行动”专项检查。\n" * 4000, encoding="utf-8")  # ~ 200 KB
    before = _corpus(own_engine)
    real_write = os.write
    written = {"bytes": 0}

    def disk_fills_up(fd: int, data) -> int:
        """The real write, until 16 KB of an upload are on disk: then the disk is full."""
        if not os.readlink(f"/proc/self/fd/{fd}").rsplit("/", 1)[-1].startswith(".upload-"):
            return real_write(fd, data)
        room = 16_000 - written["bytes"]
        if room <= 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        count = real_write(fd, bytes(data[:room]))
        written["bytes"] += count
        return count

    monkeypatch.setattr(os, "write", disk_fills_up)
    with pytest.raises(DocumentError, match="磁盘空间不足") as failure:
        own_engine.add_document(upload)
    monkeypatch.undo()
    assert written["bytes"] == 16_000, "part of the upload was written before the disk filled up"
    assert str(own_engine.settings.corpus_dir) not in str(failure.value)
    assert _corpus(own_engine) == before  # no partial file, no temporary file
    assert not any(Path(own_engine.settings.corpus_dir).glob(".upload-*"))
    assert "大文件.txt" not in {d.source for d in own_engine.documents()}


def test_a_failed_index_write_takes_the_upload_back(own_engine, tmp_path, monkeypatch):
    """The upload was saved but writing the new index failed (disk full): the corpus is as before."""
    import errno

    import numpy as np

    upload = tmp_path / "通报.txt"
    upload.write_text("青山县纪委开展了“清风行动”专项检查，共检查单位37家。", encoding="utf-8")
    before = _corpus(own_engine)

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "save", no_space)
    with pytest.raises(DocumentError, match="磁盘空间不足"):
        own_engine.add_document(upload)
    monkeypatch.undo()
    assert _corpus(own_engine) == before
    assert own_engine.ask("青山县纪委开展了什么专项检查?").abstained


def test_an_upload_with_an_existing_name_replaces_it_only_when_asked_and_keeps_the_old_one(own_engine, tmp_path):
    corpus = Path(own_engine.settings.corpus_dir)
    name = sorted(p.name for p in corpus.iterdir() if p.is_file())[3]
    old = (corpus / name).read_bytes()
    for uploaded_as in (name, name.upper().replace(".TXT", ".TXT"), name.replace(".txt", ".TXT")):
        upload = tmp_path / uploaded_as
        upload.write_text("青山县纪委开展了“清风行动”专项检查，共检查单位37家。", encoding="utf-8")
        with pytest.raises(DocumentExists) as exists:
            own_engine.add_document(upload)
        assert exists.value.existing == name
        assert (corpus / name).read_bytes() == old
    report = own_engine.add_document(upload, replace=True)
    assert report.changed == [name] and set(report.kept) == {name}
    kept = corpus / ".versions" / report.kept[name]
    assert kept.read_bytes() == old
    assert sorted(p.name for p in corpus.iterdir() if p.is_file()) == sorted(_corpus(own_engine))
    assert not (corpus / upload.name).exists() or upload.name == name  # one file, under the existing name
    answer = own_engine.ask("青山县纪委开展了什么专项检查?")
    assert answer.citations and answer.citations[0].source == name


def test_a_file_that_expands_past_the_bound_is_refused(own_engine, tmp_path):
    """A small .docx of one paragraph repeated expands to millions of characters: refused, nothing indexed."""
    import docx

    document = docx.Document()
    for _ in range(6000):
        document.add_paragraph("青山县纪委开展了“清风行动”专项检查，共检查单位37家，发现问题12个。")
    upload = tmp_path / "重复段落.docx"
    document.save(upload)
    assert upload.stat().st_size < 200_000
    before = _corpus(own_engine)
    with pytest.raises(DocumentError, match="文档过长") as refused:
        own_engine.add_document(upload)
    assert f"{own_engine.settings.max_upload_chars:,}" in str(refused.value)
    assert _corpus(own_engine) == before


def test_a_name_too_long_for_the_file_system_is_shortened(own_engine, tmp_path):
    long_name = "关于进一步加强基层纪检监察机构规范化建设的实施意见" * 8 + ".txt"  # 200 characters, 600 bytes
    assert len(long_name.encode()) > 255
    upload = tmp_path / "upload.txt"
    upload.write_text("青山县纪委开展了“清风行动”专项检查，共检查单位37家。", encoding="utf-8")
    report = own_engine.add_document(upload, name=long_name)
    assert report.added == [safe_filename(long_name)]
    assert len(report.added[0].encode()) <= MAX_NAME_BYTES


def test_any_listed_name_can_be_removed(own_engine):
    """Files put into the corpus by hand may hold 《》, spaces and full-width commas."""
    corpus = Path(own_engine.settings.corpus_dir)
    names = ["《关于 印发》，通知.txt", "a b.txt", "表（一）.md"]
    for name in names:
        (corpus / name).write_text(f"{name}\n青山县纪委开展了专项检查。", encoding="utf-8")
    own_engine.build(progress=False)
    listed = {d.source for d in own_engine.documents()}
    assert set(names) <= listed
    for name in names:
        report = own_engine.remove_document(name)
        assert report.removed == [name]
        assert (corpus / ".versions" / report.kept[name]).is_file()  # removed, but not lost
    assert not set(names) & {d.source for d in own_engine.documents()}
    for bad in ("../corpus", "/etc/passwd", ".versions", "", "没有这个文件.txt"):
        with pytest.raises(DocumentError, match="知识库中没有文件"):
            own_engine.remove_document(bad)


def test_removing_a_name_in_another_case_removes_the_document(own_engine):
    corpus = Path(own_engine.settings.corpus_dir)
    name = sorted(p.name for p in corpus.iterdir() if p.is_file())[0]
    report = own_engine.remove_document(name.upper())
    assert report.removed == [name]


def test_a_build_waits_for_no_question(own_engine):
    """Builds embed with their own copies of the models' locks: a question is not queued behind a batch."""
    assert own_engine._index_embedder is not own_engine.embedder
    assert set(own_engine._index_embedder._locks) == set(own_engine.embedder._locks) == {"model", "engine"}
    for name, lock in own_engine.embedder._locks.items():
        assert own_engine._index_embedder._locks[name] is not lock
    assert own_engine._index_embedder.model is own_engine.embedder.model


# --- a build another process made live ---------------------------------------------------------------------


def test_an_engine_switches_to_a_build_another_process_made_live(own_engine, embedder, tmp_path):
    """The page's engine answers from the build `rag index` made live in another process, within a second."""
    import time

    page = own_engine
    other = _open(page.settings, embedder)  # `rag index` in another process: shares nothing but the folder
    question = "青山县纪委开展了什么专项检查?"
    assert page.ask(question).abstained
    upload = tmp_path / "青山县 通报.txt"
    upload.write_text("青山县纪委在2024年开展了“清风行动”专项检查，共检查单位37家。", encoding="utf-8")
    other.add_document(upload)
    time.sleep(page.settings.index_recheck_seconds)
    answer = page.ask(question)
    assert answer.citations and answer.citations[0].source == "青山县_通报.txt"
    assert page.health().build == other.health().build and page.health().ok
    assert "青山县_通报.txt" in {d.source for d in page.documents()}


def test_a_build_from_another_process_that_cannot_be_used_keeps_the_old_one_with_a_warning(own_engine, fake_embedder):
    """Another process rebuilt the index with another model: this engine keeps answering from the
    build it has, and says so."""
    import time

    page = own_engine
    before = page.health().build
    other = Engine(page.settings, fake_embedder)
    other.build(rebuild=True, progress=False)
    time.sleep(1.0)
    answer = page.ask("纪委监督责任包括什么")
    assert not answer.abstained and any(c.source.startswith("004") for c in answer.citations)
    health = page.health()
    assert health.build == before
    assert not health.ok and any("另一个进程" in w for w in health.warnings)
    assert page.warnings == health.warnings
