"""What the chat page shows, as HTML and Markdown: pure functions of what `rag.Engine` returns.

Document text is always shown as text: escaped in HTML, and in chat messages (which Gradio renders as
Markdown) every character Markdown, math or auto-linking would act on is neutralised. No raw fusion
scores and no server paths reach the page; messages are Chinese only (`chinese`).
"""

from __future__ import annotations

import html
import re
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the page imports this before the engine (and torch) are loaded
    from rag import Answer, Citation, Document, Job, Passage, WorkerStatus

CONTEXT_CHARS = 240
"""Characters of the document shown either side of a quoted span."""
PREVIEW_CHARS = 80
"""Characters of a quote in the hover preview of a `[n]` link."""

Lookup = Callable[[str], "Document | None"]
"""A document by its source id (None when it is no longer in the knowledge base)."""


# --- text safety ---------------------------------------------------------------------------------

_PUNCTUATION = re.compile(r"[\\`*_~<>|\[\]$#!]")  # `!`: before a `[n]` link it would make an image of it
_LIST_START = re.compile(r"^(\s*)([-+]|\d+\.)(?=\s)", re.M)
_AUTOLINK = re.compile(r"(?i)(?<=[a-z])(:)(?=//)|(?<=www)(\.)|(@)(?=[\w-]+\.)")


def md_text(text: str) -> str:
    """`text` as literal Markdown: Markdown, HTML, math (`$`) and auto-link triggers neutralised."""
    text = _PUNCTUATION.sub(lambda m: "\\" + m.group(0), text.replace("&", "&amp;"))
    text = _LIST_START.sub(lambda m: m.group(1) + m.group(2)[:-1] + "\\" + m.group(2)[-1], text)
    return _AUTOLINK.sub(lambda m: f"&#{ord(m.group(0))};", text)


def md_plain(text: str) -> str:
    """`text` for a Markdown file (the export): Markdown characters escaped, links left as they are."""
    return re.sub(
        r"[\\`*~<>|]|(?<=\])\(|!(?=\[)|^#|(?<![0-9A-Za-z])_|_(?![0-9A-Za-z])",
        lambda m: "\\" + m.group(0),
        text,
        flags=re.M,
    )


def clean_text(text: Any) -> str:
    """A string as the browser may send it, safe to send back: lone surrogates (which break the page's
    connection when echoed) become U+FFFD."""
    text = text if isinstance(text, str) else "" if text is None else str(text)
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


_ENGLISH_NOTE = re.compile(r"\s*[(（][^()（）\u3400-\u9fff]*[A-Za-z][^()（）\u3400-\u9fff]*[)）]")
_ENGLISH_TAIL = re.compile(r"[:：]\s*[^\u3400-\u9fff]*$")


def chinese(message: str, fallback: str = "") -> str:
    """An engine or loader message for the page: English notes in brackets (`无法读取 (cannot be read)`)
    and trailing English details after a colon removed; `fallback` for a message with no Chinese at all."""
    message = _ENGLISH_NOTE.sub("", message)
    shorter = _ENGLISH_TAIL.sub("", message)
    if re.search(r"[\u3400-\u9fff]", shorter):
        return shorter.strip()
    return message.strip() if re.search(r"[\u3400-\u9fff]", message) or not fallback else fallback


# --- the answer ------------------------------------------------------------------------------------

_MARKER = re.compile(r"\\\[(\d+)\\\]")
_SINGLE_BREAK = re.compile(r"(?<!\n)\n(?!\n)")
_AFTER_MARKERS = re.compile(r"((?:\\\[\d+\\\])+)(?!\\\[\d|\\!)(?=[^\n。，；、！？.,;!?）)”])")


GENERATED = "由语言模型撰写，已逐句核对原文"
"""The line above a written answer (`answer.mode == "generated"`); extractive answers have none."""
WRITING = "正在由语言模型撰写回答，每句核对原文后显示……"
"""The line under a written answer while it streams."""


