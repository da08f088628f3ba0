"""The Milvus backend (`rag/milvus_store.py`) against a real embedded Milvus Lite.

The session's local build of the real corpus is written into Milvus Lite; both backends must rank
the same chunks for the dev questions and report the same document frequencies.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pymilvus")
pytest.importorskip("milvus_lite")

from milvus_lite.analyzer.standard import StandardAnalyzer

from rag import milvus_store, store
from rag.backend import LEXICAL, BuildInput, LocalBackend, TokenIds, open_backend
from rag.lexical import bigrams, strip_question_words, words
from rag.milvus_store import MilvusBackend, MilvusUnavailable, escape, field_text, knowledge_base_id
from rag.normalize import normalize

ODD_TOKENS = ["纪委", "3.5", "covid-19", "a_b", "_x2e_", "Ǆ", "e\u0301", "２０２４年", "x y", "%"]


def test_escaped_tokens_stay_whole_and_distinct_in_the_lite_analyzer():
    analyzed = StandardAnalyzer().tokenize(field_text(ODD_TOKENS))
    assert analyzed == [escape(t) for t in ODD_TOKENS]
    assert len(set(analyzed)) == len(ODD_TOKENS)
    assert escape("纪委") == "纪委" and escape("3.5") == "3_x2e_5"


def test_lexical_field_is_cut_to_the_varchar_byte_limit_at_a_token_boundary():
    text = field_text(["纪委监督"] * 10, limit=40)  # 12 bytes a token, 13 with its space
    assert text == "纪委监督 纪委监督 纪委监督"
    assert len(text.encode("utf-8")) <= 40


def _build_input(kb: store.KnowledgeBase, name: str) -> BuildInput:
    """The live local build of the session's corpus, as a build hands it to a backend."""
    folder = kb.folder
    tokens = {
        lexical: TokenIds(
            np.load(folder / f"tokens_{lexical}.npy"),
            np.load(folder / f"offsets_{lexical}.npy"),
            kb.lexical[lexical].vocabulary,
        )
        for lexical in LEXICAL
    }
    return BuildInput(folder, name, kb.chunks, np.load(folder / "vectors.npy"), tokens)


@pytest.fixture(scope="module")
def milvus(engine, tmp_path_factory):
    """The session's local build written into a Milvus Lite file, opened as the Milvus backend."""
    base = tmp_path_factory.mktemp("milvus")
    settings = engine.settings.replace(store=f"milvus:{base / 'kb.db'}", index_dir=base / "index")
    local = engine.kb
    build = _build_input(local, "build-1")
    build.folder = base / "index" / "build-1"
    build.folder.mkdir(parents=True)
    backend = open_backend(settings)
    assert isinstance(backend, MilvusBackend)
    meta = backend.write(build)
    manifest = {**local.manifest, "store": meta}
    dense, lexical = backend.open(build.folder, manifest)
    return settings, backend, manifest, dense, lexical


def _same_ranking(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray], scale: float) -> bool:
    """Equal rankings: same scores in the same order (chunks of equal score may swap places)."""
    if len(a[0]) != len(b[0]) or not np.allclose(a[1] * scale, b[1], rtol=1e-4, atol=1e-5):
        return False
    return all(set(a[0][a[1] == s]) == set(b[0][a[1] == s]) for s in np.unique(a[1]))


def test_milvus_ranks_as_the_local_store(engine, milvus, dev_questions):
    _, _, _, dense, lexical = milvus
    local = engine.kb
    assert dense.size == local.dense.size == len(local.chunks)
    for row in dev_questions:
        query = engine._state().retriever.query(row["question"])
        assert _same_ranking(local.dense.search(query.vector, 50), dense.search(query.vector, 50), 1.0)
        text = strip_question_words(normalize(row["question"]))
        for name, tokens in (("words", words(text)), ("bigrams", bigrams(text))):
            # Milvus scores BM25 as tf*(k1+1)/(tf+K), bm25s as tf/(tf+K): the same ranking, scaled by k1+1
            scale = engine.settings.bm25_k1 + 1
            assert _same_ranking(local.lexical[name].search(tokens, 50), lexical[name].search(tokens, 50), scale), (
                name,
                row["question"],
            )


