"""What every tab's handlers share: one engine (perhaps still opening), who may edit, and how the page
says that the engine is not ready or that a request failed.

The handlers are plain methods of what the browser sends, one class per tab (`ui.chat`, `ui.search`,
`ui.library`) and one for the HTTP API (`ui.api`), each a `Page` over the same `EngineLoader`. The
engine may still be opening or building its first index; every handler says so in Chinese instead of
failing.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ui.access import Access
from ui.render import chinese, job_stage, job_title
from ui.startup import EngineLoader

if TYPE_CHECKING:
    from rag import Document, Engine, WorkerStatus

log = logging.getLogger("app")

STARTUP_WAIT = 180.0
"""Seconds a question waits for the engine to open before it is told to try again."""
GENERIC_ERROR = "出错了：处理这个请求时遇到问题，请稍后再试（详情已记入服务器日志）。"
INDEX_ERROR = "知识库索引暂时不可用，请联系管理员（详情已记入服务器日志）。"
STARTING = "正在启动：模型和知识库加载中，加载完成后立即回答……"


def friendly(exc: Exception) -> str:
    """A Chinese message for the page: the engine's own for expected errors, a generic one (logged) otherwise."""
    from rag import DocumentError, IndexUnavailable, KnowledgeBaseError, QuestionError

    if isinstance(exc, (QuestionError, DocumentError, KnowledgeBaseError)):
        return chinese(str(exc), GENERIC_ERROR)
    if isinstance(exc, IndexUnavailable):
        log.error("index unavailable: %s", exc)
        return INDEX_ERROR
    log.error("request failed", exc_info=exc)
    return GENERIC_ERROR


def gr_escape(text: str) -> str:
    """Text for an HTML component."""
    return html.escape(text)


class Page:
    """Handlers over one shared engine; per-session data comes in and goes out as values."""

    def __init__(self, loader: EngineLoader, access: Access | None = None) -> None:
        self.loader = loader
        self.access = access or Access()

    @staticmethod
    def lookup(engine: Engine, kbs: Iterable[str] | None = None) -> Any:
        """`source -> Document | None` over the engine's current snapshot, or over those of the knowledge
        bases `kbs` (the first that holds it)."""
        from rag import DocumentError, IndexUnavailable, KnowledgeBaseError

        names = list(dict.fromkeys(kbs or [])) or [None]

        def find(source: str) -> Document | None:
            for kb in names:
                try:
                    return engine.document(source, kb=kb)
                except (DocumentError, KnowledgeBaseError, IndexUnavailable):
                    continue
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
