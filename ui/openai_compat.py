"""An OpenAI-compatible endpoint (`/v1/models`, `/v1/chat/completions`): chat clients (Open WebUI,
Cherry Studio, LobeChat, ChatBox, the `openai` package) talk to the knowledge bases as to a model.

One model per knowledge base, `zhengce:<name>` (`zhengce:default`). The last user message is the
question; the earlier user messages are the conversation (`Engine.ask`'s `history`, so `那上海呢`
follows up). The reply's content is the answer with its `[n]` markers, then its sources in Markdown
(`ui.render.sources_markdown`); the structured citations are an extra top-level field, `citations`
(in the last chunk when streaming). `stream: true` sends OpenAI's `chat.completion.chunk` events, a
sentence each (`ui.rest_stream`), then `data: [DONE]`. Errors have OpenAI's shape
(`{"error": {"message", "type", "param", "code"}}`); the login and its API key are `ui.rest_auth`'s.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException

from ui.render import clean_text, sources_markdown
from ui.rest_auth import OPENAI_PREFIX, error_json
from ui.rest_engine import kb_engine, loaded, translate
from ui.rest_models import ApiError
from ui.rest_stream import SSE, pieces

if TYPE_CHECKING:
    from rag import Answer, Engine

MODEL_PREFIX = "zhengce:"
"""A model id is this and a knowledge base's name."""
OWNER = "zhengce-wenda"
FILTERS = ("source", "date_from", "date_to")
"""Filters a request may add beside OpenAI's fields (the `openai` package's `extra_body`), as in the REST API."""


