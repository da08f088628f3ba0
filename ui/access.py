"""Who may use the chat page and who may change the knowledge base.

`--auth` / `RAG_AUTH` takes users inline or a file of them:

    --auth "张三:密码1,李四:密码2:admin"
    --auth @/etc/zhengce/users.txt          (or just the path of an existing file)

A file holds one `user:password` per line, `:admin` after the password for an administrator; blank
lines and lines starting with `#` are ignored. With users, the page and its HTTP API need a login.
`--read-only` hides upload and removal from everyone but administrators (from everyone, without users).
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from pathlib import Path

ADMIN = "admin"


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
