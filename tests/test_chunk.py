"""Chunking (`rag/ingest/chunk.py`): offsets, sizes, sentence ends, headings and overlap, on the real corpus."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from rag.config import Settings
from rag.ingest.chunk import chunk_document, heading_level, sentence_spans
from rag.ingest.clean import clean
from rag.ingest.loaders import RawDocument, load_file
from rag.model import Chunk, Document

CORPUS = Path(__file__).resolve().parent.parent / "corpus"
FILES = sorted(p.name for p in CORPUS.iterdir())

DEFAULT = Settings()
# (target, maximum, minimum, overlap): the product defaults, and a small variant that cuts far more often.
CONFIGS = {
    "default": (DEFAULT.chunk_target, DEFAULT.chunk_max, DEFAULT.chunk_min, DEFAULT.chunk_overlap),
    "small": (120, 160, 60, 40),
}


@pytest.fixture(scope="module")
def documents() -> dict[str, Document]:
    return {name: clean(load_file(CORPUS / name)) for name in FILES}


@pytest.fixture(scope="module", params=list(CONFIGS))
def chunked(request, documents) -> tuple[tuple[int, int, int, int], list[tuple[Document, list[Chunk]]]]:
    config = CONFIGS[request.param]
    return config, [(doc, chunk_document(doc, *config)) for doc in documents.values()]


def doc(text: str, source: str = "t.txt") -> Document:
    return Document(source=source, title="测试", text=text)


def texts(text: str) -> list[str]:
    return [text[s.start : s.end] for s in sentence_spans(text)]


def leading_heading_chars(text: str) -> int:
    """Characters of the heading lines a chunk starts with (and their line breaks)."""
    count = 0
    for line in text.split("\n")[:-1]:
        if heading_level(line) != 1:
            break
        count += len(line) + 1
    return count


# --- the real corpus ------------------------------------------------------------------------


def test_every_chunk_is_the_span_of_the_document_it_names(chunked):
    _, results = chunked
    for document, chunks in results:
        assert chunks
        for number, chunk in enumerate(chunks):
            assert document.text[chunk.start : chunk.end] == chunk.text
            assert chunk.id == f"{document.source}#{number}"
            assert (chunk.source, chunk.title) == (document.source, document.title)
            assert chunk.text == chunk.text.strip()


def test_chunks_cover_every_character_in_order(chunked):
    _, results = chunked
    for document, chunks in results:
        covered = [False] * len(document.text)
        for chunk in chunks:
            covered[chunk.start : chunk.end] = [True] * (chunk.end - chunk.start)
        missing = [i for i, c in enumerate(document.text) if not covered[i] and not c.isspace()]
        assert missing == [], document.source
        assert [c.start for c in chunks] == sorted(c.start for c in chunks)


def test_chunk_lengths_stay_within_the_maximum(chunked):
    (_, maximum, _, _), results = chunked
    for _, chunks in results:
        for chunk in chunks:
            assert len(chunk.text) - leading_heading_chars(chunk.text) <= maximum, chunk.id


def test_most_chunks_reach_a_useful_size(chunked):
    (target, _, minimum, _), results = chunked
    lengths = [len(c.text) for _, chunks in results for c in chunks]
    assert sum(length >= minimum for length in lengths) >= 0.8 * len(lengths)
    assert sum(lengths) / len(lengths) >= 0.6 * target


def test_chunks_end_at_sentence_ends_unless_a_sentence_is_too_long(chunked):
    (_, maximum, _, _), results = chunked
    for document, chunks in results:
        sentences = sentence_spans(document.text)
        ends = {s.end for s in sentences}
        starts = {s.start for s in sentences}
        for chunk in chunks:
            for position, edge in ((chunk.end, ends), (chunk.start, starts)):
                if position in edge:
                    continue
                inside = [s for s in sentences if s.start < position < s.end]
                assert inside and inside[0].end - inside[0].start > maximum, (chunk.id, position)


def test_a_heading_line_never_stands_alone(chunked):
    _, results = chunked
    for document, chunks in results:
        for chunk in chunks:
            lines = chunk.text.split("\n")
            if chunk.end < len(document.text.rstrip()):  # body follows
                assert any(heading_level(line) != 1 for line in lines), chunk.id
                assert heading_level(lines[-1]) != 1, f"{chunk.id} ends with a heading"


def test_overlap_between_consecutive_chunks_is_bounded(chunked):
    (_, _, _, overlap), results = chunked
    for _, chunks in results:
        for before, after in itertools.pairwise(chunks):
            shared = before.end - after.start
            assert shared <= overlap, (before.id, after.id)
            if shared > 0:
                assert before.heading == after.heading  # overlap never crosses into another section


def test_overlap_is_used(documents):
    chunks = chunk_document(documents["000_9bcc8b3cecb20cc5.txt"], *CONFIGS["default"])
    assert any(b.end > a.start for b, a in itertools.pairwise(chunks))


def test_numbered_headings_form_the_heading_path(documents):
    chunks = chunk_document(documents["001_3c3daffbd3ff1c74.txt"], *CONFIGS["default"])
    assert chunks[0].heading == ""  # the introduction comes before the first heading
    first = next(c for c in chunks if c.text.startswith("一、搭建主体责任框架的重要意义"))
    assert first.heading == "一、搭建主体责任框架的重要意义 > (一)积极回应落实全面从严治党新要求"
    second = next(c for c in chunks if c.text.startswith("(二)有力提升"))
    assert second.heading == "一、搭建主体责任框架的重要意义 > (二)有力提升主体责任制度化、规范化水平"
    third = chunks.index(next(c for c in chunks if c.text.startswith("三、推动搭建主体责任框架的基本路径")))
    assert all(c.heading.startswith("三、推动搭建主体责任框架的基本路径 > (") for c in chunks[third:])


def test_heading_path_of_the_qa_page(documents):
    chunks = chunk_document(documents["004_9af9869cdca38ca3.txt"], *CONFIGS["default"])
    headings = {c.heading for c in chunks}
    assert {"一、基层“两个责任”落实不力的主要表现", "三、强化“两个责任”落实,关键要解决五个实际问题"} <= headings


# --- synthetic text -------------------------------------------------------------------------

POLICY = """一、总体要求
（一）指导思想。坚持以人民为中心的发展思想，全面落实各项责任。各级党委要切实担负起主体责任。
（二）基本原则。坚持问题导向，坚持依法依规，坚持统筹推进。
二、主要任务
（一）健全责任体系。明确各级党委、纪委的职责分工，建立责任清单。
（二）强化监督检查。定期开展专项检查，及时通报发现的问题。"""


def test_full_width_numbered_headings():
    chunks = chunk_document(doc(POLICY), target=60, maximum=120, minimum=30, overlap=0)
    by_heading = {c.heading: c.text for c in chunks}
    assert by_heading["一、总体要求 > （一）指导思想"].startswith("一、总体要求\n（一）指导思想。")
    assert by_heading["一、总体要求 > （二）基本原则"].startswith("（二）基本原则。")
    assert by_heading["二、主要任务 > （一）健全责任体系"].startswith("二、主要任务\n（一）健全责任体系。")
    assert by_heading["二、主要任务 > （二）强化监督检查"].startswith("（二）强化监督检查。")


def test_heading_before_a_short_body_is_kept_with_it():
    text = "第一章 总则\n本办法适用于各级机关。"
    assert [(c.heading, c.text) for c in chunk_document(doc(text))] == [("第一章 总则", text)]


def test_a_trailing_heading_without_body_is_not_lost():
    text = "正文第一句。正文第二句。\n附件"
    chunks = chunk_document(doc(text))
    assert "附件" in "".join(c.text for c in chunks)


def test_over_long_sentence_is_cut_after_commas():
    clause = "各级党组织要切实履行管党治党政治责任"  # 18 characters
    text = "，".join([clause] * 30) + "。"
    chunks = chunk_document(doc(text), target=100, maximum=120, minimum=50, overlap=0)
    assert len(chunks) > 1
    for chunk in chunks:
        assert len(chunk.text) <= 120
        assert chunk.text.endswith(("，", "。"))
    assert "".join(c.text for c in chunks) == text


def test_over_long_sentence_without_commas_is_cut_hard():
    text = "责" * 1000
    chunks = chunk_document(doc(text), target=300, maximum=400, minimum=150, overlap=80)
    assert [len(c.text) for c in chunks] == [400, 400, 200]
    assert "".join(c.text for c in chunks) == text


def test_overlap_repeats_whole_trailing_sentences():
    sentences = [f"第{n}句话说明第{n}项具体的工作要求。" for n in range(1, 41)]  # 15-16 characters each
    text = "".join(sentences)
    chunks = chunk_document(doc(text), target=100, maximum=130, minimum=50, overlap=40)
    for before, after in itertools.pairwise(chunks):
        shared = text[after.start : before.end]
        assert 0 < len(shared) <= 40
        assert shared.startswith("第") and shared.endswith("。")


def test_overlap_zero_gives_disjoint_chunks():
    text = "".join(f"第{n}句话说明具体的工作要求。" for n in range(1, 41))
    chunks = chunk_document(doc(text), target=100, maximum=130, minimum=50, overlap=0)
    assert all(b.end <= a.start for b, a in itertools.pairwise(chunks))


def test_regulation_of_one_line_articles_is_cut_to_size():
    numerals = ["一", "二", "三", "四", "五", "六", "七", "八", "九", "十"]
    articles = [
        f"第{n}条 本条规定第{i}项具体的管理要求和责任分工，由各级机关负责组织实施。" for i, n in enumerate(numerals * 3)
    ]
    chunks = chunk_document(doc("\n".join(articles)), target=300, maximum=400, minimum=150, overlap=80)
    assert all(len(c.text) <= 400 + 80 for c in chunks)
    assert all(len(c.heading) <= 200 for c in chunks)


def test_empty_document_has_no_chunks():
    assert chunk_document(doc("")) == []


# --- sentence_spans -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "sentences"),
    [
        ("他说：“要严格落实责任。”然后离开。", ["他说：“要严格落实责任。”", "然后离开。"]),
        ("“问？”答。", ["“问？”", "答。"]),
        ("《条例》（试行）。下一句。", ["《条例》（试行）。", "下一句。"]),
        ("真的吗？！好。", ["真的吗？！", "好。"]),
        ("是吗? 是的。", ["是吗?", "是的。"]),
        ("是吗?”他问。", ["是吗?”", "他问。"]),
        ("面对面?zhèn传导压力。下一句。", ["面对面", "传导压力。", "下一句。"]),  # split around mojibake
        ("堅持“?!逼饋碜ァ⒁蛔サ降?,全國共查處28萬個。", ["堅持", "全國共查處28萬個。"]),
        ("为什么?这是因为责任不清。", ["为什么?这是因为责任不清。"]),  # a lone glued "?" is not mojibake
        ("一；二;三!四", ["一；", "二;", "三!", "四"]),
        ("第一行\n第二行。", ["第一行", "第二行。"]),
        ("  前后空格。  后一句。 ", ["前后空格。", "后一句。"]),
        ("比例为3.5%。没有句号的结尾", ["比例为3.5%。", "没有句号的结尾"]),
        ("end?", ["end?"]),
        ("", []),
    ],
)
def test_sentence_spans(text, sentences):
    assert texts(text) == sentences


def test_sentence_spans_of_a_slice_are_absolute_offsets():
    text = "前文。目标一。目标二。后文。"
    spans = sentence_spans(text, 3, 10)
    assert [(s.start, s.end) for s in spans] == [(3, 7), (7, 10)]
    assert [text[s.start : s.end] for s in spans] == ["目标一。", "目标二"]


@pytest.mark.parametrize(
    ("line", "level"),
    [
        ("一、总体要求", 1),
        ("第三章 监督检查", 1),
        ("（一）指导思想。坚持以人民为中心。", 2),
        ("(二)基本原则。坚持问题导向。", 2),
        ("强化“两个责任”贯通协同是深化党的自我革命", 1),
        ("各级党委要切实担负起主体责任。", 0),
    ],
)
def test_heading_level(line, level):
    assert heading_level(line) == level


# --- metadata lines -------------------------------------------------------------------------


def test_metadata_lines_are_body_text_not_headings(documents):
    chunks = chunk_document(documents["001_3c3daffbd3ff1c74.txt"], *CONFIGS["default"])
    assert chunks[0].text.startswith("时间:2022-09-20 04:12:12\n十八届中央纪委六次全会上")
    assert chunks[0].heading == ""
    assert chunks[-1].text.endswith("作者:王炅 单位:浙江省纪委驻省人大机关纪检监察组")
    assert "作者" not in chunks[-1].heading


@pytest.mark.parametrize(
    "line", ["时间:2024-11-18 00:15", "作者:王炅 单位:浙江省纪委", "(宁都县委常委、县纪委* 钟恢生)", "2021年12月13日"]
)
def test_metadata_line_level(line):
    assert heading_level(line) == 0


def test_a_signature_block_is_not_a_heading():
    text = "关于开展专项检查的通知\n各单位：\n现将有关事项通知如下。请认真贯彻执行。\n江州市纪委办公室\n2022年10月20日"
    document = clean(RawDocument("n.txt", text))
    chunks = chunk_document(document)
    assert [c.heading for c in chunks] == [""]
    assert chunks[0].text.endswith("江州市纪委办公室\n2022年10月20日")
