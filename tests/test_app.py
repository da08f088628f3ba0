"""The chat page in headless Chromium: the 问答 tab (answers, sources, links, export, follow-ups,
written answers as they stream), at desktop and phone width; and `python app.py`'s command line.

The knowledge base tab is driven in test_app_library.py, the HTTP API in test_app_api.py; the served
pages and the browser come from served_app.py.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from llm_server import ScriptedLLM, citing
from page_driver import (
    ENGLISH_UI,
    GUANGXI,
    WRITTEN,
    Pages,
    app,
    ask,
    compact,
    no_traceback,
    screenshot,
)

from rag.answer.types import ABSTAIN_TEXT
from ui.render import GENERATED, WRITING
from ui.tabs import EXAMPLES

pytest_plugins = ["served_app"]


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
        assert compact(citation.quote).startswith(compact(preview).rstrip("…")[:30])
    assert compact(expected.answer)[:30] in compact(answer.inner_text())  # in the question's script

    documents = {c.source for c in expected.citations}  # one row per document, quotes shown without a click
    expect(page.locator("#sources .doc")).to_have_count(len(documents))
    items = page.locator("#sources details.src")
    expect(items).to_have_count(len(expected.citations))
    first = expected.citations[0]
    expect(page.locator("#sources .doc").first).to_contain_text(first.title)
    assert compact(first.quote)[:30] in compact(items.first.locator("summary").inner_text())
    sources_text = page.locator("#sources").inner_text()
    assert not any(source in sources_text for source in documents)  # titles, not file names
    assert not re.search(r"0\.\d{3}|相关度|得分", sources_text)  # no raw scores

    second = expected.citations[1]  # a [n] link opens its passage: in context, quote marked
    answer.locator('a[href="#cite-0-2"]').click()
    opened = page.locator("#sources details#cite-0-2[open]")
    expect(opened).to_be_visible()
    assert compact(opened.locator("mark").inner_text()) == compact(second.quote)
    assert len(compact(opened.locator(".context").inner_text())) > len(compact(second.quote))
    screenshot(page, "chat-answer.png")

    page.get_by_text("导出这条回答（Markdown）").click()  # export: copyable text and a download
    markdown = page.locator("#export-md textarea")
    expect(markdown).to_have_value(re.compile("## 来源"))
    with page.expect_download() as download:
        page.locator("#download").click()
    assert download.value.suggested_filename.endswith(".md")
    exported = Path(download.value.path()).read_text(encoding="utf-8")
    assert exported == markdown.input_value()
    assert f"# 问：{question}" in exported and "[1] 《" in exported

    follow_up = ask(page, "还有呢")  # per-session history: the follow-up continues this conversation
    expect(follow_up).to_contain_text(f"按“{question}”检索")
    again = engine.ask("还有呢", history=[expected])
    assert not again.abstained and again.citations
    assert {c.quote for c in again.citations}.isdisjoint({c.quote for c in expected.citations})
    assert compact(again.citations[0].quote)[:30] in compact(follow_up.inner_text())
    expect(follow_up.locator('a[href="#cite-1-1"]')).to_have_count(1)

    answer.locator('a[href="#cite-0-1"]').click()  # a link of the earlier answer opens that answer's passage
    opened = page.locator("#sources details#cite-0-1[open]")
    expect(opened).to_be_visible()
    assert compact(opened.locator("mark").inner_text()) == compact(first.quote)
    screenshot(page, "chat-follow-up.png", full_page=True)
    assert not ENGLISH_UI.search(page.locator("body").inner_text())
    no_traceback(page)


@pytest.mark.browser
def test_the_clear_icon_clears_everything(page: Any, engine) -> None:
    """The chat box's own trash icon does what 清空对话 does: messages, history, sources, export."""
    from playwright.sync_api import expect

    ask(page, "纪委监督责任包括什么")
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

    follow_up = ask(page, "还有呢")  # a fresh conversation: nothing to continue from
    expect(follow_up).not_to_contain_text("按“纪委监督责任包括什么”检索")
    alone = engine.ask("还有呢")  # what the question means without a conversation
    assert compact(alone.answer.split("[")[0])[:20] in compact(follow_up.inner_text())
    page.locator("#clear").click()  # and the button does the same
    expect(page.locator("#chat [data-testid=bot]")).to_have_count(0)
    expect(page.locator("#sources details.src")).to_have_count(0)


