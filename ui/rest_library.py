"""The REST API's documents, jobs and knowledge bases (`/api/v1/documents`, `/jobs/{id}`, `/kbs`).

Uploads go through the page's path: the quick checks (`Engine.check_upload`: type, size, name), then
the knowledge base's background worker (`worker.add`: copied into the corpus folder, journaled, indexed,
each event in the change log under the user's name); the request answers 202 with the job at once,
and `GET /jobs/{id}` says how it went. Removals are queued the same way. Knowledge bases are created,
renamed and deleted at once (a deleted one's documents are archived). `ui.rest_auth.ApiGuard` has
refused every change to users who may not make it before these routes run.
"""

from __future__ import annotations

import shutil
import tempfile
from contextlib import suppress
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, File, Form, Query, Request, UploadFile

from ui.access import audit_event
from ui.render import chinese, clean_text
from ui.rest_engine import kb_engine, loaded, user_of
from ui.rest_models import (
    ApiError,
    DocumentsOut,
    ErrorResponse,
    JobOut,
    KbCreate,
    KbDeleted,
    KbOut,
    KbRename,
    KbsOut,
)

if TYPE_CHECKING:
    from rag import Engine, Job

router = APIRouter()
COPY_CHUNK = 1 << 20
KbParam = Annotated[str | None, Query(description="knowledge base (default: `default`)")]
_CHANGES: dict[int | str, dict[str, Any]] = {
    403: {"model": ErrorResponse, "description": "read-only user"},
    404: {"model": ErrorResponse, "description": "no such knowledge base, document or job"},
    409: {"model": ErrorResponse, "description": "a document or knowledge base of that name exists"},
}


def job_json(job: Job, kb: str | None) -> dict[str, Any]:
    fields = ("id", "action", "name", "state", "error", "source")
    return {**{key: getattr(job, key) for key in fields}, "kb": kb or "default"}


@router.get(
    "/documents", response_model=DocumentsOut, responses=_CHANGES, summary="The indexed documents of a knowledge base"
)
def documents(request: Request, kb: KbParam = None) -> dict[str, Any]:
    """The documents of a knowledge base, in corpus order (none while it has no index yet)."""
    engine = kb_engine(loaded(request), kb, indexed=False)
    docs = [{**d.__dict__, "kb": engine.name} for d in engine.documents()] if engine.ready else []
    return {"documents": docs}


@router.post(
    "/documents", status_code=202, response_model=JobOut, responses=_CHANGES, summary="Upload a document (queued)"
)
def upload(
    request: Request,
    file: Annotated[UploadFile, File(description="`.txt .md .docx .pdf .html`, at most 20 MB")],
    kb: Annotated[str | None, Form(description="knowledge base (default: `default`)")] = None,
    replace: Annotated[bool, Form(description="replace a document of the same name (kept in `.versions/`)")] = False,
) -> dict[str, Any]:
    """Check the file and queue it for indexing in the knowledge base's background worker (202 with the
    job; `GET /jobs/{id}` for its outcome). A name already in the knowledge base needs `replace=true`."""
    from rag import DocumentError

    engine = kb_engine(loaded(request), kb, indexed=False)
    name, user = clean_text(file.filename or "upload"), user_of(request)
    folder = Path(tempfile.mkdtemp(prefix="rag-api-upload-"))
    path = folder / f"upload{Path(name).suffix.lower()}"
    try:
        with path.open("wb") as out:
            shutil.copyfileobj(file.file, out, COPY_CHUNK)
        try:
            _, existing = engine.check_upload(path, name)
        except DocumentError as exc:
            engine.worker.refused("add", name, user, chinese(str(exc)))
            raise ApiError("invalid_document", str(exc)) from None
        if existing is not None and not replace:
            raise ApiError("document_exists", f"知识库中已有同名文档“{existing}”；要替换请加 replace=true (exists)")
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    job = engine.worker.add(path, name, user=user, replace=replace, cleanup=partial(_discard, folder))
    if job.state == "failed":  # refused when staged (no room, unreadable)
        raise ApiError("invalid_document", job.error)
    return job_json(job, kb)


def _discard(folder: Path) -> None:
    with suppress(OSError):
        shutil.rmtree(folder)


@router.delete(
    "/documents/{source}", status_code=202, response_model=JobOut, responses=_CHANGES, summary="Remove a document"
)
def remove(source: str, request: Request, kb: KbParam = None) -> dict[str, Any]:
    """Queue the removal of a document (kept in the corpus's `.versions/`); 202 with the job."""
    engine = kb_engine(loaded(request), kb)
    source = clean_text(source)
    if source not in {d.source for d in engine.documents()}:
        raise ApiError("document_not_found", f"知识库中没有文档“{source}” (no such document)")
    return job_json(engine.worker.remove(source, user=user_of(request)), kb)


@router.get("/jobs/{job_id}", response_model=JobOut, responses=_CHANGES, summary="How a queued change went")
def job(job_id: int, request: Request, kb: KbParam = None) -> dict[str, Any]:
    found = kb_engine(loaded(request), kb, indexed=False).worker.job(job_id)
    if found is None:
        raise ApiError("job_not_found")
    return job_json(found, kb)


# --- knowledge bases ---------------------------------------------------------------------------------


def _kb(info: Any) -> dict[str, Any]:
    return {key: value for key, value in info.to_dict().items() if key in KbOut.model_fields}


@router.get("/kbs", response_model=KbsOut, summary="The knowledge bases")
def kbs(request: Request) -> dict[str, Any]:
    return {"kbs": [_kb(info) for info in loaded(request).knowledge_bases()]}


@router.post("/kbs", status_code=201, response_model=KbOut, responses=_CHANGES, summary="Create a knowledge base")
def create_kb(body: KbCreate, request: Request) -> dict[str, Any]:
    name = clean_text(body.name)
    return _kb(_changed(request, "kb_create", name, lambda engine, user: engine.create_kb(name, user=user)))


@router.patch("/kbs/{name}", response_model=KbOut, responses=_CHANGES, summary="Rename a knowledge base")
def rename_kb(name: str, body: KbRename, request: Request) -> dict[str, Any]:
    new = clean_text(body.name)
    return _kb(_changed(request, "kb_rename", name, lambda engine, user: engine.rename_kb(name, new, user=user)))


@router.delete("/kbs/{name}", response_model=KbDeleted, responses=_CHANGES, summary="Delete a knowledge base")
def delete_kb(name: str, request: Request) -> dict[str, Any]:
    """Delete a knowledge base; its documents are kept in a dated archive folder on the server."""
    _changed(request, "kb_delete", name, lambda engine, user: engine.delete_kb(name, user=user))
    return {"name": name, "archived": True}


def _changed(request: Request, action: str, name: str, change: Any) -> Any:
    """Make a knowledge-base change as the request's user (the engine writes it to the audit log); one
    that fails is written there too, with why."""
    engine: Engine = loaded(request)
    user = user_of(request)
    try:
        return change(engine, user)
    except Exception as exc:
        address = request.client.host if request.client else "-"
        audit_event("refused", user, False, action=action, kb=name, address=address, error=str(exc)[:300], via="api")
        raise
