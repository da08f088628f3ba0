"""Driving the served chat page in the app tests: what they share (the page's module `app`, timeouts,
the scripted model's answer) and helpers for a headless Chromium page (`Pages`, `ask`, `screenshot`).

The fixtures that serve the page and start the browser are in served_app.py.
"""

from __future__ import annotations

import importlib
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # app.py and ui/ sit at the top of the project, outside the installed package
    sys.path.insert(0, str(ROOT))
app = importlib.import_module("app")

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
USERS = "张三:pw1,admin:pw2:admin"
GUANGXI = "广西在粮食购销领域查处了多少一把手?"
WRITTEN = (  # a scripted model's answer: two supported sentences, then an invented one
    "广西建立了党委统筹指挥、纪委监委组织协调、职能部门高效协同的查处机制。[@227人]\n"
    "广西共立案查处粮食购销领域有关单位一把手227人。[@227人]\n"
    "广西还在2022年追回粮食购销领域违规资金3.5亿元。[@227人]"
)
ENGLISH_UI = re.compile(
    r"\b(?:Submit|Clear|Loading|Error|Warning|Login|Username|Password|Drop File Here|Click to Upload)\b"
)


def compact(text: str) -> str:
    """`text` without white space (the page wraps and spaces text as it likes)."""
    return re.sub(r"\s+", "", text)


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


def ask(page: Any, question: str) -> Any:
    """Type a question, send it, and return the new answer's chat message once it is there."""
    from playwright.sync_api import expect

    answers = page.locator("#chat [data-testid=bot]")
    before = answers.count()
    page.locator("#question textarea").fill(question)
    page.locator("#question textarea").press("Enter")
    expect(answers).to_have_count(before + 1)
    expect(answers.last).not_to_contain_text("正在启动")
    return answers.last


def screenshot(page: Any, name: str, full_page: bool = False) -> None:
    """Save a screenshot to tests/artifacts once no event is pending (no loading overlays)."""
    page.wait_for_function(
        "() => [...document.querySelectorAll('[data-testid=status-tracker]')].every(e => e.classList.contains('hide'))"
    )
    page.wait_for_timeout(400)  # let fade-out transitions finish
    page.screenshot(path=str(ARTIFACTS / name), full_page=full_page)


def no_traceback(page: Any) -> None:
    """No Python traceback reached the page."""
    text = page.locator("body").inner_text()
    assert "Traceback" not in text and 'File "' not in text, text


def open_tab(page: Any, name: str) -> None:
    """Switch to the tab labelled `name`."""
    page.get_by_role("tab", name=name).click()


def remove_quietly(engine: Any, source: str) -> None:
    """Clean up after a test that added `source`, whether or not it removed it itself."""
    if engine.worker.wait(INDEXING_MS / 1000) and source in {d.source for d in engine.documents()}:
        engine.remove_document(source)
