"""The REST API beside the page (`/api/v1/`): ask, search, documents, jobs, knowledge bases.

A FastAPI app mounted on the page's server (`ui.layout.launch`), over the same `EngineLoader` and the
same users and rules (`ui.rest_auth.ApiGuard` has checked the login and the read-only rule before a
route runs). Its schema is `/api/v1/openapi.json`, its docs `/api/v1/docs`; models in `ui.rest_models`.
While the engine opens, every route that needs it answers 503 `loading`; errors are
`{"error": {"code", "message"}}` with the codes of `ui.rest_models.CODES`.

Routes: `POST /ask` (JSON, or `stream: true` for server-sent events / NDJSON), `POST /search` here;
documents, jobs and knowledge bases in `ui.rest_library`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, StreamingResponse
from fastapi_offline import FastAPIOffline
from starlette.exceptions import HTTPException
from starlette.routing import Mount

from ui.access import audit_event
from ui.openai_compat import create_app as openai_app
from ui.page import Page
from ui.render import clean_text, export_markdown
from ui.rest_auth import OPENAI_PREFIX, REST_PREFIX, Refused
from ui.rest_engine import ready, translate
from ui.rest_library import router as library
from ui.rest_models import (
    CODES,
    ERROR_RESPONSES,
    AnswerOut,
    ApiError,
    AskRequest,
    ErrorResponse,
    Filters,
    SearchOut,
    SearchRequest,
    StreamEvent,
    error_body,
)
from ui.rest_stream import NDJSON, SSE, frame, media_type, pieces
from ui.startup import EngineLoader

if TYPE_CHECKING:
    from rag import Answer, Engine

VERSION = "1.0.0"
DESCRIPTION = """政策问答的 REST 接口：带引用的回答、检索、文档和知识库管理。

Login (when the server has users): HTTP Basic, or `Authorization: Bearer user:password` (an entry of the
users file; its base64 for names or passwords beyond ASCII). Read-only users may ask and search; changes
need an administrator (`--read-only`). While the engine loads: 503 `loading`. Errors are
`{"error": {"code": "...", "message": "中文说明 (English)"}}`."""


def create_app(loader: EngineLoader) -> FastAPI:
    """The REST API on `loader`'s engine, to be mounted at `/api/v1`."""
    app = FastAPIOffline(  # the docs page's scripts come from this server: the product works offline
        title="政策问答 REST API",
        version=VERSION,
        description=DESCRIPTION,
        docs_url="/docs",
        redoc_url=None,
        openapi_url="/openapi.json",
        responses=ERROR_RESPONSES,
    )
    app.state.loader = loader
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _invalid)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(ValueError, _engine_error)
    app.add_exception_handler(OSError, _engine_error)
    app.add_api_route("/ask", ask, methods=["POST"], response_model=AnswerOut, responses=_STREAMS,
                      summary="A cited answer (or a stream of its sentences)")  # fmt: skip
    app.add_api_route(
        "/search",
        search,
        methods=["POST"],
        response_model=SearchOut,
        responses=QUESTION_ERRORS,
        summary="The top passages",
    )
    app.include_router(library)
    app.openapi = lambda: _schema(app)  # type: ignore[method-assign]
    return app


def _schema(app: FastAPI) -> dict[str, Any]:
    """FastAPI's schema, with the stream's event model (which no route returns as JSON) in its components."""
    if app.openapi_schema is None:
        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        event = StreamEvent.model_json_schema(ref_template="#/components/schemas/{model}")
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for name, definition in event.pop("$defs", {}).items():
            components.setdefault(name, definition)
        components["StreamEvent"] = event
        schema["components"]["securitySchemes"] = {
            "basic": {"type": "http", "scheme": "basic", "description": "a user of the users file"},
            "bearer": {"type": "http", "scheme": "bearer", "description": "`user:password`, or its base64"},
        }
        schema["security"] = [{"basic": []}, {"bearer": []}, {}]  # {}: servers without a login
        app.openapi_schema = schema
    return app.openapi_schema


def mounts(loader: EngineLoader) -> list[Mount]:
    """The REST API at `/api/v1` and the OpenAI-compatible one at `/v1`, for the page's server."""
    return [Mount(REST_PREFIX, create_app(loader)), Mount(OPENAI_PREFIX, openai_app(loader))]


