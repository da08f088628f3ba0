"""What a definition question asks about, and which sentences say what it is."""

from rag.config import ComposerSettings
from rag.query.definitions import definition_strength, subjects

STEPS = ComposerSettings()


def test_subjects_are_the_question_and_its_parts_longest_first():
    assert subjects("纪检监察机关的职责定位") == ["纪检监察机关的职责定位", "纪检监察机关", "职责定位"]


def test_a_sentence_that_says_what_the_subject_is_scores_by_how_plainly():
    about = subjects("党委主体责任")
    assert definition_strength("党委主体责任主要是指领导责任", about, 1.0, STEPS) == 1.0
    assert definition_strength("*的主体责任主要是指领导责任", about, 1.0, STEPS) == 1.0  # 党委 masked
    assert definition_strength("基层落实中,党委主体责任就是第一责任", about, 1.0, STEPS) == 0.9
    assert definition_strength("党委主体责任是全面从严治党的关键", about, 1.0, STEPS) == 0.9
    assert definition_strength("党委主体责任是全面从严治党的关键", about, 1.0, STEPS, plain_is=False) == 0.0
    assert definition_strength("要压实党委主体责任", about, 1.0, STEPS) == 0.0


def test_the_steps_come_from_the_settings():
    about = subjects("党委主体责任")
    steps = ComposerSettings(definition_step=0.3, definition_plain_is=0.2, definition_lead_chars=0)
    assert definition_strength("党委主体责任主要是指领导责任", about, 1.0, steps) == 1.0
    assert definition_strength("基层落实中,党委主体责任就是第一责任", about, 1.0, steps) == 0.7
    assert definition_strength("这个党委主体责任是关键", about, 1.0, steps) == 0.2  # not at the start any more
