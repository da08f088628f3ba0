"""Who may use the chat page and who may change the knowledge base.

`--auth` / `RAG_AUTH` takes users inline or a file of them:

    --auth "张三:密码1,李四:密码2:admin"
    --auth @/etc/zhengce/users.txt          (or just the path of an existing file)

A file holds one `user:password` per line, `:admin` after the password for an administrator; blank
lines and lines starting with `#` are ignored. With users, the page and its HTTP API need a login.
`--read-only` hides upload and removal from everyone but administrators (from everyone, without users).

`Guard` stands in front of Gradio's routes: it throttles logins per user name and per client address
(Gradio calls the `auth` function with the name and password only, so the address is known only here),
refuses uploads to those who may not edit before their body is read and bounds their size. Logins and
refused actions go to the `rag.audit` log (`audit_event`), one JSON line each, never a password.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from starlette.requests import HTTPConnection, Request

ADMIN = "admin"
READ_ONLY = "只读模式：你没有添加或删除文档的权限。"
"""What a user who may not edit is told when the page or the server refuses a change."""
LOGIN_FREE_TRIES = 5
"""Wrong passwords in a row a user name may have before each further one locks it for a while."""
ADDRESS_FREE_TRIES = 20
"""The same for one client address: more, as the people of an office may share one."""
LOCK_SECONDS = 5.0
"""The first lock; it doubles with each further failure."""
MAX_LOCK_SECONDS = 900.0
"""…up to this (15 minutes)."""
FORGET_SECONDS = 3600.0
"""Failures older than this, with none since, are forgotten."""
THROTTLE_ENTRIES = 10_000
"""User names and addresses remembered at most (the oldest are forgotten first): memory stays bounded
whatever names are tried."""
LOGIN_BODY_BYTES = 64 * 1024
"""Largest login form read (a name and a password)."""
UPLOAD_REQUEST_FILES = 10
"""An upload request may hold this many largest files' worth of bytes (the page sends a selection of
several files in one request); each file is also bounded by `Settings.max_upload_bytes`."""
API_PREFIXES = ("/api/v1", "/v1")
"""The REST and OpenAI-compatible APIs: their logins, rules and uploads are `ui.rest_auth.ApiGuard`'s."""


class AccessError(ValueError):
    """An `--auth` value that cannot be used; the message says why."""


@dataclass(frozen=True)
class Access:
    """Users (name -> password, role) and whether ordinary users may change the knowledge base."""

    users: dict[str, tuple[str, str]] = field(default_factory=dict)
    read_only: bool = False

    @classmethod
    def from_spec(cls, spec: str | None, read_only: bool = False) -> Access:
        """Users from `--auth` / `RAG_AUTH` (None or empty: no login)."""
        return cls(parse_users(spec) if spec else {}, read_only)

    @property
    def login_required(self) -> bool:
        return bool(self.users)

    def check(self, user: str, password: str) -> bool:
        """Whether `password` is `user`'s (compared in constant time)."""
        expected = self.users.get(user)
        return expected is not None and hmac.compare_digest(expected[0].encode(), str(password).encode())

    def can_edit(self, user: str | None) -> bool:
        """Whether `user` (None without login) may upload and remove documents."""
        if not self.read_only:
            return True
        return bool(user) and self.users.get(str(user), ("", ""))[1] == ADMIN


def parse_users(spec: str) -> dict[str, tuple[str, str]]:
    """`user:password[:admin]` entries, comma-separated, or `@file` / a file path with one per line."""
    path = Path(spec[1:] if spec.startswith("@") else spec).expanduser()
    if spec.startswith("@") or (len(spec) < 4096 and path.is_file()):
        try:
            entries = path.read_text(encoding="utf-8-sig").splitlines()
        except OSError as exc:
            raise AccessError(f"cannot read the user file {path}: {exc.strerror or exc}") from exc
    else:
        entries = spec.split(",")
    users: dict[str, tuple[str, str]] = {}
    for number, entry in enumerate(entries, 1):
        entry = entry.strip()
        if not entry or entry.startswith("#"):
            continue
        user, _, password = entry.partition(":")
        role = ""
        if password.endswith(f":{ADMIN}"):
            password, role = password[: -len(ADMIN) - 1], ADMIN
        if not user.strip() or not password:
            raise AccessError(f"--auth entry {number} is not user:password (or user:password:admin)")
        users[user.strip()] = (password, role)
    if not users:
        raise AccessError("--auth names no user")
    return users


