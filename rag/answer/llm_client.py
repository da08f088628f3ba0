"""A client for an OpenAI-compatible chat server (`/v1/chat/completions`): llama.cpp `llama-server`,
vLLM, Ollama, Xinference or OpenAI itself.

Plain `httpx` (already installed with gradio): one POST, answered whole or streamed as server-sent
events. The reply is read as it arrives, against one deadline (`timeout` for the whole reply, not for
each read: a server that keeps the connection alive with a byte now and then is cut off too). Every
failure — server down, timeout, HTTP error, a reply that is not the protocol — raises `LLMError` with a
message that says what happened, so the caller can fall back.
"""

from __future__ import annotations

import codecs
import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx

from rag.config import Settings

Message = dict[str, str]

_THINK = re.compile(r"<think>.*?(?:</think>|$)", re.S)
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_MAX_BYTES = 16 * 1024 * 1024
"""A reply larger than this is not a chat answer (a hostile or broken server): reading stops."""


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
    """Seconds the whole reply may take (streamed or not), from the request to its last byte."""
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
        deadline = time.monotonic() + self.timeout
        body = self._body(messages, stream=False, deadline=deadline)
        raw = b"".join(self._read("POST", "chat/completions", deadline, body))
        try:
            content = json.loads(raw)["choices"][0]["message"].get("content") or ""
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
            raise LLMError(f"the model server at {self.base_url} sent a reply that is not a chat completion") from exc
        return _THINK.sub("", content).strip()

    def stream(self, messages: list[Message]) -> Iterator[str]:
        """The model's reply to `messages`, piece by piece as the server sends it (`<think>` parts left out)."""
        deadline = time.monotonic() + self.timeout
        body = self._body(messages, stream=True, deadline=deadline)
        yield from _visible(_event_texts(_lines(self._read("POST", "chat/completions", deadline, body))))

    def resolved_model(self, deadline: float | None = None) -> str:
        """The configured model name, else the first model the server lists."""
        if not self.model:
            deadline = deadline if deadline is not None else time.monotonic() + self.timeout
            try:
                self.model = str(json.loads(b"".join(self._read("GET", "models", deadline)))["data"][0]["id"])
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

    def _body(self, messages: list[Message], stream: bool, deadline: float) -> dict[str, object]:
        return {
            "model": self.resolved_model(deadline),
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

    def _read(self, method: str, path: str, deadline: float, body: dict[str, object] | None = None) -> Iterator[bytes]:
        """The body of the server's answer, as it arrives; `LLMError` once `deadline` (a `time.monotonic`
        instant) has passed between two pieces, or when it grows past `_MAX_BYTES`."""
        url, size = endpoint(self.base_url, path), 0
        try:
            with self._client().stream(method, url, json=body, headers=self._headers()) as response:
                _check(response, self.base_url)
                for data in response.iter_bytes():
                    size += len(data)
                    if time.monotonic() > deadline:
                        raise LLMError(f"the model server at {self.base_url} did not finish within {self.timeout:g} s")
                    if size > _MAX_BYTES:
                        raise LLMError(f"the model server at {self.base_url} sent more than {_MAX_BYTES} bytes")
                    yield data
        except httpx.HTTPError as exc:
            raise _error(exc, self.base_url) from exc


def _lines(chunks: Iterator[bytes]) -> Iterator[str]:
    """The lines of a UTF-8 byte stream, each as soon as it is complete."""
    decoder, buffer = codecs.getincrementaldecoder("utf-8")("replace"), ""
    for data in chunks:
        *lines, buffer = _LINE_BREAK.split(buffer + decoder.decode(data))
        yield from lines
    buffer += decoder.decode(b"", final=True)
    if buffer:
        yield buffer


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
