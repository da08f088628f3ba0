"""The public API: questions in all shapes, documents added and removed, shared use."""

import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from rag import Engine
from rag.engine import DocumentError, QuestionError, safe_filename


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
    assert [d.source for d in documents] == sorted(p.name for p in Path(engine.settings.corpus_dir).iterdir())
    assert all(d.title and d.chunks > 0 for d in documents)
    assert any(d.date == "2022-09-20" for d in documents)


def test_safe_filename_keeps_files_inside_the_corpus():
    assert safe_filename("../../etc/passwd") == "passwd"
    assert safe_filename("..\\..\\x.txt") == "x.txt"
    assert safe_filename(".hidden.md") == "hidden.md"
    assert safe_filename("报告 (2024).TXT") == "报告_(2024).txt"
    assert "/" not in safe_filename("a/b/c.pdf")


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
    with pytest.raises(DocumentError, match="binary"):
        own_engine.add_document(binary)
    program = tmp_path / "tool.exe"
    program.write_bytes(b"MZ")
    with pytest.raises(DocumentError, match="unsupported"):
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
