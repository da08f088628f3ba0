"""The chat page: its header, the three tabs (`ui.tabs`), the timer and the HTTP API put together
(`build_app`), and how it is served (`launch`: Chinese whatever the browser's language, the theme, the
`[n]` link script).

Tabs: 问答 (multi-turn chat, sources grouped by document, Markdown export), 检索 (top passages by
rank, filtered by document and date), 知识库 (knowledge bases created and deleted; documents, progress of
background indexing, upload and removal); above them the knowledge bases 问答 and 检索 ask in. HTTP API
(gradio_client): `/ask`, `/search`, `/documents`. Beside the page, on the same server: the REST API
(`/api/v1/`, `ui.rest`) and the OpenAI-compatible endpoint (`/v1/`, `ui.openai_compat`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import gradio as gr
from starlette.middleware import Middleware

from ui.access import LOGIN_FREE_TRIES, Access, Guard, Throttle
from ui.api import Api
from ui.chat import Chat
from ui.library import Library, kb_choices
from ui.search import Search
from ui.startup import EngineLoader
from ui.tabs import QUICK, chat_tab, kb_menu, library_tab, pool, search_tab

if TYPE_CHECKING:
    from rag import Engine
    from rag.config import Settings

INTRO = "基于知识库中政策文件的问答：回答只摘录原文，每句后的 [n] 是链接，点击即可在“来源”中查看引用的原文。"
INTRO_WRITTEN = (
    "基于知识库中政策文件的问答：回答由语言模型依据原文撰写，每句都与原文核对，核对不上的句子不显示；"
    "每句后的 [n] 是链接，点击即可在“来源”中查看引用的原文。"
)
"""The line under the title: extractive answers, or written ones (a language model is configured)."""
AUTH_MESSAGE = f"请输入管理员分配的用户名和密码。连续输错 {LOGIN_FREE_TRIES} 次后，需等待片刻才能再试。"
"""The login page's note."""
TICK_SECONDS = 1.0
"""How often each open page asks for indexing progress."""
LANGUAGE = """<script>
(() => {
  // Gradio chooses its interface language from the browser's: this page is Chinese whatever the browser says.
  try {
    Object.defineProperty(Navigator.prototype, "language", {get: () => "zh-CN", configurable: true});
    Object.defineProperty(Navigator.prototype, "languages", {get: () => ["zh-CN", "zh"], configurable: true});
  } catch (e) {}
  // A login refused for too many tries (HTTP 429): the form says how long to wait where it says that the
  // password is wrong (Gradio's form shows nothing for that status).
  const send = window.fetch.bind(window);
  let wrong = "";
  window.fetch = async (input, init) => {
    const response = await send(input, init);
    const url = new URL(input instanceof Request ? input.url : String(input), location.href);
    if (!url.pathname.replace(/[/]$/, "").endsWith("/login")) return response;
    const detail = response.status !== 429 ? "" :
      (await response.clone().json().catch(() => ({}))).detail || "登录尝试过多，请稍后再试。";
    setTimeout(() => {
      const note = document.querySelector("p.creds");
      if (!note) return;
      wrong = wrong || note.textContent;
      note.textContent = detail || wrong;
    }, 50);
    return detail ? new Response("{}", {status: 400, headers: {"content-type": "application/json"}}) : response;
  };
  // A few of Gradio's words have no Chinese translation (toast titles, some button labels): replace them.
  const WORDS = {
    "Warning": "提示", "Error": "出错了", "Info": "提示", "Success": "完成", "Close": "关闭",
    "Copy message": "复制这条消息", "Copied message": "已复制", "Copy": "复制", "Copied!": "已复制",
    "Connection errored out.": "与服务器的连接中断了，请刷新页面后重试。",
  };
  const PATTERNS = [  // messages with a variable part
    [/^File[(]s[)] exceed the maximum allowed size of (.+?): (.+)$/,
     (m) => `文件过大（单个文件不能超过 ${m[1].replace("Mb", "MB")}）：${m[2]}；这次选择的文件都没有上传。`],
  ];
  const chinese = (text) => {
    if (WORDS[text.trim()]) return WORDS[text.trim()];
    for (const [pattern, replace] of PATTERNS) {
      const match = text.trim().match(pattern);
      if (match) return replace(match);
    }
    return null;
  };
  const translate = (node) => {
    const elements = node.nodeType === 1 ? [node, ...node.querySelectorAll("[aria-label], [title], .toast-body *")] : [];
    for (const element of elements) {
      for (const name of ["aria-label", "title"]) {
        const value = element.getAttribute && element.getAttribute(name);
        if (value && WORDS[value.trim()]) element.setAttribute(name, WORDS[value.trim()]);
      }
      if (element.closest && element.closest(".toast-body")) {
        for (const child of element.childNodes) {
          if (child.nodeType === 3 && chinese(child.data)) child.data = chinese(child.data);
        }
      }
    }
    if (node.nodeType === 3 && node.parentElement && node.parentElement.closest(".toast-body") && chinese(node.data)) {
      node.data = chinese(node.data);
    }
  };
  new MutationObserver((records) => {
    for (const record of records) {
      if (record.type === "childList") record.addedNodes.forEach(translate);
      else translate(record.target);
    }
  }).observe(document.documentElement, {
    subtree: true, childList: true, characterData: true, attributes: true, attributeFilter: ["aria-label", "title"],
  });
})();
</script>""".encode()
"""Put first in the page's HTML (`ChineseFirst`): it must run before Gradio reads the browser's language."""

