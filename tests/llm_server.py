"""A scripted OpenAI-compatible chat server for tests: it stands in for the language model only.

It speaks `/v1/chat/completions` (whole replies, and server-sent events when the request streams)
and `/v1/models`, answers with scripted replies in order, and records each request. It can be taken
down (`down()`: nothing listens on its port any more) or made to fail (`status=500`), stall
(`delay`) or never finish (`trickle`), so the product's fallbacks can be tested. No network beyond
127.0.0.1.

    with ScriptedLLM(["纪委的监督责任是……。[1]"]) as llm:
        settings = settings.replace(llm_base_url=llm.url, llm_model="scripted")

A reply may be a function of the request's messages (e.g. to cite the source that holds a phrase,
whatever its rank: `source_number(messages, "协助")`).
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

Reply = str | Callable[[list[dict]], str]

MODEL = "scripted-qwen"


class ScriptedLLM:
    """An OpenAI-compatible server on 127.0.0.1 that answers with scripted replies, in order (the
    last one again when they run out)."""

    def __init__(self, replies: list[Reply] | None = None, chunk: int = 3) -> None:
        self.replies: list[Reply] = list(replies or [])
        self.chunk = chunk
        """Characters per streamed event."""
        self.requests: list[dict] = []
        self.status = 200
        self.delay = 0.0
        """Seconds to wait before answering (and between streamed events)."""
        self.trickle = 0.0
        """When set, every reply is a byte every this many seconds, forever (until `down()`): a server
        that keeps the connection alive but never finishes (SSE comments, or JSON whitespace)."""
        self._served = 0
        self._server: ThreadingHTTPServer | None = None
        self.port = 0

    # --- lifecycle -----------------------------------------------------------------------------

    def start(self) -> ScriptedLLM:
        server = ThreadingHTTPServer(("127.0.0.1", self.port), _handler(self))
        server.daemon_threads = True
        self.port = server.server_address[1]
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self._server = server
        return self

    def down(self) -> None:
        """Stop listening: requests now fail to connect, as when the model server is down."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> ScriptedLLM:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.down()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    # --- replies -------------------------------------------------------------------------------

    def next_reply(self, messages: list[dict]) -> str:
        if not self.replies:
            return ""
        reply = self.replies[min(self._served, len(self.replies) - 1)]
        self._served += 1
        return reply(messages) if callable(reply) else reply


def sources(messages: list[dict]) -> dict[int, str]:
    """The numbered sources of a prompt: number → passage text."""
    prompt = messages[-1]["content"]
    pattern = r"^\[(\d+)\] [^\n]*\n(.*?)(?=\n\n\[\d+\] |\n\n问题)"
    return {int(m.group(1)): m.group(2) for m in re.finditer(pattern, prompt, re.S | re.M)}


def source_number(messages: list[dict], phrase: str, holding: bool = True) -> int:
    """The number of the first source in the prompt whose text holds `phrase` (with `holding=False`:
    the first that does not); 0 if there is none."""
    return next((n for n, text in sources(messages).items() if (phrase in text) == holding), 0)


def cite(template: str, messages: list[dict]) -> str:
    """`template` with `[@phrase]` replaced by `[n]` of the source holding `phrase` and `[@!phrase]` by
    `[n]` of a source that does not hold it (a wrong citation); `[0]` when there is none."""

    def number(match: re.Match[str]) -> str:
        wrong, phrase = match.group(1) == "!", match.group(2)
        return f"[{source_number(messages, phrase, holding=not wrong)}]"

    return re.sub(r"\[@(!?)([^\]]+)\]", number, template)


def citing(template: str) -> Callable[[list[dict]], str]:
    """A scripted reply that cites by phrase (see `cite`), whatever rank the sources come in."""
    return lambda messages: cite(template, messages)


def unused_url() -> str:
    """The URL of a port on 127.0.0.1 where nothing listens (a server that is down)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


def _handler(llm: ScriptedLLM) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:  # keep test output clean
            pass

        def do_GET(self) -> None:
            if self.path.rstrip("/") == "/v1/models":
                self._json(200, {"object": "list", "data": [{"id": MODEL, "object": "model"}]})
            else:
                self._json(404, {"error": {"message": f"no route {self.path}"}})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            llm.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
            if self.path != "/v1/chat/completions":
                self._json(404, {"error": {"message": f"no route {self.path}"}})
                return
            time.sleep(llm.delay)
            if llm.status != 200:
                self._json(llm.status, {"error": {"message": "scripted failure", "code": llm.status}})
                return
            if llm.trickle:
                self._trickle(bool(body.get("stream")))
                return
            reply = llm.next_reply(body.get("messages", []))
            if body.get("stream"):
                self._stream(reply, body.get("model", MODEL))
            else:
                self._json(200, _completion(reply, body.get("model", MODEL)))

        def _json(self, status: int, payload: dict) -> None:
            data = json.dumps(payload, ensure_ascii=False).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _trickle(self, stream: bool) -> None:
            """One byte at a time, never finished: `: keep-alive` comments, or the whitespace of a JSON
            body that announced a gigabyte."""
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream" if stream else "application/json")
            if not stream:
                self.send_header("Content-Length", str(10**9))
            self.end_headers()
            filler = b": keep-alive\n\n" if stream else b" "
            sent = 0
            try:
                while llm._server is not None:
                    self.wfile.write(filler[sent % len(filler) :][:1])
                    self.wfile.flush()
                    sent += 1
                    time.sleep(llm.trickle)
            except OSError:  # the client gave up
                pass
            self.close_connection = True

        def _stream(self, reply: str, model: str) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Connection", "close")
            self.end_headers()
            for event in _events(reply, model, llm.chunk):
                self.wfile.write(f"data: {json.dumps(event, ensure_ascii=False)}\n\n".encode())
                self.wfile.flush()
                time.sleep(llm.delay)
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()
            self.close_connection = True

    return Handler


def _completion(reply: str, model: str) -> dict:
    return {
        "id": "chatcmpl-scripted",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": reply}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 0, "completion_tokens": len(reply), "total_tokens": len(reply)},
    }


def _events(reply: str, model: str, chunk: int) -> Iterator[dict]:
    def event(delta: dict, finish: str | None = None) -> dict:
        return {
            "id": "chatcmpl-scripted",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }

    yield event({"role": "assistant", "content": ""})
    for i in range(0, len(reply), chunk):
        yield event({"content": reply[i : i + chunk]})
    yield event({}, "stop")


@pytest.fixture
def scripted_llm() -> Iterator[ScriptedLLM]:
    """A scripted OpenAI-compatible server on a free port (set `.replies`; `.down()` to stop it)."""
    with ScriptedLLM() as llm:
        yield llm
