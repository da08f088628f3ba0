"""The chat page's 知识库 tab in headless Chromium: upload, search, answer and remove a document, the
progress bar of a long upload while questions are answered, bad uploads; and the login page with
read-only users (served pages and the browser from served_app.py).
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest
from page_driver import (
    ENGLISH_UI,
    INDEXING_MS,
    Pages,
    ask,
    compact,
    no_traceback,
    open_tab,
    remove_quietly,
    screenshot,
)

pytest_plugins = ["served_app"]

FACT = "青山县纪委在2024年开展了“清风行动”专项检查，共检查单位37家。"


# --- browser: the knowledge base ---------------------------------------------------------------------


@pytest.mark.browser
def test_upload_find_and_remove_a_document(page: Any, engine, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    original = {d.source for d in engine.documents()}
    upload = tmp_path / "青山县 清风行动.txt"
    upload.write_text(f"青山县纪委工作简报\n\n{FACT}\n", encoding="utf-8")
    source = "青山县_清风行动.txt"  # the sanitized name
    try:
        open_tab(page, "知识库")
        expect(page.locator("#docs")).to_contain_text(min(original))
        page.locator("#upload input[type=file]").set_input_files(str(upload))
        expect(page.locator("#kb-status")).to_contain_text("已添加", timeout=INDEXING_MS)
        expect(page.locator("#docs")).to_contain_text(source)
        expect(page.locator("#docs")).to_contain_text("青山县纪委工作简报")
        screenshot(page, "kb-uploaded.png")

        open_tab(page, "检索")  # searchable at once
        page.locator("#search-query textarea").fill("青山县纪委开展了什么专项检查")
        page.locator("#search-query textarea").press("Enter")
        first_hit = page.locator("#search-results .hit").first
        expect(first_hit).to_contain_text("清风行动")
        expect(first_hit).to_contain_text("青山县纪委工作简报")
        expect(first_hit.locator(".rank")).to_have_text("1")
        assert not re.search(r"\b0\.\d{3,}|得分 ", page.locator("#search-results").inner_text())  # ranks, no scores
        screenshot(page, "search-uploaded.png")

        open_tab(page, "问答")
        answer = ask(page, "青山县纪委开展了什么专项检查")
        expect(answer).to_contain_text("清风行动")
        expect(page.locator("#sources")).to_contain_text("青山县纪委工作简报")

        open_tab(page, "知识库")  # remove it again (the page asks for confirmation; the fixture accepts)
        page.locator("#remove-choice input").click()
        page.get_by_role("option", name=re.compile(re.escape(source))).click()
        page.locator("#remove").click()
        expect(page.locator("#kb-status")).to_contain_text("已删除", timeout=INDEXING_MS)
        expect(page.locator("#docs")).not_to_contain_text(source)
        screenshot(page, "kb-removed.png")
        assert {d.source for d in engine.documents()} == original
        assert not (Path(engine.settings.corpus_dir) / source).exists()
        no_traceback(page)
    finally:
        remove_quietly(engine, source)


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
        open_tab(kb, "知识库")
        kb.locator("#upload input[type=file]").set_input_files(str(upload))
        bar = kb.locator("#kb-progress .kb-progress[data-stage=embed]")
        expect(bar).to_be_visible(timeout=INDEXING_MS)
        expect(kb.locator("#kb-progress")).to_contain_text("已索引段落")
        expect(kb.locator("#docs")).to_contain_text(min(d.source for d in engine.documents()))  # still listed

        answer = ask(chat, question)  # asked while the upload is being embedded
        assert engine.worker.status().busy, "the question should have been answered before indexing ended"
        assert compact(expected.answer)[:30] in compact(answer.inner_text())  # in the question's script
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
                        screenshot(kb, "kb-progress.png")
            time.sleep(0.2)
        expect(kb.locator("#kb-status")).to_contain_text("已添加《青山县专项检查汇编》", timeout=5_000)
        assert len({done for done, _ in seen}) >= 2, f"the bar should move: {seen}"
        assert [done for done, _ in seen] == sorted(done for done, _ in seen)
        assert all(total >= 55 for _, total in seen)
        expect(kb.locator("#kb-progress")).to_be_hidden()
        expect(kb.locator("#docs")).to_contain_text("青山县专项检查汇编.txt")
    finally:
        remove_quietly(engine, "青山县专项检查汇编.txt")


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
    open_tab(page, "知识库")
    page.locator("#upload input[type=file]").set_input_files([str(binary), str(program)])
    status = page.locator("#kb-status")
    expect(status).to_contain_text("未能添加 setup.exe：不支持这种文件类型")
    expect(status).to_contain_text("未能添加 binary.txt：无法读取", timeout=INDEXING_MS)
    expect(status).not_to_contain_text("已添加")
    page.locator("#upload input[type=file]").set_input_files([str(big)])  # refused before it is sent
    toast = page.locator("[data-testid=toast-body]")
    expect(toast).to_contain_text("文件过大")
    expect(toast).to_contain_text("big.txt")
    expect(toast).to_contain_text("20.0 MB")
    assert not ENGLISH_UI.search(page.locator("body").inner_text())
    assert not re.search(r"\((?:cannot|binary|not |unsupported)", status.inner_text())
    screenshot(page, "kb-bad-upload.png")
    no_traceback(page)
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
        open_tab(page, "知识库")
        page.locator("#upload input[type=file]").set_input_files(str(upload))
        expect(page.locator("#kb-status")).to_contain_text("已添加", timeout=INDEXING_MS)
        open_tab(page, "问答")
        answer = ask(page, "白水县纪委的廉政公式怎么写")
        expect(answer).to_contain_text("$$x^2$$")
        expect(answer).to_contain_text("https://example.com/a_b")
        expect(answer).to_contain_text("**加粗**")
        expect(answer.locator("a[href^='http']")).to_have_count(0)
        expect(answer.locator(".katex, math, strong")).to_have_count(0)
    finally:
        remove_quietly(engine, "格式测试.txt")


# --- browser: login and read-only ---------------------------------------------------------------------


@pytest.mark.browser
def test_login_page_when_auth_is_set_and_read_only_hides_upload(pages: Pages, locked_server: str) -> None:
    from playwright.sync_api import expect

    page = pages.open(locked_server, wait_for=None)
    expect(page.get_by_role("button", name="登录")).to_be_visible()  # Chinese, for an English browser
    body = page.locator("body").inner_text()
    assert "用户名" in body and "密码" in body and not ENGLISH_UI.search(body)
    screenshot(page, "login.png")
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
    answer = ask(page, "纪委监督责任包括什么")
    expect(answer.locator('a[href="#cite-0-1"]')).to_have_count(1)
    open_tab(page, "知识库")
    expect(page.locator("#docs")).to_contain_text("000_")
    expect(page.locator("#upload")).to_have_count(0)  # read-only for ordinary users
    expect(page.locator("#remove")).to_have_count(0)

    admin = pages.open(locked_server, wait_for=None)
    admin.locator("input").nth(0).fill("admin")
    admin.locator("input").nth(1).fill("pw2")
    admin.get_by_role("button", name="登录").click()
    admin.wait_for_selector("#chat")
    open_tab(admin, "知识库")
    expect(admin.locator("#upload")).to_be_visible()
    expect(admin.locator("#remove")).to_be_visible()


@pytest.mark.browser
def test_the_login_form_says_how_long_to_wait_after_too_many_wrong_passwords(pages: Pages, guarded_server: str) -> None:
    from playwright.sync_api import expect

    from ui.access import LOGIN_FREE_TRIES

    page = pages.open(guarded_server, wait_for=None)
    login = page.get_by_role("button", name="登录")
    expect(page.locator("body")).to_contain_text(f"连续输错 {LOGIN_FREE_TRIES} 次后")
    for n in range(LOGIN_FREE_TRIES):
        page.locator("input").nth(0).fill("张三")
        page.locator("input").nth(1).fill(f"wrong{n}")
        login.click()
        expect(page.locator("body")).to_contain_text("凭据不正确")
        expect(page.locator("input").nth(1)).to_have_value("")
    page.locator("input").nth(0).fill("张三")
    page.locator("input").nth(1).fill("pw1")  # the right password, but too soon
    login.click()
    expect(page.locator("body")).to_contain_text("登录尝试过多")
    expect(page.locator("body")).to_contain_text("秒后再试")
    expect(page.locator("body")).not_to_contain_text("凭据不正确")
    screenshot(page, "login-throttled.png")
    assert not ENGLISH_UI.search(page.locator("body").inner_text())
