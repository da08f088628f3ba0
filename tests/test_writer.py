"""Written answers through the engine, with a scripted OpenAI-compatible server standing in for the
model: verified sentences only, verbatim quotes, streaming, and the fallbacks."""

import json
import re
import threading
import time
from collections import defaultdict
from pathlib import Path

import pytest
from llm_server import citing, sources, unused_url

from rag import Engine
from rag.answer.types import ABSTAIN_TEXT
from rag.answer.verify import split_sentences
from rag.answer.writer import NOTE_REFUSED, NOTE_SERVER, NOTE_UNVERIFIED, Delta, Final, SentenceStream, language_rule
from rag.text.normalize import compact

CASES = [
    json.loads(line)
    for line in (Path(__file__).parent / "data" / "written_sentences.jsonl").read_text(encoding="utf-8").splitlines()
    if line.strip()
]
GUANGXI = "广西在粮食购销领域查处了多少一把手?"
MIXED = (
    "广西建立了党委统筹指挥、纪委监委组织协调、职能部门高效协同的查处机制。[@227人]\n"
    "广西共立案查处粮食购销领域有关单位一把手227人。[@!227人]\n"  # right sentence, wrong number
    "广西共立案查处粮食购销领域有关单位一把手272人。[@227人]\n"  # wrong figure
    "广西壮族自治区联动推进粮食购销领域腐败问题专项整治。\n"  # no marker
    "广西还在2022年追回粮食购销领域违规资金3.5亿元。[@227人]"  # invented
)


@pytest.fixture
def writer(engine, scripted_llm):
    """An engine on the session's index whose answers are written by the scripted server."""
    settings = engine.settings.replace(llm_base_url=scripted_llm.url, llm_model="qwen2.5-7b-instruct")
    writer = Engine(settings, engine.embedder)
    writer.reload()
    return writer


def _assert_shown_citations_are_verbatim(engine, answer):
    assert answer.citations
    for c in answer.citations:
        assert engine.document(c.source).text[c.start : c.end] == c.quote
    markers = {int(n) for n in re.findall(r"\[(\d+)\]", answer.answer)}
    assert markers == {c.id for c in answer.citations}
    for line in answer.answer.splitlines():
        assert re.search(r"\[\d+\]$", line), f"every shown sentence ends with its citation: {line}"


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


def test_without_a_model_nothing_changes(engine):
    assert engine.llm is None
    answer = engine.ask("纪委监督责任包括什么")
    assert answer.mode == "extractive" and answer.generation is None
    assert answer.to_dict()["mode"] == "extractive" and answer.to_dict()["generation"] is None
    events = list(engine.ask_stream("纪委监督责任包括什么"))
    assert len(events) == 1 and isinstance(events[0], Final)
    assert events[0].answer.answer == answer.answer
    with pytest.raises(ValueError, match="RAG_LLM_BASE_URL"):
        engine.ask("纪委监督责任包括什么", generate=True)


def test_the_prompt_numbers_the_passages_and_asks_for_citations(writer, scripted_llm):
    scripted_llm.replies = [citing("广西共立案查处粮食购销领域有关单位一把手227人。[@227人]")]
    answer = writer.ask(GUANGXI)
    body = scripted_llm.requests[-1]["body"]
    system, user = body["messages"]
    assert "每句话的末尾" in system["content"] and ABSTAIN_TEXT in system["content"]
    numbered = sources(body["messages"])
    assert list(numbered) == list(range(1, len(numbered) + 1)) and len(numbered) == writer.settings.llm_passages
    assert [p.text.strip() for p in answer.passages[: len(numbered)]] == list(numbered.values())
    assert user["content"].rstrip().endswith("请依据资料回答，每句末尾标注资料编号。")
    assert f"问题：{GUANGXI}" in user["content"]


def test_the_answer_language_follows_the_question():
    assert "简体" in language_rule("纪委监督责任包括什么")
    assert "繁体" in language_rule("紀委監督責任包括什麼")
    assert "提问所用的语言" in language_rule("What does the supervision duty include?")


def test_only_verified_sentences_reach_the_reader(engine, writer, scripted_llm):
    scripted_llm.replies = [citing(MIXED)]
    answer = writer.ask(GUANGXI)
    assert answer.mode == "generated" and not answer.abstained
    shown = compact(answer.answer)
    assert "党委统筹指挥" in shown and "一把手227人" in shown and "专项整治" in shown
    assert "272" not in shown and "3.5亿" not in shown and "2022" not in shown
    _assert_shown_citations_are_verbatim(engine, answer)
    g = answer.generation
    assert (g.sentences, g.kept, g.dropped, g.recited) == (5, 3, 2, 2)
    assert g.drop_reasons == {"fact": 2} and not g.fell_back
    assert g.note == "已删去 2 句无法在原文中核实的内容。"
    payload = answer.to_dict()
    assert payload["mode"] == "generated"
    assert payload["generation"]["dropped"] == 2 and payload["generation"]["model"] == "qwen2.5-7b-instruct"


