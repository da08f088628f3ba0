"""Cleaning (`rag/clean.py`): pinyin, page furniture, metadata and titles, on the real corpus."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from rag.clean import Document, clean, clean_text, is_furniture, read_meta, strip_pinyin
from rag.loaders import RawDocument, load_file

CORPUS = Path(__file__).resolve().parent.parent / "corpus"
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
    assert text.rstrip().endswith("更好发挥监督保障执行、促进完善发展作用。")
    assert "“四责协同”机制" in text


def test_qa_site_chrome_is_removed(cleaned):
    text = cleaned["004"].text
    lines = text.split("\n")
    for furniture in ("发布网友", "我来回答", "共1个回答", "热心网友"):
        assert furniture not in lines
    assert not any(line.startswith(("发布时间", "时间:", "时间：")) for line in lines)
    assert lines[0].startswith("基层*和纪委是落实“两个责任”最为具体的实践者")
    assert "五是“问责”" in text


@pytest.mark.parametrize(
    "line",
    [
        "-",
        "—",
        "•",
        "行政拘留5日!嫩江一台球厅违规经营2021/12/13",
        "发布网友",
        "热心网友",
        "我来回答",
        "共12个回答",
        "展开全部",
        "上一篇:关于加强监督的意见",
        "责任编辑:张三",
        "韩志忠 摄",
        "(记者 王小明 摄)",
    ],
)
def test_furniture_lines(line):
    assert is_furniture(line)


@pytest.mark.parametrize(
    "line",
    ["一、基层“两个责任”落实不力的主要表现", "第一条 为了规范管理，制定本办法。", "网友们对此议论纷纷。"],
)
def test_content_lines_are_not_furniture(line):
    assert not is_furniture(line)


def test_a_run_of_short_dash_lines_ending_the_page_is_a_link_list():
    document = clean(RawDocument("news.txt", "正文第一句。\n正文第二句。\n- 标题甲\n- 标题乙\n- 标题丙"))
    assert "标题" not in document.text
    assert document.text.endswith("正文第二句。")


def test_markdown_bullet_items_are_content():
    document = clean(
        RawDocument("list.md", "责任清单\n工作要求如下：\n- 党委负主体责任，书记是第一责任人。\n- 纪委负监督责任。")
    )
    assert "党委负主体责任，书记是第一责任人。" in document.text
    assert "纪委负监督责任。" in document.text


def test_photo_caption_is_removed_and_the_sentence_before_it_kept(cleaned):
    text = cleaned["000"].text
    assert "图为" not in text and "韩志忠" not in text and "摄" not in text.split("\n")[0]
    assert text.split("\n")[0].endswith("坚持以有力监督推动贯彻落实党中央重大决策部署。")


def test_trailing_author_goes_to_meta(cleaned):
    assert cleaned["000"].meta["author"] == "李金英"
    assert "李金英" not in cleaned["000"].text
    assert cleaned["000"].text.endswith("做到同题共答、同向发力。")


# --- metadata -------------------------------------------------------------------------------


def test_metadata_of_001(cleaned):
    document = cleaned["001"]
    assert document.meta["date"] == "2022-09-20"
    assert document.meta["author"] == "王炅"
    assert document.meta["affiliation"] == "浙江省纪委驻省人大机关纪检监察组"
    assert "时间:" not in document.text and "作者:" not in document.text


def test_repeated_title_line_of_001_is_dropped(cleaned):
    document = cleaned["001"]
    assert document.title == "从严治党主体责任实践与思考"
    assert "从严治党主体责任实践与思考" not in document.text.split("\n")
    assert document.text.startswith("十八届中央纪委六次全会上")


def test_date_of_004_is_the_first_one(cleaned):
    assert cleaned["004"].meta["date"] == "2023-09-17"


def test_publisher_line_of_003(cleaned):
    assert cleaned["003"].meta["publisher"] == "《人民日报》( 2022年01月13日 第09版)"
    assert "《人民日报》" not in cleaned["003"].text


def test_every_real_document_gets_a_title(cleaned):
    for document in cleaned.values():
        assert document.title.strip()
        assert len(document.title) <= 61
        assert document.text.strip()


def test_derived_titles_are_marked(cleaned):
    assert cleaned["000"].meta.get("title_derived") == "yes"
    assert cleaned["000"].title == "中央纪委国家监委驻中华全国总工会机关纪检监察组强化“两个责任”贯通协同"
    assert "title_derived" not in cleaned["001"].meta


def test_fingerprint_is_carried_over(raw, cleaned):
    assert cleaned["001"].fingerprint == raw["001_3c3daffbd3ff1c74.txt"].fingerprint


@pytest.mark.parametrize(
    ("line", "meta"),
    [
        ("时间:2022-09-20 04:12:12", {"date": "2022-09-20"}),
        ("发布时间：2023-09-17 01:42", {"date": "2023-09-17"}),
        ("作者:王炅 单位:浙江省纪委", {"author": "王炅", "affiliation": "浙江省纪委"}),
        ("来源：人民网", {"publisher": "人民网"}),
        ("《人民日报》( 2022年01月13日 第09版)", {"publisher": "《人民日报》( 2022年01月13日 第09版)"}),
        ("党委要履行主体责任。", None),
    ],
)
def test_read_meta(line, meta):
    assert read_meta(line) == meta


# --- whole-text behaviour -------------------------------------------------------------------


def test_clean_text_normalizes_line_breaks_and_spaces():
    lines, meta = clean_text("\ufeff标题\r\n\u3000\u3000正文第一句。\r\n\r\n第二\u200b段。\xa0\n")
    assert lines == ["标题", "正文第一句。", "第二段。"]
    assert meta == {}


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