def chat_text(answer: Answer, turn: int) -> str:
    """An answer as a chat message: each cited sentence on its own line, each `[n]` a link to the cited
    passage (`#cite-<turn>-<n>`, opened in the sources panel) with the quote as hover preview. A written
    answer gets a line saying so (and how many sentences were removed); an answer shown instead of a
    written one that failed gets the note why, above it."""
    text = _linked(answer.answer, answer.citations, turn)
    standalone = getattr(answer, "standalone_question", "")
    if standalone and standalone != answer.question:
        text += f"\n\n*（按“{md_text(standalone)}”检索）*"
    generation = getattr(answer, "generation", None)
    if generation is not None and generation.fell_back and generation.note:
        text = f"> {md_text(generation.note)}\n\n{text}"
    elif getattr(answer, "mode", "") == "generated" and not answer.abstained:
        note = f"；{generation.note}" if generation is not None and generation.note else ""
        text = f"*{md_text(GENERATED + note)}*\n\n{text}"
    return text


def streaming_text(text: str, citations: Sequence[Citation], turn: int) -> str:
    """A written answer while it streams: the sentences verified so far, linked as in `chat_text`."""
    shown = _linked(text.strip(), citations, turn) if text.strip() else ""
    return f"{shown}\n\n*{md_text(WRITING)}*" if shown else f"*{md_text(WRITING)}*"


def _linked(answer: str, citations: Sequence[Citation], turn: int) -> str:
    """Answer text as Markdown: each line its own paragraph, each `[n]` a link to its citation."""
    text = _SINGLE_BREAK.sub("\n\n", md_text(answer))  # each line of the answer its own paragraph
    if citations:
        text = _AFTER_MARKERS.sub(lambda m: m.group(1) + "\n\n", text)
        quotes = {c.id: c.quote for c in citations}

        def link(match: re.Match[str]) -> str:
            number = int(match.group(1))
            if number not in quotes:
                return match.group(0)
            preview = re.sub(r"\s+", " ", quotes[number])
            preview = preview[:PREVIEW_CHARS] + ("…" if len(preview) > PREVIEW_CHARS else "")
            preview = preview.replace("\\", "＼").replace('"', "”")
            return f'[\\[{number}\\]](#cite-{turn}-{number} "{html.escape(preview, quote=False)}")'

        text = _MARKER.sub(link, text)
    return text


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


def _in_context(lookup: Lookup, source: str, start: int, end: int, fallback: str) -> str:
    document = lookup(source)
    if document is None:  # removed from the knowledge base since
        return f'<div class="context"><mark>{html.escape(fallback)}</mark></div>'
    return highlight(document.text, start, end)


def _title(lookup: Lookup, source: str, title: str) -> str:
    return title or (doc.title if (doc := lookup(source)) else "") or "（无标题）"


def sources_html(lookup: Lookup, answer: Answer | None, turn: int = 0) -> str:
    """The sources panel for one answer: one row per document with its quotes shown (click a quote for
    it in context); for an abstention, the closest passages by rank."""
    if answer is None:
        return (
            '<div class="src-note">提问后，这里按文档列出回答引用的原文句子；'
            "点击一句，可在原文上下文中查看（黄色标出）。</div>"
        )
    question = f"问：{html.escape(answer.question)}"
    if answer.abstained:
        rows = []
        for p in answer.passages[:3]:
            body = _in_context(lookup, p.source, p.start, p.end, p.text)
            rows.append(
                f'<div class="doc"><div class="doc-title"><span class="rank">第 {p.rank} 位</span>'
                f"《{html.escape(_title(lookup, p.source, p.title))}》</div>"
                f'<details class="src" id="cite-{turn}-p{p.rank}"><summary>{_heading(p.heading)}'
                f'<span class="quote">{html.escape(_snippet(p.text))}</span></summary>{body}</details></div>'
            )
        note = "知识库中没有找到答案。以下段落按相关程度排列，可能相关（不是答案，仅供参考）："
        return f'<div class="src-note">{question}<br>{note}</div>' + "".join(rows)
    groups: dict[tuple[str, str], list[Any]] = {}
    for c in answer.citations:
        groups.setdefault((getattr(c, "kb", "default"), c.source), []).append(c)
    rows = []
    for (kb, source), citations in groups.items():
        items = []
        for c in citations:
            body = _in_context(lookup, c.source, c.start, c.end, c.quote)
            items.append(
                f'<details class="src" id="cite-{turn}-{c.id}"><summary><span class="cid">[{c.id}]</span>'
                f'{_heading(c.heading)}<span class="quote">{html.escape(c.quote)}</span></summary>{body}</details>'
            )
        rows.append(
            f'<div class="doc"><div class="doc-title">《{html.escape(_title(lookup, source, citations[0].title))}》'
            f"{_date(lookup, source)}{_kb(kb)}</div>{''.join(items)}</div>"
        )
    count = len(answer.citations)
    note = f"回答引用了 {len(groups)} 篇文档中的 {count} 处原文（点击一句查看上下文）："
    return f'<div class="src-note">{question}<br>{note}</div>' + "".join(rows)


