"""The chat page (`app.py`): the real page in headless Chromium, and its HTTP API through gradio_client.

One app is served per module on a free localhost port, on the session's `engine` (a private copy of
the corpus). Browser tests skip when Chromium is missing, except under CI (`CI` set), where they fail.
Screenshots go to tests/artifacts/.
"""

from __future__ import annotations

import importlib
import os
import re
import shutil
import socket
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from rag.answer import ABSTAIN_TEXT

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # app.py sits at the top of the project, outside the installed package
    sys.path.insert(0, str(ROOT))
app = importlib.import_module("app")

ARTIFACTS = ROOT / "tests" / "artifacts"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 30_000
FACT = "青山县纪委在2024年开展了“清风行动”专项检查，共检查单位37家。"
QUESTIONS = [
    *app.EXAMPLES,
    "明天北京的天气怎么样?",
    "什么是两个责任",
    "纪委如何加强监督执纪问责",
    "党委书记是第一责任人吗",
    "北京市如何强化压力传导?",
    "全国总工会机关纪检监察组做了什么",
    "两个责任落实不力的主要表现有哪些",
    "怎样解决基层纪委监督不力的问题",
    "问责条例修订后有什么变化",
    "派驻机构的监督作用",
    "主体责任和监督责任是什么关系",
    "如何推动管党治党向基层延伸",
    "2018年至2020年开展了什么专项治理",
    "责任清单包括哪些内容",
    "纪检监察机关的职责定位",
    "股票明天会涨吗",
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _compact(text: str) -> str:
    return re.sub(r"\s+", "", text)


@pytest.fixture(scope="module")
def server(engine) -> Iterator[str]:
    """The page on the session engine, served in-process; its URL."""
    demo = app.build_app(engine)
    port = _free_port()
    app.launch(demo, engine.settings, "127.0.0.1", port, prevent_thread_lock=True, quiet=True)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        demo.close()


@pytest.fixture(scope="module")
def browser(server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A headless Chromium (Debian's) with a fresh profile."""
    executable = shutil.which("chromium") or "/usr/bin/chromium"
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None
    if sync_playwright is None or not Path(executable).exists():
        message = "Chromium (apt-get install chromium fonts-noto-cjk) or playwright is missing"
        if os.environ.get("CI"):
            pytest.fail(f"{message}: CI must run the browser tests")
        pytest.skip(message)
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),
            executable_path=executable,
            args=CHROMIUM_ARGS,
            headless=True,
            viewport={"width": 1400, "height": 950},
            locale="zh-CN",
            accept_downloads=True,
        )
        context.set_default_timeout(TIMEOUT_MS)
        try:
            yield context
        finally:
            context.close()


@pytest.fixture
def page(browser: Any, server: str) -> Iterator[Any]:
    """A fresh page (a new chat session) on the app; fails the test on a JavaScript error."""
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("dialog", lambda dialog: dialog.accept())  # the remove button asks for confirmation
    page.goto(server)
    page.wait_for_selector("#chat")
    yield page
    page.close()
    assert not errors, errors


def _ask(page: Any, question: str) -> Any:
    """Type a question, send it, and return the new answer's chat message."""
    from playwright.sync_api import expect

    answers = page.locator("#chat [data-testid=bot]")
    before = answers.count()
    page.locator("#question textarea").fill(question)
    page.locator("#question textarea").press("Enter")
    expect(answers).to_have_count(before + 1)
    return answers.last


def _screenshot(page: Any, name: str, full_page: bool = False) -> None:
    """Save a screenshot to tests/artifacts once no event is pending (no loading overlays)."""
    page.wait_for_function(
        "() => [...document.querySelectorAll('[data-testid=status-tracker]')].every(e => e.classList.contains('hide'))"
    )
    page.wait_for_timeout(400)  # let fade-out transitions finish
    page.screenshot(path=str(ARTIFACTS / name), full_page=full_page)


def _no_traceback(page: Any) -> None:
    text = page.locator("body").inner_text()
    assert "Traceback" not in text and 'File "' not in text


def _open_tab(page: Any, name: str) -> None:
    page.get_by_role("tab", name=name).click()


# --- browser ---------------------------------------------------------------------------------------


@pytest.mark.browser
def test_example_question_answer_sources_highlight_export_and_follow_up(page: Any, engine) -> None:
    from playwright.sync_api import expect

    question = "纪委监督责任包括什么"
    expected = engine.ask(question)
    assert not expected.abstained and expected.citations
    for example in app.EXAMPLES:  # example questions on first load
        expect(page.get_by_role("button", name=re.compile(re.escape(example)))).to_be_visible()
    page.get_by_role("button", name=re.compile(re.escape(question))).click()

    answer = page.locator("#chat [data-testid=bot]").last
    expect(answer).to_contain_text("[1]")
    assert _compact(expected.citations[0].quote)[:30] in _compact(answer.inner_text())
    items = page.locator("#sources details.src")
    expect(items).to_have_count(len(expected.citations))
    first = expected.citations[0]
    expect(items.first.locator("summary")).to_contain_text(first.title)
    expect(items.first.locator("summary")).to_contain_text(first.source)

    items.first.locator("summary").click()  # open the citation: the passage in context, quote marked
    mark = page.locator("#sources details.src[open] mark")
    expect(mark).to_have_count(1)
    assert _compact(mark.inner_text()) == _compact(first.quote)
    context = page.locator("#sources details.src[open] .context").inner_text()
    assert len(_compact(context)) > len(_compact(first.quote))
    _screenshot(page, "chat-answer.png")

    page.get_by_text("导出这条回答（Markdown）").click()  # export: copyable text and a download
    markdown = page.locator("#export-md textarea")
    expect(markdown).to_have_value(re.compile("## 来源"))
    with page.expect_download() as download:
        page.locator("#download").click()
    assert download.value.suggested_filename.endswith(".md")
    exported = Path(download.value.path()).read_text(encoding="utf-8")
    assert exported == markdown.input_value()
    assert f"# 问：{question}" in exported and "[1] 《" in exported

    follow_up = _ask(page, "还有呢")  # per-session history: the follow-up continues this conversation
    expect(follow_up).to_contain_text(f"按“{question}”检索")
    again = engine.ask("还有呢", history=[expected])
    if not again.abstained:
        assert _compact(again.citations[0].quote)[:30] in _compact(follow_up.inner_text())
    _screenshot(page, "chat-follow-up.png", full_page=True)
    _no_traceback(page)


@pytest.mark.browser
def test_out_of_corpus_question_is_an_abstention(page: Any) -> None:
    from playwright.sync_api import expect

    answer = _ask(page, "明天北京的天气怎么样?")
    expect(answer).to_contain_text(ABSTAIN_TEXT)
    expect(answer).to_contain_text("可能相关")
    expect(answer).not_to_contain_text("[1]")
    expect(page.locator("#sources")).to_contain_text("可能相关（不是答案，仅供参考）")
    expect(page.locator("#sources details.src")).not_to_have_count(0)
    _screenshot(page, "chat-abstention.png")


@pytest.mark.browser
def test_upload_find_and_remove_a_document(page: Any, engine, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    original = {d.source for d in engine.documents()}
    upload = tmp_path / "青山县 清风行动.txt"
    upload.write_text(f"青山县纪委工作简报\n\n{FACT}\n", encoding="utf-8")
    source = "青山县_清风行动.txt"  # the sanitized name
    try:
        _open_tab(page, "知识库")
        expect(page.locator("#docs")).to_contain_text(min(original))
        page.locator("#upload input[type=file]").set_input_files(str(upload))
        expect(page.locator("#kb-status")).to_contain_text("已添加", timeout=60_000)
        expect(page.locator("#docs")).to_contain_text(source)
        expect(page.locator("#docs")).to_contain_text("青山县纪委工作简报")
        _screenshot(page, "kb-uploaded.png")

        _open_tab(page, "检索")  # searchable at once
        page.locator("#search-query textarea").fill("青山县纪委开展了什么专项检查")
        page.locator("#search-query textarea").press("Enter")
        first_hit = page.locator("#search-results .hit").first
        expect(first_hit).to_contain_text("清风行动")
        expect(first_hit).to_contain_text(source)
        expect(first_hit).to_contain_text("得分")
        _screenshot(page, "search-uploaded.png")

        _open_tab(page, "问答")
        answer = _ask(page, "青山县纪委开展了什么专项检查")
        expect(answer).to_contain_text("清风行动")
        expect(page.locator("#sources")).to_contain_text(source)

        _open_tab(page, "知识库")  # remove it again (the page asks for confirmation; the fixture accepts)
        page.locator("#remove-choice input").click()
        page.get_by_role("option", name=re.compile(re.escape(source))).click()
        page.locator("#remove").click()
        expect(page.locator("#kb-status")).to_contain_text("已删除", timeout=60_000)
        expect(page.locator("#docs")).not_to_contain_text(source)
        _screenshot(page, "kb-removed.png")
        assert {d.source for d in engine.documents()} == original
        assert not (Path(engine.settings.corpus_dir) / source).exists()
        _no_traceback(page)
    finally:
        if source in {d.source for d in engine.documents()}:
            engine.remove_document(source)


@pytest.mark.browser
def test_bad_uploads_show_a_message_and_no_traceback(page: Any, engine, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    before = sorted(p.name for p in Path(engine.settings.corpus_dir).iterdir())
    binary = tmp_path / "binary.txt"
    binary.write_bytes(b"\x00\x01\x02 not text \x00\xff" * 200)
    program = tmp_path / "setup.exe"
    program.write_bytes(b"MZ\x90\x00\x03" * 200)
    _open_tab(page, "知识库")
    page.locator("#upload input[type=file]").set_input_files([str(binary), str(program)])
    status = page.locator("#kb-status")
    expect(status).to_contain_text("未能添加 binary.txt", timeout=60_000)
    expect(status).to_contain_text("未能添加 setup.exe")
    expect(status).not_to_contain_text("已添加")
    _screenshot(page, "kb-bad-upload.png")
    _no_traceback(page)
    assert sorted(p.name for p in Path(engine.settings.corpus_dir).iterdir()) == before
    assert len(engine.documents()) == len(before)


# --- HTTP API --------------------------------------------------------------------------------------


def _without_markdown(result: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in result.items() if k != "markdown"}


def test_twenty_questions_at_once_through_the_api(server: str, engine) -> None:
    from gradio_client import Client

    client = Client(server, verbose=False)
    one_by_one = [client.predict(q, api_name="/ask") for q in QUESTIONS]
    start = threading.Barrier(len(QUESTIONS))

    def ask(question: str) -> dict[str, Any]:
        start.wait(timeout=60)  # all 20 requests leave together
        return client.predict(question, api_name="/ask")

    with ThreadPoolExecutor(len(QUESTIONS)) as pool:
        at_once = list(pool.map(ask, QUESTIONS, timeout=120))
    assert len(at_once) == 20 and all(r["answer"] for r in at_once)
    assert [_without_markdown(r) for r in at_once] == [_without_markdown(r) for r in one_by_one]
    direct = engine.ask(QUESTIONS[0]).to_dict()
    assert _without_markdown(one_by_one[0])["citations"] == direct["citations"]
    assert one_by_one[0]["markdown"].startswith(f"# 问：{QUESTIONS[0]}")
    abstained = [r["question"] for r in at_once if r["abstained"]]
    assert "明天北京的天气怎么样?" in abstained and "股票明天会涨吗" in abstained


def test_api_search_documents_and_errors(server: str, engine) -> None:
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    client = Client(server, verbose=False)
    hits = client.predict("纪委监督责任包括什么", 3, api_name="/search")
    assert [h["rank"] for h in hits] == [1, 2, 3]
    assert hits[0]["score"] >= hits[1]["score"] >= hits[2]["score"]
    assert [h["chunk_id"] for h in hits] == [p.chunk_id for p in engine.search("纪委监督责任包括什么", k=3)]
    documents = client.predict(api_name="/documents")
    assert [d["source"] for d in documents] == [d.source for d in engine.documents()]
    follow_up = client.predict("还有呢", ["纪委监督责任包括什么"], api_name="/ask")
    assert follow_up["question"] == "还有呢" and follow_up["answer"]
    with pytest.raises(AppError, match="问题不能为空"):
        client.predict("   ", api_name="/ask")


# --- handlers without a browser --------------------------------------------------------------------


def test_upload_names_stay_inside_the_corpus_and_big_files_are_refused(engine, tmp_path: Path) -> None:
    page = app.Page(engine)
    corpus = Path(engine.settings.corpus_dir)
    before = sorted(p.name for p in corpus.iterdir())
    sneaky = tmp_path / "..\\..\\outside.txt"  # a Windows-style path as a browser may send it
    sneaky.write_text(FACT, encoding="utf-8")
    try:
        status, rows, *_ = page.on_upload([str(sneaky)])
        assert "已添加" in status and "outside.txt" in status
        assert (corpus / "outside.txt").is_file()
        assert not (corpus.parent / "outside.txt").exists() and not (corpus.parent.parent / "outside.txt").exists()
        assert any(row[1] == "outside.txt" for row in rows)
    finally:
        if "outside.txt" in {d.source for d in engine.documents()}:
            engine.remove_document("outside.txt")
    big = tmp_path / "big.txt"
    with big.open("wb") as f:
        f.truncate(engine.settings.max_upload_bytes + 1)
    status, *_ = page.on_upload([str(big)])
    assert "未能添加** big.txt" in status and "MiB" in status
    status, *_ = page.on_remove("../corpus/000_9bcc8b3cecb20cc5.txt")
    assert "未能删除" in status
    assert sorted(p.name for p in corpus.iterdir()) == before


def test_highlight_marks_the_exact_span_and_escapes_html() -> None:
    text = "第一段。\n" + "字" * 300 + "<b>前文，引用的句子&符号。后文" + "字" * 300 + "\n末段"
    start = text.index("引用")
    end = text.index("。后文") + 1
    html = app.highlight(text, start, end)
    assert "<mark>引用的句子&amp;符号。</mark>" in html
    assert "&lt;b&gt;前文，" in html and "<b>" not in html
    assert html.count("…") == 2 and "第一段" not in html and "末段" not in html


def test_main_help_does_not_start_a_server(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        app.main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--host", "--port", "--index", "--corpus"):
        assert flag in out
