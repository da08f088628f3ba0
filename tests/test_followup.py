"""Follow-up questions carry the previous turn's topic."""

from rag.followup import contextualize, is_more


def test_what_about_replaces_the_place():
    assert contextualize("那上海呢?", "北京市如何强化压力传导?").startswith("上海")
    assert "强化压力传导" in contextualize("那上海呢?", "北京市如何强化压力传导?")


def test_pronoun_takes_the_previous_topic():
    assert contextualize("它和主体责任是什么关系?", "纪委监督责任包括什么") == "纪委监督责任和主体责任是什么关系?"


def test_more_repeats_the_previous_question():
    assert is_more("还有呢?") and is_more("还有吗")
    assert contextualize("还有呢", "纪委监督责任包括什么") == "纪委监督责任包括什么"


def test_standalone_questions_are_left_alone():
    assert contextualize("述责的评议结果应该怎样运用?", "纪委监督责任包括什么") == "述责的评议结果应该怎样运用?"
    assert contextualize("党委主体责任具体指什么?", None) == "党委主体责任具体指什么?"


def test_follow_up_in_a_conversation(engine):
    first = engine.ask("北京市如何强化压力传导?")
    second = engine.ask("那上海呢?", history=[first])
    assert "上海" in second.standalone_question
    assert not second.abstained
    assert any(c.source.startswith("003") for c in second.citations)


def test_more_gives_what_was_not_quoted_yet(engine):
    first = engine.ask("纪委监督责任包括什么")
    more = engine.ask("还有呢?", history=[first])
    assert not more.abstained
    earlier = {(c.source, c.start) for c in first.citations}
    assert all((c.source, c.start) not in earlier for c in more.citations)
