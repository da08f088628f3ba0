"""Reading source documents (`rag/ingest/loaders.py`): every format and encoding, and what gets skipped."""

from __future__ import annotations

import json
import time
import zipfile
from pathlib import Path

import docx
import pytest

from rag.ingest.loaders import LoadError, RawDocument, Skipped, decode_bytes, load_corpus, load_file, read_jsonl

CORPUS = Path(__file__).resolve().parent.parent / "corpus"

# Real text: the opening of corpus/001 (Chinese with ASCII punctuation, digits and blank lines).
REAL = (CORPUS / "001_3c3daffbd3ff1c74.txt").read_text(encoding="utf-8")[:1500]
SHORT = "第一条 为了保障公民依法获取政府信息，制定本条例。\n第二条 本条例所称政府信息，是指行政机关制作的信息。\n"


def make_pdf(text: str, title: str | None = None) -> bytes:
    """A minimal valid one-page PDF whose text layer is `text` (ASCII) in Helvetica."""
    stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode("latin-1")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        (
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R"
            b" /Resources << /Font << /F1 5 0 R >> >> >>"
        ),
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    if title is not None:
        objects.append(f"<< /Title ({title}) >>".encode("latin-1"))
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    info = b" /Info %d 0 R" % len(objects) if title is not None else b""
    out += b"trailer\n<< /Size %d /Root 1 0 R%s >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, info, xref)
    return bytes(out)


def make_docx(path: Path, paragraphs: list[str], table: list[list[str]] | None = None, title: str = "") -> Path:
    document = docx.Document()
    document.core_properties.title = title
    for paragraph in paragraphs:
        document.add_paragraph(paragraph)
    if table:
        grid = document.add_table(rows=len(table), cols=len(table[0]))
        for r, row in enumerate(table):
            for c, value in enumerate(row):
                grid.cell(r, c).text = value
    document.save(str(path))
    return path


def write(path: Path, data: bytes | str) -> Path:
    if isinstance(data, str):
        path.write_text(data, encoding="utf-8")
    else:
        path.write_bytes(data)
    return path


# --- text files and encodings ---------------------------------------------------------------


@pytest.mark.parametrize(
    "encoding",
    ["utf-8", "utf-8-sig", "gb18030", "gbk", "utf-16", "utf-16-le-bom", "utf-16-be-bom"],
)
def test_text_file_encodings_decode_to_the_same_text(tmp_path, encoding):
    boms = {"utf-16-le-bom": (b"\xff\xfe", "utf-16-le"), "utf-16-be-bom": (b"\xfe\xff", "utf-16-be")}
    bom, codec = boms.get(encoding, (b"", encoding))
    path = write(tmp_path / "doc.txt", bom + REAL.encode(codec))
    document = load_file(path)
    assert document.text == REAL
    assert document.source == "doc.txt"


def test_utf8_bom_is_not_part_of_the_text(tmp_path):
    document = load_file(write(tmp_path / "bom.txt", b"\xef\xbb\xbf" + "标题\n正文。".encode()))
    assert document.text == "标题\n正文。"


@pytest.mark.parametrize("codec", ["utf-16-le", "utf-16-be"])
def test_utf16_without_bom_latin_heavy_text(tmp_path, codec):
    text = "Article 1: open government information (2019 revision).\n第一条 政府信息公开。\n"
    assert load_file(write(tmp_path / "doc.txt", text.encode(codec))).text == text


@pytest.mark.parametrize("codec", ["utf-16-le", "utf-16-be"])
def test_utf16_without_bom_chinese_text(tmp_path, codec):
    assert load_file(write(tmp_path / "doc.txt", REAL.encode(codec))).text == REAL


def test_markdown_is_read_as_text(tmp_path):
    text = "# 政府信息公开\n\n## 第一章 总则\n\n- 依法公开。\n"
    document = load_file(write(tmp_path / "notes.md", text))
    assert document.text == text
    assert document.source == "notes.md"


# --- HTML, Word, PDF ------------------------------------------------------------------------


def test_html_keeps_visible_text_and_uses_the_title(tmp_path):
    page = """<!doctype html><html><head><meta charset="utf-8"><title>政府信息公开条例</title>
    <style>body { color: red }</style><script>var tracking = "脚本内容";</script></head>
    <body><nav>首页 | 新闻 | 导航栏</nav><header>页眉广告</header>
    <h1>第一章 总则</h1><p>第一条 为了保障公民依法获取政府信息，制定本条例。</p>
    <div>第二条 本条例所称政府信息。</div><footer>版权所有 页脚</footer></body></html>"""
    document = load_file(write(tmp_path / "page.html", page))
    assert document.title == "政府信息公开条例"
    assert "第一条 为了保障公民依法获取政府信息，制定本条例。" in document.text
    assert "第二条 本条例所称政府信息。" in document.text
    for chrome in ("tracking", "脚本内容", "color: red", "导航栏", "页眉广告", "页脚", "政府信息公开条例"):
        assert chrome not in document.text
    # Block elements end lines: the heading and the paragraphs are not run together.
    assert "第一章 总则\n" in document.text


