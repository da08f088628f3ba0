"""Checking written sentences against their sources: splitting, facts, and verdicts on crafted
sentences over the real corpus (`tests/data/written_sentences.jsonl`)."""

import json
from pathlib import Path

import pytest
from llm_server import cite

from rag.answer.verify import SentenceStream, Verifier, facts, split_sentences
from rag.answer.writer import messages, sources_for

CASES = [
    json.loads(line)
    for line in (Path(__file__).parent / "data" / "written_sentences.jsonl").read_text(encoding="utf-8").splitlines()
    if line.strip()
]


def test_sentences_keep_the_markers_that_follow_them():
    text = "甲是乙。[1]丙是丁[2]。戊[1][3]；己【2】\n- 庚，辛。[1, 2]\n参考资料：\n[1] 《某文件》"
    pieces = split_sentences(text)
    assert [p.claim for p in pieces] == ["甲是乙。", "丙是丁。", "戊；", "己", "庚，辛。", "参考资料：", "《某文件》"]
    assert [p.markers for p in pieces[:5]] == [[1], [2], [1, 3], [2], [1, 2]]
    assert [p.line_end for p in pieces[:5]] == [False, False, False, True, True]
    assert pieces[4].display == "- 庚，辛。"
    assert [p.is_reference for p in pieces] == [False] * 5 + [True, True]
    for p in pieces:
        assert text[p.start : p.end].strip() == p.text


def test_a_streamed_sentence_is_given_only_when_it_cannot_change():
    text = "纪委要履行监督责任。[1][2]党委要扛起主体责任[3]。\n1. 定责；[4]\n2. 明责[5]"
    stream = SentenceStream()
    seen = []
    for i, ch in enumerate(text):
        for piece in stream.feed(ch):
            seen.append((piece.text, i))
    seen += [(p.text, len(text)) for p in stream.close()]
    assert [t for t, _ in seen] == [p.text for p in split_sentences(text)]
    first_done = seen[0][1]
    assert text[: first_done + 1].endswith("[1][2]党"), "released only after its markers were complete"


def test_facts_a_sentence_states():
    found = {
        (f.kind, f.text)
        for f in facts("2016年3月，浙江省依据《决定》第36条和“五必谈”要求，分3个层面签订76对责任书，占10.5%。")
    }
    assert {
        ("date", "2016年3月"),
        ("title", "《决定》"),
        ("article", "第36条"),
        ("quoted", "五必谈"),
        ("number", "3"),
        ("number", "76"),
        ("number", "10.5%"),
        ("name", "浙江省"),
    } <= found
    assert not [f for f in facts("这是一个重要的新一届班子。") if f.kind == "number"], "一个/一届 are not figures"
    assert ("number", "三个") in {(f.kind, f.text) for f in facts("分三个层面")}
    negation = [f for f in facts("不敢腐、不能腐、不想腐") if f.kind == "negation"]
    assert [(f.text, f.count) for f in negation] == [("不", 3)]


def test_a_number_is_found_only_as_a_whole_number():
    (fact,) = [f for f in facts("共22名") if f.kind == "number"]
    assert fact.found_in("共22名") and not fact.found_in("共122名") and not fact.found_in("共22.5名")


@pytest.fixture(scope="module")
def verifier(engine):
    return Verifier(engine.embedder, engine.settings)


@pytest.mark.parametrize(
    "case", [c for c in CASES if not c.get("limit")], ids=lambda c: f"{c['kind']}:{c['sentence'][:14]}"
)
def test_crafted_sentence_verdicts(engine, verifier, case):
    extractive = engine.ask(case["question"], generate=False)
    sources = sources_for(extractive.passages, engine.kb.documents, engine.settings.llm_passages)
    (piece,) = split_sentences(cite(case["sentence"], messages(case["question"], "", sources)))
    verdict = verifier.check(piece, sources)
    got = "dropped" if not verdict.kept else "recited" if verdict.recited else "kept"
    assert got == case["expect"], (verdict.reason, verdict.closest)
    if case["kind"].startswith("wrong_figure") or case["kind"] in ("wrong_name", "wrong_date", "wrong_title"):
        assert verdict.reason == "fact"
    for support in verdict.supports:
        document = engine.document(support.source.passage.source)
        assert document.text[support.start : support.end] == support.quote
        assert support.source.passage.start <= support.start < support.end <= support.source.passage.end
    if got == "kept":
        assert {s.source.number for s in verdict.supports} <= set(piece.markers)
    if got == "recited":
        assert case["source_holds"] in verdict.supports[0].quote
        assert verdict.supports[0].source.number not in piece.markers
