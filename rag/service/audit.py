"""The audit log: every change of a knowledge base, every refused action and (from the page) every login,
as one JSON line with its time — to the `rag.audit` logger, and for changes also to `changes.jsonl` in the
index folder. A name holding a line break cannot forge a line."""

from __future__ import annotations

import json
import logging
import threading
from datetime import datetime
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
audit = logging.getLogger("rag.audit")

AUDIT_FILE = "changes.jsonl"
"""The change log in an index folder."""

_WRITING = threading.Lock()
_BREAKS = {"\u2028": "\\u2028", "\u2029": "\\u2029", "\x85": "\\u0085"}
"""Characters a log reader may take for a line break that JSON leaves as they are."""


def json_line(value: Any) -> str:
    """JSON on one line: `json` escapes control characters; this also the line breaks it leaves as they are."""
    text = json.dumps(value, ensure_ascii=False)
    for character, escaped in _BREAKS.items():
        text = text.replace(character, escaped)
    return text


def log_audit(record: dict[str, Any]) -> str:
    """One event (`record`, after its time) to the `rag.audit` logger; returns the line."""
    line = json_line({"time": datetime.now().astimezone().isoformat(timespec="seconds"), **record})
    audit.info("%s", line)
    return line


def write_change(index_dir: Path | str, record: dict[str, Any]) -> None:
    """One change-log line: to the `rag.audit` logger and to `changes.jsonl` in the index folder."""
    path = Path(index_dir) / AUDIT_FILE
    with _WRITING:  # the logger and the file in the same order
        line = log_audit(record)
        if path.parent.exists() and not path.parent.is_dir():
            return  # not an index folder: the command that ran says so
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("a", encoding="utf-8") as out:
                out.write(line + "\n")
        except OSError as exc:
            log.error("cannot write the change log %s: %s", path, exc)
