"""Who may use the REST and OpenAI-compatible APIs (`/api/v1/`, `/v1/`): the page's users and rules.

With users (`--auth`), every request names one, as HTTP Basic (`Authorization: Basic base64(user:password)`)
or as a bearer token that is the users-file entry's `user:password` (`Authorization: Bearer admin:pw2`,
the API key of an OpenAI client) or, as headers are ASCII, its base64 for other names and passwords
(`printf '张三:pw1' | base64` → `Bearer 5byg5LiJOnB3MQ==`); none → 401 with `WWW-Authenticate`, a wrong one → 401, counted by the
page's login throttle (`ui.access.Throttle`: the same tries per name and per address) → 429. A user who
may not edit (`--read-only`, not `:admin`; everyone without users) gets 403 on every change — upload,
removal, knowledge-base create/rename/delete — before an upload's body is read; uploads are bounded in
size as the page's are; a change sent by a browser from another site's page (`Origin` not this server)
is refused too. Failed logins and refused changes go to the audit log.

`ApiGuard` is ASGI middleware in front of the whole server (`ui.layout.launch` installs it beside the
page's `Guard`, which leaves these paths to it); the user it found is `scope["rag.user"]` for the routes.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Callable
from contextlib import suppress
from typing import Any
from urllib.parse import urlsplit

from starlette.requests import HTTPConnection

from ui.access import API_PREFIXES, Access, Throttle, audit_event, client_address, is_api, send_closing
from ui.rest_models import CODES

REST_PREFIX, OPENAI_PREFIX = API_PREFIXES
REALM = 'Basic realm="zhengce", charset="UTF-8"'
USER_KEY = "rag.user"
"""The scope key holding the authenticated user (None without a login)."""
OPENAI_TYPES = {401: "authentication_error", 403: "permission_error", 404: "invalid_request_error",
                429: "rate_limit_error", 503: "server_error"}  # fmt: skip
"""OpenAI's error `type` for a status (others: `invalid_request_error` below 500, `server_error` above)."""

JSON_BYTES = 4 * 2**20
"""Largest JSON request (a question with a long conversation of returned answers as its history)."""
CROSS_SITE = "不接受从其他网站的页面发来的修改请求 (changes from another site's page are refused)"
Refused = Callable[[str, str, str, str], None]
"""Record a refused change: (action, name, user, message)."""


def write_action(method: str, path: str) -> str:
    """The change a request asks for (`add`, `remove`, `kb_create`, `kb_rename`, `kb_delete`), or ''."""
    if method in ("GET", "HEAD", "OPTIONS") or not path.startswith(REST_PREFIX + "/"):
        return ""
    parts = path[len(REST_PREFIX) + 1 :].strip("/").split("/")
    if parts[0] == "documents":
        return "add" if method == "POST" else "remove"
    if parts[0] == "kbs":
        if len(parts) == 1:
            return "kb_create"
        return "kb_delete" if method == "DELETE" else "kb_rename"
    return ""


def cross_site(scope: dict[str, Any]) -> bool:
    """Whether a browser sent the request from another site's page (its `Origin` is not this server): a
    form on any page may post an upload without asking, and without a login nothing else would stop it."""
    headers = HTTPConnection(scope).headers
    origin = headers.get("origin")
    return origin is not None and urlsplit(origin).netloc.lower() != headers.get("host", "").lower()


def credentials(header: str) -> tuple[str, str] | None:
    """(user, password) from an `Authorization` header: Basic, or a Bearer token that is `user:password`
    or, for names and passwords beyond ASCII (headers are ASCII), its base64; None otherwise."""
    scheme, _, value = header.strip().partition(" ")
    value = value.strip()
    with suppress(UnicodeError):  # a client that sent UTF-8 (Starlette reads headers as Latin-1)
        value = value.encode("latin-1").decode("utf-8")
    if scheme.lower() not in ("basic", "bearer"):
        return None
    if scheme.lower() == "basic" or ":" not in value:
        try:
            value = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
    user, colon, password = value.partition(":")
    return (user.strip(), password) if colon and user.strip() and password else None


