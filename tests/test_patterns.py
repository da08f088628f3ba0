"""The shared pattern table: what each pattern matches, and what it must not."""

from rag.text import patterns as p
from rag.text.normalize import compact


def test_mask_is_a_run_of_stars():
    assert [m.group() for m in p.MASK.finditer("反*斗争，**的责任")] == ["*", "**"]
    assert not p.MASK.search("没有遮盖的句子")


def test_quoted_term_is_short_and_keeps_its_marks():
    assert p.QUOTED_TERM.findall("落实“两个责任”和「四责协同」") == ["“两个责任”", "「四责协同」"]
    assert not p.QUOTED_TERM.search("“一二三四五六七八九十一二三”")  # 13 characters: not a term
    assert not p.QUOTED_TERM.search("『两个责任』")  # corner brackets: a phrase, not a term
    assert not p.QUOTED_TERM.search("《条例》")


def test_quoted_phrase_is_what_a_question_quotes():
    assert p.QUOTED_PHRASE.findall("“三个结合”和『不敢腐、不能腐、不想腐』是什么") == ["三个结合", "不敢腐、不能腐、不想腐"]
    assert not p.QUOTED_PHRASE.search("“廉”")  # one character
    assert not p.QUOTED_PHRASE.search("“" + "责" * 21 + "”")


def test_quoted_fact_is_a_term_a_written_sentence_states():
    assert p.QUOTED_FACT.findall("依据“五必谈”要求") == ["五必谈"]
    assert p.QUOTED_FACT.findall("“廉”") == ["廉"]  # one character counts
    assert not p.QUOTED_FACT.search("“《条例》”")  # a title inside is a title
    assert not p.QUOTED_FACT.search("“" + "责" * 17 + "”")


def test_quoted_name_takes_titles_too():
    assert p.QUOTED_NAME.findall("“两个责任”与《决定》") == ["“两个责任”", "《决定》"]
    assert p.QUOTED_NAME.search("“”")  # empty quotes
    assert not p.QUOTED_NAME.search("“" + "责" * 41 + "”")


def test_titles_by_length():
    assert p.TITLE.findall("《中国共产党纪律处分条例》怎么规定") == ["中国共产党纪律处分条例"]
    assert not p.TITLE.search("《法》")  # one character
    long_title = "《" + "条" * 50 + "》"
    assert p.TITLE.search(long_title) and not p.SHORT_TITLE.search(long_title)
    assert p.SHORT_TITLE.findall("《决定》") == ["决定"]
    assert p.TITLE_FACT.findall("依据《法》和《决定》") == ["《法》", "《决定》"]
    assert not p.TITLE_FACT.search("《" + "条" * 81 + "》")


def test_date_mention_says_whether_a_text_gives_a_date():
    for text in ("2021年", "2021-3", "3月5日", "5月", "二〇二一年", "三月份", "九、十月", "五月八日"):
        assert p.DATE_MENTION.search(text), text
    for text in ("1856", "第三", "十二项责任", "28万个"):
        assert not p.DATE_MENTION.search(text), text


def test_date_fact_is_a_whole_date_in_figures():
    assert p.DATE_FACT.findall("2016年3月，2021-03-05，3月5日，3月份") == ["2016年3月", "2021-03-05", "3月5日", "3月份"]
    assert not p.DATE_FACT.search("三月五日")  # Chinese numerals are not a fact in figures
    assert not p.DATE_FACT.search("2021")  # a year needs its 年


def test_years():
    assert p.YEAR.findall("2018年到2020年") == ["2018", "2020"]
    assert not p.YEAR.search("12019") and not p.YEAR.search("1856年")
    assert p.ASKED_YEAR.findall("2018到2020年的2021-03") == ["2018", "2020", "2021"]
    assert not p.ASKED_YEAR.search("2020年代") and not p.ASKED_YEAR.search("2020年前")
    assert not p.ASKED_YEAR.search("2020个")
    assert p.YEAR_BEFORE_NIAN.findall("2020年代，12019年") == ["2020", "2019"]
    assert not p.YEAR_BEFORE_NIAN.search("2020-03")


def test_relative_year():
    assert p.RELATIVE_YEAR.search("全国妇联今年查处了几起案件").group() == "今年"
    assert {p.RELATIVE_YEAR.search(w).group() for w in p.RELATIVE_YEARS} == set(p.RELATIVE_YEARS)
    assert not p.RELATIVE_YEAR.search("2021年") and not p.RELATIVE_YEAR.search("年度报告")


def test_figures():
    assert [m.group() for m in p.FIGURE.finditer("占10.5%，3‰，28万")] == ["10.5%", "3‰", "28"]
    assert not p.FIGURE.search("十二项")
    assert p.NUMBER_FACT.findall("占10.5%，3‰") == ["10.5%", "3"]  # ‰ is not part of the number
    assert [m.group() for m in p.CHINESE_COUNT.finditer("十二项责任，两批，三成")] == ["十二项", "两批", "三成"]
    assert not p.CHINESE_COUNT.search("一个问题") and not p.CHINESE_COUNT.search("一些")
    assert [m.group(1) for m in p.CHINESE_COUNT_FACT.finditer("分三个层面，五方面，三分之一")] == ["三", "五", "三"]
    assert not p.CHINESE_COUNT_FACT.search("第三个")


def test_numbered_items_are_identifiers_not_ordinals_of_speech():
    text = "编号77、编号为7、第45号、第十二条、第二批、第３条；第一种形态、第三点、第一责任人、第一次、编号一致"
    assert [m.group() for m in p.NUMBERED_ITEM.finditer(compact(text))] == [
        "编号77", "编号为7", "第45号", "第十二条", "第二批", "第3条",
    ]  # fmt: skip


def test_numeral_values():
    values = [p.numeral_value(t) for t in ("77", "七", "十二", "二十", "三十五", "一百零五", "两", "二〇二二", "〇七")]
    assert values == [77, 7, 12, 20, 35, 105, 2, 2022, 7]
