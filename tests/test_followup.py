"""Follow-up questions: which questions refer back, how they are completed, and conversations."""

import pytest

from rag.answer.types import Answer
from rag.query.followup import contextualize, is_more, resolve

PREVIOUS = "北京市如何强化压力传导?"


@pytest.mark.parametrize(
    ("question", "mode"),
    [
        ("那上海呢?", "what_about"),
        ("山西省呢?", "what_about"),
        ("还有呢?", "more"),
        ("还有吗", "more"),
        ("还有呢?横向上是怎么做的?", "more"),
        ("第二点是什么意思?", "ordinal"),
        ("第3条具体指什么", "ordinal"),
        ("具体怎么做?", "how"),
        ("那应该怎么落实呢", "how"),
        ("为什么?", "why"),
        ("具体指什么?", "detail"),
        ("它和主体责任是什么关系?", "pronoun"),
        ("这个机制是怎么运行的?", "pronoun"),
        ("考核这一环怎么做?", "how"),
    ],
)
def test_questions_that_refer_back_are_follow_ups(question, mode):
    assert resolve(question, PREVIOUS).mode == mode


@pytest.mark.parametrize(
    "question",
    [
        "明天北京的天气怎么样",
        "今天股市行情如何",
        "如何预防流感?",
        "纪委监督责任包括什么",
        "述责的评议结果应该怎样运用?",
        "基层监督力量薄弱、熟人社会监督难,这些问题可以怎么破解?",  # its own antecedent
        "湖北省有什么做法?",
    ],
)
def test_questions_that_stand_on_their_own_are_asked_as_they_are(question):
    follow = resolve(question, PREVIOUS)
    assert (follow.mode, follow.standalone) == ("new", question)


def test_what_about_replaces_the_parallel_name_or_quoted_term():
    assert contextualize("那上海呢?", PREVIOUS) == "上海如何强化压力传导?"
    assert contextualize("那山西省呢?", "在问责这一块,湖北省有什么做法?") == "在问责这一块,山西省有什么做法?"
    assert contextualize("那“室组”联动监督呢", "深化“组部”联合监督是什么意思?") == "深化“室组”联动监督是什么意思?"


def test_pronouns_and_demonstratives_take_the_previous_topic():
    assert contextualize("它和主体责任是什么关系?", "纪委监督责任包括什么") == "纪委监督责任和主体责任是什么关系"
    assert contextualize("考核这一环怎么做?", "上海的“四责协同”闭环是什么?").startswith("上海 “四责协同”")


def test_more_repeats_the_previous_question():
    assert is_more("还有呢?") and is_more("还有吗") and not is_more("还有呢?横向上呢")
    assert contextualize("还有呢", "纪委监督责任包括什么") == "纪委监督责任包括什么"
    assert resolve("还有呢", "纪委监督责任包括什么").continues


def test_follow_up_in_a_conversation(engine):
    first = engine.ask(PREVIOUS)
    second = engine.ask("那上海呢?", history=[first])
    assert second.standalone_question == "上海如何强化压力传导?"
    assert not second.abstained
    assert any(c.source.startswith("003") for c in second.citations)
    assert second.to_dict()["standalone_question"] == "上海如何强化压力传导?"


def test_more_gives_what_was_not_quoted_yet_with_any_form_of_history(engine):
    first = engine.ask("纪委监督责任包括什么")
    earlier = {(c.source, c.start) for c in first.citations}
    for history in ([first], [first.to_dict()], ["纪委监督责任包括什么"]):
        more = engine.ask("还有呢?", history=history)
        assert not more.abstained
        assert more.standalone_question == "纪委监督责任包括什么"
        assert all((c.source, c.start) not in earlier for c in more.citations)


def test_a_second_more_never_repeats_what_either_earlier_answer_gave(engine):
    first = engine.ask("纪委监督责任包括什么")
    second = engine.ask("还有呢", history=[first])
    third = engine.ask("还有吗", history=[first, second])
    given = {(c.source, c.start) for c in [*first.citations, *second.citations]}
    assert second.citations and not given & {(c.source, c.start) for c in third.citations}
    assert third.abstained or third.answer != first.answer
    if third.abstained:  # nothing more that answers: it says so, it does not start over
        assert third.reason == "no_more" and "没有更多" in third.answer


def test_unrelated_question_after_two_turns_abstains_as_in_a_fresh_conversation(engine):
    first = engine.ask("纪委监督责任包括什么")
    second = engine.ask("那上海呢?", history=[first])
    for question in ("明天北京的天气怎么样", "今天股市行情如何"):
        fresh = engine.ask(question)
        later = engine.ask(question, history=[first, second])
        assert fresh.abstained and later.abstained
        assert later.standalone_question == question
        assert later.answer == fresh.answer


def test_ordinal_follow_up_answers_about_that_item(engine):
    first = engine.ask("落实两个责任关键要解决哪些实际问题?")
    assert len(first.citations) >= 5 and "明责" in first.citations[1].quote
    second = engine.ask("第二点是什么意思?", history=[first])
    assert not second.abstained
    assert second.citations[0].start == first.citations[1].start
    assert "责任分工不够明确" in second.answer and "不缩手" in second.answer  # the item's whole paragraph
    assert "定责" not in second.answer and "述责" not in second.answer  # not the other items


def test_how_follow_up_does_not_repeat_what_was_said(engine):
    first = engine.ask("派驻纪检监察组为什么要注重载体设计?")
    second = engine.ask("具体怎么做?", history=[first])
    assert not second.abstained
    assert second.standalone_question.endswith("具体怎么做")
    said = {(c.source, c.start) for c in first.citations}
    assert all((c.source, c.start) not in said for c in second.citations)


def test_answer_round_trips_through_its_json_form(engine):
    first = engine.ask("纪委监督责任包括什么")
    again = Answer.from_dict(first.to_dict())

    def key(c):
        return (c.id, c.source, c.title, c.quote, c.start, c.end)

    assert [key(c) for c in again.citations] == [key(c) for c in first.citations]
    assert (again.answer, again.abstained, again.kind) == (first.answer, first.abstained, first.kind)
    assert again.standalone_question == first.standalone_question