def parse_proxies(spec: str | None) -> str:
    """`--trusted-proxy` / `RAG_TRUSTED_PROXIES`: addresses or networks, comma-separated, as one normalized
    string ('' for none); `ValueError` naming an entry that is neither."""
    entries = [entry.strip() for entry in (spec or "").split(",") if entry.strip()]
    for entry in entries:
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError:
            raise ValueError(
                f"--trusted-proxy: {entry!r} is not an IP address or network (e.g. 127.0.0.1 or 10.0.0.0/8)"
            ) from None
    return ",".join(entries)


def audit_event(event: str, user: str, ok: bool, **fields: Any) -> None:
    """One line of the `rag.audit` log, shaped as the change log's (`event`: `login`, `refused`; user,
    outcome, then `fields`), as JSON on a single line: a name holding a line break cannot forge a line."""
    from rag import log_audit

    log_audit({"event": event, "user": _short(user) or "-", "ok": ok, **fields})


def _short(text: str | None, limit: int = 200) -> str:
    text = str(text or "")
    return text if len(text) <= limit else text[:limit] + "…"


@dataclass
class _Tries:
    failures: int = 0
    last: float = 0.0
    until: float = 0.0


class Throttle:
    """Login attempts per user name and per client address, with a lock that doubles after each failure
    past the free ones. A try is counted as failed when it starts (tries sent at once cannot slip through
    before the first is judged) and taken back by `succeeded`."""

    def __init__(
        self,
        per_user: int = LOGIN_FREE_TRIES,
        per_address: int = ADDRESS_FREE_TRIES,
        first: float = LOCK_SECONDS,
        longest: float = MAX_LOCK_SECONDS,
        forget: float = FORGET_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.free = {"user": per_user, "address": per_address}
        self.first, self.longest, self.forget, self.clock = first, longest, forget, clock
        self._tries: dict[tuple[str, str], _Tries] = {}
        self._lock = threading.Lock()

    def begin(self, user: str, address: str) -> float:
        """Seconds before `user` may try again from `address` (the try is refused, not counted), or 0: the
        try may be checked, and counts as a failure until `succeeded`."""
        keys = (("user", _short(user)), ("address", address))
        with self._lock:
            now = self.clock()
            wait = max(self._tries[key].until - now if key in self._tries else 0.0 for key in keys)
            if wait > 0:
                return wait
            for key in keys:
                self._fail(key, now)
            return 0.0

    def succeeded(self, user: str, address: str) -> None:
        """The right password: the user name starts afresh; the address takes back the try's failure."""
        with self._lock:
            self._tries.pop(("user", _short(user)), None)
            tries = self._tries.get(("address", address))
            if tries is not None:
                tries.failures = max(0, tries.failures - 1)
                if tries.failures < self.free["address"]:
                    tries.until = 0.0

    def _fail(self, key: tuple[str, str], now: float) -> None:
        tries = self._tries.pop(key, None) or _Tries()
        if now - tries.last > self.forget:
            tries.failures = 0
        tries.failures += 1
        tries.last = now
        free = self.free[key[0]]
        if tries.failures >= free:
            tries.until = now + min(self.longest, self.first * 2 ** min(tries.failures - free, 32))
        self._tries[key] = tries  # the most recent last: the oldest are forgotten first
        while len(self._tries) > THROTTLE_ENTRIES:
            del self._tries[next(iter(self._tries))]


def client_address(scope: dict[str, Any]) -> str:
    """The client's address as the server sees it (a trusted proxy's `X-Forwarded-For` already applied)."""
    client = scope.get("client")
    return str(client[0]) if client else "-"


def logged_in_user(scope: dict[str, Any]) -> str | None:
    """The user Gradio's login cookie names (None without a login)."""
    app = scope.get("app")
    tokens, cookie = getattr(app, "tokens", None), getattr(app, "cookie_id", None)
    if not tokens or not cookie:
        return None
    cookies = HTTPConnection(scope).cookies
    token = cookies.get(f"access-token-{cookie}") or cookies.get(f"access-token-unsecure-{cookie}")
    return tokens.get(token) if token else None


class Guard:
    """ASGI middleware in front of Gradio's routes (`ui.layout.launch` installs it): logins throttled and
    recorded; uploads (any form with files) refused to those who may not edit, and bounded in size,
    before their body is read."""

    def __init__(self, app: Any, access: Access, max_upload_bytes: int, throttle: Throttle | None = None) -> None:
        self.app, self.access = app, access
        self.throttle = throttle or Throttle()
        self.max_upload_bytes = max_upload_bytes
        self.upload_limit = max_upload_bytes * UPLOAD_REQUEST_FILES + 64 * 1024  # the form's own lines

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("method") != "POST" or is_api(scope.get("path", "")):
            await self.app(scope, receive, send)
        elif scope.get("path", "").rstrip("/").endswith("/login"):
            await (self._login if self.access.login_required else self.app)(scope, receive, send)
        elif _is_upload(scope):
            await self._upload(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def _login(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        body = await _read_body(receive, LOGIN_BODY_BYTES)
        if body is None:
            await _reply(send, 413, "登录请求过大。")
            return
        user, address = await _form_user(scope, body), client_address(scope)
        wait = self.throttle.begin(user, address)
        if wait > 0:
            seconds = math.ceil(wait)
            audit_event("login", user, False, address=address, reason="throttled", retry_after=seconds)
            detail = f"登录尝试过多，请 {seconds} 秒后再试。"
            await _reply(send, 429, detail, [(b"retry-after", str(seconds).encode())])
            return
        status = await _forward(self.app, scope, _replay(body, receive), send)
        if status == 200:
            self.throttle.succeeded(user, address)
            audit_event("login", user, True, address=address)
        else:
            reason = "wrong_password" if user in self.access.users else "unknown_user"
            audit_event("login", user, False, address=address, reason=reason)

    async def _upload(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        user, address = logged_in_user(scope), client_address(scope)
        who = user or address
        if not self.access.can_edit(user):
            refused_upload(who, address, "read_only", READ_ONLY)
            await _reply(send, 403, READ_ONLY)
            return
        length = _content_length(scope)
        if length is None:
            await _reply(send, 411, "上传请求须注明长度（Content-Length）。")
            return
        too_large = f"文件过大：单个文件不能超过 {self.max_upload_bytes / 2**20:g} MB。"
        if length > self.upload_limit:
            refused_upload(who, address, "too_large", too_large, bytes=length)
            await _reply(send, 413, too_large)
            return
        if await _forward(self.app, scope, receive, send) == 413:
            refused_upload(who, address, "too_large", too_large, bytes=length)


def refused_upload(user: str, address: str, reason: str, message: str, **fields: Any) -> None:
    """An upload the server refused, in the audit log: who, from where, why (`reason`) and what they were told."""
    audit_event("refused", user, False, action="upload", address=address, reason=reason, error=message, **fields)


def is_api(path: str) -> bool:
    """Whether a path is the REST or the OpenAI-compatible API's (not the page's)."""
    return any(path == prefix or path.startswith(prefix + "/") for prefix in API_PREFIXES)


def _is_upload(scope: dict[str, Any]) -> bool:
    """Gradio's upload route, or any form that may carry files (the other routes that take them)."""
    if scope.get("path", "").rstrip("/").endswith("/upload"):
        return True
    content_type = HTTPConnection(scope).headers.get("content-type", "")
    return content_type.lower().startswith("multipart/form-data")


def _content_length(scope: dict[str, Any]) -> int | None:
    value = HTTPConnection(scope).headers.get("content-length", "")
    return int(value) if value.isdigit() else None


async def _read_body(receive: Any, limit: int) -> bytes | None:
    """The request's body, or None when it is larger than `limit` (or the client went away)."""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunks.append(message.get("body", b""))
        size += len(chunks[-1])
        if size > limit:
            return None
        if not message.get("more_body"):
            return b"".join(chunks)


def _replay(body: bytes, receive: Any) -> Any:
    """A `receive` that hands over `body` (already read), then whatever the server says next."""
    sent = False

    async def replay() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


async def _form_user(scope: dict[str, Any], body: bytes) -> str:
    """The user name of a login form ('' when the form cannot be read)."""
    try:
        form = await Request(scope, _replay(body, _gone)).form()
    except Exception:
        return ""
    name = form.get("username")
    return name.strip() if isinstance(name, str) else ""


async def _gone() -> dict[str, Any]:
    return {"type": "http.disconnect"}


async def _forward(app: Any, scope: dict[str, Any], receive: Any, send: Any) -> int:
    """Run the request through `app`; the status of its response."""
    status = [0]

    async def watch(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            status[0] = int(message["status"])
        await send(message)

    await app(scope, receive, watch)
    return status[0]


async def _reply(send: Any, status: int, detail: str, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    """A JSON error (`{"detail": …}`, as Gradio's own); see `send_closing`."""
    await send_closing(send, status, json.dumps({"detail": detail}, ensure_ascii=False).encode(), headers)


async def send_closing(send: Any, status: int, body: bytes, headers: list[Any] | None = None) -> None:
    """A JSON response; the connection is closed after it, so a body the client is still sending is not read."""
    start_headers = [
        (b"content-type", b"application/json; charset=utf-8"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
        *(headers or []),
    ]
    await send({"type": "http.response.start", "status": status, "headers": start_headers})
    await send({"type": "http.response.body", "body": body})