def _kb(kb: str) -> str:
    """Which knowledge base a document is in (said only for one other than `default`)."""
    return f' <span class="meta kb">知识库：{html.escape(kb)}</span>' if kb and kb != "default" else ""


def _heading(heading: str) -> str:
    return f'<span class="meta">{html.escape(heading)}</span>' if heading else ""


def _date(lookup: Lookup, source: str) -> str:
    document = lookup(source)
    date = document.meta.get("date", "") if document else ""
    return f' <span class="meta">{html.escape(date)}</span>' if date else ""


def _snippet(text: str, limit: int = 120) -> str:
    text = re.sub(r"\s+", " ", text).strip()
    return text[:limit] + ("…" if len(text) > limit else "")


def search_html(lookup: Lookup, question: str, passages: Sequence[Passage]) -> str:
    """Search results: each passage by rank with its document's title and heading, and its context."""
    if not passages:
        return '<div class="src-note">没有找到相关段落。</div>'
    rows = [
        f'<div class="src-note">与“{html.escape(question)}”最相关的 {len(passages)} 个段落（按相关程度排列）：</div>'
    ]
    for p in passages:
        document = lookup(p.source)
        context = highlight(document.text, p.start, p.end) if document else ""
        meta = _heading(p.heading) + _kb(getattr(p, "kb", "default"))
        rows.append(
            f'<div class="hit"><b><span class="rank">{p.rank}</span> 《{html.escape(_title(lookup, p.source, p.title))}》</b>'
            f'<div>{meta}</div><div class="hit-text">{html.escape(p.text)}</div>'
            f"<details><summary>在原文中查看</summary>{context}</details></div>"
        )
    return "".join(rows)


def export_markdown(answer: Answer, lookup: Lookup | None = None) -> str:
    """One answer with its sources (or, for an abstention, the closest passages) as a Markdown document."""
    lookup = lookup or (lambda source: None)
    lines = [f"# 问：{md_plain(answer.question)}", ""]
    standalone = getattr(answer, "standalone_question", "")
    if standalone and standalone != answer.question:
        lines += [f"（按“{md_plain(standalone)}”检索）", ""]
    lines += ["## 回答", ""]
    generation = getattr(answer, "generation", None)
    if generation is not None and generation.fell_back and generation.note:
        lines += [f"*{md_plain(generation.note)}*", ""]
    elif getattr(answer, "mode", "") == "generated" and not answer.abstained:
        note = f"；{generation.note}" if generation is not None and generation.note else ""
        lines += [f"*{md_plain(GENERATED + note)}*", ""]
    lines += ["\n\n".join(md_plain(line) for line in answer.answer.splitlines() if line.strip()), ""]
    lines += sources_markdown(answer, lookup, "## ")
    lines.append(f"*导出自“政策问答”，{time.strftime('%Y-%m-%d %H:%M')}*")
    return "\n".join(lines) + "\n"


def sources_markdown(answer: Answer, lookup: Lookup | None = None, heading: str = "## ") -> list[str]:
    """The Markdown lines of an answer's sources (`[n] 《title》` and its quote), or, for an abstention, of
    the closest passages; `heading` starts the section's title line (`**` for bold)."""
    lookup = lookup or (lambda source: None)
    close = "**" if heading == "**" else ""
    lines: list[str] = []
    if answer.citations:
        lines += [f"{heading}来源{close}", ""]
        for c in answer.citations:
            where = f"（{md_plain(c.heading)}）" if c.heading else ""
            kb = getattr(c, "kb", "default")
            where += f"（知识库：{md_plain(kb)}）" if kb and kb != "default" else ""
            lines += [f"[{c.id}] 《{md_plain(_title(lookup, c.source, c.title))}》{where}", ""]
            lines += [*(f"> {md_plain(q)}" for q in c.quote.splitlines()), ""]
    elif answer.passages:
        lines += [f"{heading}可能相关的段落（不是答案，仅供参考）{close}", ""]
        for p in answer.passages:
            lines += [f"{p.rank}. 《{md_plain(_title(lookup, p.source, p.title))}》", ""]
            lines += [*(f"> {md_plain(q)}" for q in p.text.splitlines() if q.strip()), ""]
    return lines


