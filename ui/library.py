"""The 知识库 tab's handlers: the knowledge base managed (`kb`; created and deleted by those who may edit),
its document list, uploads (asking before a same-named document is replaced), removal, and the timer that
reports indexing progress and each job's outcome, and keeps the page's knowledge-base menus current.

Changes are queued on the knowledge base's background worker and their outcome reaches the page through the
timer (`on_tick`), so no request waits for indexing. A session's jobs are worker job ids: a number for
`default`, `[kb, id]` for another knowledge base.
"""

from __future__ import annotations

from contextlib import suppress
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gradio as gr

from ui.access import READ_ONLY, audit_event
from ui.page import STARTUP_WAIT, Page
from ui.render import chinese, clean_text, md_text, outcome_markdown, progress_html

if TYPE_CHECKING:
    from rag import Engine

STATUS_LINES = 20
"""Lines of upload/removal outcomes kept in a session's status."""


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


def kb_choices(names: list[str]) -> list[tuple[str, str]]:
    """The menu entries of the knowledge bases (`default` shown as 默认)."""
    return [(DEFAULT_LABEL if name == "default" else name, name) for name in names]


DEFAULT_LABEL = "默认"


def _job_entry(kb: str | None, job_id: int) -> Any:
    return job_id if not kb or kb == "default" else [kb, job_id]


def _append(status: str | None, lines: list[str]) -> str:
    """The session's status with `lines` added (the newest last, at most `STATUS_LINES`)."""
    kept = [line for line in (status or "").split("\n\n") if line.strip()]
    return "\n\n".join([*kept, *lines][-STATUS_LINES:])