def test_streaming_gives_verified_sentences_then_the_same_answer(engine, writer, scripted_llm):
    scripted_llm.replies = [citing(MIXED)]
    scripted_llm.chunk = 2
    events = list(writer.ask_stream(GUANGXI))
    assert scripted_llm.requests[-1]["body"]["stream"] is True
    deltas = [e for e in events if isinstance(e, Delta)]
    assert isinstance(events[-1], Final) and all(isinstance(e, Delta) for e in events[:-1])
    final = events[-1].answer
    assert len(deltas) == 3
    assert "".join(d.text for d in deltas).strip() == final.answer
    assert [c for d in deltas for c in d.citations] == final.citations
    assert not any("272" in d.text or "3.5" in d.text for d in deltas)
    _assert_shown_citations_are_verbatim(engine, final)
    scripted_llm.replies = [citing(MIXED)]
    assert writer.ask(GUANGXI).answer == final.answer, "streamed and whole replies give the same answer"


def test_no_unsupported_sentence_of_the_crafted_answers_is_shown(engine, writer, scripted_llm):
    by_question = defaultdict(list)
    for case in CASES:
        if not case.get("limit"):
            by_question[case["question"]].append(case)
    for question, cases in by_question.items():
        scripted_llm.replies = [citing("\n".join(c["sentence"] for c in cases))]
        answer = writer.ask(question)
        assert answer.mode == "generated", (question, answer.generation)
        shown = compact(answer.answer)
        for case in cases:
            sentence = compact(re.sub(r"\[@!?[^\]]+\]", "", case["sentence"]))
            assert (sentence in shown) == (case["expect"] != "dropped"), (case["kind"], case["sentence"])
        _assert_shown_citations_are_verbatim(engine, answer)


def test_no_evidence_means_the_model_is_not_asked(writer, scripted_llm):
    scripted_llm.replies = ["上海的GDP是4.7万亿元。[1]"]
    answer = writer.ask("上海2023年的GDP是多少?")
    assert answer.abstained and answer.mode == "extractive"
    assert scripted_llm.requests == []
    assert answer.generation.reason.startswith("not asked")


@pytest.mark.parametrize(
    "reply",
    [ABSTAIN_TEXT, "资料中没有提到广西查处一把手的人数。", "抱歉，我无法根据所给资料回答这个问题。", "我不知道。"],
)
def test_a_model_refusal_falls_back_to_the_extractive_answer(engine, writer, scripted_llm, reply):
    extractive = engine.ask(GUANGXI)
    assert not extractive.abstained
    scripted_llm.replies = [reply]
    for answer in (writer.ask(GUANGXI), _final(writer, GUANGXI, stream=True)):
        assert not answer.abstained and answer.mode == "extractive", answer.generation
        assert answer.answer == extractive.answer and answer.citations == extractive.citations
        assert answer.generation.fell_back and answer.generation.note == NOTE_REFUSED
        assert answer.generation.reason == "the model found no answer in the sources"


def test_server_down_gives_the_extractive_answer_with_a_note(engine, writer, scripted_llm):
    extractive = engine.ask(GUANGXI)
    scripted_llm.down()
    answer = writer.ask(GUANGXI)
    assert answer.mode == "extractive" and answer.answer == extractive.answer
    assert answer.generation.fell_back and answer.generation.note == NOTE_SERVER
    assert "cannot reach" in answer.generation.reason
    events = list(writer.ask_stream(GUANGXI))
    assert len(events) == 1 and events[0].answer.answer == extractive.answer
    assert events[0].answer.generation.note == NOTE_SERVER


def test_server_error_and_unverifiable_answers_fall_back(engine, writer, scripted_llm):
    extractive = engine.ask(GUANGXI)
    scripted_llm.status = 503
    failed = writer.ask(GUANGXI)
    assert failed.answer == extractive.answer and "HTTP 503" in failed.generation.reason
    scripted_llm.status = 200
    scripted_llm.replies = [
        citing("广西共立案查处一把手227人。[@227人]\n广西追回资金3.5亿元。[@227人]\n广西处分干部1200人。[@227人]")
    ]
    unverified = writer.ask(GUANGXI)
    assert unverified.mode == "extractive" and unverified.answer == extractive.answer
    assert unverified.generation.fell_back and unverified.generation.note == NOTE_UNVERIFIED
    assert (unverified.generation.kept, unverified.generation.dropped) == (1, 2)


def test_a_follow_up_sends_its_standalone_question(writer, scripted_llm):
    scripted_llm.replies = [citing("山东省按不低于10%的比例进行抽查。[@10%]")]
    first = writer.ask("天津市的述责述廉机制是怎样的?", generate=False)
    writer.ask("那山东省呢?", history=[first])
    user = scripted_llm.requests[-1]["body"]["messages"][-1]["content"]
    assert "那山东省呢" in user and "结合上文，问题是：山东" in user


def test_not_configured_but_asked_by_argument(engine, scripted_llm):
    writer = Engine(engine.settings.replace(llm_base_url=unused_url()), engine.embedder)
    writer.reload()
    assert writer.ask(GUANGXI, generate=False).generation is None
    assert writer.ask(GUANGXI).generation.fell_back


