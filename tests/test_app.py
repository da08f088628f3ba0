"""The chat page (`app.py`, `ui/`): the real page in headless Chromium, and its HTTP API through gradio_client.

Pages are served in-process on free localhost ports, on the session's `engine` (a private copy of the
corpus): one open page, and one behind a login in read-only mode. The browser says it prefers English:
the page must be Chinese anyway. Browser tests skip when Chromium is missing, except under CI (`CI`
set), where they fail. Screenshots go to tests/artifacts/.
"""

from __future__ import annotations

import importlib
import os
import re
import shutil
import socket
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from llm_server import ScriptedLLM, citing, unused_url

from rag.answer.types import ABSTAIN_TEXT

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # app.py and ui/ sit at the top of the project, outside the installed package
    sys.path.insert(0, str(ROOT))
app = importlib.import_module("app")
from ui.access import Access  # noqa: E402
from ui.layout import EXAMPLES  # noqa: E402
from ui.render import GENERATED, WRITING  # noqa: E402

ARTIFACTS = ROOT / "tests" / "artifacts"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 30_000
INDEXING_MS = 900_000
"""How long a test waits for background indexing (a 60-chunk upload on a busy 2-core machine)."""
FACT = "青山县纪委在2024年开展了“清风行动”专项检查，共检查单位37家。"
USERS = "张三:pw1,admin:pw2:admin"
QUESTIONS = [
    *EXAMPLES,
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
GUANGXI = "广西在粮食购销领域查处了多少一把手?"
WRITTEN = (  # a scripted model's answer: two supported sentences, then an invented one
    "广西建立了党委统筹指挥、纪委监委组织协调、职能部门高效协同的查处机制。[@227人]\n"
    "广西共立案查处粮食购销领域有关单位一把手227人。[@227人]\n"
    "广西还在2022年追回粮食购销领域违规资金3.5亿元。[@227人]"
)
ENGLISH_UI = re.compile(
    r"\b(?:Submit|Clear|Loading|Error|Warning|Login|Username|Password|Drop File Here|Click to Upload)\b"
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _compact(text: str) -> str:
    return re.sub(r"\s+", "", text)


def _serve(engine: Any, access: Access | None = None) -> Iterator[str]:
    demo = app.build_app(engine, engine.settings, access)
    port = _free_port()
    app.launch(demo, engine.settings, "127.0.0.1", port, access=access, prevent_thread_lock=True, quiet=True)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        demo.close()


@pytest.fixture(scope="module")
def server(engine) -> Iterator[str]:
    """The page on the session engine, open to all; its URL."""
    yield from _serve(engine)


@pytest.fixture(scope="module")
def locked_server(engine) -> Iterator[str]:
    """The page behind a login, read-only for 张三, editable by admin."""
    yield from _serve(engine, Access.from_spec(USERS, read_only=True))


def _writing_engine(engine: Any, url: str) -> Any:
    """An engine on the session's index whose answers a language model at `url` writes."""
    from rag import Engine

    writer = Engine(engine.settings.replace(llm_base_url=url, llm_model="scripted"), engine.embedder)
    writer.reload()
    return writer


@pytest.fixture(scope="module")
def model() -> Iterator[ScriptedLLM]:
    """A scripted OpenAI-compatible server standing in for the model, streaming slowly enough to watch."""
    with ScriptedLLM(chunk=4) as llm:
        llm.delay = 0.1  # seconds before the reply and between its events
        yield llm


@pytest.fixture(scope="module")
def written_server(engine, model: ScriptedLLM) -> Iterator[tuple[str, Any]]:
    """The page on an engine whose answers the scripted model writes: its URL and engine."""
    writer = _writing_engine(engine, model.url)
    for url in _serve(writer):
        yield url, writer
    writer.worker.close()


@pytest.fixture(scope="module")
def down_server(engine) -> Iterator[tuple[str, Any]]:
    """The page on an engine configured with a model server that is down: its URL and engine."""
    writer = _writing_engine(engine, unused_url())
    for url in _serve(writer):
        yield url, writer
    writer.worker.close()


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """Debian's headless Chromium through playwright."""
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
        browser = pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


class Pages:
    """New browser pages (each its own context: own session, cookies, viewport); each fails its test on
    a JavaScript error."""

    def __init__(self, chromium: Any) -> None:
        self.chromium = chromium
        self.contexts: list[Any] = []
        self.errors: list[str] = []

    def open(self, url: str, width: int = 1400, height: int = 950, wait_for: str | None = "#chat") -> Any:
        context = self.chromium.new_context(
            locale="en-US", viewport={"width": width, "height": height}, accept_downloads=True
        )
        context.set_default_timeout(TIMEOUT_MS)
        self.contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        page.on("dialog", lambda dialog: dialog.accept())  # the remove button asks for confirmation
        page.goto(url)
        if wait_for:
            page.wait_for_selector(wait_for)
        return page

    def close(self) -> None:
        for context in self.contexts:
            context.close()


@pytest.fixture
def pages(chromium: Any) -> Iterator[Pages]:
    opened = Pages(chromium)
    yield opened
    opened.close()
    assert not opened.errors, opened.errors


@pytest.fixture
def page(pages: Pages, server: str) -> Any:
    """A fresh page (a new chat session) on the open app, desktop width."""
    return pages.open(server)


def _ask(page: Any, question: str) -> Any:
    """Type a question, send it, and return the new answer's chat message once it is there."""
    from playwright.sync_api import expect

    answers = page.locator("#chat [data-testid=bot]")
    before = answers.count()
    page.locator("#question textarea").fill(question)
    page.locator("#question textarea").press("Enter")
    expect(answers).to_have_count(before + 1)
    expect(answers.last).not_to_contain_text("正在启动")
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


def _remove_quietly(engine: Any, source: str) -> None:
    if engine.worker.wait(INDEXING_MS / 1000) and source in {d.source for d in engine.documents()}:
        engine.remove_document(source)


# --- browser: the chat -------------------------------------------------------------------------------


@pytest.mark.browser
def test_example_question_answer_sources_links_export_and_follow_up(page: Any, engine) -> None:
    from playwright.sync_api import expect

    question = "纪委监督责任包括什么"
    expected = engine.ask(question)
    assert not expected.abstained and len(expected.citations) >= 2
    assert page.evaluate("() => document.documentElement.lang") == "zh-CN"  # an English browser, a Chinese page
    for example in EXAMPLES:  # example questions on first load
        expect(page.get_by_role("button", name=re.compile(re.escape(example)))).to_be_visible()
    page.get_by_role("button", name=re.compile(re.escape(question))).click()

    answer = page.locator("#chat [data-testid=bot]").first  # (a locator: it must stay the first answer)
    expect(answer.locator('a[href="#cite-0-1"]').first).to_have_text("[1]")
    paragraphs = answer.locator("p")  # each cited sentence on its own line
    assert paragraphs.count() >= len(expected.citations)
    for n, citation in enumerate(expected.citations, 1):
        link = answer.locator(f'a[href="#cite-0-{n}"]')
        expect(link).to_have_count(1)
        preview = link.get_attribute("title")  # hover preview: the quote
        assert _compact(citation.quote).startswith(_compact(preview).rstrip("…")[:30])
    assert _compact(expected.answer)[:30] in _compact(answer.inner_text())  # in the question's script

    documents = {c.source for c in expected.citations}  # one row per document, quotes shown without a click
    expect(page.locator("#sources .doc")).to_have_count(len(documents))
    items = page.locator("#sources details.src")
    expect(items).to_have_count(len(expected.citations))
    first = expected.citations[0]
    expect(page.locator("#sources .doc").first).to_contain_text(first.title)
    assert _compact(first.quote)[:30] in _compact(items.first.locator("summary").inner_text())
    sources_text = page.locator("#sources").inner_text()
    assert not any(source in sources_text for source in documents)  # titles, not file names
    assert not re.search(r"0\.\d{3}|相关度|得分", sources_text)  # no raw scores

    second = expected.citations[1]  # a [n] link opens its passage: in context, quote marked
    answer.locator('a[href="#cite-0-2"]').click()
    opened = page.locator("#sources details#cite-0-2[open]")
    expect(opened).to_be_visible()
    assert _compact(opened.locator("mark").inner_text()) == _compact(second.quote)
    assert len(_compact(opened.locator(".context").inner_text())) > len(_compact(second.quote))
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
    assert not again.abstained and again.citations
    assert {c.quote for c in again.citations}.isdisjoint({c.quote for c in expected.citations})
    assert _compact(again.citations[0].quote)[:30] in _compact(follow_up.inner_text())
    expect(follow_up.locator('a[href="#cite-1-1"]')).to_have_count(1)

    answer.locator('a[href="#cite-0-1"]').click()  # a link of the earlier answer opens that answer's passage
    opened = page.locator("#sources details#cite-0-1[open]")
    expect(opened).to_be_visible()
    assert _compact(opened.locator("mark").inner_text()) == _compact(first.quote)
    _screenshot(page, "chat-follow-up.png", full_page=True)
    assert not ENGLISH_UI.search(page.locator("body").inner_text())
    _no_traceback(page)


@pytest.mark.browser
def test_the_clear_icon_clears_everything(page: Any, engine) -> None:
    """The chat box's own trash icon does what 清空对话 does: messages, history, sources, export."""
    from playwright.sync_api import expect

    _ask(page, "纪委监督责任包括什么")
    expect(page.locator("#sources details.src")).not_to_have_count(0)
    page.get_by_text("导出这条回答（Markdown）").click()
    expect(page.locator("#download")).to_be_enabled()
    expect(page.locator("#export-md textarea")).to_have_value(re.compile("## 来源"))
    page.locator("#chat .top-panel button").click()  # the icon, not the 清空对话 button
    expect(page.locator("#chat [data-testid=bot]")).to_have_count(0)
    expect(page.locator("#sources details.src")).to_have_count(0)
    expect(page.locator("#sources")).to_contain_text("提问后")
    expect(page.locator("#download")).to_be_disabled()
    expect(page.locator("#export-md textarea")).to_have_value("")

    follow_up = _ask(page, "还有呢")  # a fresh conversation: nothing to continue from
    expect(follow_up).not_to_contain_text("按“纪委监督责任包括什么”检索")
    alone = engine.ask("还有呢")  # what the question means without a conversation
    assert _compact(alone.answer.split("[")[0])[:20] in _compact(follow_up.inner_text())
    page.locator("#clear").click()  # and the button does the same
    expect(page.locator("#chat [data-testid=bot]")).to_have_count(0)
    expect(page.locator("#sources details.src")).to_have_count(0)


@pytest.mark.browser
def test_out_of_corpus_question_is_an_abstention(page: Any) -> None:
    from playwright.sync_api import expect

    answer = _ask(page, "明天北京的天气怎么样?")
    expect(answer).to_contain_text(ABSTAIN_TEXT)
    expect(answer).to_contain_text("可能相关")
    expect(answer).not_to_contain_text("[1]")
    expect(page.locator("#sources")).to_contain_text("可能相关（不是答案，仅供参考）")
    expect(page.locator("#sources details.src")).not_to_have_count(0)
    expect(page.locator("#sources .rank").first).to_have_text("第 1 位")
    _screenshot(page, "chat-abstention.png")


@pytest.mark.browser
def test_empty_question_toast_is_chinese(page: Any) -> None:
    from playwright.sync_api import expect

    page.locator("#question textarea").press("Enter")
    toast = page.locator("[data-testid=toast-body]")
    expect(toast).to_contain_text("请输入一个问题")
    expect(toast).to_contain_text("提示")
    assert not ENGLISH_UI.search(toast.inner_text())


@pytest.mark.browser
def test_phone_width_hides_nothing(pages: Pages, server: str) -> None:
    """At 390 px the sources are below the chat; the clear icon covers no message; the header fits."""
    page = pages.open(server, width=390, height=844)
    header = page.locator("body").inner_text()
    assert "右侧" not in header
    for question in ("纪委监督责任包括什么", "党委书记是第一责任人吗"):
        _ask(page, question)
    page.locator("#chat [data-testid=user]").last.scroll_into_view_if_needed()
    covered = page.evaluate(
        """() => {
          const icon = document.querySelector('#chat .top-panel button').getBoundingClientRect();
          const view = document.querySelector('#chat .bubble-wrap').getBoundingClientRect();
          return [...document.querySelectorAll('#chat [data-testid=user], #chat [data-testid=bot]')].filter((m) => {
            const r = m.getBoundingClientRect();
            const top = Math.max(r.top, view.top), bottom = Math.min(r.bottom, view.bottom);
            if (bottom <= top) return false;  // scrolled out of sight
            return !(r.left >= icon.right || r.right <= icon.left || top >= icon.bottom || bottom <= icon.top);
          }).map((m) => m.innerText.slice(0, 30));
        }"""
    )
    assert covered == [], f"the clear icon covers {covered}"
    chat, sources = page.locator("#chat").bounding_box(), page.locator("#sources").bounding_box()
    assert sources["y"] >= chat["y"] + chat["height"]  # below, as the header's wording allows
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 390  # no sideways scrolling
    _screenshot(page, "phone.png", full_page=True)


# --- browser: written answers (a scripted model server behind the page) --------------------------------

WATCH_ANSWERS = """() => {
  // every text the newest answer shows, in order: what streamed before the final answer replaced it
  window.shown = [];
  const chat = document.querySelector('#chat');
  new MutationObserver(() => {
    const answers = chat.querySelectorAll('[data-testid=bot]');
    const text = answers.length ? answers[answers.length - 1].innerText : '';
    if (text && window.shown[window.shown.length - 1] !== text) window.shown.push(text);
  }).observe(chat, {subtree: true, childList: true, characterData: true});
}"""


@pytest.mark.browser
def test_a_written_answer_streams_then_shows_verified_with_linked_sources(
    pages: Pages, written_server: tuple[str, Any], model: ScriptedLLM
) -> None:
    from playwright.sync_api import expect

    url, writer = written_server
    model.replies = [citing(WRITTEN)]
    page = pages.open(url)
    expect(page.locator("body")).to_contain_text("由语言模型依据原文撰写")  # the header says how answers are made
    page.evaluate(WATCH_ANSWERS)
    page.locator("#question textarea").fill(GUANGXI)
    page.locator("#question textarea").press("Enter")
    answer = page.locator("#chat [data-testid=bot]").last
    expect(answer).to_contain_text(GENERATED)  # the final answer
    expect(answer).not_to_contain_text(WRITING)

    shown = [_compact(text) for text in page.evaluate("() => window.shown")]
    first, second = "党委统筹指挥、纪委监委组织协调", "一把手227人"
    partial = [text for text in shown if first in text and second not in text]
    assert partial and all(WRITING in text for text in partial), shown  # one sentence shown while writing
    assert shown.index(partial[0]) < len(shown) - 1
    assert not any("3.5亿" in text or "2022" in text for text in shown), "an unverified sentence was shown"

    final = writer.ask(GUANGXI, generate=False)  # the same retrieval; the model wrote the rest
    assert not final.abstained
    expect(answer).to_contain_text("已删去 1 句无法在原文中核实的内容")
    assert first in _compact(answer.inner_text()) and second in _compact(answer.inner_text())
    expect(answer.locator('a[href="#cite-0-1"]').first).to_have_text("[1]")
    links = answer.locator('a[href^="#cite-0-"]')
    citations = page.locator("#sources details.src")
    expect(citations).to_have_count(links.evaluate_all("(a) => new Set(a.map((l) => l.hash)).size"))
    answer.locator('a[href="#cite-0-1"]').first.click()  # a marker opens its verbatim quote in context
    opened = page.locator("#sources details#cite-0-1[open]")
    expect(opened).to_be_visible()
    quote = _compact(opened.locator("mark").inner_text())
    assert first in quote or second in quote
    assert quote in _compact(writer.document(writer.search(GUANGXI, k=1)[0].source).text)
    page.get_by_text("导出这条回答（Markdown）").click()
    expect(page.locator("#export-md textarea")).to_have_value(re.compile(GENERATED))
    assert "3.5亿" not in page.locator("#export-md textarea").input_value()
    _screenshot(page, "chat-written.png")
    _no_traceback(page)


@pytest.mark.browser
def test_with_the_model_server_down_the_extractive_answer_shows_with_a_note(
    pages: Pages, down_server: tuple[str, Any]
) -> None:
    from playwright.sync_api import expect

    url, writer = down_server
    expected = writer.ask(GUANGXI, generate=False)
    page = pages.open(url)
    answer = _ask(page, GUANGXI)
    expect(answer).to_contain_text("语言模型服务暂时无法使用，以下是从原文摘录的回答。")
    expect(answer).not_to_contain_text(WRITING)
    expect(answer).not_to_contain_text(GENERATED)
    assert _compact(expected.answer)[:30] in _compact(answer.inner_text())  # in the question's script
    expect(answer.locator('a[href^="#cite-0-"]')).to_have_count(len(expected.citations))
    expect(page.locator("#sources details.src")).to_have_count(len(expected.citations))
    _screenshot(page, "chat-model-down.png")
    _no_traceback(page)


def test_the_api_returns_the_verified_written_answer(written_server: tuple[str, Any], model: ScriptedLLM) -> None:
    from gradio_client import Client

    url, writer = written_server
    model.replies = [citing(WRITTEN)]
    result = Client(url, verbose=False).predict(GUANGXI, api_name="/ask")
    assert result["mode"] == "generated" and not result["abstained"]
    assert result["generation"]["kept"] == 2 and result["generation"]["dropped"] == 1
    assert "3.5亿" not in result["answer"] and "一把手227人" in result["answer"]
    assert model.requests[-1]["body"]["stream"] is False  # the whole reply, then checked
    for c in result["citations"]:
        assert writer.document(c["source"]).text[c["start"] : c["end"]] == c["quote"]
    assert GENERATED in result["markdown"] and "已删去 1 句" in result["markdown"]


# --- browser: the knowledge base ---------------------------------------------------------------------


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
        expect(page.locator("#kb-status")).to_contain_text("已添加", timeout=INDEXING_MS)
        expect(page.locator("#docs")).to_contain_text(source)
        expect(page.locator("#docs")).to_contain_text("青山县纪委工作简报")
        _screenshot(page, "kb-uploaded.png")

        _open_tab(page, "检索")  # searchable at once
        page.locator("#search-query textarea").fill("青山县纪委开展了什么专项检查")
        page.locator("#search-query textarea").press("Enter")
        first_hit = page.locator("#search-results .hit").first
        expect(first_hit).to_contain_text("清风行动")
        expect(first_hit).to_contain_text("青山县纪委工作简报")
        expect(first_hit.locator(".rank")).to_have_text("1")
        assert not re.search(r"\b0\.\d{3,}|得分 ", page.locator("#search-results").inner_text())  # ranks, no scores
        _screenshot(page, "search-uploaded.png")

        _open_tab(page, "问答")
        answer = _ask(page, "青山县纪委开展了什么专项检查")
        expect(answer).to_contain_text("清风行动")
        expect(page.locator("#sources")).to_contain_text("青山县纪委工作简报")

        _open_tab(page, "知识库")  # remove it again (the page asks for confirmation; the fixture accepts)
        page.locator("#remove-choice input").click()
        page.get_by_role("option", name=re.compile(re.escape(source))).click()
        page.locator("#remove").click()
        expect(page.locator("#kb-status")).to_contain_text("已删除", timeout=INDEXING_MS)
        expect(page.locator("#docs")).not_to_contain_text(source)
        _screenshot(page, "kb-removed.png")
        assert {d.source for d in engine.documents()} == original
        assert not (Path(engine.settings.corpus_dir) / source).exists()
        _no_traceback(page)
    finally:
        _remove_quietly(engine, source)


@pytest.mark.browser
def test_a_question_is_answered_while_a_long_upload_is_indexing_and_the_progress_bar_moves(
    pages: Pages, server: str, engine, long_document
) -> None:
    """A 60-chunk upload indexes in the background: the bar moves, questions are answered meanwhile
    (their latency is measured by benchmarks/bench.py --service, not asserted here)."""
    from playwright.sync_api import expect

    question = "纪委监督责任包括什么"
    expected = engine.ask(question)
    upload = long_document("青山县专项检查汇编.txt", paragraphs=60)
    kb, chat = pages.open(server), pages.open(server)
    try:
        _open_tab(kb, "知识库")
        kb.locator("#upload input[type=file]").set_input_files(str(upload))
        bar = kb.locator("#kb-progress .kb-progress[data-stage=embed]")
        expect(bar).to_be_visible(timeout=INDEXING_MS)
        expect(kb.locator("#kb-progress")).to_contain_text("已索引段落")
        expect(kb.locator("#docs")).to_contain_text(min(d.source for d in engine.documents()))  # still listed

        answer = _ask(chat, question)  # asked while the upload is being embedded
        assert engine.worker.status().busy, "the question should have been answered before indexing ended"
        assert _compact(expected.answer)[:30] in _compact(answer.inner_text())  # in the question's script
        expect(chat.locator("#chat-banner")).to_contain_text("可以照常提问")

        seen: list[tuple[int, int]] = []
        deadline = time.monotonic() + INDEXING_MS / 1000
        while time.monotonic() < deadline and "已添加" not in kb.locator("#kb-status").inner_text():
            now = kb.evaluate(
                "() => { const b = document.querySelector('#kb-progress .kb-progress[data-stage=embed]');"
                " return b ? [Number(b.dataset.done), Number(b.dataset.total)] : null; }"
            )
            if now:
                done, total = now
                if not seen or seen[-1] != (done, total):
                    seen.append((done, total))
                    if len(seen) == 2:
                        _screenshot(kb, "kb-progress.png")
            time.sleep(0.2)
        expect(kb.locator("#kb-status")).to_contain_text("已添加《青山县专项检查汇编》", timeout=5_000)
        assert len({done for done, _ in seen}) >= 2, f"the bar should move: {seen}"
        assert [done for done, _ in seen] == sorted(done for done, _ in seen)
        assert all(total >= 55 for _, total in seen)
        expect(kb.locator("#kb-progress")).to_be_hidden()
        expect(kb.locator("#docs")).to_contain_text("青山县专项检查汇编.txt")
    finally:
        _remove_quietly(engine, "青山县专项检查汇编.txt")


@pytest.mark.browser
def test_bad_uploads_show_a_message_and_no_traceback(page: Any, engine, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    before = sorted(p.name for p in Path(engine.settings.corpus_dir).iterdir() if p.is_file())
    binary = tmp_path / "binary.txt"
    binary.write_bytes(b"\x00\x01\x02 not text \x00\xff" * 200)
    program = tmp_path / "setup.exe"
    program.write_bytes(b"MZ\x90\x00\x03" * 200)
    big = tmp_path / "big.txt"
    with big.open("wb") as f:
        f.truncate(engine.settings.max_upload_bytes + 1)
    _open_tab(page, "知识库")
    page.locator("#upload input[type=file]").set_input_files([str(binary), str(program), str(big)])
    status = page.locator("#kb-status")
    expect(status).to_contain_text("未能添加 setup.exe：不支持这种文件类型")
    expect(status).to_contain_text("未能添加 big.txt：文件过大")
    expect(status).to_contain_text("未能添加 binary.txt：无法读取", timeout=INDEXING_MS)
    expect(status).not_to_contain_text("已添加")
    assert not ENGLISH_UI.search(page.locator("body").inner_text())
    assert not re.search(r"\((?:cannot|binary|not |unsupported)", status.inner_text())
    _screenshot(page, "kb-bad-upload.png")
    _no_traceback(page)
    assert sorted(p.name for p in Path(engine.settings.corpus_dir).iterdir() if p.is_file()) == before
    assert len(engine.documents()) == len(before)


@pytest.mark.browser
def test_document_text_is_shown_as_text(page: Any, engine, tmp_path: Path) -> None:
    """Markdown, math and bare links inside a document are not rendered in answers."""
    from playwright.sync_api import expect

    upload = tmp_path / "格式测试.txt"
    upload.write_text(
        "白水县廉政公式说明\n\n白水县纪委的廉政公式写作$$x^2$$，详见 https://example.com/a_b 和 **加粗** 文字。\n",
        encoding="utf-8",
    )
    try:
        _open_tab(page, "知识库")
        page.locator("#upload input[type=file]").set_input_files(str(upload))
        expect(page.locator("#kb-status")).to_contain_text("已添加", timeout=INDEXING_MS)
        _open_tab(page, "问答")
        answer = _ask(page, "白水县纪委的廉政公式怎么写")
        expect(answer).to_contain_text("$$x^2$$")
        expect(answer).to_contain_text("https://example.com/a_b")
        expect(answer).to_contain_text("**加粗**")
        expect(answer.locator("a[href^='http']")).to_have_count(0)
        expect(answer.locator(".katex, math, strong")).to_have_count(0)
    finally:
        _remove_quietly(engine, "格式测试.txt")


# --- browser: login and read-only ---------------------------------------------------------------------


@pytest.mark.browser
def test_login_page_when_auth_is_set_and_read_only_hides_upload(pages: Pages, locked_server: str) -> None:
    from playwright.sync_api import expect

    page = pages.open(locked_server, wait_for=None)
    expect(page.get_by_role("button", name="登录")).to_be_visible()  # Chinese, for an English browser
    body = page.locator("body").inner_text()
    assert "用户名" in body and "密码" in body and not ENGLISH_UI.search(body)
    _screenshot(page, "login.png")
    inputs = page.locator("input")
    inputs.nth(0).fill("张三")
    inputs.nth(1).fill("wrong")
    page.get_by_role("button", name="登录").click()
    expect(page.locator("body")).to_contain_text("凭据不正确")
    expect(page.get_by_role("button", name="登录")).to_be_visible()  # the form again, emptied
    inputs.nth(0).fill("张三")
    inputs.nth(1).fill("pw1")
    page.get_by_role("button", name="登录").click()
    page.wait_for_selector("#chat")
    answer = _ask(page, "纪委监督责任包括什么")
    expect(answer.locator('a[href="#cite-0-1"]')).to_have_count(1)
    _open_tab(page, "知识库")
    expect(page.locator("#docs")).to_contain_text("000_")
    expect(page.locator("#upload")).to_have_count(0)  # read-only for ordinary users
    expect(page.locator("#remove")).to_have_count(0)

    admin = pages.open(locked_server, wait_for=None)
    admin.locator("input").nth(0).fill("admin")
    admin.locator("input").nth(1).fill("pw2")
    admin.get_by_role("button", name="登录").click()
    admin.wait_for_selector("#chat")
    _open_tab(admin, "知识库")
    expect(admin.locator("#upload")).to_be_visible()
    expect(admin.locator("#remove")).to_be_visible()


def test_the_api_needs_a_login_when_auth_is_set(locked_server: str, engine) -> None:
    from gradio_client import Client

    with pytest.raises(Exception):  # noqa: B017 - gradio_client raises several kinds for a refused login
        Client(locked_server, verbose=False).predict("纪委监督责任包括什么", api_name="/ask")
    client = Client(locked_server, auth=("张三", "pw1"), verbose=False)
    answer = client.predict("纪委监督责任包括什么", api_name="/ask")
    assert answer["citations"] == engine.ask("纪委监督责任包括什么").to_dict()["citations"]


# --- HTTP API ----------------------------------------------------------------------------------------


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
        at_once = list(pool.map(ask, QUESTIONS, timeout=300))
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
    assert follow_up["question"] == "还有呢" and follow_up["citations"]
    with pytest.raises(AppError, match="问题不能为空"):
        client.predict("   ", api_name="/ask")


def test_a_lone_surrogate_in_a_question_does_not_drop_the_connection(server: str) -> None:
    """JSON may carry an unpaired surrogate (`\\ud800`); the answer comes back, with U+FFFD in its place."""
    import json
    import urllib.request

    body = json.dumps({"data": ["纪委监督责任\ud800包括什么", [], 5]}).encode()  # ASCII JSON with the escape
    request = urllib.request.Request(f"{server}gradio_api/call/ask", body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        event = json.loads(response.read())["event_id"]
    with urllib.request.urlopen(f"{server}gradio_api/call/ask/{event}", timeout=300) as response:
        stream = response.read().decode("utf-8")
    assert "event: complete" in stream, stream
    data = json.loads(stream.split("event: complete", 1)[1].split("data:", 1)[1].strip().splitlines()[0])
    assert data[0]["question"] == "纪委监督责任\ufffd包括什么" and data[0]["citations"]


def test_main_help_does_not_start_a_server(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        app.main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--host", "--port", "--index", "--corpus", "--auth", "--read-only", "--llm-url", "--llm-model"):
        assert flag in out