def test_document_frequencies_match_the_local_store(engine, milvus):
    _, _, _, _, lexical = milvus
    vocabulary = list(engine.kb.lexical["words"].vocabulary)
    probe = [*vocabulary[:500], "不在语料中的词"]
    expected = engine.kb.lexical["words"].document_frequency(probe)
    assert (lexical["words"].document_frequency(probe) == expected).all()
    assert expected[-1] == 0 and expected.max() > 1


def test_a_failed_write_leaves_no_collection_and_the_live_one_answering(engine, milvus, monkeypatch):
    settings, backend, manifest, dense, _ = milvus
    broken = _build_input(engine.kb, "build-2")
    broken.folder = Path(settings.index_dir) / "build-2"
    broken.folder.mkdir()
    monkeypatch.setattr(milvus_store, "INSERT_BATCH", 10)
    broken.vectors = broken.vectors[:25]  # the third batch of rows fails, after two were written
    with pytest.raises(IndexError):
        backend.write(broken)
    names = milvus_store.client(backend.target).list_collections()
    kb_id = milvus_store.knowledge_base_id(Path(settings.index_dir))
    assert milvus_store.collection_name(backend.target, kb_id, "build-2") not in names
    assert manifest["store"]["collection"] in names
    assert len(dense.search(engine.kb.dense.index.reconstruct(0), 3)[0]) == 3


def test_alias_follows_the_live_build_and_retire_drops_only_this_kbs_unused_collections(engine, milvus, tmp_path):
    settings, backend, manifest, _, _ = milvus
    live = manifest["store"]["collection"]
    backend.activate(manifest)
    milvus_client = milvus_store.client(backend.target)
    assert milvus_client.describe_alias(settings.milvus_collection)["collection_name"] == live

    interrupted = _build_input(engine.kb, "build-3")
    interrupted.folder = Path(settings.index_dir) / "build-3"
    interrupted.folder.mkdir()
    orphan = backend.write(interrupted)["collection"]  # written, never made live
    other_kb = MilvusBackend(settings.replace(index_dir=tmp_path / "other-index"))
    stranger = _build_input(engine.kb, "build-9")
    stranger.folder = tmp_path / "other-index" / "build-9"
    stranger.folder.mkdir(parents=True)
    foreign = other_kb.write(stranger)["collection"]

    backend.retire([manifest])
    names = milvus_client.list_collections()
    assert live in names and foreign in names and orphan not in names
    with pytest.raises(MilvusUnavailable, match="another knowledge base"):
        other_kb.activate({"store": {"collection": foreign, "kb": knowledge_base_id(tmp_path / "other-index")}})


def test_the_local_backend_is_the_default(kb_settings):
    assert isinstance(open_backend(kb_settings), LocalBackend)
    with pytest.raises(ValueError, match="unknown store"):
        open_backend(kb_settings.replace(store="elastic"))


@pytest.fixture
def lite_server(tmp_path):
    """`milvus-lite server` in its own process, as the README tells several processes to share a file."""
    import shutil
    import socket
    import subprocess
    import sys
    import time

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = shutil.which("milvus-lite") or str(Path(sys.executable).parent / "milvus-lite")
    server = subprocess.Popen(
        [command, "server", "--data-dir", str(tmp_path / "served.db"), "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with socket.socket() as attempt:
                if attempt.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.2)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_a_milvus_server_by_uri_serves_the_same_rankings(engine, lite_server, tmp_path):
    settings = engine.settings.replace(store=f"milvus:{lite_server}", index_dir=tmp_path / "index")
    build = _build_input(engine.kb, "build-1")
    build.folder = tmp_path / "index" / "build-1"
    build.folder.mkdir(parents=True)
    backend = MilvusBackend(settings)
    manifest = {**engine.kb.manifest, "store": backend.write(build)}
    assert manifest["store"]["uri"] == lite_server
    dense, lexical = backend.open(build.folder, manifest)
    backend.activate(manifest)
    tokens = bigrams(normalize("纪委监督责任"))
    scale = settings.bm25_k1 + 1
    assert _same_ranking(engine.kb.lexical["bigrams"].search(tokens, 20), lexical["bigrams"].search(tokens, 20), scale)
    vector = engine.kb.dense.index.reconstruct(3)
    assert dense.search(vector, 1)[0].tolist() == [3]
