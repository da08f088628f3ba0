"""Which backend serves an index: the one module that knows every backend."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from rag.index.backends.base import Backend
from rag.index.backends.local import LocalBackend

if TYPE_CHECKING:
    from rag.config import Settings


def store_identity(settings: Settings) -> dict[str, str]:
    """Where builds of `settings` go, as their manifests record it (`store` section)."""
    if store_kind(settings.store) == "local":
        return {"kind": "local"}
    from rag.index.backends.milvus import shown_uri, target_of

    target = target_of(settings)
    return {"kind": "milvus", "uri": shown_uri(target, settings.index_dir), "name": target.name}


def same_store(manifest: dict[str, Any], settings: Settings) -> bool:
    """Is the build of `manifest` on the store `settings` name? (A build without a `store` section is local.)"""
    recorded = manifest.get("store") or {"kind": "local"}
    return all(recorded.get(key) == value for key, value in store_identity(settings).items())


def backend_of(manifest: dict[str, Any], folder: Path, settings: Settings | None) -> Backend:
    """The backend that opens the build of `manifest` (in `folder`): its own kind; for Milvus, the
    connection of `settings` when they name Milvus too, else the one the manifest records."""
    from rag.config import Settings

    recorded = manifest.get("store") or {"kind": "local"}
    settings = settings or Settings(index_dir=folder.parent)
    if recorded.get("kind") == "milvus":
        if store_kind(settings.store) != "milvus":
            from rag.index.backends.milvus import recorded_uri

            settings = settings.replace(store=f"milvus:{recorded_uri(str(recorded.get('uri', '')), folder.parent)}")
        if recorded.get("name"):
            settings = settings.replace(milvus_collection=recorded["name"])
        return open_backend(settings)
    return LocalBackend(settings)


def store_kind(spec: str) -> str:
    """`local` or `milvus` for a `Settings.store` value (`local`, `milvus`, `milvus:<uri>`)."""
    kind = spec.split(":", 1)[0].strip().lower() or "local"
    if kind not in ("local", "milvus"):
        raise ValueError(f"unknown store {spec!r}: use 'local', 'milvus:<file>.db' or 'milvus:http://host:19530'")
    return kind


def open_backend(settings: Settings) -> Backend:
    """The backend `settings.store` names."""
    if store_kind(settings.store) == "local":
        return LocalBackend(settings)
    from rag.index.backends.milvus import MilvusBackend

    return MilvusBackend(settings)
