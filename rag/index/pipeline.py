"""The identity of the indexing pipeline: what turns a file into stored text, chunks, embedded text
and tokens.

An index records `pipeline_version(settings)` in its manifest. When it differs from the running
code's, `rag index` re-processes every document (without `--rebuild`) and says which part changed;
vectors and tokens of chunk texts that came out the same are re-used (`rag.index.build`).

Each part is a hash of the live code, not of source files: every function reachable from the part's
entry points through the names it uses in its module contributes its bytecode and constants, every
compiled pattern its pattern and flags, every constant its value, recursively. So an edited rule, a
new regular expression or a monkeypatched one all change the version, while comments and formatting
do not. What a hash of the code cannot see — the jieba and OpenCC dictionaries, module-level side
effects such as `jieba.add_word` at import — is covered by the packages' versions and by `SALT`,
bumped by hand when such a change is made. (A hand-bumped constant alone was rejected: several
people edit these modules, and forgetting the bump silently serves a stale index.)
"""

from __future__ import annotations

import hashlib
import re
import sys
import types
from collections.abc import Callable
from contextlib import suppress
from importlib import metadata
from typing import Any

from rag.config import Settings

SALT = 1
"""Bump to re-process every index when something a code hash cannot see changes."""

_STABLE = (str, bytes, int, float, bool, type(None))


def _parts() -> dict[str, tuple[list[Callable[..., Any]], tuple[str, ...]]]:
    """Each part of the pipeline: its entry points, and the packages whose versions it depends on."""
    from rag.index import bm25
    from rag.ingest import chunk, clean
    from rag.text import tokenize

    return {
        "clean": ([clean.clean], ()),
        "chunk": ([chunk.chunk_document], ()),
        "index_text": ([chunk.index_text], ("opencc",)),
        "tokenize": ([*tokenize.TOKENIZERS.values(), bm25.token_ids], ("jieba",)),
    }


def pipeline_version(settings: Settings) -> dict[str, Any]:
    """`{"version": …, "parts": {part: hash}}` of the running code and `settings`."""
    parts = {}
    for name, (entries, packages) in _parts().items():
        digest = hashlib.sha256(f"{SALT}|{sys.version_info[:2]}".encode())
        for package in packages:
            with suppress(metadata.PackageNotFoundError):
                digest.update(f"{package}=={metadata.version(package)}".encode())
        if name == "chunk":
            chunking = {k: v for k, v in settings.index_params().items() if k.startswith("chunk_")}
            digest.update(repr(sorted(chunking.items())).encode())
        _hash_closure(entries, digest)
        parts[name] = digest.hexdigest()[:16]
    overall = hashlib.sha256(repr(sorted(parts.items())).encode()).hexdigest()[:16]
    return {"version": overall, "parts": parts}


def changed_parts(old: Any, new: dict[str, Any]) -> list[str]:
    """The parts whose hash differs (all of them when `old` is not a recorded version)."""
    old_parts = old.get("parts") if isinstance(old, dict) else None
    if not isinstance(old_parts, dict):
        return list(new["parts"])
    return [name for name, value in new["parts"].items() if old_parts.get(name) != value]


def _hash_closure(entries: list[Callable[..., Any]], digest: Any) -> None:
    seen: set[int] = set()
    pending: list[Any] = list(entries)
    while pending:
        obj = pending.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        obj = getattr(obj, "__wrapped__", obj)  # lru_cache and other decorators
        if isinstance(obj, types.FunctionType):
            digest.update(obj.__qualname__.encode())
            _hash_code(obj.__code__, obj.__globals__, digest, pending)
            digest.update(_stable(obj.__defaults__).encode())
        elif isinstance(obj, type):
            digest.update(obj.__qualname__.encode())
            for attribute, value in vars(obj).items():
                target = value.fget if isinstance(value, property) else value
                if isinstance(target, (types.FunctionType, staticmethod, classmethod)):
                    digest.update(attribute.encode())
                    pending.append(getattr(target, "__func__", target))
        elif isinstance(obj, re.Pattern):
            digest.update(f"{obj.pattern!r}/{obj.flags}".encode())
        else:
            digest.update(_stable(obj).encode())
            if isinstance(obj, (dict, list, tuple, set, frozenset)):  # e.g. a table of functions
                items = obj.values() if isinstance(obj, dict) else obj
                pending.extend(v for v in items if isinstance(v, (types.FunctionType, type)) and _ours(v))


def _hash_code(code: types.CodeType, names: dict[str, Any], digest: Any, pending: list[Any]) -> None:
    digest.update(code.co_code)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            _hash_code(const, names, digest, pending)
        else:
            digest.update(_stable(const).encode())
    for name in code.co_names:
        digest.update(name.encode())
        value = names.get(name)
        if _ours(value):
            pending.append(value)


def _ours(value: Any) -> bool:
    """A function, class, pattern or constant of this package (followed into the closure)."""
    if isinstance(value, (types.ModuleType, type(sys))) or value is None:
        return False
    if isinstance(value, (re.Pattern, *_STABLE, tuple, list, dict, set, frozenset)):
        return True
    module = getattr(value, "__module__", None) or ""
    return module == "rag" or module.startswith("rag.")


def _stable(value: Any) -> str:
    """A representation that is the same in every process (sets sorted; other objects by type)."""
    if isinstance(value, _STABLE):
        return repr(value)
    if isinstance(value, (tuple, list)):
        return f"{type(value).__name__}({','.join(_stable(v) for v in value)})"
    if isinstance(value, (set, frozenset)):
        return f"set({','.join(sorted(_stable(v) for v in value))})"
    if isinstance(value, dict):
        return f"dict({','.join(f'{_stable(k)}:{_stable(v)}' for k, v in value.items())})"
    if isinstance(value, re.Pattern):
        return f"re({value.pattern!r}/{value.flags})"
    return type(value).__qualname__
