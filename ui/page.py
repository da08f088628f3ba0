"""The chat page's event handlers: plain functions of what the browser sends, over one shared engine.

The engine may still be opening (`EngineLoader`) or building its first index; every handler says so
in Chinese instead of failing. Knowledge-base changes are queued on the engine's background worker
and their outcome reaches the page through the timer (`on_tick`), so no request waits for indexing.
"""

from __future__ import annotations

import dataclasses
import html
import logging
from collections.abc import Iterator
from contextlib import suppress
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gradio as gr

from ui.access import Access
from ui.render import (
    chat_text,
    chinese,
    clean_text,
    export_markdown,
    job_stage,
    job_title,
    md_text,
    outcome_markdown,
    progress_html,
    search_html,
    sources_html,
    streaming_text,
)
from ui.startup import EngineLoader

if TYPE_CHECKING:
    from rag import Answer, Document, Engine, WorkerStatus

log = logging.getLogger("app")

HISTORY_TURNS = 8
"""Earlier answers of the session passed to `engine.ask` (follow-ups need only the last few)."""
STARTUP_WAIT = 180.0
"""Seconds a question waits for the engine to open before it is told to try again."""
STATUS_LINES = 20
"""Lines of upload/removal outcomes kept in a session's status."""
GENERIC_ERROR = "出错了：处理这个请求时遇到问题，请稍后再试（详情已记入服务器日志）。"
INDEX_ERROR = "知识库索引暂时不可用，请联系管理员（详情已记入服务器日志）。"
STARTING = "正在启动：模型和知识库加载中，加载完成后立即回答……"
READ_ONLY = "只读模式：你没有添加或删除文档的权限。"


def friendly(exc: Exception) -> str:
    """A Chinese message for the page: the engine's own for expected errors, a generic one (logged) otherwise."""
    from rag import DocumentError, IndexUnavailable, QuestionError

    if isinstance(exc, (QuestionError, DocumentError)):
        return chinese(str(exc), GENERIC_ERROR)
    if isinstance(exc, IndexUnavailable):
        log.error("index unavailable: %s", exc)
        return INDEX_ERROR
    log.error("request failed", exc_info=exc)
    return GENERIC_ERROR


def user_of(request: gr.Request | None) -> str:
    """Who made a request, for the change log: the login name, else the client's address."""
    if request is None:
        return "-"
    if getattr(request, "username", None):
        return str(request.username)
    client = getattr(request, "client", None)
    return str(getattr(client, "host", "") or "-")


def discard_upload(path: str | Path) -> None:
    """Delete an uploaded file from Gradio's cache (and its folder, when that is now empty)."""
    path = Path(path)
    with suppress(OSError):
        path.unlink(missing_ok=True)
        path.parent.rmdir()


