"""The engine behind the APIs (`ui.rest`, `ui.rest_library`, `ui.openai_compat`): opened or still
opening (503 `loading`), a knowledge base's engine (503 `indexing` until it has an index), who asks, and
the API error (`ApiError`) of what the engine raised.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from starlette.requests import Request

from ui.page import Page
from ui.render import chinese
from ui.rest_auth import USER_KEY
from ui.rest_models import CODES, ApiError
from ui.startup import EngineLoader

if TYPE_CHECKING:
    from rag import Engine

log = logging.getLogger("app")
RETRY_SECONDS = 5
"""`Retry-After` of a 503 while the engine opens or indexes."""


def loaded(request: Request) -> Engine:
    """The engine (its opening started now if it had not); 503 `loading` while it opens."""
    loader: EngineLoader = request.app.state.loader
    loader.start()
    engine = loader.engine
    if engine is None:
        retry = {"Retry-After": str(RETRY_SECONDS)}
        if loader.loading:
            raise ApiError("loading", headers=retry)
        raise ApiError("unavailable", f"知识库无法打开：{chinese(loader.error, CODES['unavailable'][1])}")
    return engine


def kb_engine(engine: Engine, kb: str | None, indexed: bool = True) -> Engine:
    """The engine of one knowledge base (None: the default one); 404 `kb_not_found` for an unknown one;
    with `indexed`, 503 `indexing` until it has an index."""
    target = engine.engine_for(kb or None)
    if indexed and not target.ready:
        page = Page(EngineLoader.of(target))
        raise ApiError("indexing", page.not_ready_text(target), {"Retry-After": str(RETRY_SECONDS)})
    return target


def ready(request: Request, kbs: list[str] | None = None) -> Engine:
    """The engine, once every knowledge base asked for has an index."""
    engine = loaded(request)
    for kb in kbs or [None]:
        kb_engine(engine, kb)
    return engine


def user_of(request: Request) -> str:
    """Who made a request, for the change log: the login name, else the client's address."""
    client = request.client
    return str(request.scope.get(USER_KEY) or (client.host if client else "") or "-")


def translate(exc: Exception) -> ApiError:
    """The API error of an engine exception: its own Chinese message for the expected ones, a generic
    one (logged with its traceback) otherwise."""
    import rag

    kinds = [
        ("UnknownKnowledgeBase", "kb_not_found"),
        ("KnowledgeBaseExists", "kb_exists"),
        ("KnowledgeBaseError", "invalid_kb"),
        ("QuestionError", "invalid_question"),
        ("DocumentExists", "document_exists"),
        ("DocumentError", "invalid_document"),
        ("IndexUnavailable", "unavailable"),
    ]
    for name, code in kinds:
        kind = getattr(rag, name, None)
        if kind is not None and isinstance(exc, kind):
            if code == "unavailable":
                log.error("index unavailable: %s", exc)
                return ApiError(code, f"{chinese(str(exc), CODES[code][1])} (the index is unavailable)")
            return ApiError(code, str(exc))
    log.error("API request failed", exc_info=exc)
    return ApiError("internal_error")