def record_refusal(loader: EngineLoader) -> Refused:
    """How `ApiGuard` records a refused change: in the change log with the page's (and the audit log) once
    the engine is open, else in the audit log."""

    def record(action: str, name: str, user: str, message: str) -> None:
        engine = loader.engine
        if engine is not None and action in ("add", "remove"):
            engine.worker.refused(action, name, user, message)
        else:
            audit_event("refused", user, False, action=action, file=name, error=message, via="api")

    return record


# --- errors ------------------------------------------------------------------------------------------


def error_response(code: str, message: str = "", headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(code, message), CODES[code][0], headers)


async def _api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return error_response(exc.code, exc.message, exc.headers)


async def _invalid(request: Request, exc: Exception) -> JSONResponse:
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    where = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', '')}" for e in errors[:3])
    return error_response("invalid_request", f"请求的格式不对 (invalid request: {where})")


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    status = getattr(exc, "status_code", 500)
    code = {404: "not_found", 405: "method_not_allowed"}.get(
        status, "invalid_request" if status < 500 else "internal_error"
    )
    return error_response(code)


async def _engine_error(request: Request, exc: Exception) -> JSONResponse:
    error = translate(exc)
    return error_response(error.code, error.message, error.headers)


def filters(body: Filters) -> dict[str, Any]:
    """The knowledge bases and filters a request names, as `Engine.ask`/`search` keywords."""
    given = {"kbs": body.kbs, "source": body.source, "date_from": body.date_from, "date_to": body.date_to}
    return {key: value for key, value in given.items() if value}


def lookup(engine: Engine) -> Any:
    """`source -> Document | None` in the default knowledge base (titles come with the citations)."""
    return Page.lookup(engine)


def answer_json(answer: Answer, engine: Engine) -> dict[str, Any]:
    """An answer as the API returns it: its JSON form and the Markdown export."""
    return {**answer.to_dict(), "markdown": export_markdown(answer, lookup(engine))}


# --- routes ------------------------------------------------------------------------------------------

QUESTION_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "empty question, invalid filter"},
    404: {"model": ErrorResponse, "description": "unknown knowledge base"},
}
_STREAMS: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "the answer; with `stream: true`, `StreamEvent`s as server-sent events (`data: {…}`) "
        "or NDJSON lines",
        "content": {
            SSE: {"schema": {"$ref": "#/components/schemas/StreamEvent"}},
            NDJSON: {"schema": {"$ref": "#/components/schemas/StreamEvent"}},
        },
    },
    **QUESTION_ERRORS,
}


def ask(body: AskRequest, request: Request) -> Any:
    """A cited answer to `question` within the knowledge bases and filters given; `history` holds the
    earlier turns (questions or returned answers) for follow-ups. `stream: true`: `delta` events, each
    a verified sentence with the citations it introduces, then one `final` event with the answer."""
    engine = ready(request, body.kbs)
    question = clean_text(body.question)
    history = [clean_text(turn) if isinstance(turn, str) else turn for turn in body.history]
    if not body.stream:
        answer = engine.ask(question, history=history, k=body.k, **filters(body))
        return answer_json(answer, engine)
    events = engine.ask_stream(question, history=history, k=body.k, **filters(body))  # errors raised here
    media = media_type(request.headers.get("accept", ""))
    return StreamingResponse(_events(events, engine, media), media_type=media, headers={"Cache-Control": "no-cache"})


def _events(events: Any, engine: Engine, media: str) -> Iterator[bytes]:
    try:
        for piece in pieces(events):
            if isinstance(piece, tuple):
                text, cited = piece
                yield frame({"type": "delta", "text": text, "citations": [c.to_dict() for c in cited]}, media)
            else:
                yield frame({"type": "final", "answer": answer_json(piece, engine)}, media)
    except Exception as exc:  # the status is sent already: the stream ends with an error event
        error = translate(exc)
        yield frame({"type": "error", "error": error_body(error.code, error.message)["error"]}, media)


def search(body: SearchRequest, request: Request) -> SearchOut:
    """The `k` best passages for `question`, best first, within the knowledge bases and filters given."""
    engine = ready(request, body.kbs)
    question = clean_text(body.question)
    passages = engine.search(question, k=body.k, **filters(body))
    return SearchOut.model_validate({"query": question, "passages": [p.to_dict() for p in passages]})
