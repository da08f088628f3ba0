"""The knowledge bases under one data root: each a named pair of folders (corpus, index), listed, created,
renamed and deleted here.

- `default` is the configured `Settings.corpus_dir` + `Settings.index_dir` (today's `corpus/` + `index/`:
  nothing moves, an existing index opens as it is). It cannot be renamed or deleted.
- Any other knowledge base NAME is `<root>/kbs/NAME/corpus` + `<root>/kbs/NAME/index`, with `kb.json`
  beside them recording when it was made and its store (local, or its own Milvus collection, kept when it
  is renamed); root = `Settings.data_dir`, else the folder holding the index folder.
- Deleting one moves its folder (corpus, change log, settings) into `<root>/kbs/.archive/NAME.<time>/` and
  removes its index: its documents stay, like a removed document in `.versions/`.

Each knowledge base has its own corpus folder (its `.versions/` and `.queue/`), index folder (its builds and
`changes.jsonl`) and store; creating, renaming and deleting are written to the `rag.audit` log.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import threading
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from rag.config import Settings
from rag.embedding.embedder import model_cache_dir
from rag.service.audit import log_audit

DEFAULT_KB = "default"
KBS_FOLDER = "kbs"
ARCHIVE_FOLDER = ".archive"
SETTINGS_FILE = "kb.json"
MAX_NAME_CHARS = 64

_NAME = re.compile(r"[\w\-.·()（） ]+")
_LOCK = threading.Lock()


class KnowledgeBaseError(ValueError):
    """A knowledge base that cannot be made, found, renamed or deleted; the message (Chinese) says why."""


class UnknownKnowledgeBase(KnowledgeBaseError):
    """No knowledge base of that name."""


class KnowledgeBaseExists(KnowledgeBaseError):
    """A knowledge base of that name (ignoring case) already exists."""


@dataclass(frozen=True)
class KnowledgeBaseInfo:
    """One knowledge base: its name, folders, store and how many document files its corpus holds."""

    name: str
    corpus_dir: Path
    index_dir: Path
    store: str
    documents: int
    created: str
    """ISO time it was made ('' for `default`)."""

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (no paths: they are the server's business)."""
        return {"name": self.name, "documents": self.documents, "store": self.store, "created": self.created}


def check_name(name: str) -> str:
    """The name as it is stored (NFC, outer spaces dropped), or `KnowledgeBaseError` saying what is wrong."""
    if not isinstance(name, str):
        raise KnowledgeBaseError("知识库名称必须是文字 (a knowledge-base name must be text)。")
    clean = unicodedata.normalize("NFC", name).strip()
    if not clean:
        raise KnowledgeBaseError("请输入知识库名称（不能为空）。")
    if len(clean) > MAX_NAME_CHARS:
        raise KnowledgeBaseError(f"知识库名称太长：最多 {MAX_NAME_CHARS} 个字。")
    if clean.startswith(".") or not _NAME.fullmatch(clean):
        raise KnowledgeBaseError(
            f"知识库名称“{clean}”不可用：只能使用文字、数字、空格和 - _ . · ( )，不能以 . 开头，"
            "不能含 / \\ , : 等符号。"
        )
    return clean