HEAD = """<script>
(() => {
  // A [n] link in an answer opens the cited passage in the sources panel (which may first be redrawn
  // for an earlier answer: the chat's select event), and scrolls to it.
  document.addEventListener("click", (event) => {
    const link = event.target.closest ? event.target.closest('a[href^="#cite-"]') : null;
    if (!link) return;
    event.preventDefault();
    const id = link.getAttribute("href").slice(1);
    let tries = 0, last = null;
    const open = () => {
      const item = document.getElementById(id);
      if (item && item !== last) {
        last = item;
        item.open = true;
        item.classList.add("flash");
        item.scrollIntoView({block: "nearest", behavior: "smooth"});
        setTimeout(() => item.classList.remove("flash"), 1600);
      } else if (item) item.open = true;
      if (++tries < 25) setTimeout(open, 80);
    };
    open();
  }, true);
})();
</script>"""


class ChineseFirst:
    """ASGI middleware: the `LANGUAGE` script at the top of every HTML page Gradio serves (the chat page,
    the login page), so Gradio's own words (buttons, toasts, the login form) are Chinese."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("method") != "GET":
            await self.app(scope, receive, send)
            return
        start: dict[str, Any] | None = None
        body: list[bytes] = []

        async def patched(message: dict[str, Any]) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                headers = dict(message.get("headers") or [])
                if b"text/html" in headers.get(b"content-type", b"") and b"content-encoding" not in headers:
                    start = message
                    return
            elif message["type"] == "http.response.body" and start is not None:
                body.append(message.get("body", b""))
                if message.get("more_body"):
                    return
                page = b"".join(body).replace(b"<head>", b"<head>" + LANGUAGE, 1)
                headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
                await send({**start, "headers": [*headers, (b"content-length", str(len(page)).encode())]})
                await send({"type": "http.response.body", "body": page})
                return
            await send(message)

        await self.app(scope, receive, patched)


CSS = """
#chat-banner, #kb-progress { border-radius: 8px; padding: 6px 10px; background: var(--block-background-fill);
  border: 1px solid var(--border-color-accent-subdued, var(--border-color-primary)); }
