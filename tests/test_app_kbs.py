"""Knowledge bases on the chat page in headless Chromium: the menu above the tabs chooses where 问答 and 检索
ask (one, the other, or both), the 检索 tab filters by document and date, and the 知识库 tab creates and
deletes knowledge bases. The page is served on `two_kbs` (two knowledge bases from different documents)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import KB_DOCUMENTS
from page_driver import ask, no_traceback, open_tab, screenshot

pytest_plugins = ["served_app"]

OWN = {"default": "驻全总机关纪检监察组如何强化两个责任贯通协同", "主体责任": "上海市如何落实管党治党政治责任"}


@pytest.fixture(scope="module")
def kbs_server(two_kbs) -> Iterator[str]:
    from served_app import serve

    yield from serve(two_kbs)


def choose(page: Any, *labels: str) -> None:
    """Set the knowledge-base menu to `labels` (默认 for `default`)."""
    from playwright.sync_api import expect

    menu = page.locator("#kb-select")
    clear = menu.locator(".token-remove.remove-all")
    if clear.count():
        clear.click()
    for label in labels:
        menu.locator("input").click()
        page.get_by_role("option", name=label, exact=True).click()
    page.locator("body").click(position={"x": 5, "y": 5})  # close the menu
    for label in labels:
        expect(menu).to_contain_text(label)


def titles(two_kbs, kb: str) -> set[str]:
    return {two_kbs.document(source, kb=kb).title for source in KB_DOCUMENTS[kb]}


@pytest.mark.browser
def test_the_menu_chooses_the_knowledge_base_a_question_is_asked_in(pages, kbs_server: str, two_kbs) -> None:
    from playwright.sync_api import expect

    page = pages.open(kbs_server)
    expect(page.locator("#kb-select")).to_contain_text("默认")
    ask(page, OWN["default"])
    sources = page.locator("#sources")
    expect(sources).to_contain_text("回答引用了")
    shown = sources.inner_text()
    assert any(title in shown for title in titles(two_kbs, "default"))
    assert not any(title in shown for title in titles(two_kbs, "主体责任"))

    choose(page, "主体责任")  # switch: the same page now asks the other knowledge base
    answer = ask(page, OWN["主体责任"])
    expect(answer).not_to_contain_text("知识库中没有找到")
    expect(sources).to_contain_text(two_kbs.document(KB_DOCUMENTS["主体责任"][1], kb="主体责任").title)
    shown = sources.inner_text()
    assert not any(title in shown for title in titles(two_kbs, "default"))
    screenshot(page, "kb-switched.png")

    choose(page, "默认", "主体责任")  # both: one answer citing both
    expected = two_kbs.ask("纪检监察机关和党委如何落实两个责任", kbs=["default", "主体责任"])
    assert {c.kb for c in expected.citations} == {"default", "主体责任"}
    ask(page, "纪检监察机关和党委如何落实两个责任")
    expect(sources.locator(".doc")).to_have_count(len({(c.kb, c.source) for c in expected.citations}))
    shown = sources.inner_text()
    assert any(title in shown for title in titles(two_kbs, "default"))
    assert any(title in shown for title in titles(two_kbs, "主体责任"))
    no_traceback(page)


@pytest.mark.browser
def test_search_in_the_chosen_knowledge_base_with_filters(pages, kbs_server: str, two_kbs) -> None:
    from playwright.sync_api import expect

    page = pages.open(kbs_server)
    open_tab(page, "检索")
    choose(page, "默认", "主体责任")
    page.locator("#search-source textarea").fill("003_f1c9c6d7a3f56b9a")
    page.locator("#search-query textarea").fill("全面从严治党")
    page.locator("#search-query textarea").press("Enter")
    results = page.locator("#search-results")
    title = two_kbs.document("003_f1c9c6d7a3f56b9a.txt", kb="主体责任").title
    expect(results.locator(".hit").first).to_contain_text(title)
    assert all(title in heading for heading in results.locator(".hit > b").all_inner_texts())  # only that document
    page.locator("#search-source textarea").fill("")
    page.locator("#search-date-from textarea").fill("2022/01/01")
    page.locator("#search-query textarea").press("Enter")
    expect(results).to_contain_text("YYYY-MM-DD")
    page.locator("#search-date-from textarea").fill("2023-01-01")
    page.locator("#search-query textarea").press("Enter")
    expect(results.locator(".hit").first).to_contain_text(two_kbs.document("004_9af9869cdca38ca3.txt").title)
    no_traceback(page)


@pytest.mark.browser
def test_a_knowledge_base_is_created_and_deleted_on_the_page(pages, kbs_server: str, two_kbs) -> None:
    from playwright.sync_api import expect

    page = pages.open(kbs_server)
    open_tab(page, "知识库")
    page.locator("#kb-new-name textarea").fill("临时库")
    page.locator("#kb-create").click()
    expect(page.locator("#kb-status")).to_contain_text("已新建知识库 临时库")
    expect(page.locator("#kb-manage input")).to_have_value("临时库")
    assert "临时库" in [info.name for info in two_kbs.knowledge_bases()]
    page.locator("#kb-select input").click()
    expect(page.get_by_role("option", name="临时库", exact=True)).to_be_visible()  # the question menu knows it
    page.locator("body").click(position={"x": 5, "y": 5})
    expect(page.locator("#docs")).not_to_contain_text(".txt")  # a new knowledge base is empty
    page.locator("#kb-delete").click()  # the page asks first; the fixture accepts
    expect(page.locator("#kb-status")).to_contain_text("已删除知识库 临时库")
    assert "临时库" not in [info.name for info in two_kbs.knowledge_bases()]
    expect(page.locator("#docs")).to_contain_text(re.compile(KB_DOCUMENTS["default"][0]))
    no_traceback(page)
