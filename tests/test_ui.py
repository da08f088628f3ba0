"""The chat page without a browser (`ui/`): rendering, access, and the handlers over the real engine.

The browser tests (real Chromium) are in test_app.py.
"""

from __future__ import annotations

import re
import sys
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # ui/ sits at the top of the project, outside the installed package
    sys.path.insert(0, str(ROOT))

from ui.access import Access, AccessError, parse_users  # noqa: E402
from ui.page import Page, discard_upload  # noqa: E402
from ui.render import chat_text, chinese, clean_text, highlight, md_text, sources_html  # noqa: E402
from ui.startup import EngineLoader  # noqa: E402

FACT = "青山县纪委在2024年开展了“清风行动”专项检查，共检查单位37家。"
CJK = re.compile(r"[\u3400-\u9fff]")


def _page(engine, access: Access | None = None) -> Page:
    return Page(EngineLoader.of(engine), access)


def _request(user: str | None = None, host: str = "10.0.0.7") -> SimpleNamespace:
    """What the handlers read of a Gradio request: the login name and the client's address."""
    return SimpleNamespace(username=user, client=SimpleNamespace(host=host))


def _upload(tmp_path: Path, name: str, data: bytes | str) -> Path:
    """A file as Gradio hands an upload over: in a folder of its own in its cache."""
    folder = tmp_path / "gradio" / f"{len(list(tmp_path.glob('gradio/*'))):04d}"
    folder.mkdir(parents=True)
    path = folder / name
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def _settle(page: Page, jobs: list[int], status: str = "") -> str:
    """Wait for the page's queued jobs, then let the timer report them: the session's status text."""
    engine = page.loader.engine
    assert engine.worker.wait(600)
    *_, reported = page.on_tick(None, jobs, status)
    return reported if isinstance(reported, str) else status  # not a str: nothing new to report


# --- rendering -------------------------------------------------------------------------------------


def test_highlight_marks_the_exact_span_and_escapes_html() -> None:
    text = "第一段。\n" + "字" * 300 + "<b>前文，引用的句子&符号。后文" + "字" * 300 + "\n末段"
    start = text.index("引用")
    end = text.index("。后文") + 1
    html = highlight(text, start, end)
    assert "<mark>引用的句子&amp;符号。</mark>" in html
    assert "&lt;b&gt;前文，" in html and "<b>" not in html
    assert html.count("…") == 2 and "第一段" not in html and "末段" not in html


def test_document_text_is_shown_as_text_in_chat_messages() -> None:
    """Markdown, HTML, math and bare links from a document are escaped, not rendered."""
    text = md_text(
        "公式$$x^2$$见 https://example.com 和 www.example.com，**加粗**，<script>x</script>，a_b_c\n- 列表\n# 标题"
    )
    assert "$$" not in text.replace("\\$", "") and "\\$\\$x^2\\$\\$" in text
    assert "https://" not in text and "www." not in text
    assert "**" not in text.replace("\\*", "") and "<script>" not in text
    assert "\n\\- 列表" in text and "\n\\# 标题" in text


def test_each_cited_sentence_is_its_own_paragraph_and_each_marker_a_link(engine) -> None:
    answer = engine.ask("纪委监督责任包括什么")
    assert len(answer.citations) >= 2
    text = chat_text(answer, turn=3)
    for citation in answer.citations:
        assert f"(#cite-3-{citation.id} " in text
    paragraphs = [p for p in text.split("\n\n") if p.strip()]
    assert len(paragraphs) >= len(answer.citations)
    assert all(re.search(r"\[\\\[\d+\\\]\]", p) for p in paragraphs)  # every paragraph ends in its citation


def test_sources_are_grouped_by_document_with_titles_quotes_and_no_scores(engine) -> None:
    answer = engine.ask("纪委监督责任包括什么")
    html = sources_html(Page.lookup(engine), answer, turn=0)
    documents = {c.source for c in answer.citations}
    assert html.count('class="doc"') == len(documents)
    for c in answer.citations:
        assert f'id="cite-0-{c.id}"' in html
        assert c.quote.replace("“", "&ldquo;")[:10] in html or c.quote[:10] in html
        assert c.title in html
    for source in documents:
        assert source not in html  # titles, not file names
    assert not re.search(r"0\.\d{3}", html) and "相关度" not in html and "得分" not in html
    abstention = engine.ask("明天北京的天气怎么样?")
    assert abstention.abstained
    html = sources_html(Page.lookup(engine), abstention)
    assert "第 1 位" in html and not re.search(r"0\.\d{3}", html)


def test_page_messages_are_chinese_without_english_notes_or_paths() -> None:
    assert chinese("无法读取这个文件：不是可读的 Word (.docx) 文件 (not a readable .docx file): File is not a zip") == (
        "无法读取这个文件：不是可读的 Word 文件"
    )
    assert chinese("无法读取这个文件：文件是二进制数据 (binary data)") == "无法读取这个文件：文件是二进制数据"


