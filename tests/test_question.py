"""Question analysis: kinds, comparison sides, what a question pins down (no model needed)."""

import pytest

from rag.query.question import Query, compares, comparison_sides, is_chinese, ordinal_reference, question_kind
from rag.text.normalize import normalize
from rag.text.tokenize import strip_question_words


def _kind(question: str) -> str:
    return question_kind(normalize(question))


def _query(question: str) -> Query:
    return Query.of(question, normalize(question), None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("question", "kind"),
    [
        ("北京和上海在巡察整改上有什么区别?", "comparison"),
        ("党委与纪委的职责有何不同", "comparison"),
        ("两份文件对问责的规定有什么异同?", "comparison"),
        ("党委和纪委各承担什么责任?", "comparison"),
        ("不同地区如何落实主体责任?", "how"),  # "不同" without two sides
        ("党委和党组各有多少项责任?", "number"),  # "各有多少" asks for figures
        ("请概括一下这篇文章的要点", "summary"),
        ("第三部分主要讲了什么?", "summary"),
        ("为何要推动监督下沉?", "why"),
        ("巡视整改是否纳入考核?", "yes_no"),
        ("派驻机构已经全覆盖了吗?", "yes_no"),
        ("哪一年开始推行派驻制度?", "time"),
        ("一共处理了多少人?", "number"),
        ("东京证券交易所在全球排第几位?", "general"),  # 第几 is a rank, not a count
        ("是哪个部门负责行业监管?", "who"),
        ("什么是一岗双责?", "definition"),
        ("怎样加强基层监督?", "how"),
        ("问责的情形包括哪些?", "list"),
        ("这篇文章的作者是谁?", "metadata"),
        ("《论自由》的作者是谁?", "metadata"),
        ("雅各书的作者有可能是谁?", "who"),  # a work named in the text, not the article
        ("纪委 监督 责任", "general"),
    ],
)
def test_question_kinds(question, kind):
    assert _kind(question) == kind


def test_comparison_sides_are_the_two_named_things():
    assert comparison_sides(normalize("北京和上海在巡察整改上有什么区别?")) == ("北京", "上海")
    assert comparison_sides(normalize("县纪委那篇和省纪委那篇文章,分别怎么看问责?")) == ("县纪委", "省纪委")
    assert comparison_sides(normalize("主体责任与监督责任的区别")) == ("主体责任", "监督责任")
    assert comparison_sides(normalize("分别怎么看党委和纪委的关系")) == ("党委", "纪委")
    assert comparison_sides(normalize("怎样落实监督责任?")) is None


def test_ordinal_references():
    assert ordinal_reference("第二点是什么意思?") == 2
    assert ordinal_reference("第3条具体指什么") == 3
    assert ordinal_reference("第十二项呢") == 12
    assert ordinal_reference("第一种形态的比例") == 1
    assert ordinal_reference("还有呢") is None


def test_what_a_question_pins_down():
    query = _query("2018到2020年二十届中央纪委三次全会对《问责条例》提出了什么要求?")
    assert [i.text for i in query.identifiers] == ["2018", "2020"]
    assert query.meetings == ("二十届中央纪委三次全会",)
    assert query.titles == ("问责条例",)
    assert _query("长城已有2000多年历史").identifiers == ()
    assert _query("去年查处了多少案件?").relative_time
    assert _query("“三个结合”是哪三个?").quoted == ("三个结合",)
    assert "广东省" in _query("广东省建立了什么机制?").names


def test_key_terms_leave_out_modal_verbs():
    assert "必须" not in _query("为什么说必须强化贯通协同?").key_terms
    assert "贯通" in _query("为什么说必须强化贯通协同?").key_terms


def test_language():
    assert is_chinese("纪委监督责任包括什么")
    assert is_chinese("What does 纪委监督责任 include?")
    assert not is_chinese("Who wrote the article?")


def test_an_english_question_is_searched_with_the_chinese_terms_it_mentions():
    query = _query("How many cadres did the discipline inspection team in Zhejiang Province talk to?")
    assert query.lexical.split() == ["干部", "纪检", "组", "浙江", "省", "谈话"]
    assert "浙江" in query.places  # a named place lifts and must be found in its documents
    assert _query("纪委监督责任包括什么").lexical == strip_question_words(normalize("纪委监督责任包括什么"))
    assert _query("What is the weather tomorrow?").lexical.strip()  # nothing to translate: its own words


def test_numbered_items_a_question_names_are_identifiers_and_key_terms():
    query = _query("2023年第二批编号７７的事项和第十二条有什么关系?")
    assert [(i.text, i.kind, i.value) for i in query.identifiers] == [
        ("2023", "年", 2023), ("第二批", "批", 2), ("编号77", "编号", 77), ("第十二条", "条", 12),
    ]  # fmt: skip
    terms = query.key_terms
    assert {"编号77", "第二批", "第十二条"} <= set(terms)
    assert not {"77", "编号", "第十", "十二", "二条"} & set(terms)  # not matched apart from their number
    assert "编号7" in _query("编号7的事项是什么?").key_terms  # a one-digit number is no key term on its own
    for ordinal in ("第一种形态的比例是多少?", "第三点具体指什么?", "谁是第一责任人?", "第一次全会在哪开?"):
        assert _query(ordinal).identifiers == (), ordinal


def test_which_before_a_count_is_no_part_of_the_term():
    terms = _query("“三转”是哪三转?").key_terms
    assert "三转" in terms and "哪三转" not in terms


def test_comparison_words_are_how_a_comparison_is_asked():
    assert compares("不同") and compares("异同") and compares("区别")
    assert not compares("责任清单") and not compares("不同分管范围")