def test_a_page_wrapped_in_a_form_keeps_its_text_but_not_its_controls(tmp_path):
    page = """<html><body><form id="form1" action="./article.aspx"><select><option>省级部门</option></select>
    <input type="text" name="q"><button>搜索</button><h1>通报</h1><p>2023年全市共立案668件。</p></form></body></html>"""
    document = load_file(write(tmp_path / "article.aspx.html", page))
    assert "2023年全市共立案668件。" in document.text
    assert "省级部门" not in document.text and "搜索" not in document.text


def test_html_in_gbk_is_decoded(tmp_path):
    page = "<html><head><title>标题</title></head><body><p>纪委监督责任。</p></body></html>"
    document = load_file(write(tmp_path / "page.htm", page.encode("gbk")))
    assert document.title == "标题"
    assert "纪委监督责任。" in document.text


def test_html_without_visible_text_is_an_error(tmp_path):
    with pytest.raises(LoadError, match="no visible text"):
        load_file(write(tmp_path / "empty.html", "<html><head><script>x()</script></head><body></body></html>"))


def test_docx_paragraphs_tables_and_title(tmp_path):
    path = make_docx(
        tmp_path / "rules.docx",
        ["第一条 为了规范管理，制定本办法。", "第二条 本办法适用于各级机关。"],
        table=[["责任主体", "党委"], ["监督主体", "纪委"]],
        title="管理办法",
    )
    document = load_file(path)
    assert document.title == "管理办法"
    assert document.source == "rules.docx"
    lines = document.text.split("\n")
    assert lines[:2] == ["第一条 为了规范管理，制定本办法。", "第二条 本办法适用于各级机关。"]
    assert "责任主体 党委" in lines and "监督主体 纪委" in lines


def test_docx_without_title_property_has_no_title(tmp_path):
    assert load_file(make_docx(tmp_path / "a.docx", ["正文。"])).title is None


def test_pdf_text_layer_and_title(tmp_path):
    path = write(tmp_path / "report.pdf", make_pdf("Open government information regulations.", title="Annual Report"))
    document = load_file(path)
    assert document.text.strip() == "Open government information regulations."
    assert document.title == "Annual Report"


def test_pdf_without_text_layer_is_an_error(tmp_path):
    with pytest.raises(LoadError, match="no text layer"):
        load_file(write(tmp_path / "scan.pdf", make_pdf("")))


# --- .jsonl collections ---------------------------------------------------------------------


def test_jsonl_lines_are_documents_with_their_ids_as_sources(tmp_path):
    lines = [
        {"id": "law-1", "title": "条例", "text": "第一条 正文。"},
        {"id": 42, "text": "没有标题的文档。"},
    ]
    path = write(tmp_path / "kb.jsonl", "\n".join(json.dumps(r, ensure_ascii=False) for r in lines) + "\n\n")
    documents, skipped = load_corpus(path)
    assert skipped == []
    assert [(d.source, d.title, d.text) for d in documents] == [
        ("law-1", "条例", "第一条 正文。"),
        ("42", None, "没有标题的文档。"),
    ]


def test_jsonl_bad_lines_are_skipped_by_line_and_the_rest_load(tmp_path):
    path = write(
        tmp_path / "kb.jsonl",
        "\n".join(
            [
                json.dumps({"id": "a", "text": "好的一行。"}, ensure_ascii=False),
                "{not json",
                json.dumps({"title": "no id", "text": "x"}),
                json.dumps(["a", "list"]),
                json.dumps({"id": "blank", "text": "   "}),
                json.dumps({"id": "b", "title": "B", "text": "另一行。"}, ensure_ascii=False),
            ]
        ),
    )
    items = list(read_jsonl(path))
    documents = [i for i in items if isinstance(i, RawDocument)]
    skipped = {s.source: s.reason for s in items if isinstance(s, Skipped)}
    assert [d.source for d in documents] == ["a", "b"]
    assert set(skipped) == {"kb.jsonl:2", "kb.jsonl:3", "kb.jsonl:4", "blank"}
    assert "id" in skipped["kb.jsonl:2"] and "text" in skipped["kb.jsonl:2"]
    assert skipped["blank"] == "empty text"


def test_jsonl_with_bom_is_read(tmp_path):
    path = write(tmp_path / "kb.jsonl", b"\xef\xbb\xbf" + json.dumps({"id": "x", "text": "正文。"}).encode())
    documents, skipped = load_corpus(path)
    assert [d.source for d in documents] == ["x"] and not skipped


