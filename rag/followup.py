"""Follow-up questions: completing a short or referring question from the previous turn.

`那上海呢` after `北京市如何强化压力传导?` becomes `上海如何强化压力传导`; `它和主体责任是什么关系`
after `纪委监督责任包括什么` becomes `纪委监督责任和主体责任是什么关系`; `还有呢` repeats the previous
question (the answer then leaves out what was already quoted).
"""

from __future__ import annotations

import re

from rag.lexical import entities, strip_question_words

_MORE = re.compile(
    r"^(?:那|那么)?(?:还有|还有呢|还有吗|还有别的吗|还有其他的吗|其他呢|另外呢|更多|继续|然后呢)[?？。!！]*$"
)
_WHAT_ABOUT = re.compile(r"^(?:那|那么)?(.{1,12}?)(?:呢|怎么样|如何)[?？。]*$")
_PRONOUN = re.compile(
    r"它们|它|这些|这个|这项|这种|这一|那些|那个|上述|^其|(?<!应)该(?=项|类|种|制度|机制|责任|规定|问题)"
)
SHORT = 6


def is_more(question: str) -> bool:
    """`还有呢` and the like: the same question again, for what was not said yet."""
    return bool(_MORE.match(question.strip()))


def topic(question: str) -> str:
    """What a question is about: the question without its question words."""
    return re.sub(r"\s+", "", strip_question_words(question.strip().rstrip("?？。")))


def contextualize(question: str, previous: str | None) -> str:
    """The question made standalone using the previous (standalone) question, if it needs it."""
    question = question.strip()
    if not previous or not question:
        return question
    previous = previous.strip()
    if is_more(question):
        return previous
    what_about = _WHAT_ABOUT.match(question)
    if what_about and not _PRONOUN.search(question):
        subject = what_about.group(1)
        names = [e for e in entities(previous) if e in previous]
        if names:
            return previous.replace(names[0], subject, 1)
        return f"{subject}{topic(previous)}"
    if _PRONOUN.search(question):
        return _PRONOUN.sub(topic(previous), question, count=1)
    if len(re.sub(r"[\W_]", "", question)) <= SHORT:
        return f"{topic(previous)}{question}"
    return question
