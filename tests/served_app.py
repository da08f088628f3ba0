"""The fixtures of the app tests: the chat page (`app.py`, `ui/`) served in-process, and headless Chromium.

Pages are served on free localhost ports, on the session's `engine` (a private copy of the corpus):
one open page, one behind a login in read-only mode, and pages whose answers a scripted language
model writes (or whose model server is down); each test module that uses one gets its own. The
browser says it prefers English: the page must be Chinese anyway. Browser tests skip when Chromium is
missing, except under CI (`CI` set), where they fail. Screenshots go to tests/artifacts/.

A test module uses them with `pytest_plugins = ["served_app"]`; helpers to drive a page are in
page_driver.py.
"""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from llm_server import ScriptedLLM, unused_url
from page_driver import ARTIFACTS, CHROMIUM_ARGS, USERS, Pages, app

from ui.access import Access

SLOW_SECONDS = 12.0
"""How long the slow model server takes before each reply."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve(engine: Any, access: Access | None = None, settings: Any = None) -> Iterator[str]:
    """The page on `engine`, served with `settings` (default: the engine's) until the generator is closed."""
    demo = app.build_app(engine, engine.settings, access)
    port = free_port()
    settings = settings or engine.settings
    app.launch(demo, settings, "127.0.0.1", port, access=access, prevent_thread_lock=True, quiet=True)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        demo.close()


@pytest.fixture(scope="module")
def server(engine) -> Iterator[str]:
    """The page on the session engine, open to all; its URL."""
    yield from serve(engine)


@pytest.fixture(scope="module")
def locked_server(engine) -> Iterator[str]:
    """The page behind a login, read-only for 张三, editable by admin."""
    yield from serve(engine, Access.from_spec(USERS, read_only=True))


@pytest.fixture(scope="module")
def guarded_server(engine) -> Iterator[str]:
    """The page behind a login of its own (its login throttle shared with no other test module)."""
    yield from serve(engine, Access.from_spec(USERS))


@pytest.fixture(scope="module")
def proxied_server(engine) -> Iterator[str]:
    """The open page, told that 127.0.0.1 is a reverse proxy whose `X-Forwarded-For` it may believe."""
    yield from serve(engine, settings=engine.settings.replace(trusted_proxies="127.0.0.1"))


def writing_engine(engine: Any, url: str) -> Any:
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
    writer = writing_engine(engine, model.url)
    for url in serve(writer):
        yield url, writer
    writer.worker.close()


@pytest.fixture(scope="module")
def slow_model() -> Iterator[ScriptedLLM]:
    """A model server that takes `SLOW_SECONDS` before each reply."""
    with ScriptedLLM() as llm:
        llm.delay = SLOW_SECONDS
        yield llm


@pytest.fixture(scope="module")
def slow_server(engine, slow_model: ScriptedLLM) -> Iterator[tuple[str, Any]]:
    """The page on an engine whose answers the slow model writes: its URL and engine."""
    writer = writing_engine(engine, slow_model.url)
    for url in serve(writer):
        yield url, writer
    writer.worker.close()


@pytest.fixture(scope="module")
def down_server(engine) -> Iterator[tuple[str, Any]]:
    """The page on an engine configured with a model server that is down: its URL and engine."""
    writer = writing_engine(engine, unused_url())
    for url in serve(writer):
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


