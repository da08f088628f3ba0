"""A question in several knowledge bases (`rag.service.federation`): one dense scale, merged hits, one answer
citing both, every citation and passage labelled with its knowledge base; equal file names kept apart."""

from __future__ import annotations

import re

import numpy as np
from conftest import KB_DOCUMENTS

from rag import Answer, Citation, Engine
from rag.retrieval.fusion import Ranking, dense_scale, normalized
from rag.service.federation import SEPARATOR, split

ALL = [name for docs in KB_DOCUMENTS.values() for name in docs]


def test_one_dense_scale_is_that_of_the_best_cosines_together():
    mean, std = dense_scale([np.array([0.9, 0.8]), np.array([0.7, 0.1])], 3)
    assert np.isclose(mean, 0.8) and np.isclose(std, np.std([0.9, 0.8, 0.7]))
    values, _ = normalized(Ranking(np.array([1, 2]), np.array([0.9, 0.7]), scale=(0.8, 0.1)))
    assert np.isclose(values[1], 1 / 3, atol=1e-4) and np.isclose(values[2], -1 / 3, atol=1e-4)


def test_merged_keys_split_back():
    assert split(f"疫情政策{SEPARATOR}a.txt") == ("疫情政策", "a.txt")
    assert split("a.txt") == ("default", "a.txt")


def test_search_in_both_merges_by_score_and_labels_each_passage(two_kbs):
    settings = two_kbs.settings
    two_kbs.settings = settings.replace(search_as_answers=False)  # retrieval order alone
    try:
        passages = two_kbs.search("全面从严治党主体责任", k=8, kbs=["default", "主体责任"])
        alone = two_kbs.search("全面从严治党主体责任", k=8, kbs=["主体责任"])
    finally:
        two_kbs.settings = settings
    assert [p.rank for p in passages] == list(range(1, 9))
    assert [p.score for p in passages] == sorted((p.score for p in passages), reverse=True)
    assert {p.kb for p in passages} == {"default", "主体责任"}
    for p in passages:
        assert p.source in KB_DOCUMENTS[p.kb]
        assert two_kbs.document(p.source, kb=p.kb).text[p.start : p.end] == p.text
    ours = [(p.source, p.start) for p in passages if p.kb == "主体责任"]
    assert ours == [(p.source, p.start) for p in alone][: len(ours)]  # each knowledge base's own order kept


def test_search_in_both_shows_first_what_the_answer_in_both_quotes(two_kbs):
    question = "纪检监察机关和党委如何落实两个责任"
    answer = two_kbs.ask(question, kbs=["default", "主体责任"])
    passages = two_kbs.search(question, k=8, kbs=["default", "主体责任"])
    first = answer.citations[0]
    assert (passages[0].kb, passages[0].source) == (first.kb, first.source)
    assert passages[0].start <= first.start < passages[0].end
    assert [p.rank for p in passages] == list(range(1, 9))


def test_asking_both_cites_both(two_kbs):
    answer = two_kbs.ask("纪检监察机关和党委如何落实两个责任", kbs=["default", "主体责任"])
    assert not answer.abstained
    assert {c.kb for c in answer.citations} == {"default", "主体责任"}
    for c in answer.citations:
        assert c.source in KB_DOCUMENTS[c.kb] and SEPARATOR not in c.source + c.chunk_id
        assert two_kbs.document(c.source, kb=c.kb).text[c.start : c.end] == c.quote
    assert {p.kb for p in answer.passages} <= {"default", "主体责任"}
    assert {c["kb"] for c in answer.to_dict()["citations"]} == {"default", "主体责任"}


def test_each_question_in_both_is_answered_from_the_knowledge_base_that_holds_it(two_kbs):
    shanghai = two_kbs.ask("上海市如何落实管党治党政治责任", kbs=["default", "主体责任"])
    assert not shanghai.abstained
    assert {(c.kb, c.source) for c in shanghai.citations} == {("主体责任", "003_f1c9c6d7a3f56b9a.txt")}


def test_a_follow_up_in_both_knows_what_was_quoted(two_kbs):
    first = two_kbs.ask("纪检监察机关和党委如何落实两个责任", kbs=["default", "主体责任"])
    more = two_kbs.ask("还有呢", history=[first.to_dict()], kbs=["default", "主体责任"])
    quoted = {(c.kb, c.source, c.start) for c in first.citations}
    assert not quoted & {(c.kb, c.source, c.start) for c in more.citations}


def test_equal_file_names_in_two_knowledge_bases_stay_apart(small_kb, fake_embedder):
    engine = Engine(small_kb, fake_embedder)
    engine.build(progress=False)
    other = engine.create_kb("别处")
    (other.corpus_dir / "a.txt").write_text("纪委监督责任\n派驻纪检组要履行监督责任，做到监督常在。", encoding="utf-8")
    passages = engine.search("纪委监督责任", kbs=["default", "别处"], k=6)
    assert {(p.kb, p.source) for p in passages} >= {("default", "a.txt"), ("别处", "a.txt")}
    for p in passages:
        assert engine.document(p.source, kb=p.kb).text[p.start : p.end] == p.text


def test_citations_written_before_knowledge_bases_read_as_default():
    old = {"id": 1, "source": "a.txt", "title": "t", "quote": "q", "start": 0, "end": 1}
    assert Citation.from_dict(old).kb == "default"
    assert Answer.from_dict({"question": "q", "answer": "a", "citations": [old]}).citations[0].kb == "default"
    assert Citation.from_dict({**old, "kb": "疫情政策"}).to_dict()["kb"] == "疫情政策"


def test_a_written_answer_in_both_keeps_each_citations_knowledge_base(two_kbs, scripted_llm):
    from llm_server import citing

    from rag import Delta, Final

    question = "纪检监察机关和党委如何落实两个责任"
    shown = 10  # the model is given this many passages: both knowledge bases are among them
    given = two_kbs.ask(question, kbs=["default", "主体责任"], k=shown).passages
    quotes = {}  # a sentence of the first passage of each knowledge base the model is given, written back verbatim
    for p in given:
        sentences = [t for t in re.split(r"(?<=。)", p.text.replace("\n", "")) if len(t) > 20 and "*" not in t]
        quotes.setdefault(p.kb, sentences[0])
    assert set(quotes) == {"default", "主体责任"}, [(p.kb, p.chunk_id) for p in given]
    scripted_llm.replies = [citing("".join(f"{q}[@{q[:12]}]\n" for q in quotes.values()))]
    writer = Engine(
        two_kbs.settings.replace(llm_base_url=scripted_llm.url, llm_model="scripted", llm_passages=shown, top_k=shown),
        two_kbs.embedder,
    )
    writer.reload()
    answer = writer.ask(question, kbs=["default", "主体责任"])
    assert answer.mode == "generated" and answer.generation.dropped == 0, answer.generation
    assert {c.kb for c in answer.citations} == {"default", "主体责任"}
    for c in answer.citations:
        assert SEPARATOR not in c.source and writer.document(c.source, kb=c.kb).text[c.start : c.end] == c.quote
    events = list(writer.ask_stream(question, kbs=["default", "主体责任"]))
    streamed = [c for e in events if isinstance(e, Delta) for c in e.citations]
    assert streamed and all(SEPARATOR not in c.source and c.kb in quotes for c in streamed)
    final = events[-1]
    assert isinstance(final, Final) and {c.kb for c in final.answer.citations} == {"default", "主体责任"}
