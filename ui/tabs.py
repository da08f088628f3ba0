"""The page's three tabs, each its components and which handler each of their events calls: 问答
(multi-turn chat, sources grouped by document, Markdown export), 检索 (top passages by rank, filtered by
document and date) and 知识库 (the knowledge base managed, created and deleted; its documents, upload and
removal), and the knowledge-base menu above them that 问答 and 检索 ask in (`kb_menu`).
`ui.layout.build_app` puts them together.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr

from ui.chat import Chat
from ui.library import Library
from ui.render import sources_html
from ui.search import Search

EXAMPLES = [
    "纪委监督责任包括什么",
    "落实两个责任要解决哪些实际问题",
    "党委主体责任具体指什么",
    "縣級監委向鄉鎮派出了什麼機構?",
]
UPLOAD_TYPES = ".txt .md .docx .pdf .html"
READ_CONCURRENCY = 8
"""Questions answered at once; the engine is thread-safe for reads; changes run in its background worker."""
MODEL_CONCURRENCY = 4
"""Questions a language model answers at once (a model server serves a few in parallel)."""
PRIVATE: dict[str, Any] = {"api_visibility": "private"}
"""Events of the page itself: not part of the HTTP API."""
READS: dict[str, Any] = {**PRIVATE, "concurrency_limit": READ_CONCURRENCY, "concurrency_id": "read"}
"""Events that read the engine (questions, searches): queued, `READ_CONCURRENCY` at once."""
QUICK: dict[str, Any] = {**PRIVATE, "queue": False, "show_progress": "hidden"}
"""Events that answer at once (clearing, queueing a change, the timer)."""
CONFIRM_DELETE_KB = (
    "(kb, ...rest) => [kb && kb !== 'default' ? (confirm('删除知识库“' + kb + '”？其中的文档会移入存档文件夹，"
    "不再参与问答。') ? kb : '') : null, ...rest]"
)
"""Browser-side confirmation before deleting a knowledge base: '' = cancelled."""
CONFIRM_REMOVE = "(s, ...rest) => [s ? (confirm('从知识库删除“' + s + '”？文件会移入备份，不再参与问答。') ? s : '') : null, ...rest]"
"""Browser-side confirmation before removing: '' = cancelled, null = nothing selected."""
DOWNLOAD_MARKDOWN = """(md) => {
  if (!md) return;
  const pad = (n) => String(n).padStart(2, '0'), d = new Date();
  const stamp = `${d.getFullYear()}${pad(d.getMonth() + 1)}${pad(d.getDate())}-${pad(d.getHours())}${pad(d.getMinutes())}${pad(d.getSeconds())}`;
  const link = document.createElement('a');
  link.href = URL.createObjectURL(new Blob([md], {type: 'text/markdown;charset=utf-8'}));
  link.download = `政策问答-${stamp}.md`;
  document.body.appendChild(link); link.click(); link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 10000);
}"""
"""The export is downloaded from the page's own text: no file is written on the server."""


def pool(written: bool) -> dict[str, Any]:
    """Where a question waits for its turn: with a language model, in a pool of its own (`model`), so a
    slow model never holds up searches and the page's other reads (`read`)."""
    if written:
        return {"concurrency_limit": MODEL_CONCURRENCY, "concurrency_id": "model"}
    return {"concurrency_limit": READ_CONCURRENCY, "concurrency_id": "read"}


def kb_menu(choices: list[tuple[str, str]]) -> gr.Dropdown:
    """The knowledge bases questions and searches are asked in (one or several; none = 默认)."""
    return gr.Dropdown(
        choices=choices,
        value=["default"],
        multiselect=True,
        label="知识库（提问和检索在所选知识库中进行，可多选）",
        elem_id="kb-select",
    )


