"""Checking written sentences against their sources: splitting, facts, and verdicts on crafted
sentences over the real corpus (`tests/data/written_sentences.jsonl`)."""

import json
from pathlib import Path

import pytest
from llm_server import cite

from rag.answer.verify import Source, Verifier, facts, split_sentences
from rag.answer.writer import messages, sources_for
from rag.config import Settings
from rag.model import Document, Passage

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
    if case["kind"] in ("negation_removed", "antonym"):
        assert verdict.reason == "polarity", (verdict.reason, verdict.closest)
    for support in verdict.supports:
        document = engine.document(support.source.passage.source)
        assert document.text[support.start : support.end] == support.quote
        assert support.source.passage.start <= support.start < support.end <= support.source.passage.end
    if got == "kept":
        assert {s.source.number for s in verdict.supports} <= set(piece.markers)
    if got == "recited":
        assert case["source_holds"] in verdict.supports[0].quote
        assert verdict.supports[0].source.number not in piece.markers


def _one_source(text: str) -> list[Source]:
    """One passage (a whole made-up document) as source [1]."""
    title = "关于系统维护和公务活动的通知"
    passage = Passage(1, "notice.txt", "notice-0", title, "", 1.0, text, 0, len(text))
    return [Source(1, passage, Document("notice.txt", title, text, fingerprint="notice"))]


@pytest.mark.parametrize(
    "quote, sentence",
    [
        ("系统升级期间，各单位的办公平台不影响使用，数据照常保存。", "系统升级期间，各单位的办公平台影响使用。[1]"),
        ("系统升级期间，各单位的办公平台影响使用，数据暂停保存。", "系统升级期间，各单位的办公平台不影响使用。[1]"),
        ("对违反规定的，依纪依规追究相关人员责任。", "对违反规定的，依纪依规免除相关人员责任。[1]"),
        ("对情节较轻的，可以从宽处理。", "对情节较轻的，可以从严处理。[1]"),
        ("严禁在公务活动中收受礼品礼金。", "在公务活动中允许收受礼品礼金。[1]"),
        ("相关费用由单位承担，不得向个人收取。", "相关费用由单位承担，可以向个人收取。[1]"),
    ],
    ids=["negation_removed", "negation_added", "antonym", "antonym_lenient", "prohibition", "must_not"],
)
def test_a_sentence_whose_polarity_differs_from_its_quote_is_dropped(embedder, quote, sentence):
    verifier = Verifier(embedder, Settings())
    sources = _one_source(quote)
    (piece,) = split_sentences(sentence)
    verdict = verifier.check(piece, sources)
    assert not verdict.kept and verdict.reason == "polarity", (verdict.reason, verdict.closest)
    (same,) = split_sentences(quote.rstrip("。") + "。[1]")
    assert verifier.check(same, sources).kept, "the quote itself, with its own polarity, is kept"
