"""A client for an OpenAI-compatible chat server (`/v1/chat/completions`): llama.cpp `llama-server`,
vLLM, Ollama, Xinference or OpenAI itself.

Plain `httpx` (already installed with gradio): one POST, answered whole or streamed as server-sent
events. Every failure — server down, timeout, HTTP error, a reply that is not the protocol — raises
`LLMError` with a message that says what happened, so the caller can fall back.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx

from rag.config import Settings

Message = dict[str, str]

_THINK = re.compile(r"<think>.*?(?:</think>|$)", re.S)


class LLMError(RuntimeError):
    """The model server could not give an answer; the message says why (in English, for logs)."""


def endpoint(base_url: str, path: str) -> str:
    """`http://host:8080` or `http://host:8080/v1` + `chat/completions` → `http://host:8080/v1/chat/completions`."""
    base = base_url.rstrip("/")
    if not base.endswith("/v1"):
        base += "/v1"
    return f"{base}/{path}"


@dataclass
class ChatClient:
    """Chat completions from one model on one server; made by `from_settings`, where every value has
    its default (`Settings.llm_*`)."""

    base_url: str
    model: str
    """Model name sent with each request; empty = the first model the server lists (`/v1/models`)."""
    api_key: str = field(repr=False)
    timeout: float
    """Seconds to wait for the reply (not streaming) or for each piece of it (streaming)."""
    connect_timeout: float
    max_tokens: int
    temperature: float
    _http: httpx.Client | None = field(default=None, init=False, repr=False)

    @classmethod
    def from_settings(cls, settings: Settings) -> ChatClient | None:
        """The client `settings` configure, or None when no server is configured."""
        if not settings.llm_base_url:
            return None
        return cls(
            settings.llm_base_url,
            settings.llm_model,
            settings.llm_api_key,
            settings.llm_timeout,
            settings.llm_connect_timeout,
            settings.llm_max_tokens,
            settings.llm_temperature,
        )

    def complete(self, messages: list[Message]) -> str:
        """The model's whole reply to `messages`."""
        reply = self._request("POST", "chat/completions", self._body(messages, stream=False))
        try:
            content = reply.json()["choices"][0]["message"].get("content") or ""
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
            raise LLMError(f"the model server at {self.base_url} sent a reply that is not a chat completion") from exc
        return _THINK.sub("", content).strip()

    def stream(self, messages: list[Message]) -> Iterator[str]:
        """The model's reply to `messages`, piece by piece as the server sends it (`<think>` parts left out)."""
        body = self._body(messages, stream=True)
        url = endpoint(self.base_url, "chat/completions")
        try:
            with self._client().stream("POST", url, json=body, headers=self._headers()) as response:
                _check(response, self.base_url)
                yield from _visible(_event_texts(response.iter_lines()))
        except httpx.HTTPError as exc:
            raise _error(exc, self.base_url) from exc

    def resolved_model(self) -> str:
        """The configured model name, else the first model the server lists."""
        if not self.model:
            try:
                self.model = str(self._request("GET", "models").json()["data"][0]["id"])
            except (ValueError, KeyError, IndexError, TypeError) as exc:
                raise LLMError(
                    f"no model name configured and {self.base_url} lists none: set RAG_LLM_MODEL or --llm-model"
                ) from exc
        return self.model

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None

    # --- protocol ------------------------------------------------------------------------------

    def _body(self, messages: list[Message], stream: bool) -> dict[str, object]:
        return {
            "model": self.resolved_model(),
            "messages": messages,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "stream": stream,
        }

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def _client(self) -> httpx.Client:
        if self._http is None:
            timeout = httpx.Timeout(self.timeout, connect=self.connect_timeout)
            self._http = httpx.Client(timeout=timeout, trust_env=False)
        return self._http

    def _request(self, method: str, path: str, body: dict[str, object] | None = None) -> httpx.Response:
        try:
            response = self._client().request(method, endpoint(self.base_url, path), json=body, headers=self._headers())
        except httpx.HTTPError as exc:
            raise _error(exc, self.base_url) from exc
        _check(response, self.base_url)
        return response


def _event_texts(lines: Iterator[str]) -> Iterator[str]:
    """The text pieces of a server-sent-event stream, up to `data: [DONE]`."""
    for line in lines:
        piece = _event_text(line)
        if piece is None:
            return
        if piece:
            yield piece


def _visible(pieces: Iterator[str]) -> Iterator[str]:
    """The pieces without `<think>…</think>` (reasoning models), even when a tag is split over pieces."""
    buffer, thinking = "", False
    for piece in pieces:
        buffer += piece
        out = ""
        while True:
            tag = "</think>" if thinking else "<think>"
            at = buffer.find(tag)
            if at < 0:
                keep = next((k for k in range(len(tag) - 1, 0, -1) if buffer.endswith(tag[:k])), 0)
                out += "" if thinking else buffer[: len(buffer) - keep]
                buffer = buffer[len(buffer) - keep :]
                break
            out += "" if thinking else buffer[:at]
            buffer, thinking = buffer[at + len(tag) :], not thinking
        if out:
            yield out
    if buffer and not thinking:
        yield buffer


def _event_text(line: str) -> str | None:
    """The text of one server-sent-event line ('' for none), or None at the end of the stream."""
    if not line.startswith("data:"):
        return ""  # blank separators, comments (`: ping`), `event:` lines
    data = line[5:].strip()
    if data == "[DONE]":
        return None
    try:
        event = json.loads(data)
    except ValueError as exc:
        raise LLMError(f"the model server sent an event that is not JSON: {data[:80]!r}") from exc
    if isinstance(event, dict) and "error" in event:
        raise LLMError(f"the model server reported an error: {str(event['error'])[:200]}")
    try:
        choice = event["choices"][0] if event.get("choices") else {}
        return (choice.get("delta") or {}).get("content") or ""
    except (AttributeError, KeyError, IndexError, TypeError) as exc:
        raise LLMError("the model server sent an event that is not a chat completion chunk") from exc


def _check(response: httpx.Response, base_url: str) -> None:
    if response.status_code >= 400:
        response.read()
        detail = response.text[:200].replace("\n", " ")
        hint = " (check RAG_LLM_API_KEY)" if response.status_code in (401, 403) else ""
        raise LLMError(f"the model server at {base_url} answered HTTP {response.status_code}{hint}: {detail}")


def _error(exc: httpx.HTTPError, base_url: str) -> LLMError:
    if isinstance(exc, httpx.ConnectError):
        return LLMError(f"cannot reach the model server at {base_url}: {exc}")
    if isinstance(exc, httpx.TimeoutException):
        return LLMError(f"the model server at {base_url} did not answer in time ({type(exc).__name__})")
    return LLMError(f"talking to the model server at {base_url} failed: {exc}")