# --- the knowledge base --------------------------------------------------------------------------

ACTIONS = {"add": "添加", "replace": "替换", "remove": "删除", "build": "更新索引", "rebuild": "重建索引"}


def job_title(job: Job) -> str:
    """`添加 报告.docx`, `更新索引`."""
    verb = ACTIONS.get(job.action, job.action)
    return f"{verb} {job.name}" if job.name else verb


def job_stage(job: Job) -> str:
    """Where a running job is, in words: `正在索引 23/60 段`."""
    (docs_done, docs_total), (done, total) = job.documents, job.chunks
    if job.stage == "embed" and total:
        return f"正在索引 {done}/{total} 段"
    if job.stage == "write":
        return "正在写入索引"
    if job.stage == "clean" and docs_total:
        return f"正在读取和切分文档 {docs_done}/{docs_total}"
    if job.state == "queued":
        return "排队中"
    return "正在读取文档"


def job_percent(job: Job) -> int:
    """Share of a running job done: reading and chunking 0–10 %, embedding 10–95 %, writing 95–100 %."""
    (docs_done, docs_total), (done, total) = job.documents, job.chunks
    if job.stage == "write":
        return 97
    if job.stage == "embed":
        return 10 + round(85 * done / total) if total else 95
    if job.stage == "clean" and docs_total:
        return round(10 * docs_done / docs_total)
    return 0


def progress_html(status: WorkerStatus | None) -> str:
    """The 知识库 tab's progress bar: the running job (documents and chunks done / total), then the queue."""
    if status is None or not status.busy:
        return ""
    job = status.running
    parts = []
    if job is not None:
        (docs_done, docs_total), (done, total) = job.documents, job.chunks
        counts = []
        if docs_total:
            counts.append(f"已读取文档 {docs_done}/{docs_total}")
        if total:
            counts.append(f"已索引段落 {done}/{total}")
        if job.stage == "write":
            counts.append("正在写入索引")
        percent = job_percent(job)
        parts.append(
            f'<div class="kb-progress" role="progressbar" aria-valuemin="0" aria-valuemax="100" '
            f'aria-valuenow="{percent}" data-done="{done}" data-total="{total}" data-stage="{html.escape(job.stage)}">'
            f'<div class="label">正在{html.escape(job_title(job))}：{"，".join(counts) or job_stage(job)}</div>'
            f'<div class="bar"><div class="fill" style="width:{percent}%"></div></div></div>'
        )
    if status.queued:
        waiting = "、".join(html.escape(job_title(j)) for j in status.queued[:5])
        more = f" 等 {len(status.queued)} 项" if len(status.queued) > 5 else ""
        parts.append(f'<div class="kb-queue">排队中：{waiting}{more}（按顺序处理）</div>')
    parts.append('<div class="src-note">处理期间可以照常提问和检索；新文档处理完成后即可检索到。</div>')
    return "".join(parts)


def outcome_markdown(job: Job, title: str = "", chunks: int | None = None) -> str:
    """One line saying how a finished job of this session went."""
    name = md_text(job.source or job.name)
    if job.state == "failed":
        verb = {"add": "未能添加", "replace": "未能替换", "remove": "未能删除"}.get(job.action, "未能更新索引")
        return f"**{verb}** {name}：{md_text(chinese(job.error, '处理时出错（详情已记入服务器日志）。'))}"
    what = f"《{md_text(title)}》（文件 {name}{f'，{chunks} 段' if chunks is not None else ''}）" if title else name
    if job.action == "add":
        return f"**已添加**{what}，现在就可以提问和检索。" + _cleaning_notes(job)
    if job.action == "replace":
        return f"**已替换**{what}，旧版本已备份。" + _cleaning_notes(job)
    if job.action == "remove":
        return f"**已删除** {name}（已从知识库移除，文件已移入备份）。"
    return "**索引已更新。**"


def _cleaning_notes(job: Job) -> str:
    """What cleaning took out of the job's document, when a step removed much of it (`BuildReport.notes`)."""
    prefix = f"{job.source}："
    notes = [chinese(n) for n in (job.report.notes if job.report else []) if job.source and n.startswith(prefix)]
    return "".join(f"（注意：{md_text(note.removeprefix(prefix))}）" for note in notes)


Rows = list[list[Any]]
