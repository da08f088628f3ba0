"""Text evidence: masked words matched where they stand in the question."""

from rag.answer.evidence import coverage, unmask


def test_a_mask_takes_the_question_word_whose_neighbours_it_has():
    terms = ["党委", "主体", "责任"]
    assert unmask("*的主体责任主要是指领导责任", terms, "党委主体责任") == "党委的主体责任主要是指领导责任"
    assert unmask("基层*和纪委是落实“两个责任”的主体", ["党委", "纪委"], "党委和纪委") == (
        "基层党委和纪委是落实“两个责任”的主体"
    )
    assert unmask("＊的主体责任", terms, "党委主体责任") == "党委的主体责任"  # a full-width mask too
    assert coverage(terms, [2.0, 1.0, 1.0], unmask("*的主体责任", terms, "党委主体责任")) == 1.0


def test_a_mask_elsewhere_stays_a_mask():
    assert unmask("反*斗争", ["党委", "主体"], "党委主体责任") == "反*斗争"  # neighbours differ
    assert unmask("*的主体责任", ["纪委"], "党委主体责任") == "*的主体责任"  # not a word of the question
    assert unmask("没有遮盖的句子", ["党委"], "党委") == "没有遮盖的句子"