def test_a_lone_surrogate_becomes_a_replacement_character() -> None:
    assert clean_text("纪委\ud800监督") == "纪委\ufffd监督"
    assert clean_text("😀") == "😀"


# --- access ---------------------------------------------------------------------------------------


def test_users_inline_and_from_a_file(tmp_path: Path) -> None:
    assert parse_users("张三:pw1,admin:p:w:admin") == {"张三": ("pw1", ""), "admin": ("p:w", "admin")}
    users = tmp_path / "users.txt"
    users.write_text("# 用户\n张三:pw1\n\nadmin:pw2:admin\n", encoding="utf-8")
    assert parse_users(f"@{users}") == parse_users(str(users)) == {"张三": ("pw1", ""), "admin": ("pw2", "admin")}
    with pytest.raises(AccessError):
        parse_users("nobody")
    with pytest.raises(AccessError):
        parse_users(f"@{tmp_path / 'missing.txt'}")


def test_read_only_lets_only_administrators_edit() -> None:
    access = Access.from_spec("张三:pw1,admin:pw2:admin", read_only=True)
    assert access.check("张三", "pw1") and not access.check("张三", "pw2") and not access.check("王五", "pw1")
    assert access.can_edit("admin") and not access.can_edit("张三") and not access.can_edit(None)
    assert Access().can_edit(None) and not Access(read_only=True).can_edit(None)


# --- handlers ---------------------------------------------------------------------------------------


def test_uploads_are_queued_named_safely_and_reported(engine, tmp_path: Path) -> None:
    page = _page(engine)
    corpus = Path(engine.settings.corpus_dir)
    before = sorted(p.name for p in corpus.iterdir() if p.is_file())
    sneaky = _upload(tmp_path, "..\\..\\outside.txt", FACT)  # a Windows-style path as a browser may send it
    try:
        status, files, jobs, *_ = page.on_upload([str(sneaky)], [], "", _request())
        assert "已加入处理队列" in status and files is None and len(jobs) == 1
        status = _settle(page, jobs, status)
        assert "已添加" in status and "outside.txt" in status
        assert (corpus / "outside.txt").is_file() and not sneaky.exists()  # Gradio's copy let go
        assert not (corpus.parent / "outside.txt").exists() and not (corpus.parent.parent / "outside.txt").exists()
    finally:
        if "outside.txt" in {d.source for d in engine.documents()}:
            engine.remove_document("outside.txt")
    big = _upload(tmp_path, "big.txt", b"")
    with big.open("wb") as f:
        f.truncate(engine.settings.max_upload_bytes + 1)
    status, *_ = page.on_upload([str(big)], [], "", _request())
    assert "未能添加** big.txt" in status and "文件过大" in status and "MB" in status
    assert not big.exists()
    assert sorted(p.name for p in corpus.iterdir() if p.is_file()) == before


def test_an_existing_name_is_asked_about_and_replaced_only_on_yes(engine, tmp_path: Path) -> None:
    page = _page(engine)
    corpus = Path(engine.settings.corpus_dir)
    name = sorted(d.source for d in engine.documents())[1]
    original = (corpus / name).read_bytes()
    upload = _upload(tmp_path, name.replace(".txt", ".TXT"), FACT)
    status, _, jobs, pending, confirm, question = page.on_upload([str(upload)], [], "", _request())
    assert jobs == [] and pending == [[str(upload), upload.name, name]]
    assert confirm.visible is True and md_text(name) in question and "替换" in question
    status, pending, confirm, _ = page.on_keep(pending, status)
    assert "未替换" in status and pending == [] and not upload.exists()
    assert (corpus / name).read_bytes() == original

    upload = _upload(tmp_path, name.replace(".txt", ".TXT"), FACT)
    *_, pending, _, _ = page.on_upload([str(upload)], [], "", _request())
    kept_before = set((corpus / ".versions").iterdir()) if (corpus / ".versions").exists() else set()
    try:
        status, jobs, *_ = page.on_replace(pending, [], "", _request("admin"))
        status = _settle(page, jobs, status)
        assert "已替换" in status
        kept = set((corpus / ".versions").iterdir()) - kept_before
        assert len(kept) == 1 and next(iter(kept)).read_bytes() == original
        assert "清风行动" in engine.ask("青山县纪委开展了什么专项检查?").answer
    finally:
        (corpus / name).write_bytes(original)
        engine.build(progress=False)


def test_removal_of_an_unknown_or_outside_name_says_so(engine) -> None:
    page = _page(engine)
    before = sorted(p.name for p in Path(engine.settings.corpus_dir).iterdir() if p.is_file())
    status, jobs = page.on_remove("../corpus/000_9bcc8b3cecb20cc5.txt", [], "", _request())
    status = _settle(page, jobs, status)
    assert "未能删除" in status and "知识库中没有文件" in status
    assert str(engine.settings.corpus_dir) not in status
    assert sorted(p.name for p in Path(engine.settings.corpus_dir).iterdir() if p.is_file()) == before