def _final(writer, question, stream):
    """The answer as `ask` gives it, or the `Final` of `ask_stream` after its deltas."""
    if not stream:
        return writer.ask(question)
    events = list(writer.ask_stream(question))
    assert isinstance(events[-1], Final)
    return events[-1].answer


def _count_checks(monkeypatch, limit):
    """The claims the verifier checks, from now on (an error past `limit`: a runaway answer stops)."""
    from rag.answer.verify import Verifier

    checked, check = [], Verifier.check

    def counting(self, piece, sources):
        checked.append(piece.claim)
        if len(checked) > limit:
            raise RuntimeError(f"more than {limit} sentences checked")
        return check(self, piece, sources)

    monkeypatch.setattr(Verifier, "check", counting)
    return checked


REPEATED = "广西共立案查处粮食购销领域有关单位一把手227人。[@227人]"


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_a_model_that_repeats_itself_is_cut_and_each_sentence_checked_once(writer, scripted_llm, monkeypatch, stream):
    checked = _count_checks(monkeypatch, limit=50)
    scripted_llm.replies = [citing(REPEATED * 3000)]  # 72,000 characters
    scripted_llm.chunk = 500
    started = time.perf_counter()
    answer = _final(writer, GUANGXI, stream)
    assert time.perf_counter() - started < 15
    assert answer.mode == "generated" and not answer.generation.fell_back, answer.generation
    assert compact(answer.answer).count("一把手227人") == 1 and len(answer.answer) < 60
    assert checked == ["广西共立案查处粮食购销领域有关单位一把手227人。"], "each distinct sentence checked once"
    assert answer.truncated and "过长" in answer.generation.note


def test_a_long_reply_is_read_only_up_to_the_cap(writer, scripted_llm, monkeypatch):
    checked = _count_checks(monkeypatch, limit=400)
    scripted_llm.replies = [citing(REPEATED + "".join(f"广西还追回违规资金{i}万元。[@227人]" for i in range(3000)))]
    answer = writer.ask(GUANGXI)
    cap = writer.settings.llm_max_chars
    assert cap <= 4 * writer.settings.answer_max_chars
    assert len("".join(checked)) <= cap and len(checked) < cap // 10
    assert answer.mode == "extractive" and answer.generation.fell_back, "most of it failed the checks"


def test_a_server_that_never_finishes_falls_back_within_the_timeout(engine, scripted_llm):
    scripted_llm.trickle = 0.05  # a byte every 50 ms, forever: no single read waits long
    timeout = 1.5
    settings = engine.settings.replace(llm_base_url=scripted_llm.url, llm_model="qwen", llm_timeout=timeout)
    writer = Engine(settings, engine.embedder)
    writer.reload()
    extractive = writer.ask(GUANGXI, generate=False)
    for stream in (False, True):
        outcome: list = []
        thread = threading.Thread(target=lambda s=stream, o=outcome: o.append(_final(writer, GUANGXI, s)), daemon=True)
        started = time.perf_counter()
        thread.start()
        thread.join(timeout + 8)
        assert not thread.is_alive(), f"still waiting for the model after {timeout + 8} s"
        elapsed = time.perf_counter() - started
        (answer,) = outcome
        assert answer.mode == "extractive" and answer.answer == extractive.answer
        assert answer.generation.note == NOTE_SERVER and "did not finish" in answer.generation.reason
        assert timeout <= answer.generation.seconds < timeout + 1.0, "the model's part: about the timeout"
        assert elapsed < timeout + 4.0, elapsed  # with retrieval and the extractive answer, on a busy machine


HTML_REPLIES = {
    "bold": "广西共立案查处粮食购销领域有关单位一把手<b>227人</b>。[@227人]\n"
    "广西建立了党委统筹指挥、纪委监委组织协调、职能部门高效协同的查处机制。[@227人]",
    "page": "<p>广西共立案查处粮食购销领域有关单位一把手<b>227人</b>。[@227人]<br/>"
    "广西建立了党委统筹指挥、纪委监委组织协调、职能部门&lt;b&gt;高效协同&lt;/b&gt;的查处机制。[@227人]</p>",
}


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
@pytest.mark.parametrize("reply", list(HTML_REPLIES))
def test_html_is_stripped_from_written_answers(engine, writer, scripted_llm, reply, stream):
    scripted_llm.replies = [citing(HTML_REPLIES[reply])]
    scripted_llm.chunk = 2  # tags and entities arrive split over events
    answer = _final(writer, GUANGXI, stream)
    shown = answer.to_dict()["answer"]
    assert "<" not in shown and ">" not in shown and "&" not in shown, shown
    assert answer.mode == "generated", answer.generation
    assert "一把手227人" in compact(shown) and "职能部门高效协同的查处机制" in compact(shown)
    assert answer.generation.kept == 2 and len(shown.splitlines()) == 2
    _assert_shown_citations_are_verbatim(engine, answer)