@pytest.mark.browser
def test_out_of_corpus_question_is_an_abstention(page: Any) -> None:
    from playwright.sync_api import expect

    answer = ask(page, "明天北京的天气怎么样?")
    expect(answer).to_contain_text(ABSTAIN_TEXT)
    expect(answer).to_contain_text("可能相关")
    expect(answer).not_to_contain_text("[1]")
    expect(page.locator("#sources")).to_contain_text("可能相关（不是答案，仅供参考）")
    expect(page.locator("#sources details.src")).not_to_have_count(0)
    expect(page.locator("#sources .rank").first).to_have_text("第 1 位")
    screenshot(page, "chat-abstention.png")


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
        ask(page, question)
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
    screenshot(page, "phone.png", full_page=True)


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

    shown = [compact(text) for text in page.evaluate("() => window.shown")]
    first, second = "党委统筹指挥、纪委监委组织协调", "一把手227人"
    partial = [text for text in shown if first in text and second not in text]
    assert partial and all(WRITING in text for text in partial), shown  # one sentence shown while writing
    assert shown.index(partial[0]) < len(shown) - 1
    assert not any("3.5亿" in text or "2022" in text for text in shown), "an unverified sentence was shown"

    final = writer.ask(GUANGXI, generate=False)  # the same retrieval; the model wrote the rest
    assert not final.abstained
    expect(answer).to_contain_text("已删去 1 句无法在原文中核实的内容")
    assert first in compact(answer.inner_text()) and second in compact(answer.inner_text())
    expect(answer.locator('a[href="#cite-0-1"]').first).to_have_text("[1]")
    links = answer.locator('a[href^="#cite-0-"]')
    citations = page.locator("#sources details.src")
    expect(citations).to_have_count(links.evaluate_all("(a) => new Set(a.map((l) => l.hash)).size"))
    answer.locator('a[href="#cite-0-1"]').first.click()  # a marker opens its verbatim quote in context
    opened = page.locator("#sources details#cite-0-1[open]")
    expect(opened).to_be_visible()
    quote = compact(opened.locator("mark").inner_text())
    assert first in quote or second in quote
    assert quote in compact(writer.document(writer.search(GUANGXI, k=1)[0].source).text)
    page.get_by_text("导出这条回答（Markdown）").click()
    expect(page.locator("#export-md textarea")).to_have_value(re.compile(GENERATED))
    assert "3.5亿" not in page.locator("#export-md textarea").input_value()
    screenshot(page, "chat-written.png")
    no_traceback(page)


@pytest.mark.browser
def test_with_the_model_server_down_the_extractive_answer_shows_with_a_note(
    pages: Pages, down_server: tuple[str, Any]
) -> None:
    from playwright.sync_api import expect

    url, writer = down_server
    expected = writer.ask(GUANGXI, generate=False)
    page = pages.open(url)
    answer = ask(page, GUANGXI)
    expect(answer).to_contain_text("语言模型服务暂时无法使用，以下是从原文摘录的回答。")
    expect(answer).not_to_contain_text(WRITING)
    expect(answer).not_to_contain_text(GENERATED)
    assert compact(expected.answer)[:30] in compact(answer.inner_text())  # in the question's script
    expect(answer.locator('a[href^="#cite-0-"]')).to_have_count(len(expected.citations))
    expect(page.locator("#sources details.src")).to_have_count(len(expected.citations))
    screenshot(page, "chat-model-down.png")
    no_traceback(page)


# --- the command line ----------------------------------------------------------------------------------


def test_main_help_does_not_start_a_server(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        app.main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--host", "--port", "--index", "--corpus", "--auth", "--read-only", "--llm-url", "--llm-model"):
        assert flag in out
    assert "--trusted-proxy" in out


def test_trusted_proxies_come_from_the_command_line_or_the_environment(monkeypatch, caplog) -> None:
    """`--trusted-proxy` (or `RAG_TRUSTED_PROXIES`): the addresses whose `X-Forwarded-For` the page believes;
    none by default; an entry that is not an address or network stops the page with a clear message."""
    monkeypatch.delenv("RAG_TRUSTED_PROXIES", raising=False)
    settings, _ = app.configure(app.parse_args([]))
    assert settings.trusted_proxies == ""
    settings, _ = app.configure(app.parse_args(["--trusted-proxy", "127.0.0.1, 10.0.0.0/8"]))
    assert settings.trusted_proxies == "127.0.0.1,10.0.0.0/8"
    monkeypatch.setenv("RAG_TRUSTED_PROXIES", "::1")
    settings, _ = app.configure(app.parse_args([]))
    assert settings.trusted_proxies == "::1"
    assert app.configure(app.parse_args(["--trusted-proxy", "nginx.local"])) is None
    assert "--trusted-proxy" in caplog.text and "nginx.local" in caplog.text