class Page:
    """The handlers of one page over one shared engine; per-session data comes in and goes out as values."""

    def __init__(self, loader: EngineLoader, access: Access | None = None) -> None:
        self.loader = loader
        self.access = access or Access()

    # --- helpers ---------------------------------------------------------------------------------

    @staticmethod
    def lookup(engine: Engine) -> Any:
        """`source -> Document | None` over the engine's current snapshot."""
        from rag import DocumentError

        def find(source: str) -> Document | None:
            try:
                return engine.document(source)
            except DocumentError:
                return None

        return find

    def _status(self, engine: Engine | None) -> WorkerStatus | None:
        return engine.worker.status() if engine is not None else None

    def not_ready_text(self, engine: Engine | None) -> str:
        """Why questions cannot be answered yet ('' when they can)."""
        if engine is None:
            if self.loader.loading:
                return STARTING
            return f"知识库无法打开：{chinese(self.loader.error, INDEX_ERROR)}"
        if engine.ready:
            return ""
        status = engine.worker.status()
        job = status.running or (status.queued[0] if status.queued else None)
        if job is not None:
            if job.stage == "embed" and job.chunks[1]:
                done, total = job.chunks
                return f"正在建立索引 {done}/{total} 段，完成后即可提问。"
            return f"正在建立索引（{job_stage(job)}），完成后即可提问。"
        failed = next((j for j in status.recent if j.state == "failed"), None)
        return f"知识库还没有可用的索引：{chinese(failed.error, INDEX_ERROR)}" if failed else INDEX_ERROR

    def banner(self, engine: Engine | None, status: WorkerStatus | None) -> str:
        """The line above the chat: starting, first build, an update running, or the engine's warnings."""
        lines = []
        waiting = self.not_ready_text(engine)
        if waiting:
            lines.append(waiting)
        elif status is not None and status.running is not None:
            job = status.running
            lines.append(f"知识库正在{job_title(job)}（{job_stage(job)}），可以照常提问。")
        for warning in getattr(engine, "warnings", None) or []:
            lines.append(f"注意：{chinese(str(warning), '知识库索引可能已损坏，请联系管理员（详情见服务器日志）。')}")
        return "<br>".join(gr_escape(line) for line in lines)

    # --- chat: `chat` holds the Chatbot's messages, `turns` each exchange's Answer (None after an error)

    def on_ask(self, question: str, chat: list[dict], turns: list[Any]) -> Iterator[tuple[Any, ...]]:
        """Answer a question in the context of the session's earlier answers (a generator: it may first
        say that it waits for the engine, and a streamed answer can yield as it grows)."""
        question = clean_text(question).strip()
        if not question:
            gr.Warning("请输入一个问题。", title="提示")
            yield (gr.skip(),) * 6
            return
        chat, turns = [*(chat or []), {"role": "user", "content": md_text(question)}], list(turns or [])
        engine = self.loader.start().engine
        if engine is None and self.loader.loading:
            yield "", [*chat, {"role": "assistant", "content": STARTING}], turns, gr.skip(), gr.skip(), gr.skip()
            engine = self.loader.wait(STARTUP_WAIT)
        waiting = self.not_ready_text(engine)
        if engine is None or waiting:
            chat.append({"role": "assistant", "content": md_text(waiting or STARTING)})
            yield "", chat, [*turns, None], gr.skip(), gr.skip(), gr.skip()
            return
        turn = len(turns)
        try:
            history = [t for t in turns if t is not None][-HISTORY_TURNS:]
            events = engine.ask_stream(question, history=history)
            if getattr(engine, "llm", None) is not None:  # the model may take a while: say it is writing
                yield (
                    "",
                    [*chat, {"role": "assistant", "content": streaming_text("", [], turn)}],
                    turns,
                    *self.writing(),
                )
            answer = None
            for update in self.streamed(engine, question, events, turn):
                if isinstance(update, tuple):
                    message, sources = update
                    yield "", [*chat, {"role": "assistant", "content": message}], turns, sources, *self.writing()[1:]
                else:
                    answer = update
        except Exception as exc:
            chat.append({"role": "assistant", "content": f"**出错了**：{md_text(friendly(exc))}"})
            yield "", chat, [*turns, None], gr.skip(), gr.skip(), gr.skip()
            return
        assert answer is not None
        chat.append({"role": "assistant", "content": chat_text(answer, turn)})
        yield "", chat, [*turns, answer], *self.answer_panels(engine, answer, turn)

    def streamed(self, engine: Engine, question: str, events: Iterator[Any], turn: int) -> Iterator[Any]:
        """`engine.ask_stream`'s events as the page shows them: (message, sources panel) for the verified
        sentences so far, then the final `Answer` (which replaces them)."""
        from rag import Answer, Delta

        text, citations = "", []
        for event in events:
            if not isinstance(event, Delta):
                yield event.answer
                return
            text, citations = text + event.text, [*citations, *event.citations]
            partial = Answer(question, text.strip(), False, list(citations), standalone_question=question)
            yield streaming_text(text, citations, turn), sources_html(self.lookup(engine), partial, turn)

    @staticmethod
    def writing() -> tuple[Any, Any, Any]:
        """Sources panel, export and download while an answer is being written (its sources come with it)."""
        return gr.skip(), "", gr.Button(interactive=False)

    def on_example(self, chat: list[dict], turns: list[Any], evt: gr.SelectData) -> Iterator[tuple[Any, ...]]:
        """Ask an example question clicked in the empty chat."""
        value = evt.value if isinstance(evt.value, dict) else {"text": str(evt.value)}
        yield from self.on_ask(str(value.get("text", "")), chat, turns)

    def on_select(self, turns: list[Any], evt: gr.SelectData) -> tuple[Any, ...]:
        """Show the sources of an earlier answer when its message (or one of its `[n]` links) is clicked."""
        index = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
        turn = index // 2 if isinstance(index, int) else -1
        answer = turns[turn] if 0 <= turn < len(turns or []) else None
        engine = self.loader.engine
        if answer is None or engine is None:
            return (gr.skip(),) * 3
        return self.answer_panels(engine, answer, turn)

    def on_clear(self) -> tuple[Any, ...]:
        """Forget the conversation: messages, history, sources panel and export."""
        return "", [], [], sources_html(lambda source: None, None), "", gr.Button(interactive=False)

    def answer_panels(self, engine: Engine, answer: Answer, turn: int) -> tuple[str, str, Any]:
        """Sources panel, export Markdown and the download button for one answer."""
        lookup = self.lookup(engine)
        return sources_html(lookup, answer, turn), export_markdown(answer, lookup), gr.Button(interactive=True)

    # --- search ------------------------------------------------------------------------------------

    def on_search(self, question: str, k: float) -> str:
        """The top passages for a question, by rank."""
        question = clean_text(question).strip()
        engine = self.loader.wait(STARTUP_WAIT) if question else self.loader.engine
        waiting = self.not_ready_text(engine)
        if engine is None or waiting:
            return f'<div class="src-note">{gr_escape(waiting or STARTING)}</div>'
        try:
            return search_html(self.lookup(engine), question, engine.search(question, k=int(k)))
        except Exception as exc:
            return f'<div class="src-note">{gr_escape(friendly(exc))}</div>'

    # --- knowledge base ----------------------------------------------------------------------------

    def on_load(self, request: gr.Request = None) -> Any:  # type: ignore[assignment]
        """A new session: upload and removal shown only to those who may edit."""
        return gr.update(visible=self.access.can_edit(getattr(request, "username", None)))

    def documents_view(self, engine: Engine | None) -> tuple[list[list[Any]], Any]:
        """The documents table and the choices of the remove menu."""
        if engine is None or not engine.ready:
            return [], gr.Dropdown(choices=[], value=None)
        docs = engine.documents()
        rows = [[d.title, d.source, d.date, d.chunks, d.characters] for d in docs]
        choices = [(f"{d.title}（{d.source}）", d.source) for d in docs]
        return rows, gr.Dropdown(choices=choices, value=None)

    def on_tick(self, seen: Any, jobs: list[int], status: str) -> tuple[Any, ...]:
        """Every second: the banner, the progress bar, the document list when it changed, and the
        outcome of this session's finished uploads and removals."""
        self.loader.start()  # a page has loaded: open the engine now if that has not begun
        engine = self.loader.engine
        worker = self._status(engine)
        banner = self.banner(engine, worker)
        progress = progress_html(worker)
        token = [self.loader.loading, bool(engine and engine.ready), worker.changes if worker else 0]
        table, choice = (gr.skip(), gr.skip()) if token == seen else self.documents_view(engine)
        lines, still = [], []
        for job_id in jobs or []:
            job = engine.worker.job(job_id) if engine is not None else None
            if job is None:  # forgotten (or the engine is gone): nothing to report
                continue
            if job.state in ("queued", "running"):
                still.append(job_id)
                continue
            lines.append(self.outcome(engine, job))
        status_out = _append(status, lines) if lines else gr.skip()
        return (
            gr.HTML(banner, visible=bool(banner)),
            gr.HTML(progress, visible=bool(progress)),
            table,
            choice,
            token,
            still,
            status_out,
        )

    def outcome(self, engine: Engine | None, job: Any) -> str:
        """How a finished job went, with the document's title and chunk count when it was added."""
        info = None
        if engine is not None and job.state == "done" and job.action in ("add", "replace"):
            info = next((d for d in engine.documents() if d.source == job.source), None)
        return outcome_markdown(job, info.title if info else "", info.chunks if info else None)

    def on_upload(
        self, files: list[str] | None, jobs: list[int], status: str, request: gr.Request = None
    ) -> tuple[Any, ...]:  # type: ignore[assignment]
        """Check uploaded files and queue them for indexing; a name already in the corpus is asked about."""
        from rag import DocumentError

        files = [str(f) for f in files or []]
        nothing = (gr.skip(), gr.skip(), gr.skip())
        if not self.access.can_edit(getattr(request, "username", None)):
            for path in files:
                discard_upload(path)
            return _append(status, [READ_ONLY]), None, jobs, *nothing
        engine = self.loader.wait(STARTUP_WAIT)
        if engine is None:
            for path in files:
                discard_upload(path)
            return _append(status, [f"**未能添加**：{md_text(self.not_ready_text(engine))}"]), None, jobs, *nothing
        lines, jobs, pending = [], list(jobs or []), []
        for path in files:
            name = clean_text(Path(path).name)
            try:
                _, existing = engine.check_upload(Path(path), name)
            except DocumentError as exc:
                lines.append(f"**未能添加** {md_text(name)}：{md_text(chinese(str(exc)))}")
                discard_upload(path)
                continue
            if existing is not None:
                pending.append([path, name, existing])
                continue
            job = engine.worker.add(Path(path), name, user=user_of(request), cleanup=partial(discard_upload, path))
            jobs.append(job.id)
            lines.append(f"**已加入处理队列** {md_text(name)}：处理完成后会在这里显示结果。")
        if not files:
            lines.append("没有收到文件。")
        return _append(status, lines), None, jobs, *self._confirm(pending)

    def _confirm(self, pending: list[list[str]]) -> tuple[Any, Any, Any]:
        """The replace question for uploads whose names are already in the corpus."""
        if not pending:
            return [], gr.Group(visible=False), ""
        names = "、".join(f"“{md_text(existing)}”" for _, _, existing in pending)
        text = f"**知识库中已有同名文档**：{names}。要用新上传的文件替换吗？替换前的版本会自动备份。"
        return pending, gr.Group(visible=True), text

    def on_replace(
        self, pending: list[list[str]], jobs: list[int], status: str, request: gr.Request = None
    ) -> tuple[Any, ...]:  # type: ignore[assignment]
        """The user confirmed: queue the pending uploads as replacements."""
        engine = self.loader.engine
        if engine is None or not self.access.can_edit(getattr(request, "username", None)):
            return self.on_keep(pending, status)[0], jobs, [], gr.Group(visible=False), ""
        lines, jobs = [], list(jobs or [])
        for path, name, existing in pending or []:
            job = engine.worker.add(
                Path(path), name, user=user_of(request), replace=True, cleanup=partial(discard_upload, path)
            )
            jobs.append(job.id)
            lines.append(f"**已加入处理队列** 用 {md_text(name)} 替换 {md_text(existing)}。")
        return _append(status, lines), jobs, [], gr.Group(visible=False), ""

    def on_keep(self, pending: list[list[str]], status: str) -> tuple[Any, ...]:
        """The user declined: the pending uploads are dropped, the documents stay as they are."""
        lines = []
        for path, name, existing in pending or []:
            discard_upload(path)
            lines.append(f"**未替换** {md_text(existing)}：保留原文档，没有添加 {md_text(name)}。")
        return _append(status, lines), [], gr.Group(visible=False), ""

    def on_remove(
        self, source: str | None, jobs: list[int], status: str, request: gr.Request = None
    ) -> tuple[Any, ...]:  # type: ignore[assignment]
        """Queue the removal of a document (the browser asked for confirmation)."""
        if source == "":  # the confirmation was cancelled
            return gr.skip(), gr.skip()
        if not self.access.can_edit(getattr(request, "username", None)):
            return _append(status, [READ_ONLY]), jobs
        if not source:
            return _append(status, ["请先在列表中选择要删除的文档。"]), jobs
        engine = self.loader.engine
        if engine is None:
            return _append(status, [f"**未能删除**：{md_text(self.not_ready_text(engine))}"]), jobs
        source = clean_text(source)
        job = engine.worker.remove(source, user=user_of(request))
        return _append(status, [f"**已加入处理队列** 删除 {md_text(source)}。"]), [*(jobs or []), job.id]

    # --- HTTP API (gradio_client): plain values in, JSON out ----------------------------------------

    def _api_engine(self) -> Engine:
        engine = self.loader.wait(STARTUP_WAIT)
        waiting = self.not_ready_text(engine)
        if engine is None or waiting:
            raise gr.Error(waiting or STARTING, print_exception=False, title="请稍候")
        return engine

    def api_ask(self, question: str, history: list[str] | None = None, k: int = 5) -> dict[str, Any]:
        """A cited answer as JSON (`Answer.to_dict()` plus `markdown`); `history` = earlier questions."""
        engine = self._api_engine()
        try:
            answer = engine.ask(clean_text(question), history=[clean_text(q) for q in history or []], k=int(k))
        except Exception as exc:
            raise gr.Error(friendly(exc), print_exception=False, title="出错了") from None
        return {**answer.to_dict(), "markdown": export_markdown(answer, self.lookup(engine))}

    def api_search(self, question: str, k: int = 5) -> list[dict[str, Any]]:
        """The top `k` passages as JSON."""
        engine = self._api_engine()
        try:
            passages = engine.search(clean_text(question), k=int(k))
        except Exception as exc:
            raise gr.Error(friendly(exc), print_exception=False, title="出错了") from None
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
        return [dataclasses.asdict(d) for d in self._api_engine().documents()]


def gr_escape(text: str) -> str:
    """Text for an HTML component."""
    return html.escape(text)


def _append(status: str | None, lines: list[str]) -> str:
    """The session's status with `lines` added (the newest last, at most `STATUS_LINES`)."""
    kept = [line for line in (status or "").split("\n\n") if line.strip()]
    return "\n\n".join([*kept, *lines][-STATUS_LINES:])