class Message(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: str
    content: str | list[dict[str, Any]] | None = None


class ChatRequest(BaseModel):
    """What OpenAI clients send; the sampling options (temperature, max_tokens, …) are accepted and ignored,
    `source`, `date_from` and `date_to` (`FILTERS`) narrow the documents as in the REST API."""

    model_config = ConfigDict(extra="allow")
    model: str
    messages: list[Message] = Field(min_length=1)
    stream: bool = False


def create_app(loader: Any) -> FastAPI:
    """The OpenAI-compatible API on `loader`'s engine, to be mounted at `/v1`."""
    app = FastAPI(title="政策问答 OpenAI-compatible API", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.loader = loader
    app.add_exception_handler(ApiError, _error)
    app.add_exception_handler(RequestValidationError, _error)
    app.add_exception_handler(HTTPException, _error)
    app.add_exception_handler(ValueError, _error)
    app.add_exception_handler(OSError, _error)
    app.add_api_route("/models", models, methods=["GET"])
    app.add_api_route("/chat/completions", chat_completions, methods=["POST"])
    return app


async def _error(request: Request, exc: Exception) -> Response:
    if isinstance(exc, RequestValidationError):
        where = "; ".join(f"{'.'.join(map(str, e.get('loc', ())))}: {e.get('msg', '')}" for e in exc.errors()[:3])
        exc = ApiError("invalid_request", f"请求的格式不对 (invalid request: {where})")
    elif isinstance(exc, HTTPException):
        exc = ApiError({404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "invalid_request"))
    elif not isinstance(exc, ApiError):
        exc = translate(exc)
    assert isinstance(exc, ApiError)
    status = 400 if exc.code == "invalid_request" else exc.status  # OpenAI answers 400 to a malformed request
    body = error_json(OPENAI_PREFIX, status, exc.code, exc.message)
    return Response(body, status, exc.headers, media_type="application/json")


def _names(engine: Engine) -> list[str]:
    return [info.name for info in engine.knowledge_bases()]


def models(request: Request) -> dict[str, Any]:
    """One model per knowledge base: `zhengce:<name>`."""
    engine = loaded(request)
    data = [{"id": MODEL_PREFIX + name, "object": "model", "created": 0, "owned_by": OWNER} for name in _names(engine)]
    return {"object": "list", "data": data}


def knowledge_base(engine: Engine, model: str) -> str:
    """The knowledge base a model id names; 404 `model_not_found` in OpenAI's shape otherwise."""
    name = model[len(MODEL_PREFIX) :] if model.startswith(MODEL_PREFIX) else ""
    if name not in _names(engine):
        known = "、".join(MODEL_PREFIX + n for n in _names(engine))
        raise ApiError("model_not_found", f"没有模型“{model}”，可用的有：{known} (the model does not exist)")
    return name


def text_of(message: Message) -> str:
    """A message's text (a string, or the text parts of a list of content parts)."""
    if isinstance(message.content, list):
        return "".join(str(part.get("text", "")) for part in message.content if part.get("type") == "text")
    return message.content or ""


def chat_completions(body: ChatRequest, request: Request) -> Any:
    """The last user message answered from the model's knowledge base, the earlier ones its history."""
    engine = loaded(request)
    kb = knowledge_base(engine, body.model)
    kb_engine(engine, kb)
    asked = [clean_text(text_of(m)) for m in body.messages if m.role == "user"]
    if body.messages[-1].role != "user" or not asked:
        raise ApiError("invalid_request", "最后一条消息须是用户的问题 (the last message must be the user's)")
    question, history = asked[-1], asked[:-1]
    scope: dict[str, Any] = {} if kb == "default" else {"kbs": [kb]}
    extra = body.model_extra or {}
    scope |= {key: extra[key] for key in FILTERS if extra.get(key)}
    reply = Reply(body.model)
    if not body.stream:
        answer = engine.ask(question, history=history, **scope)
        return reply.completion(answer)
    events = engine.ask_stream(question, history=history, **scope)  # a QuestionError is raised here
    return StreamingResponse(reply.chunks(events), media_type=SSE, headers={"Cache-Control": "no-cache"})


def content(answer: Answer) -> str:
    """The reply: the answer with its `[n]` markers, then its sources in Markdown."""
    if not answer.citations:
        return answer.answer
    return answer.answer + "\n\n" + "\n".join(sources_markdown(answer, None, "**")).rstrip() + "\n"


class Reply:
    """One reply, as a whole or as chunks."""

    def __init__(self, model: str) -> None:
        self.model, self.id, self.created = model, f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())

    def completion(self, answer: Answer) -> dict[str, Any]:
        message = {"role": "assistant", "content": content(answer)}
        choice = {"index": 0, "message": message, "finish_reason": "stop", "logprobs": None}
        return {**self._head("chat.completion"), "choices": [choice], **extra(answer)}

    def _head(self, kind: str) -> dict[str, Any]:
        return {"id": self.id, "object": kind, "created": self.created, "model": self.model}

    def _chunk(self, delta: dict[str, Any], finish: str | None = None, **more: Any) -> bytes:
        choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
        record = {**self._head("chat.completion.chunk"), "choices": [choice], **more}
        return f"data: {json.dumps(record, ensure_ascii=False)}\n\n".encode()

    def chunks(self, events: Any) -> Iterator[bytes]:
        """Chunks: the role, each sentence, the sources (and, when a written answer fell back, the
        answer shown instead), the end with the citations; then `[DONE]`."""
        yield self._chunk({"role": "assistant", "content": ""})
        streamed = ""
        try:
            for piece in pieces(events):
                if isinstance(piece, tuple):
                    streamed += piece[0]
                    yield self._chunk({"content": piece[0]})
                    continue
                yield self._chunk({"content": rest_of(piece, streamed)})
                yield self._chunk({}, "stop", **extra(piece))
        except Exception as exc:  # the status is sent already: OpenAI's clients raise on an error event
            error = translate(exc)
            yield f"data: {error_json(OPENAI_PREFIX, error.status, error.code, error.message).decode()}\n\n".encode()
        yield b"data: [DONE]\n\n"


def rest_of(answer: Answer, streamed: str) -> str:
    """What follows the streamed sentences: the sources, preceded by the final answer itself when it is not
    what was streamed (a written answer that fell back to the extractive one)."""
    whole = content(answer)
    if whole.startswith(streamed):
        return whole[len(streamed) :]
    note = answer.generation.note if answer.generation is not None and answer.generation.note else ""
    return f"\n\n---\n\n{note or '以上内容作废，以下为摘录原文的回答。'}\n\n{whole}"


def extra(answer: Answer) -> dict[str, Any]:
    """The fields OpenAI's format does not have: the citations, and whether the answer abstained."""
    return {"citations": [c.to_dict() for c in answer.citations], "abstained": answer.abstained}