.src-note { color: var(--body-text-color-subdued); margin: 4px 0 8px; }
.doc { border: 1px solid var(--border-color-primary); border-radius: 8px; margin: 6px 0; padding: 6px 10px; }
.doc-title { font-weight: 600; margin-bottom: 2px; }
.src { margin: 4px 0; border-radius: 6px; }
.src summary { cursor: pointer; line-height: 1.6; list-style-position: outside; }
.src .quote { display: block; }
.src.flash { outline: 2px solid var(--color-accent); }
.cid { font-weight: 700; color: var(--color-accent); margin-right: 4px; }
.rank { font-weight: 700; color: var(--color-accent); margin-right: 4px; }
.meta { color: var(--body-text-color-subdued); font-size: 0.85em; margin-right: 6px; }
.context, .hit-text { white-space: pre-wrap; line-height: 1.7; margin-top: 6px; }
.context mark { background: #ffe08a; color: inherit; padding: 0 2px; border-radius: 2px; }
.hit { border-bottom: 1px solid var(--border-color-primary); padding: 8px 0; }
.kb-progress .bar { height: 10px; border-radius: 5px; background: var(--border-color-primary); overflow: hidden; margin: 6px 0; }
.kb-progress .fill { height: 100%; background: var(--color-accent); transition: width 0.6s; }
.kb-queue { color: var(--body-text-color-subdued); }
#chat a[href^="#cite-"] { text-decoration: none; font-weight: 600; }
/* the chat's clear icon on a row of its own: it never covers a message (the last question, at phone width) */
#chat .top-panel { position: static !important; align-self: flex-end; margin: 2px 4px 0 auto; }
#chat > .wrapper { display: flex; flex-direction: column; }
#chat .bubble-wrap { flex: 1 1 auto; min-height: 0; }
@media (max-width: 640px) { #chat { height: 62vh !important; } }
"""
THEME = gr.themes.Soft(
    primary_hue="red",
    font=["Noto Sans CJK SC", "Source Han Sans SC", "PingFang SC", "Microsoft YaHei", "sans-serif"],
    font_mono=["Noto Sans Mono CJK SC", "monospace"],
)


def build_app(
    engine: Engine | EngineLoader, settings: Settings | None = None, access: Access | None = None
) -> gr.Blocks:
    """The chat page on an engine (or one still being opened); not yet served: see `launch`."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no telemetry: the page works offline
    loader = engine if isinstance(engine, EngineLoader) else EngineLoader.of(engine)
    access = access or Access()
    settings = settings or getattr(loader.engine, "settings", None)
    max_mb = settings.max_upload_bytes / 2**20 if settings is not None else 20
    written = bool(getattr(settings, "llm_enabled", False))
    chat, search = Chat(loader, access), Search(loader, access)
    library, api = Library(loader, access), Api(loader, access)
    with gr.Blocks(title="政策问答", analytics_enabled=False, delete_cache=(600, 3600)) as demo:
        gr.Markdown(f"## 政策问答\n{INTRO_WRITTEN if written else INTRO}")
        banner = gr.HTML(visible=False, elem_id="chat-banner")
        seen = gr.State(None)
        jobs = gr.State([])
        choices = kb_choices(_kb_names(loader, settings))
        kbs = kb_menu(choices)
        with gr.Tabs():
            chat_tab(chat, written, kbs)
            search_tab(search, kbs)
            kb = library_tab(library, jobs, max_mb, choices, kbs)

        timer = gr.Timer(TICK_SECONDS)
        tick_outputs = [banner, kb.progress, kb.table, kb.choice, seen, jobs, kbs, kb.managed, kb.status]
        timer.tick(library.on_tick, [seen, jobs, kb.status, kb.managed], tick_outputs, **QUICK)
        demo.load(library.on_tick, [seen, jobs, kb.status, kb.managed], tick_outputs, **QUICK)
        kb.managed.change(lambda: None, None, seen, **QUICK)  # another knowledge base: list its documents
        if access.read_only and access.login_required:
            demo.load(library.on_load, None, [kb.edit], **QUICK)

        gr.api(api.api_ask, api_name="ask", **pool(written))
        gr.api(api.api_search, api_name="search", **pool(False))
        gr.api(api.api_documents, api_name="documents", **pool(False))
    demo.rag_loader = loader  # type: ignore[attr-defined]  # for `launch`: the REST and OpenAI APIs use it too
    return demo


def _kb_names(loader: EngineLoader, settings: Settings | None) -> list[str]:
    """The knowledge bases when the page is built (the engine may still be opening: from the settings)."""
    from rag import KnowledgeBases

    if loader.engine is not None:
        return [info.name for info in loader.engine.knowledge_bases()]
    return KnowledgeBases(settings).names() if settings is not None else ["default"]


def launch(
    demo: gr.Blocks,
    settings: Settings,
    host: str = "127.0.0.1",
    port: int = 7860,
    access: Access | None = None,
    **kwargs: Any,
) -> Any:
    """Serve the page (behind a login when `access` has users); `kwargs` go to `Blocks.launch`. Logins
    are throttled, uploads bounded (`ui.access.Guard`; each file by `Settings.max_upload_bytes`), and
    `X-Forwarded-For` believed only from `Settings.trusted_proxies`. The REST API (`/api/v1/`, `ui.rest`)
    and the OpenAI-compatible one (`/v1/`, `ui.openai_compat`) are served beside it, behind the same
    users, rules and login throttle (`ui.rest_auth.ApiGuard`)."""
    from ui.rest import mounts, record_refusal
    from ui.rest_auth import ApiGuard

    access = access or Access()
    app_kwargs = dict(kwargs.pop("app_kwargs", None) or {})
    loader, throttle, limit = demo.rag_loader, Throttle(), settings.max_upload_bytes  # type: ignore[attr-defined]
    guard = Middleware(Guard, access=access, max_upload_bytes=limit, throttle=throttle)
    api_guard = Middleware(
        ApiGuard, access=access, throttle=throttle, max_upload_bytes=limit, refused=record_refusal(loader)
    )
    app_kwargs["middleware"] = [*app_kwargs.get("middleware", []), Middleware(ChineseFirst), guard, api_guard]
    app_kwargs["routes"] = [*app_kwargs.get("routes", []), *mounts(loader)]  # /api/v1 and /v1, before the page's
    with trusting(settings.trusted_proxies):
        return demo.launch(
            server_name=host,
            server_port=port,
            show_error=False,
            auth=access.check if access.login_required else None,
            auth_message=AUTH_MESSAGE if access.login_required else None,
            max_file_size=settings.max_upload_bytes,
            theme=THEME,
            css=CSS,
            head=HEAD,
            footer_links=["api"],
            app_kwargs=app_kwargs,
            **kwargs,
        )


@contextmanager
def trusting(proxies: str) -> Iterator[None]:
    """While the server starts: uvicorn (Gradio's server) takes the client's address from `X-Forwarded-For`
    only when the request comes from one of `proxies` ('' = never). Its own default believes any client
    on 127.0.0.1, which could then name itself."""
    before = os.environ.get("FORWARDED_ALLOW_IPS")
    os.environ["FORWARDED_ALLOW_IPS"] = proxies
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("FORWARDED_ALLOW_IPS", None)
        else:
            os.environ["FORWARDED_ALLOW_IPS"] = before