def chat_tab(page: Chat, written: bool = False, kbs: gr.Dropdown | None = None) -> None:
    """问答: the chat and its question box beside the sources panel and the export; `written`: a language
    model writes the answers (they wait in its own pool); `kbs`: the knowledge-base menu asked in."""
    with gr.Tab("问答", id="chat"):
        turns = gr.State([])
        with gr.Row(equal_height=False):
            with gr.Column(scale=3, min_width=320):
                chat = gr.Chatbot(
                    show_label=False,
                    elem_id="chat",
                    height=520,
                    buttons=["copy"],
                    feedback_options=None,
                    examples=[{"text": q} for q in EXAMPLES],
                    placeholder="**请提问**，或点击一个示例问题：",
                    latex_delimiters=[],
                    sanitize_html=True,
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
            with gr.Column(scale=2, min_width=300):
                gr.Markdown("#### 来源")
                sources = gr.HTML(sources_html(lambda source: None, None), elem_id="sources", max_height=640)
                with gr.Accordion("导出这条回答（Markdown）", open=False, elem_id="export"):
                    export = gr.Textbox(
                        show_label=False,
                        lines=8,
                        max_lines=16,
                        interactive=False,
                        buttons=["copy"],
                        elem_id="export-md",
                    )
                    download = gr.Button("下载 .md 文件", interactive=False, size="sm", elem_id="download")
        outputs = [question, chat, turns, sources, export, download]
        asks = {**PRIVATE, **pool(written)}
        chosen = [kbs] if kbs is not None else []
        question.submit(page.on_ask, [question, chat, turns, *chosen], outputs, show_progress="minimal", **asks)
        chat.example_select(page.on_example, [chat, turns, *chosen], outputs, show_progress="minimal", **asks)
        chat.select(page.on_select, [turns], [sources, export, download], **READS)
        clear.click(page.on_clear, None, outputs, **QUICK)
        chat.clear(page.on_clear, None, outputs, **QUICK)
        download.click(None, export, None, js=DOWNLOAD_MARKDOWN)


def search_tab(page: Search, kbs: gr.Dropdown | None = None) -> None:
    """检索: a query, how many passages and which documents (by name or title words, by date), and the
    passages by rank; `kbs`: the knowledge-base menu searched in."""
    with gr.Tab("检索", id="search"):
        gr.Markdown("只列出最相关的原文段落（按相关程度排列），不生成回答，便于会前快速查找。")
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
        with gr.Row():
            source = gr.Textbox(
                label="只查这些文档（文件名或标题中的词，逗号分隔；空 = 全部）", scale=2, elem_id="search-source"
            )
            date_from = gr.Textbox(label="发布日期起（YYYY-MM-DD）", scale=1, elem_id="search-date-from")
            date_to = gr.Textbox(label="发布日期止（YYYY-MM-DD）", scale=1, elem_id="search-date-to")
        results = gr.HTML(elem_id="search-results")
        chosen = [kbs] if kbs is not None else [gr.State(None)]
        query.submit(page.on_search, [query, k, *chosen, source, date_from, date_to], results, **READS)


@dataclass(frozen=True)
class LibraryTab:
    """The 知识库 components the page's timer and load events update."""

    progress: gr.HTML
    table: gr.Dataframe
    choice: gr.Dropdown
    status: gr.Markdown
    edit: gr.Column
    """Upload and removal: hidden in read-only mode, shown to administrators once they are known."""
    managed: gr.Dropdown
    """The knowledge base whose documents the tab shows and changes."""


def library_tab(
    page: Library, jobs: gr.State, max_mb: float, choices: list[tuple[str, str]], kbs: gr.Dropdown | None = None
) -> LibraryTab:
    """知识库: the knowledge base managed (created, deleted), indexing progress, its documents, upload (asking
    before a replacement) and removal; `jobs` = the session's queued changes, whose outcomes the timer
    reports; `kbs`: the page's knowledge-base menu, updated when one is created or deleted."""
    editable = not page.access.read_only  # in read-only mode, shown to administrators once they are known (on load)
    kbs = kbs if kbs is not None else gr.Dropdown(choices=choices, visible=False)
    with gr.Tab("知识库", id="kb"):
        managed = gr.Dropdown(choices=choices, value="default", label="管理的知识库", elem_id="kb-manage")
        progress = gr.HTML(visible=False, elem_id="kb-progress")
        table = gr.Dataframe(
            headers=["标题", "文件", "日期", "段落数", "字数"],
            interactive=False,
            wrap=True,
            elem_id="docs",
            label="已索引的文档",
        )
        with gr.Column(visible=editable, elem_id="kb-edit") as edit:
            with gr.Row(equal_height=False):
                with gr.Column():
                    files = gr.File(
                        label=f"上传文档（{UPLOAD_TYPES}；单个不超过 {max_mb:g} MB）",
                        file_count="multiple",
                        elem_id="upload",
                    )
                with gr.Column():
                    choice = gr.Dropdown(label="删除文档", choices=[], allow_custom_value=True, elem_id="remove-choice")
                    remove = gr.Button("删除所选文档", variant="stop", elem_id="remove")
            with gr.Row(equal_height=True):
                new_name = gr.Textbox(
                    label="新建知识库", placeholder="名称，如：疫情政策", scale=3, max_length=64, elem_id="kb-new-name"
                )
                create = gr.Button("新建", scale=1, elem_id="kb-create")
                delete = gr.Button("删除当前知识库", variant="stop", scale=1, elem_id="kb-delete")
            pending = gr.State([])
            with gr.Group(visible=False, elem_id="replace-confirm") as confirm:
                confirm_text = gr.Markdown()
                with gr.Row():
                    replace = gr.Button("替换", variant="primary", size="sm", elem_id="replace-yes")
                    keep = gr.Button("不替换", size="sm", elem_id="replace-no")
        status = gr.Markdown(elem_id="kb-status")
        files.upload(
            page.on_upload,
            [files, jobs, status, managed],
            [status, files, jobs, pending, confirm, confirm_text],
            **QUICK,
        )
        replace.click(
            page.on_replace, [pending, jobs, status, managed], [status, jobs, pending, confirm, confirm_text], **QUICK
        )
        keep.click(page.on_keep, [pending, status], [status, pending, confirm, confirm_text], **QUICK)
        remove.click(page.on_remove, [choice, jobs, status, managed], [status, jobs], js=CONFIRM_REMOVE, **QUICK)
        menus = [managed, kbs]
        create.click(page.on_create, [new_name, status], [status, new_name, *menus], **PRIVATE)
        new_name.submit(page.on_create, [new_name, status], [status, new_name, *menus], **PRIVATE)
        delete.click(page.on_delete, [managed, status], [status, *menus], js=CONFIRM_DELETE_KB, **PRIVATE)
    return LibraryTab(progress, table, choice, status, edit, managed)