# --- a folder with unreadable files ---------------------------------------------------------


def test_unreadable_files_are_skipped_by_name_and_the_rest_load(tmp_path):
    write(tmp_path / "good.txt", "纪委监督责任。")
    make_docx(tmp_path / "good.docx", ["党委主体责任。"])
    write(tmp_path / "good.pdf", make_pdf("Text layer."))
    write(tmp_path / "empty.txt", b"")
    write(tmp_path / "blank.md", " \n\t\n")
    write(tmp_path / "binary.txt", b"PK\x03\x04\x00\x00\x08\x00" + bytes(range(256)) * 4)
    write(tmp_path / "broken.docx", b"this is not a zip archive")
    write(tmp_path / "broken.pdf", b"%PDF-1.4\nthis is not a pdf")
    write(tmp_path / "notes.xyz", "党委主体责任。")
    write(tmp_path / ".hidden.txt", "hidden file")

    documents, skipped = load_corpus(tmp_path)

    assert sorted(d.source for d in documents) == ["good.docx", "good.pdf", "good.txt"]
    reasons = {s.source: s.reason for s in skipped}
    assert set(reasons) == {"empty.txt", "blank.md", "binary.txt", "broken.docx", "broken.pdf", "notes.xyz"}
    assert "empty" in reasons["empty.txt"] and "empty" in reasons["blank.md"]
    assert "binary" in reasons["binary.txt"]
    assert "Word" in reasons["broken.docx"]
    assert "PDF" in reasons["broken.pdf"]
    assert "unsupported file type .xyz" in reasons["notes.xyz"] and ".txt" in reasons["notes.xyz"]


def test_a_docx_zip_without_a_document_is_skipped(tmp_path):
    with zipfile.ZipFile(tmp_path / "fake.docx", "w") as archive:
        archive.writestr("hello.txt", "not a Word document")
    documents, skipped = load_corpus(tmp_path)
    assert documents == [] and [s.source for s in skipped] == ["fake.docx"]