class Library(Page):
    """The documents, their changes, and what the timer shows of them."""

    def managed(self, engine: Engine | None, kb: str | None) -> Engine | None:
        """The engine of the knowledge base the tab manages (`default` when it is gone)."""
        from rag import KnowledgeBaseError

        if engine is None or not kb or kb == "default":
            return engine
        try:
            return engine.engine_for(kb)
        except KnowledgeBaseError:
            return engine

    def kb_names(self, engine: Engine | None) -> list[str]:
        return [info.name for info in engine.knowledge_bases()] if engine is not None else ["default"]

    def refused(self, action: str, name: str, request: gr.Request | None, kb: str | None = None) -> None:
        """A change the user may not make, recorded: by the worker with its own changes (the change log and
        the audit log), or in the audit log alone while the engine is still opening."""
        engine, user = self.managed(self.loader.engine, kb), user_of(request)
        if engine is not None:
            engine.worker.refused(action, name, user, READ_ONLY)
            return
        client = getattr(request, "client", None)
        address = str(getattr(client, "host", "") or "-")
        audit_event("refused", user, False, action=action, file=name, address=address, error=READ_ONLY)

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

    def on_tick(self, seen: Any, jobs: list[Any], status: str, kb: str | None = None) -> tuple[Any, ...]:
        """Every second: the banner, the progress bar, the document list of the managed knowledge base when
        it changed, the knowledge-base menus when knowledge bases came or went, and the outcome of this
        session's finished uploads and removals."""
        self.loader.start()  # a page has loaded: open the engine now if that has not begun
        root = self.loader.engine
        engine = self.managed(root, kb)
        worker = self._status(engine)
        banner = self.banner(root, self._status(root))
        progress = progress_html(worker)
        live = engine.health().build if engine is not None and engine.ready else ""  # another process's `rag index`
        names = self.kb_names(root)
        token = [self.loader.loading, bool(engine and engine.ready), worker.changes if worker else 0, live, kb, names]
        table, choice = (gr.skip(), gr.skip()) if token == seen else self.documents_view(engine)
        menus = (gr.skip(), gr.skip())
        if not isinstance(seen, list) or seen[-1:] != [names]:
            menus = (gr.Dropdown(choices=kb_choices(names)), gr.Dropdown(choices=kb_choices(names)))
        lines, still = [], []
        for entry in jobs or []:
            name, job_id = entry if isinstance(entry, list) else (None, entry)
            owner = self.managed(root, name) if name else root
            job = owner.worker.job(job_id) if owner is not None else None
            if job is None:  # forgotten (or the engine is gone): nothing to report
                continue
            if job.state in ("queued", "running"):
                still.append(entry)
                continue
            lines.append(self.outcome(owner, job))
        status_out = _append(status, lines) if lines else gr.skip()
        return (
            gr.HTML(banner, visible=bool(banner)),
            gr.HTML(progress, visible=bool(progress)),
            table,
            choice,
            token,
            still,
            *menus,
            status_out,
        )

    def outcome(self, engine: Engine | None, job: Any) -> str:
        """How a finished job went, with the document's title and chunk count when it was added."""
        info = None
        if engine is not None and job.state == "done" and job.action in ("add", "replace"):
            info = next((d for d in engine.documents() if d.source == job.source), None)
        return outcome_markdown(job, info.title if info else "", info.chunks if info else None)

    def on_upload(
        self, files: list[str] | None, jobs: list[Any], status: str, request: gr.Request = None, kb: str | None = None
    ) -> tuple[Any, ...]:  # type: ignore[assignment]
        """Check uploaded files and queue them for indexing; a name already in the corpus is asked about."""
        from rag import DocumentError

        files = [str(f) for f in files or []]
        nothing = (gr.skip(), gr.skip(), gr.skip())
        if not self.access.can_edit(getattr(request, "username", None)):
            for path in files:
                self.refused("add", clean_text(Path(path).name), request, kb)
                discard_upload(path)
            return _append(status, [READ_ONLY]), None, jobs, *nothing
        engine = self.managed(self.loader.wait(STARTUP_WAIT), kb)
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
                engine.worker.refused("add", name, user_of(request), chinese(str(exc)))
                discard_upload(path)
                continue
            if existing is not None:
                pending.append([path, name, existing])
                continue
            job = engine.worker.add(Path(path), name, user=user_of(request), cleanup=partial(discard_upload, path))
            jobs.append(_job_entry(kb, job.id))
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
        self, pending: list[list[str]], jobs: list[Any], status: str, request: gr.Request = None, kb: str | None = None
    ) -> tuple[Any, ...]:  # type: ignore[assignment]
        """The user confirmed: queue the pending uploads as replacements."""
        engine = self.managed(self.loader.engine, kb)
        allowed = self.access.can_edit(getattr(request, "username", None))
        for _, name, _ in [] if allowed else pending or []:
            self.refused("replace", name, request, kb)
        if engine is None or not allowed:
            return self.on_keep(pending, status)[0], jobs, [], gr.Group(visible=False), ""
        lines, jobs = [], list(jobs or [])
        for path, name, existing in pending or []:
            job = engine.worker.add(
                Path(path), name, user=user_of(request), replace=True, cleanup=partial(discard_upload, path)
            )
            jobs.append(_job_entry(kb, job.id))
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
        self, source: str | None, jobs: list[Any], status: str, request: gr.Request = None, kb: str | None = None
    ) -> tuple[Any, ...]:  # type: ignore[assignment]
        """Queue the removal of a document (the browser asked for confirmation)."""
        if source == "":  # the confirmation was cancelled
            return gr.skip(), gr.skip()
        if not self.access.can_edit(getattr(request, "username", None)):
            self.refused("remove", clean_text(source or ""), request, kb)
            return _append(status, [READ_ONLY]), jobs
        if not source:
            return _append(status, ["请先在列表中选择要删除的文档。"]), jobs
        engine = self.managed(self.loader.engine, kb)
        if engine is None:
            return _append(status, [f"**未能删除**：{md_text(self.not_ready_text(engine))}"]), jobs
        source = clean_text(source)
        job = engine.worker.remove(source, user=user_of(request))
        return _append(status, [f"**已加入处理队列** 删除 {md_text(source)}。"]), [
            *(jobs or []),
            _job_entry(kb, job.id),
        ]

    # --- knowledge bases ---------------------------------------------------------------------------

    def on_create(self, name: str, status: str, request: gr.Request = None) -> tuple[Any, ...]:  # type: ignore[assignment]
        """Create a knowledge base (those who may edit) and manage it: status, name box, both menus."""
        from rag import KnowledgeBaseError

        name, user = clean_text(name or "").strip(), user_of(request)
        if not self.access.can_edit(getattr(request, "username", None)):
            audit_event("refused", user, False, action="kb_create", kb=name, error=READ_ONLY)
            return _append(status, [READ_ONLY]), gr.skip(), gr.skip(), gr.skip()
        engine = self.loader.wait(STARTUP_WAIT)
        if engine is None:
            return _append(status, [f"**未能新建**：{md_text(self.not_ready_text(engine))}"]), *(gr.skip(),) * 3
        try:
            info = engine.create_kb(name, user=user)
        except KnowledgeBaseError as exc:
            return _append(status, [f"**未能新建知识库**：{md_text(chinese(str(exc)))}"]), *(gr.skip(),) * 3
        choices = kb_choices(self.kb_names(engine))
        line = f"**已新建知识库** {md_text(info.name)}：现在可以向它上传文档。"
        return _append(status, [line]), "", gr.Dropdown(choices=choices, value=info.name), gr.Dropdown(choices=choices)

    def on_delete(self, kb: str | None, status: str, request: gr.Request = None) -> tuple[Any, ...]:  # type: ignore[assignment]
        """Delete the managed knowledge base (the browser asked first): its documents go to an archive folder."""
        from rag import KnowledgeBaseError

        if kb == "":  # the confirmation was cancelled
            return gr.skip(), gr.skip(), gr.skip()
        user = user_of(request)
        if not self.access.can_edit(getattr(request, "username", None)):
            audit_event("refused", user, False, action="kb_delete", kb=kb or "", error=READ_ONLY)
            return _append(status, [READ_ONLY]), gr.skip(), gr.skip()
        engine = self.loader.engine
        if engine is None or not kb:
            return _append(status, ["请先选择要删除的知识库。"]), gr.skip(), gr.skip()
        try:
            engine.delete_kb(kb, user=user)
        except KnowledgeBaseError as exc:
            return _append(status, [f"**未能删除知识库**：{md_text(chinese(str(exc)))}"]), gr.skip(), gr.skip()
        choices = kb_choices(self.kb_names(engine))
        line = f"**已删除知识库** {md_text(kb)}：其中的文档已移入存档文件夹，可由管理员恢复。"
        return _append(status, [line]), gr.Dropdown(choices=choices, value="default"), gr.Dropdown(choices=choices)
