"""Masked words (`*` for a word the publisher removed), filled in for matching only."""

from rag.answer.evidence import coverage
from rag.answer.masks import fill_from_claim, fill_with_terms


def test_a_mask_takes_the_question_word_whose_neighbours_it_has():
    terms = ["党委", "主体", "责任"]
    assert fill_with_terms("*的主体责任主要是指领导责任", terms, "党委主体责任") == "党委的主体责任主要是指领导责任"
    assert fill_with_terms("基层*和纪委是落实“两个责任”的主体", ["党委", "纪委"], "党委和纪委") == (
        "基层党委和纪委是落实“两个责任”的主体"
    )
    assert fill_with_terms("＊的主体责任", terms, "党委主体责任") == "党委的主体责任"  # a full-width mask too
    assert coverage(terms, [2.0, 1.0, 1.0], fill_with_terms("*的主体责任", terms, "党委主体责任")) == 1.0


def test_a_mask_elsewhere_stays_a_mask():
    assert fill_with_terms("反*斗争", ["党委", "主体"], "党委主体责任") == "反*斗争"  # neighbours differ
    assert fill_with_terms("*的主体责任", ["纪委"], "党委主体责任") == "*的主体责任"  # not a word of the question
    assert fill_with_terms("没有遮盖的句子", ["党委"], "党委") == "没有遮盖的句子"


def test_a_mask_is_filled_from_a_written_sentence_with_the_same_neighbours():
    assert fill_from_claim("既协助*加强党风建设", "纪委协助党委加强党风建设") == "既协助党委加强党风建设"
    assert fill_from_claim("*的主体责任是前提", "党委的主体责任是前提") == "党委的主体责任是前提"
    assert fill_from_claim("被动**,而忽视", "很被动") == "被动**,而忽视"  # the sentence lacks the neighbours