def test_truncated_pdf_is_skipped(tmp_path):
    whole = make_pdf("Some text.")
    write(tmp_path / "cut.pdf", whole[: len(whole) // 2])
    write(tmp_path / "ok.txt", "正文。")
    documents, skipped = load_corpus(tmp_path)
    assert [d.source for d in documents] == ["ok.txt"]
    assert [s.source for s in skipped] == ["cut.pdf"]


def test_binary_file_that_is_not_valid_utf16_is_skipped(tmp_path):
    write(tmp_path / "program.txt", b"a\x00" * 8 + b"\x00\xdc")  # NUL-rich, with an unpaired UTF-16 surrogate
    write(tmp_path / "ok.txt", "正文。")
    documents, skipped = load_corpus(tmp_path)
    assert [d.source for d in documents] == ["ok.txt"]
    assert [s.source for s in skipped] == ["program.txt"]


def test_decode_bytes_refuses_empty_and_binary():
    with pytest.raises(LoadError, match="empty"):
        decode_bytes(b"")
    with pytest.raises(LoadError, match="binary"):
        decode_bytes(b"hello\x00world\x00" * 10)


def test_unsupported_extension_raises_with_the_supported_types(tmp_path):
    with pytest.raises(LoadError, match=r"unsupported file type \.csv.*\.docx.*\.pdf"):
        load_file(write(tmp_path / "table.csv", "a,b"))
    with pytest.raises(LoadError, match=r"\(none\)"):
        load_file(write(tmp_path / "README", "text"))


def test_duplicate_source_ids_keep_the_first(tmp_path):
    write(tmp_path / "a.txt", "文件里的文档。")
    lines = [
        {"id": "a.txt", "text": "同名的另一篇。"},
        {"id": "x", "text": "第一篇。"},
        {"id": "x", "text": "第二篇。"},
    ]
    write(tmp_path / "b.jsonl", "\n".join(json.dumps(r, ensure_ascii=False) for r in lines))
    documents, skipped = load_corpus(tmp_path)
    assert [(d.source, d.text) for d in documents] == [("a.txt", "文件里的文档。"), ("x", "第一篇。")]
    assert [(s.source, s.reason) for s in skipped] == [("a.txt", "duplicate source id"), ("x", "duplicate source id")]


def test_missing_corpus_raises():
    with pytest.raises(FileNotFoundError, match="corpus not found"):
        load_corpus(Path("/nonexistent/corpus"))


def test_real_corpus_loads_completely():
    documents, skipped = load_corpus(CORPUS)
    assert skipped == []
    assert [d.source for d in documents] == sorted(p.name for p in CORPUS.iterdir())
    assert all(len(d.text) > 1000 for d in documents)


def test_fingerprint_changes_with_text_and_title_only():
    a = RawDocument("a.txt", "正文。", title="标题")
    assert a.fingerprint == RawDocument("b.txt", "正文。", title="标题").fingerprint
    assert a.fingerprint != RawDocument("a.txt", "正文!", title="标题").fingerprint
    assert a.fingerprint != RawDocument("a.txt", "正文。", title="另一个").fingerprint


# --- uploads bounded before work (issue 21) -------------------------------------------------


def expanding_docx(path: Path, times: int, xml: str) -> Path:
    """A small .docx whose body repeats a piece of XML: it deflates to far more than it weighs."""
    make_docx(path, ["占位"])
    with zipfile.ZipFile(path) as archive:
        parts = {name: archive.read(name) for name in archive.namelist()}
    body = parts["word/document.xml"].decode("utf-8")
    start = body.index("<w:body>") + len("<w:body>")
    parts["word/document.xml"] = (body[:start] + xml * times + body[start:]).encode("utf-8")
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in parts.items():
            archive.writestr(name, data)
    return path


def test_a_docx_expanding_far_beyond_the_limit_is_refused_as_soon_as_it_passes_it(tmp_path):
    paragraph = "<w:p><w:r><w:t>" + "各级党委要切实履行全面从严治党主体责任。" * 100 + "</w:t></w:r></w:p>"
    path = expanding_docx(tmp_path / "bomb.docx", 10_000, paragraph)
    assert path.stat().st_size < 250_000  # 20 million characters in about 200 KB
    started = time.perf_counter()
    with pytest.raises(LoadError, match=r"文档过长.*200,000") as refused:
        load_file(path, limit=200_000)
    assert time.perf_counter() - started < 2.0
    assert "请拆分" in str(refused.value)


def test_a_docx_without_text_but_a_huge_body_is_refused_by_its_size(tmp_path):
    path = expanding_docx(
        tmp_path / "marks.docx", 1_500_000, '<w:bookmarkStart w:id="0" w:name="a"/><w:bookmarkEnd w:id="0"/>'
    )
    assert path.stat().st_size < 400_000  # about 100 MB of XML, not one character of text
    started = time.perf_counter()
    with pytest.raises(LoadError, match="文档过长"):
        load_file(path, limit=50_000)  # 5 MB of XML at most
    assert time.perf_counter() - started < 5.0


def test_a_docx_under_the_limit_is_read_whole_in_document_order(tmp_path):
    path = make_docx(tmp_path / "ok.docx", ["第一段。", "第二段。"], table=[["年份", "立案数"], ["2023年", "668"]])
    document = load_file(path, limit=200_000)
    assert document.text.split("\n") == ["第一段。", "第二段。", "年份 立案数", "2023年 668"]


@pytest.mark.parametrize(
    "page",
    [
        "<div>" * 200_000 + "正文。" + "</div>" * 200_000,
        "<html><body>" + "<table><tr><td>" * 70_000 + "正文。",
        "<p>" + "<a" * 500_000,
        "<p>正文。</p>" + "<!--" * 250_000,
        "<p>正文。</p>" + "</" * 500_000,
        "<p>正文。</p>" + "<?" * 500_000,
    ],
    ids=["nested-div", "nested-table", "open-tags", "comments", "end-tags", "instructions"],
)
def test_a_pathological_megabyte_of_html_is_read_or_refused_in_seconds(tmp_path, page):
    path = write(tmp_path / "page.html", page)
    assert path.stat().st_size >= 1_000_000
    started = time.perf_counter()
    try:
        document = load_file(path, limit=200_000)
    except LoadError:
        pass
    else:
        assert "正文。" in document.text
    assert time.perf_counter() - started < 10.0


def test_an_html_page_beyond_the_limit_is_refused(tmp_path):
    path = write(tmp_path / "long.html", "<html><body>" + "<p>纪委要履行监督责任。</p>" * 30_000 + "</body></html>")
    with pytest.raises(LoadError, match="文档过长"):
        load_file(path, limit=200_000)
    assert len(load_file(path).text) > 300_000  # without a limit (indexing the corpus) it is read whole


def test_html_table_cells_are_separated(tmp_path):
    page = "<table><tr><th>季度</th><th>立案数</th></tr><tr><td>第一季度</td><td>152</td></tr></table>"
    assert [line.strip() for line in load_file(write(tmp_path / "t.html", page)).text.split("\n") if line.strip()] == [
        "季度 立案数",
        "第一季度 152",
    ]


def test_a_text_file_beyond_the_limit_is_refused(tmp_path):
    with pytest.raises(LoadError, match="文档过长"):
        load_file(write(tmp_path / "long.txt", "纪委监督责任。" * 1000), limit=5000)