def test_read_only_refuses_changes_from_ordinary_users(engine, tmp_path: Path) -> None:
    page = _page(engine, Access.from_spec("张三:pw1,admin:pw2:admin", read_only=True))
    upload = _upload(tmp_path, "通报.txt", FACT)
    status, *_ = page.on_upload([str(upload)], [], "", _request("张三"))
    assert "只读模式" in status and not upload.exists()
    status, jobs = page.on_remove(sorted(d.source for d in engine.documents())[0], [], "", _request("张三"))
    assert "只读模式" in status and jobs == []
    assert page.on_load(_request("张三"))["visible"] is False
    assert page.on_load(_request("admin"))["visible"] is True


def test_a_question_before_the_engine_is_open_waits_and_says_so(engine) -> None:
    gate = threading.Event()

    def slow_open():
        gate.wait(60)
        return engine

    page = Page(EngineLoader(slow_open).start())
    replies = page.on_ask("纪委监督责任包括什么", [], [])
    _, chat, turns, *_ = next(replies)
    assert chat[-1]["role"] == "assistant" and "正在启动" in chat[-1]["content"] and turns == []
    gate.set()
    _, chat, turns, sources, *_ = next(replies)
    expected = engine.ask("纪委监督责任包括什么")
    assert turns[-1].citations == expected.citations
    assert "正在启动" not in chat[-1]["content"] and "cite-0-1" in chat[-1]["content"]
    assert f'id="cite-0-{expected.citations[0].id}"' in sources


def test_a_question_during_the_first_build_says_how_far_it_is(kb_settings, embedder, tmp_path: Path) -> None:
    from rag import Engine

    settings = kb_settings.replace(corpus_dir=tmp_path / "corpus", index_dir=tmp_path / "index")
    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "通报.txt").write_text(FACT, encoding="utf-8")
    fresh = Engine(settings, embedder)
    with fresh._write_lock:  # hold the build at its start, as a long first build would be
        fresh.worker.build(user="系统")
        replies = list(_page(fresh).on_ask("青山县纪委开展了什么专项检查", [], []))
        assert "正在建立索引" in replies[-1][1][-1]["content"] and "完成后即可提问" in replies[-1][1][-1]["content"]
    assert fresh.worker.wait(120)
    *_, (_, chat, turns, *_) = _page(fresh).on_ask("青山县纪委开展了什么专项检查", [], [])
    assert turns[-1] is not None and not turns[-1].abstained and "清风行动" in chat[-1]["content"]
    fresh.worker.close()


def test_a_lone_surrogate_in_a_question_is_answered(engine) -> None:
    *_, (_, chat, turns, *_) = _page(engine).on_ask("纪委监督责任\ud800包括什么", [], [])
    assert turns[-1] is not None and "\ud800" not in chat[0]["content"] + chat[1]["content"]
    chat[0]["content"].encode("utf-8")  # sendable


def test_clearing_forgets_the_conversation(engine) -> None:
    question, chat, turns, sources, export, download = _page(engine).on_clear()
    assert (question, chat, turns, export) == ("", [], [], "")
    assert "提问后" in sources and download.interactive is False


def test_discard_upload_removes_the_file_and_its_empty_folder(tmp_path: Path) -> None:
    folder = tmp_path / "gradio" / "abc123"
    folder.mkdir(parents=True)
    (folder / "a.txt").write_text("x", encoding="utf-8")
    discard_upload(folder / "a.txt")
    assert not folder.exists()
    discard_upload(folder / "a.txt")  # twice is harmless


def test_every_page_message_is_chinese(engine, tmp_path: Path) -> None:
    """Messages the handlers produce for failures hold Chinese and no English sentence."""
    page = _page(engine)
    messages = []
    for name, data in (("a.exe", b"MZ"), ("b.txt", b"\x00\x01" * 100), ("c.docx", b"not a zip")):
        path = _upload(tmp_path, name, data)
        status, _, jobs, *_ = page.on_upload([str(path)], [], "", _request())
        messages.append(_settle(page, jobs, status))
    messages.append(page.on_search("   ", 5))
    for message in filter(None, messages):
        assert CJK.search(message), message
        assert not re.search(r"\b(?:the|not|cannot|file|error|unsupported)\b", message, re.I), message


def test_engine_warnings_are_shown_above_the_chat_in_chinese(engine, monkeypatch) -> None:
    """An engine that reports a damaged index (`engine.warnings`, from the index checks) says so on the page."""
    page = _page(engine)
    assert page.banner(engine, engine.worker.status()) == ""
    warnings = ["向量文件已损坏，正在使用上一次完好的索引 (dense.faiss is damaged)", "bad manifest"]
    monkeypatch.setattr(type(engine), "warnings", property(lambda self: warnings))
    banner = page.banner(engine, engine.worker.status())
    assert "注意：向量文件已损坏，正在使用上一次完好的索引" in banner and "dense.faiss" not in banner
    assert "bad manifest" not in banner and "请联系管理员" in banner
