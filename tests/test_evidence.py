"""Text evidence: figures, dates and names a sentence gives, and the count a question asks for."""

from rag.answer.evidence import answers_count, coverage, has_figure, has_time, identifier_mentioned, mentions
from rag.query.question import Query
from rag.text.normalize import compact, normalize


def test_figures_dates_and_names():
    assert has_figure("全國共查處相關問題28萬個") and has_figure("明確了黨委12項責任") and has_figure("共分三層")
    assert not has_figure("推动“两个责任”落实") and not has_figure("2021年查处市管干部案件数量为近年来同期最多")
    assert not has_figure("第一种形态")
    assert has_time("1256年夏天") and has_time("大多在九、十月份") and has_time("清末民初")
    assert not has_time("党中央出台法规制度,明确了党委12项责任")
    assert mentions("浙江省", "2016年,浙江在全国率先") and not mentions("广东省", "山东省健全述责述廉机制")
    assert mentions("和浩汉", "宏碁与浩汉的公司") and not mentions("湖南", "湖北省细化容错免责")


def _query(question: str) -> Query:
    return Query.of(question, normalize(question), None)  # type: ignore[arg-type]


def test_a_count_must_be_the_count_asked_for():
    assert answers_count(_query("党组有多少项责任?"), "明确了党委12项责任和党组11项责任")
    assert not answers_count(_query("条例一共有多少条?"), "明确了党委12项责任和党组11项责任")
    assert answers_count(_query("立案查处了多少名一把手?"), "立案查处有关单位一把手227人")  # 名 ~ 人
    assert answers_count(_query("查处了多少问题?"), "全国共查处相关问题28万个")
    assert not answers_count(_query("发现了多少个问题?"), "建立反馈问题整改台账,并按不低于10%的比例进行抽查")
    assert answers_count(_query("比例达到了多少?"), "运用第一种形态的比例逐年上升,2021年达到了70%")
    assert not answers_count(_query("工资是多少?"), "选举产生22名纪检委员")
    assert answers_count(_query("仅花费多少时间即毕业?"), "僅一個月就畢業")
    assert answers_count(_query("金融业产值约占全市多少的百分比?"), "金融业产值约占全市GDP的20%")
    assert answers_count(_query("占比是百分之几?"), "其中35%来自外地")
    assert not answers_count(_query("占多少的百分比?"), "金融业是全市支柱产业之一,2010年产值增长较快")
    assert not answers_count(
        _query("全国有多少个纪检监察组?"), "推动“两个责任”贯通协同,2016年起全面派驻"
    )  # a term, not a count
    assert answers_count(_query("有多少个纪检监察组?"), "共设立两个纪检监察组")


def test_a_numbered_item_is_matched_by_its_number():
    (seven,) = _query("编号7的事项是什么?").identifiers
    assert identifier_mentioned(seven, compact("编号7：基建处公务接待超标准问题"))
    assert identifier_mentioned(seven, compact("编号：７，基建处公务接待超标准问题"))  # full-width
    assert not identifier_mentioned(seven, compact("编号77：财务处会议费超支问题"))
    assert not identifier_mentioned(seven, compact("第7号督办事项"))  # another kind of number
    (article,) = _query("第十二条规定了什么?").identifiers
    assert identifier_mentioned(article, compact("第12条　党组织应当履行主体责任"))
    assert identifier_mentioned(article, compact("第１２条"))
    assert not identifier_mentioned(article, compact("第120条")) and not identifier_mentioned(article, compact("第12号"))
    assert identifier_mentioned(_query("第12条规定了什么?").identifiers[0], compact("第十二条　党组织"))
    (session,) = _query("第四届全国人大在哪一年召开?").identifiers
    assert identifier_mentioned(session, compact("1975年1月，四届全国人大召开"))  # a session often without 第
    assert not identifier_mentioned(session, compact("十四届全国人大")) and not identifier_mentioned(session, "第14届")
    (year,) = _query("2022年查处了多少件?").identifiers
    assert identifier_mentioned(year, "2022年") and identifier_mentioned(year, "二〇二二年")
    assert not identifier_mentioned(year, "12022年")


def test_coverage_counts_a_numbered_item_only_with_its_number():
    assert coverage(["编号7"], [1.0], "编号7：基建处公务接待超标准问题") == 1.0
    assert coverage(["编号7"], [1.0], "编号77：财务处会议费超支问题") == 0.0
    assert coverage(["第十二条", "党组织"], [1.0, 1.0], "第12条　党组织") == 1.0