def error_json(path: str, status: int, code: str, message: str = "") -> bytes:
    """An error body: `{"error": {"code", "message"}}`; OpenAI's shape (plus `type`, `param`) under `/v1/`."""
    error: dict[str, Any] = {"code": code, "message": message or CODES[code][1]}
    if not path.startswith(REST_PREFIX):
        error |= {"type": OPENAI_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")}
        error |= {"param": None}
    return json.dumps({"error": error}, ensure_ascii=False).encode()


class ApiGuard:
    """ASGI middleware: login (throttled), read-only rules and upload bounds for the API paths."""

    def __init__(
        self,
        app: Any,
        access: Access,
        throttle: Throttle,
        max_upload_bytes: int,
        refused: Refused | None = None,
    ) -> None:
        self.app, self.access, self.throttle = app, access, throttle
        self.upload_limit = max_upload_bytes + 64 * 1024  # one file and the form's own lines
        self.max_upload_bytes = max_upload_bytes
        self.refused = refused

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not is_api(scope.get("path", "")):
            await self.app(scope, receive, send)
            return
        user, problem = self.authenticate(scope)
        if problem is not None:
            await _reply(send, scope["path"], *problem)
            return
        scope[USER_KEY] = user
        who = user or client_address(scope)
        action = write_action(scope.get("method", ""), scope["path"])
        if action and (not self.access.can_edit(user) or cross_site(scope)):
            message = CROSS_SITE if self.access.can_edit(user) else CODES["forbidden"][1]
            name = scope["path"].rstrip("/").rsplit("/", 1)[-1] if action != "add" else ""
            if self.refused is not None:
                self.refused(action, name, who, message)
            await _reply(send, scope["path"], 403, "forbidden", message)
            return
        problem = self.oversized(scope, action, who)
        if problem is not None:
            await _reply(send, scope["path"], *problem)
            return
        await self.app(scope, receive, send)

    def oversized(self, scope: dict[str, Any], action: str, who: str) -> tuple[int, str, str] | None:
        """Why a request's body is refused before it is read: no length given (411), or more than an upload
        (one file) or a JSON request may hold (413); None when it may be read."""
        if scope.get("method") not in ("POST", "PUT", "PATCH"):
            return None
        length = HTTPConnection(scope).headers.get("content-length", "")
        if not length.isdigit():
            return 411, "length_required", ""
        if action != "add":
            return (413, "too_large", "请求过大 (the request is too large)") if int(length) > JSON_BYTES else None
        if int(length) <= self.upload_limit:
            return None
        message = f"文件过大：单个文件不能超过 {self.max_upload_bytes / 2**20:g} MB (the upload is too large)"
        audit_event("refused", who, False, action="upload", address=client_address(scope),
                    reason="too_large", bytes=int(length))  # fmt: skip
        return 413, "too_large", message

    def authenticate(self, scope: dict[str, Any]) -> tuple[str | None, tuple[int, str, str, list[Any]] | None]:
        """The user a request names (None without login) or why it is refused: (status, code, message, headers)."""
        if not self.access.login_required:
            return None, None
        given = credentials(HTTPConnection(scope).headers.get("authorization", ""))
        challenge = [(b"www-authenticate", REALM.encode())]
        if given is None:
            return None, (401, "unauthorized", "", challenge)
        user, password = given
        address = client_address(scope)
        wait = self.throttle.begin(user, address)
        if wait > 0:
            seconds = math.ceil(wait)
            audit_event("login", user, False, address=address, reason="throttled", retry_after=seconds, via="api")
            message = f"登录尝试过多，请 {seconds} 秒后再试 (too many failed logins; retry in {seconds} s)"
            return None, (429, "too_many_attempts", message, [(b"retry-after", str(seconds).encode())])
        if not self.access.check(user, password):
            reason = "wrong_password" if user in self.access.users else "unknown_user"
            audit_event("login", user, False, address=address, reason=reason, via="api")
            return None, (401, "unauthorized", "用户名或密码不对 (wrong user name or password)", challenge)
        self.throttle.succeeded(user, address)
        return user, None


async def _reply(
    send: Any, path: str, status: int, code: str, message: str = "", headers: list[Any] | None = None
) -> None:
    """A JSON error of the API's shape for `path`; the connection is closed after it."""
    await send_closing(send, status, error_json(path, status, code, message), headers)
