"""Text evidence: figures, dates and names a sentence gives, and the count a question asks for."""

from rag.answer.evidence import answers_count, has_figure, has_time, mentions
from rag.query.question import Query
from rag.text.normalize import normalize


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
