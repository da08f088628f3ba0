"""Cleaning (`rag/ingest/clean.py`): pinyin, page furniture, metadata kept quotable, garbled runs and titles,
on the real corpus and on six pages of other kinds (tests/data/pages, written for these tests)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import docx
import pytest

from rag.ingest.chunk import sentence_spans
from rag.ingest.clean import clean, clean_counted, clean_lines, garbled_runs, is_furniture, strip_pinyin
from rag.ingest.loaders import RawDocument, load_file
from rag.model import Document

CORPUS = Path(__file__).resolve().parent.parent / "corpus"
PAGES = Path(__file__).resolve().parent / "data" / "pages"
FILES = sorted(p.name for p in CORPUS.iterdir())
TONED_PINYIN = re.compile(r"[(（][a-zāáǎàēéěèīíǐìōóǒòūúǔùǖǘǚǜüńňǹḿ]{1,7}[)）]")
TONE_MARK = re.compile(r"[āáǎàēéěèīíǐìōóǒòūúǔùǖǘǚǜńňǹḿ]")


@pytest.fixture(scope="module")
def raw() -> dict[str, RawDocument]:
    return {name: load_file(CORPUS / name) for name in FILES}


@pytest.fixture(scope="module")
def cleaned(raw) -> dict[str, Document]:
    return {name[:3]: clean(document) for name, document in raw.items()}


# --- pinyin ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("責(zé)任", "責任"),
        ("黨(dǎng)委", "黨委"),
        ("落實(shí)全面從嚴(yán)治黨", "落實全面從嚴治黨"),
        ("責（zé）任", "責任"),
        ("傳(chuán)導(dǎo)壓力", "傳導壓力"),
        ("綠(lǜ)色", "綠色"),
    ],
)
def test_pinyin_after_a_character_is_removed(text, expected):
    assert strip_pinyin(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "人工智能(AI)發展",
        "通知(2021)第3號",
        "（一）積極回應",
        "(一)積極回應",
        "黨委(黨組)落實",
        "第(xyz)項",
        "Python(py)",  # not after a Chinese character
    ],
)
def test_brackets_that_are_not_pinyin_are_kept(text):
    assert strip_pinyin(text) == text


def test_no_pinyin_annotation_is_left_in_the_traditional_document(raw, cleaned):
    assert len(TONED_PINYIN.findall(raw["002_6ea4988cee6c4551.txt"].text)) > 100  # the raw file is full of them
    assert TONED_PINYIN.findall(cleaned["002"].text) == []
    assert "黨委(黨組)" in cleaned["002"].text
    assert "管黨治黨責任" in cleaned["002"].text


# --- page furniture -------------------------------------------------------------------------


def test_link_list_after_the_article_is_removed(cleaned):
    text = cleaned["003"].text
    for furniture in ("行政拘留5日", "2021/12/13", "微视频丨逐梦冬奥", "世卫组织称", "基金经理"):
        assert furniture not in text
    assert not any(line.startswith(("-", "- ")) for line in text.split("\n"))
    assert text.rstrip().endswith("更好发挥监督保障执行、促进完善发展作用。\n《人民日报》( 2022年01月13日 第09版)")
    assert "“四责协同”机制" in text


def test_qa_site_chrome_is_removed_and_its_dates_kept(cleaned):
    text = cleaned["004"].text
    lines = text.split("\n")
    for furniture in ("发布网友", "我来回答", "共1个回答", "热心网友"):
        assert furniture not in lines
    assert lines[:2] == ["发布时间:2023-09-17 01:42", "时间:2024-11-18 00:15"]
    assert lines[2].startswith("基层*和纪委是落实“两个责任”最为具体的实践者")
    assert "五是“问责”" in text


@pytest.mark.parametrize(
    "line",
    [
        "-",
        "—",
        "•",
        "发布网友",
        "热心网友",
        "我来回答",
        "共12个回答",
        "展开全部",
        "上一篇:关于加强监督的意见",
        "赞 25 踩 3",
        "评论 收起",
        "分享到：微信 微博",
        "当前位置：首页 > 政务公开 > 通知公告",
        "百度知道 > 社会民生 > 其他",
        "首页 | 机构概况 | 工作动态 | 通知公告",
        "版权所有：江州市纪委监委 江ICP备12345678号",
    ],
)
def test_furniture_lines(line):
    assert is_furniture(line)


@pytest.mark.parametrize(
    "line",
    [
        "一、基层“两个责任”落实不力的主要表现",
        "第一条 为了规范管理，制定本办法。",
        "网友们对此议论纷纷。",
        "行政拘留5日!嫩江一台球厅违规经营2021/12/13",  # alone, not a link list
        "本通知自印发之日起施行，印发日期2021-12-13",
        "评论：这一做法值得推广。",
        "作品的版权所有人依法享有权利。",
        "图为11月20日,该纪检监察组工作人员开展调研监督工作。",
        "现场禁止拍摄",
    ],
)
def test_content_lines_are_not_furniture(line):
    assert not is_furniture(line)


def test_a_run_of_short_dash_lines_ending_the_page_is_a_link_list():
    document = clean(RawDocument("news.txt", "正文第一句。\n正文第二句。\n- 标题甲\n- 标题乙!\n- 标题丙"))
    assert "标题" not in document.text
    assert document.text.endswith("正文第二句。")


def test_a_link_list_under_its_heading_goes_but_a_list_under_a_section_heading_stays():
    links = clean(RawDocument("news.txt", "正文第一句。\n正文第二句。\n相关链接\n- 标题甲\n- 标题乙\n- 标题丙"))
    assert links.text == "正文第一句。\n正文第二句。"
    plan = clean(
        RawDocument("plan.md", "正文第一句。\n## 三、工作安排\n- 1月：召开全会\n- 3月：开展巡察\n- 6月：开展督查")
    )
    assert plan.text.endswith("三、工作安排\n- 1月：召开全会\n- 3月：开展巡察\n- 6月：开展督查")


def test_a_content_line_ending_in_a_date_survives():
    text = "关于印发考核办法的通知\n各单位：\n现将考核办法印发给你们。\n本通知自印发之日起施行，印发日期2021-12-13"
    assert clean(RawDocument("n.txt", text)).text.endswith("本通知自印发之日起施行，印发日期2021-12-13")


def test_markdown_bullet_items_are_content():
    document = clean(
        RawDocument("list.md", "责任清单\n工作要求如下：\n- 党委负主体责任，书记是第一责任人。\n- 纪委负监督责任。")
    )
    assert "党委负主体责任，书记是第一责任人。" in document.text
    assert "纪委负监督责任。" in document.text


def test_photo_caption_facts_and_credit_are_kept(cleaned):
    document = cleaned["000"]
    first = document.text.split("\n")[0]
    assert first.endswith(
        "坚持以有力监督推动贯彻落实党中央重大决策部署。图为11月20日,该纪检监察组工作人员在天津市河西区文化中心工会驿站开展调研监督工作。 韩志忠 摄"
    )
    assert document.meta["photographer"] == "韩志忠"
    assert document.meta["photo_credit"] == "韩志忠 摄"
    assert_spans(document)


def test_trailing_author_stays_in_the_text_as_a_quotable_byline(cleaned):
    document = cleaned["000"]
    assert document.meta["author"] == "李金英"
    assert document.meta["byline"] == "(作者 李金英)"
    assert document.text.endswith("做到同题共答、同向发力。(作者 李金英)")
    assert_spans(document)


def test_byline_with_unit_and_masked_title(cleaned):
    document = cleaned["004"]
    assert document.meta["byline"] == "(宁都县委常委、县纪委* 钟恢生)"
    assert document.meta["author"] == "钟恢生"
    assert document.meta["affiliation"] == "宁都县委常委、县纪委*"
    assert document.text.endswith("的痼疾。(宁都县委常委、县纪委* 钟恢生)")
    assert_spans(document)


# --- metadata -------------------------------------------------------------------------------


def assert_spans(document: Document) -> None:
    """Every span points at its value in the text; every value read from the text has a span."""
    for key, (start, end) in document.meta_spans.items():
        assert document.text[start:end] == document.meta[key], key


def test_metadata_of_001_stays_in_the_text(cleaned):
    document = cleaned["001"]
    assert document.meta["date"] == "2022-09-20"
    assert document.meta["author"] == "王炅"
    assert document.meta["affiliation"] == "浙江省纪委驻省人大机关纪检监察组"
    assert document.text.startswith("时间:2022-09-20 04:12:12\n十八届中央纪委六次全会上")
    assert document.text.endswith("作者:王炅 单位:浙江省纪委驻省人大机关纪检监察组")
    start, end = document.meta_spans["date"]
    assert (start, end) == (3, 13)
    assert_spans(document)


def test_repeated_title_line_of_001_is_dropped(cleaned):
    document = cleaned["001"]
    assert document.title == "从严治党主体责任实践与思考"
    assert "从严治党主体责任实践与思考" not in document.text.split("\n")


def test_date_of_004_is_the_first_one(cleaned):
    assert cleaned["004"].meta["date"] == "2023-09-17"


def test_newspaper_line_of_003_gives_publisher_and_date(cleaned):
    document = cleaned["003"]
    assert document.meta["publisher"] == "《人民日报》( 2022年01月13日 第09版)"
    assert document.meta["date"] == "2022年01月13日"
    assert_spans(document)


def test_every_real_document_gets_a_title(cleaned):
    for document in cleaned.values():
        assert document.title.strip()
        assert len(document.title) <= 61
        assert document.text.strip()
        assert_spans(document)


def test_derived_titles_are_marked(cleaned):
    assert cleaned["000"].meta.get("title_derived") == "yes"
    assert cleaned["000"].title == "中央纪委国家监委驻中华全国总工会机关纪检监察组强化“两个责任”贯通协同"
    assert "title_derived" not in cleaned["001"].meta


def test_fingerprint_is_carried_over(raw, cleaned):
    assert cleaned["001"].fingerprint == raw["001_3c3daffbd3ff1c74.txt"].fingerprint


def test_meta_spans_survive_the_jsonl_round_trip(cleaned):
    document = cleaned["001"]
    again = Document(**json.loads(json.dumps(document.__dict__, ensure_ascii=False)))
    assert again == document


# --- pages that are not in the corpus -------------------------------------------------------


def page(name: str) -> Document:
    return clean(load_file(PAGES / name))


def test_government_notice_with_number_and_issuer():
    document = page("notice_gov.txt")
    assert document.title == "关于进一步压实全面从严治党“两个责任”的通知"
    assert document.meta["issuer"] == "江州市纪委监委"
    assert document.meta["doc_number"] == "江纪发〔2021〕27号"
    assert document.meta["written_date"] == "2021年12月13日"
    assert document.meta["date"] == "2021年12月20日"
    assert document.meta["index_number"] == "11360100MB1234567X/2021-00213"
    assert_spans(document)
    text = document.text
    for furniture in ("首页 >", "打印本页", "关闭窗口", "版权所有", "ICP备"):
        assert furniture not in text
    assert "本通知自印发之日起施行，印发日期2021-12-13\n江州市纪委监委\n2021年12月13日\n（此件主动公开）" in text
    assert "各级党委（党组）要在2022年3月31日前制定主体责任清单" in text
    assert text.split("\n").count(document.title) == 0  # the repeated title line


def test_news_article_with_source_and_editor_lines():
    document = page("news_people.txt")
    assert document.title == "基层减负要真减真落实"
    assert document.meta["publisher"] == "人民网－人民日报"
    assert document.meta["date"] == "2022年03月15日"
    assert document.meta["author"] == "张文"
    assert document.meta["editor"] == "李明、王芳"
    assert_spans(document)
    text = document.text
    for furniture in ("人民网首页", "当前位置", "分享到", "相关新闻", "整治形式主义为基层减负取得明显成效"):
        assert furniture not in text
    assert "据统计，2021年全国省级层面发文数量同比下降15.6%，会议数量下降18.3%" in text
    assert "《人民日报》（2022年03月15日 第04版）\n(责编：李明、王芳)" in text


def test_qa_site_page():
    document = page("qa_site.txt")
    assert document.title == "党委主体责任和纪委监督责任有什么区别？"
    assert document.meta["date"] == "2022-05-06"
    assert_spans(document)
    lines = document.text.split("\n")
    for furniture in (
        "百度首页 | 登录 | 注册",
        "我来回答",
        "共2个回答",
        "赞 25 踩 3",
        "评论 收起",
        "其他回答",
        "赞 2",
        "相关问答",
    ):
        assert furniture not in lines
    assert "3个回答" not in document.text and "“一岗双责”？" not in document.text
    assert "两者相互依存、相互促进，不能互相替代。" in lines
    assert lines[-1] == "简单说，一个是抓落实，一个是管监督，都要向同级党委和上级负责。"


def test_pdf_text_with_running_headers_and_page_numbers():
    document = clean(RawDocument("bulletin.pdf", (PAGES / "pdf_bulletin.txt").read_text(encoding="utf-8")))
    assert document.title == "江州市人民政府办公室关于印发《江州市基层党风廉政建设责任制考核办法》的通知"
    text = document.text
    assert "公报" not in text and "— 1 —" not in text and "— 3 —" not in text
    assert "考核工作由市纪委监委牵头，每年开展一次，考核结果作为领导班子和领导干部综合考核评价的重要依据" in text
    lines = text.split("\n")
    assert [line[:3] for line in lines if line.startswith("第")] == ["第一条", "第二条", "第三条", "第四条"]
    assert (
        "第三条 考核结果分为好、较好、一般、差四个等次，考核结果为差的，由市纪委监委对其党组织主要负责人进行约谈，并责令限期整改。"
        in lines
    )


def test_docx_notice_with_attachment_lines(tmp_path):
    paragraphs = [
        "中共江州市纪委办公室关于开展2022年度“两个责任”落实情况专项检查的通知",
        "江纪办〔2022〕15号",
        "各县（市、区）纪委监委，市纪委监委各派驻纪检监察组：",
        "为推动全面从严治党“两个责任”落实落地，经研究，决定开展专项检查。现将有关事项通知如下：",
        "一、检查内容",
        "重点检查党委（党组）履行主体责任、纪委监委履行监督责任情况。",
        "二、时间安排",
        "2022年11月1日至11月30日。请各单位于11月25日前将自查报告报送市纪委办公室。",
        "联系人：陈晓，电话：0791-12345678。",
        "附件：1.“两个责任”落实情况自查表",
        "2.专项检查工作安排",
        "",
        "中共江州市纪委办公室",
        "2022年10月20日",
    ]
    path = tmp_path / "通知.docx"
    document = docx.Document()
    for paragraph in paragraphs:
        document.add_paragraph(paragraph)
    document.save(str(path))
    cleaned_docx = clean(load_file(path))
    assert cleaned_docx.title == paragraphs[0]
    assert cleaned_docx.meta["doc_number"] == "江纪办〔2022〕15号"
    assert cleaned_docx.meta["issuer"] == "中共江州市纪委办公室"
    assert cleaned_docx.meta["written_date"] == "2022年10月20日"
    assert "date" not in cleaned_docx.meta
    assert_spans(cleaned_docx)
    assert cleaned_docx.text.split("\n") == [p for p in paragraphs[1:] if p]


def test_html_page_with_navigation():
    document = page("portal.html")
    assert document.title == "全面从严治党主体责任清单发布"
    assert document.meta["date"] == "2023-04-18"
    assert document.meta["publisher"] == "江州市纪委监委"
    assert document.meta["author"] == "周敏"
    assert_spans(document)
    lines = document.text.split("\n")
    assert lines[0] == "发布时间：2023-04-18 10:05 来源：江州市纪委监委 作者：周敏"
    for furniture in (
        "机构概况",
        "审查调查",
        "您现在的位置",
        "浏览次数",
        "字体",
        "分享到",
        "相关阅读",
        "召开全体会议",
        "版权所有",
    ):
        assert furniture not in document.text
    assert "图为清单发布会现场，市委常委、市纪委书记出席并讲话。 周敏 摄" in lines
    assert document.meta["photographer"] == "周敏"
    assert lines[-1] == "市纪委监委将把清单落实情况纳入日常监督，对履责不力的严肃问责。"


# --- garbled runs ---------------------------------------------------------------------------


def test_garbled_runs_of_002(cleaned):
    text = cleaned["002"].text
    runs = [text[start:end] for start, end in garbled_runs(text)]
    assert runs == ["?!逼饋碜ァ⒁蛔サ降?", "?zhèn)鲗?dǎo)"]


@pytest.mark.parametrize(
    ("text", "garbled"),
    [
        ("责任\ufffd\ufffd落实", ["\ufffd\ufffd"]),
        ("党委????负责", ["????"]),
        ("å…šå§”ä¸»ä½“è´£ä»»", ["å…šå§”ä¸»ä½“è´£ä»»"]),
        ("为什么?这是因为责任不清。", []),  # a question mark glued to the next sentence
        ("是什么?为什么?", []),
        ("①加强领导；②压实责任。", []),  # circled numerals of an enumeration
        ("北京・上海", []),
        ("温度30°左右。", []),
        ("", []),
    ],
)
def test_garbled_runs(text, garbled):
    assert [text[start:end] for start, end in garbled_runs(text)] == garbled


def test_figures_after_a_garbled_run_survive_in_a_sentence(cleaned):
    text = cleaned["002"].text
    sentences = [text[s.start : s.end] for s in sentence_spans(text)]
    assert any(s.startswith("全國共查處相關問題28萬個,批評教育幫助和處理39.2萬人") for s in sentences)
    assert any(s.endswith("開展為期三年的扶貧領域腐敗和作風問題專項治理,堅持") for s in sentences)
    assert not any("?!" in s or "ァ" in s for s in sentences)


# --- whole-text behaviour -------------------------------------------------------------------


def test_clean_lines_normalizes_line_breaks_and_spaces():
    lines = clean_lines("\ufeff标题\r\n\u3000\u3000正文第一句。\r\n\r\n第二\u200b段。\xa0\n")
    assert lines == ["标题", "正文第一句。", "第二段。"]


def test_file_title_wins_and_its_repeat_is_dropped():
    document = clean(RawDocument("a.html", "政府信息公开条例\n第一条 正文。", title="政府信息公开条例"))
    assert document.title == "政府信息公开条例"
    assert document.text == "第一条 正文。"


def test_title_falls_back_to_the_first_clause_then_the_source():
    long_line = "党委要切实履行全面从严治党主体责任，纪委要履行监督责任。"
    assert clean(RawDocument("a.txt", long_line)).title == "党委要切实履行全面从严治党主体责任"
    assert clean(RawDocument("b.txt", "-\n发布网友\n")).title == "b.txt"


def test_cleaned_text_has_no_blank_or_padded_lines(cleaned):
    for document in cleaned.values():
        for line in document.text.split("\n"):
            assert line and line == line.strip()


def test_pinyin_tone_marks_left_in_002_come_only_from_mojibake(cleaned):
    """Where the source lost the opening bracket (`面?zhèn)`), the fragment stays; no other tone mark does."""
    for match in TONE_MARK.finditer(cleaned["002"].text):
        assert "?" in cleaned["002"].text[max(0, match.start() - 5) : match.start()]


# --- report-style documents: nothing of their content is lost (issue 21, U12) --------------

REPORTS = Path(__file__).resolve().parent / "data" / "reports"
"""Reports written for these tests: yearly figures, statistics tables (pipes, one cell a line, HTML),
numbered task lists with deadlines, 第X批, 一是/二是 and ①② lists, a paged report with a running header."""


def written_lines(path: Path) -> list[str]:
    """The lines of a report as written, without Markdown heading marks and table rules."""
    lines = [re.sub(r"^#+\s+", "", line.strip()) for line in path.read_text(encoding="utf-8").splitlines()]
    return [line for line in lines if line and not re.fullmatch(r"[|\-\s]+", line)]


def lost(document: Document, expected: list[str]) -> list[str]:
    kept = {document.title, *document.text.split("\n")}
    return [line for line in expected if line not in kept]


@pytest.mark.parametrize("name", ["statistics_report.txt", "rectification_tasks.txt", "work_summary.md"])
def test_report_documents_lose_no_line(name):
    document = clean(load_file(REPORTS / name))
    assert lost(document, written_lines(REPORTS / name)) == []


def test_yearly_figures_that_differ_only_in_their_digits_are_kept():
    text = clean(load_file(REPORTS / "statistics_report.txt")).text
    for year, cases in (("2021", "1203"), ("2022", "1315"), ("2023", "1462")):
        assert f"{year}年全省共查处违纪案件{cases}件。" in text
    assert "违规吃喝\n207\n违规发放津补贴\n96" in text  # a table of one cell a line: its figures are not page numbers
    assert "2022年 | 1315 | 1288 | 97.9%" in text  # a table row is not a menu


def test_a_long_numbered_document_keeps_every_line():
    lines = [f"第{i}项整改任务已于{i % 12 + 1}月完成，共{i * 3 % 97}人参与。" for i in range(1, 560)]
    document = clean(RawDocument("tasks.txt", "整改任务完成情况\n" + "\n".join(lines)))
    assert len(document.text) > 12_000
    assert document.text.split("\n") == lines


def test_a_numbered_task_list_with_deadlines_ending_the_report_is_not_a_link_list():
    text = clean(load_file(REPORTS / "rectification_tasks.txt")).text
    assert "6. 开展整改情况“回头看”，责任单位市委巡察办，完成时限2022-12-31" in text
    document = clean(
        RawDocument(
            "t.txt",
            "整改清单\n现将整改任务列出如下。\n1. 制定清单 2022-03-31\n2. 专项检查 2022-06-30\n3. 总结评估 2022-12-31",
        )
    )
    assert document.text.endswith("3. 总结评估 2022-12-31")


def test_a_paged_report_loses_its_running_header_and_page_numbers_only():
    document = clean(load_file(REPORTS / "paged_report.txt"))
    header = "江州市纪委监委工作简报 2023年第12期"
    assert header not in document.text
    assert not re.search(r"— \d —", document.text)
    expected = [line for line in written_lines(REPORTS / "paged_report.txt") if line != header and "—" not in line]
    assert lost(document, expected) == []
    assert document.title == "江州市纪委监委关于2023年度监督检查工作的报告"


def test_pdf_pages_give_the_running_header_and_lone_page_numbers_away():
    pages = [
        "江州市纪委监委工作简报\n2021年全市共开展监督检查312次。\n2022年全市共开展监督检查356次。\n1",
        "江州市纪委监委工作简报\n2023年全市共开展监督检查402次。\n第1批问题清单已于3月底前办结。\n2",
        "江州市纪委监委工作简报\n第2批问题清单已于6月底前办结。\n第3批问题清单已于9月底前办结。\n3",
    ]
    document = clean(RawDocument("brief.pdf", "\f".join(pages), title="监督检查工作报告"))
    assert document.text.split("\n") == [
        "2021年全市共开展监督检查312次。",
        "2022年全市共开展监督检查356次。",
        "2023年全市共开展监督检查402次。",
        "第1批问题清单已于3月底前办结。",
        "第2批问题清单已于6月底前办结。",
        "第3批问题清单已于9月底前办结。",
    ]


def test_running_footers_with_page_numbers_go_and_figures_at_page_edges_stay():
    pages = [
        "2023 江州市纪委监委年鉴\n立案数 152\n第1批问题清单已于3月底前办结。\n年鉴 第 7 页",
        "2023 江州市纪委监委年鉴\n立案数 171\n第2批问题清单已于6月底前办结。\n年鉴 第 8 页",
        "2023 江州市纪委监委年鉴\n立案数 163\n第3批问题清单已于9月底前办结。\n年鉴 第 9 页",
    ]
    document = clean(RawDocument("book.pdf", "\f".join(pages), title="年鉴"))
    assert document.text.split("\n") == [
        "立案数 152",
        "第1批问题清单已于3月底前办结。",
        "立案数 171",
        "第2批问题清单已于6月底前办结。",
        "立案数 163",
        "第3批问题清单已于9月底前办结。",
    ]


def test_an_html_report_keeps_its_table_and_lists():
    document = clean(load_file(REPORTS / "statistics_table.html"))
    lines = document.text.split("\n")
    assert document.title == "2023年全市审查调查情况"
    for row in ("季度 立案数 处分人数", "第一季度 152 139", "第四季度 182 161"):
        assert row in lines
    assert "二是查处群众身边腐败和作风问题317起。" in lines
    assert "版权所有" not in document.text and "数据发布" not in document.text


def test_a_docx_report_with_a_table_loses_nothing(tmp_path):
    body = written_lines(REPORTS / "statistics_report.txt")
    path = tmp_path / "report.docx"
    word = docx.Document()
    for line in body[:8]:
        word.add_paragraph(line)
    table = word.add_table(rows=3, cols=3)
    for r, row in enumerate([["年份", "立案数", "结案数"], ["2021年", "1203", "1156"], ["2022年", "1315", "1288"]]):
        for c, value in enumerate(row):
            table.cell(r, c).text = value
    for line in body[8:]:
        word.add_paragraph(line)
    word.save(str(path))
    document = clean(load_file(path))
    assert lost(document, [*body, "年份 立案数 结案数", "2021年 1203 1156", "2022年 1315 1288"]) == []


def test_cleaning_counts_what_each_step_removes():
    _, removed = clean_counted(load_file(PAGES / "qa_site.txt"))
    shares = removed.shares(0.1)
    assert set(shares) == {"furniture", "links"}
    assert 0.2 < shares["links"] < 0.3
    assert removed.total == sum(len(line.strip()) for line in (PAGES / "qa_site.txt").read_text("utf-8").splitlines())
    _, nothing = clean_counted(load_file(REPORTS / "statistics_report.txt"))
    assert nothing.shares(0.0) == {}