class KnowledgeBases:
    """The knowledge bases of one configuration (`Settings`): where each lives, and the changes to them."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        root = settings.data_dir if settings.data_dir is not None else Path(settings.index_dir).parent
        self.folder = Path(root) / KBS_FOLDER

    def names(self) -> list[str]:
        """`default` first, then the others by name."""
        found = []
        if self.folder.is_dir():
            found = [p.name for p in self.folder.iterdir() if p.is_dir() and not p.name.startswith(".")]
        return [DEFAULT_KB, *sorted(n for n in found if n != DEFAULT_KB and _is_name(n))]

    def exists(self, name: str) -> bool:
        return name == DEFAULT_KB or (_is_name(name) and (self.folder / name / "corpus").is_dir())

    def resolve(self, name: str | None) -> str:
        """The stored name of an existing knowledge base (None or '' = `default`); `UnknownKnowledgeBase`."""
        if name is None or not str(name).strip() or str(name).strip() == DEFAULT_KB:
            return DEFAULT_KB
        clean = unicodedata.normalize("NFC", str(name)).strip()
        if not self.exists(clean):
            known = "、".join(self.names())
            raise UnknownKnowledgeBase(f"没有名为“{clean}”的知识库（现有：{known}）。")
        return clean

    def settings_of(self, name: str) -> Settings:
        """The settings of one knowledge base: its folders and store over the shared configuration."""
        name = self.resolve(name)
        if name == DEFAULT_KB:
            return self.settings
        home = self.folder / name
        record = _read_record(home)
        changes: dict[str, Any] = {"corpus_dir": home / "corpus", "index_dir": home / "index"}
        changes["model_cache"] = model_cache_dir(self.settings.model_cache, Path(self.settings.index_dir))  # shared
        for key in ("store", "milvus_collection"):
            if isinstance(record.get(key), str) and record[key]:
                changes[key] = record[key]
        return self.settings.replace(**changes)

    def info(self, name: str) -> KnowledgeBaseInfo:
        name = self.resolve(name)
        settings = self.settings_of(name)
        created = "" if name == DEFAULT_KB else str(_read_record(self.folder / name).get("created", ""))
        corpus = Path(settings.corpus_dir)
        return KnowledgeBaseInfo(name, corpus, Path(settings.index_dir), settings.store, _documents(corpus), created)

    def infos(self) -> list[KnowledgeBaseInfo]:
        return [self.info(name) for name in self.names()]

    def create(self, name: str, user: str = "") -> KnowledgeBaseInfo:
        """A new, empty knowledge base (its corpus and index folders, its settings)."""
        name = check_name(name)
        with _LOCK:
            self._free(name)
            home = self.folder / name
            (home / "corpus").mkdir(parents=True)
            (home / "index").mkdir()
            record = {"name": name, "created": datetime.now().astimezone().isoformat(timespec="seconds")}
            record |= {"store": self.settings.store, "milvus_collection": _collection(self.settings, name)}
            _write_record(home, record)
        log_audit({"event": "done", "action": "kb_create", "kb": name, "user": user or "-"})
        return self.info(name)

    def rename(self, old: str, new: str, user: str = "") -> KnowledgeBaseInfo:
        """Give a knowledge base another name (its folder moves; index, store and log go with it)."""
        old = self.resolve(old)
        new = check_name(new)
        if DEFAULT_KB in (old, new):
            raise KnowledgeBaseError("默认知识库 default 不能改名，也不能用作新名称。")
        with _LOCK:
            if new.casefold() != old.casefold():
                self._free(new)
            os.rename(self.folder / old, self.folder / new)
            home = self.folder / new
            _write_record(home, _read_record(home) | {"name": new})
        log_audit({"event": "done", "action": "kb_rename", "kb": new, "from": old, "user": user or "-"})
        return self.info(new)

    def delete(self, name: str, user: str = "") -> Path:
        """Move a knowledge base's documents, change log and settings into a dated archive folder and remove
        its index; returns the archive folder."""
        name = self.resolve(name)
        if name == DEFAULT_KB:
            raise KnowledgeBaseError("默认知识库 default 不能删除。")
        with _LOCK:
            home = self.folder / name
            archive = self.folder / ARCHIVE_FOLDER
            archive.mkdir(parents=True, exist_ok=True)
            stamp = time.strftime("%Y%m%d-%H%M%S")
            kept, count = archive / f"{name}.{stamp}", 1
            while kept.exists():
                count += 1
                kept = archive / f"{name}.{stamp}-{count}"
            kept.mkdir()
            for part in ("corpus", SETTINGS_FILE):
                if (home / part).exists():
                    os.replace(home / part, kept / part)
            log_file = home / "index" / "changes.jsonl"
            if log_file.is_file():
                os.replace(log_file, kept / "changes.jsonl")
            shutil.rmtree(home)
        log_audit({"event": "done", "action": "kb_delete", "kb": name, "archive": kept.name, "user": user or "-"})
        return kept

    def _free(self, name: str) -> None:
        """Raise `KnowledgeBaseExists` when a knowledge base (or any folder) has this name, ignoring case."""
        taken = [n for n in [DEFAULT_KB, *self._folders()] if n.casefold() == name.casefold()]
        if taken:
            raise KnowledgeBaseExists(f"已有名为“{taken[0]}”的知识库：请换一个名称。")

    def _folders(self) -> list[str]:
        return [p.name for p in self.folder.iterdir()] if self.folder.is_dir() else []


def _is_name(name: str) -> bool:
    try:
        return check_name(name) == name and name != DEFAULT_KB
    except KnowledgeBaseError:
        return False


def _collection(settings: Settings, name: str) -> str:
    """The Milvus alias of a knowledge base: the configured one and a digest of its first name (Milvus
    names are ASCII letters, digits and `_`; the alias stays when the knowledge base is renamed)."""
    return f"{settings.milvus_collection}_kb{hashlib.sha256(name.encode()).hexdigest()[:10]}"


def _documents(corpus: Path) -> int:
    if corpus.is_file():  # a `.jsonl` corpus: one document a line
        with open(corpus, "rb") as lines:
            return sum(1 for line in lines if line.strip())
    try:
        return sum(1 for p in corpus.iterdir() if p.is_file() and not p.name.startswith("."))
    except OSError:
        return 0


def _read_record(home: Path) -> dict[str, Any]:
    try:
        record = json.loads((home / SETTINGS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def _write_record(home: Path, record: dict[str, Any]) -> None:
    temporary = home / f".{SETTINGS_FILE}.tmp"
    temporary.write_text(json.dumps(record, ensure_ascii=False, indent=1), encoding="utf-8")
    os.replace(temporary, home / SETTINGS_FILE)


class OpenEngines:
    """The engines of the knowledge bases, opened when first asked for: `default` is the engine that holds
    this; the others are siblings opened by `open_engine(name, settings)` (sharing its embedder)."""

    def __init__(self, kbs: KnowledgeBases, default: Any, open_engine: Callable[[str, Settings], Any]) -> None:
        self.kbs, self.default, self._open = kbs, default, open_engine
        self._engines: dict[str, Any] = {}
        self._lock = threading.Lock()

    def get(self, name: str | None) -> Any:
        """The engine of a knowledge base (None = `default`); `UnknownKnowledgeBase` when there is none."""
        name = self.kbs.resolve(name)
        if name == DEFAULT_KB:
            return self.default
        with self._lock:
            engine = self._engines.get(name)
            if engine is None:
                engine = self._engines[name] = self._open(name, self.kbs.settings_of(name))
            return engine

    def rename(self, old: str, new: str, user: str = "") -> KnowledgeBaseInfo:
        name = self.kbs.resolve(old)
        with self._lock:
            self._close(name)
            return self.kbs.rename(name, new, user)

    def delete(self, name: str, user: str = "") -> Path:
        name = self.kbs.resolve(name)
        with self._lock:
            self._close(name)
            return self.kbs.delete(name, user)

    def _close(self, name: str) -> None:
        """Forget a knowledge base's engine (its worker finished first); refused while it is indexing."""
        engine = self._engines.get(name)
        worker = getattr(engine, "_worker", None)
        if worker is not None and worker.status().busy:
            raise KnowledgeBaseError(f"知识库“{name}”正在处理文档，请等处理完成后再改名或删除。")
        self._engines.pop(name, None)
        if worker is not None:
            worker.close()
