"""The Milvus backend (`rag.index.backends.milvus`) against a real embedded Milvus Lite.

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

from rag.index.backends import milvus_collections
from rag.index.backends.base import BuildInput, TokenIds
from rag.index.backends.factory import open_backend
from rag.index.backends.local import LocalBackend
from rag.index.backends.milvus import MilvusBackend, knowledge_base_id
from rag.index.backends.milvus_collections import MilvusUnavailable, escape, field_text
from rag.index.knowledge_base import KnowledgeBase, load, on_store
from rag.index.layout import LEXICAL
from rag.text.normalize import normalize
from rag.text.tokenize import bigrams, strip_question_words, words

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


def _build_input(kb: KnowledgeBase, name: str) -> BuildInput:
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


def _same_ranking(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> bool:
    """Equal rankings: same scores in the same order (chunks of equal score may swap places)."""
    if len(a[0]) != len(b[0]) or not np.allclose(a[1], b[1], rtol=1e-4, atol=1e-5):
        return False
    return all(set(a[0][a[1] == s]) == set(b[0][a[1] == s]) for s in np.unique(a[1]))


def test_milvus_ranks_as_the_local_store(engine, milvus, dev_questions):
    _, _, _, dense, lexical = milvus
    local = engine.kb
    assert dense.size == local.dense.size == len(local.chunks)
    for row in dev_questions:
        query = engine._state().retriever.query(row["question"])
        assert _same_ranking(local.dense.search(query.vector, 50), dense.search(query.vector, 50))
        text = strip_question_words(normalize(row["question"]))
        for name, tokens in (("words", words(text)), ("bigrams", bigrams(text))):
            # Milvus scores BM25 as tf*(k1+1)/(tf+K), bm25s as tf/(tf+K): MilvusLexical scales to bm25s's
            assert _same_ranking(local.lexical[name].search(tokens, 50), lexical[name].search(tokens, 50)), (
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
    monkeypatch.setattr(milvus_collections, "INSERT_BATCH", 10)
    broken.vectors = broken.vectors[:25]  # the third batch of rows fails, after two were written
    with pytest.raises(IndexError):
        backend.write(broken)
    names = milvus_collections.client(backend.target).list_collections()
    kb_id = knowledge_base_id(Path(settings.index_dir))
    assert milvus_collections.collection_name(backend.target, kb_id, "build-2") not in names
    assert manifest["store"]["collection"] in names
    assert len(dense.search(engine.kb.dense.index.reconstruct(0), 3)[0]) == 3


def test_alias_follows_the_live_build_and_retire_drops_only_this_kbs_unused_collections(engine, milvus, tmp_path):
    settings, backend, manifest, _, _ = milvus
    live = manifest["store"]["collection"]
    backend.activate(manifest)
    milvus_client = milvus_collections.client(backend.target)
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
    assert _same_ranking(engine.kb.lexical["bigrams"].search(tokens, 20), lexical["bigrams"].search(tokens, 20))
    vector = engine.kb.dense.index.reconstruct(3)
    assert dense.search(vector, 1)[0].tolist() == [3]


# --- the product on the Milvus store --------------------------------------------------------------


@pytest.fixture(scope="module")
def milvus_engine(engine, embedder, tmp_path_factory):
    """The session's knowledge base moved onto a Milvus Lite file: a copy of its corpus and index,
    opened with `store = milvus:…` (the build is written to Milvus; nothing is embedded again)."""
    import shutil

    from rag import Engine

    base = tmp_path_factory.mktemp("milvus-engine")
    settings = engine.settings.replace(
        corpus_dir=base / "corpus", index_dir=base / "index", store=f"milvus:{base / 'kb.db'}"
    )
    shutil.copytree(engine.settings.corpus_dir, settings.corpus_dir)
    shutil.copytree(engine.settings.index_dir, settings.index_dir)
    moved = Engine(settings, embedder)
    report = moved.build(progress=False)
    assert report.embedded == 0 and not report.changed_anything
    return moved


def test_a_local_index_moves_to_milvus_without_embedding(milvus_engine, engine):
    kb = milvus_engine.kb
    assert kb.manifest["store"]["kind"] == "milvus"
    assert not (kb.folder / "dense.faiss").exists() and (kb.folder / "lexicon_words.json").is_file()
    assert kb.dense.size == len(kb.chunks) == len(engine.kb.chunks)
    assert on_store(milvus_engine.settings) and not on_store(engine.settings.replace(store="milvus"))


def test_the_headline_question_gets_the_same_cited_answer_on_both_stores(milvus_engine, engine):
    question = "纪委监督责任包括什么"
    local, remote = engine.ask(question), milvus_engine.ask(question)
    assert not remote.abstained and remote.citations
    assert remote.answer == local.answer
    assert [(c.source, c.start, c.end) for c in remote.citations] == [
        (c.source, c.start, c.end) for c in local.citations
    ]


def test_dev_questions_retrieve_the_same_passages_on_both_stores(milvus_engine, engine, dev_questions):
    for row in dev_questions:  # same passages, same fused scores (score fusion compares BM25 across stores)
        local, remote = engine.search(row["question"], k=5), milvus_engine.search(row["question"], k=5)
        assert [p.chunk_id for p in remote] == [p.chunk_id for p in local], row["question"]
        assert np.allclose([p.score for p in remote], [p.score for p in local], rtol=1e-5), row["question"]


def test_documents_are_added_and_removed_on_milvus_as_on_the_local_store(milvus_engine, tmp_path):
    upload = tmp_path / "青山县 通报.txt"
    upload.write_text("青山县纪委在2024年开展了“清风行动”专项检查，共检查单位37家。", encoding="utf-8")
    before = milvus_engine.kb.manifest["store"]["collection"]
    report = milvus_engine.add_document(upload)
    assert report.added == ["青山县_通报.txt"] and report.embedded == 1
    answer = milvus_engine.ask("青山县纪委开展了什么专项检查?")
    assert answer.citations and answer.citations[0].source == "青山县_通报.txt"
    added = milvus_engine.kb.manifest["store"]["collection"]
    assert added != before

    report = milvus_engine.remove_document("青山县_通报.txt")
    assert report.removed == ["青山县_通报.txt"] and report.embedded == 0
    assert "青山县_通报.txt" not in {d.source for d in milvus_engine.documents()}
    assert milvus_engine.ask("青山县纪委开展了什么专项检查?").abstained

    backend = MilvusBackend(milvus_engine.settings)
    live = milvus_engine.kb.manifest["store"]["collection"]
    mine = [n for n in milvus_collections.client(backend.target).list_collections() if n.startswith("zhengce_")]
    assert live in mine and before not in mine and len(mine) == 2  # the live build's and the previous one's
    assert milvus_collections.client(backend.target).describe_alias("zhengce")["collection_name"] == live


def test_a_build_interrupted_while_writing_to_milvus_leaves_the_index_answering(milvus_engine, tmp_path, monkeypatch):
    live = milvus_engine.kb.folder
    names = set(milvus_collections.client(MilvusBackend(milvus_engine.settings).target).list_collections())
    upload = tmp_path / "中断.txt"
    upload.write_text("这份文件在写入时被中断，不应出现在知识库中。", encoding="utf-8")
    written = 0
    original = milvus_collections._row

    def interrupted(rows, i):
        nonlocal written
        written += 1
        if written > 20:
            raise KeyboardInterrupt
        return original(rows, i)

    monkeypatch.setattr(milvus_collections, "_row", interrupted)
    monkeypatch.setattr(milvus_collections, "INSERT_BATCH", 10)
    try:
        with pytest.raises(KeyboardInterrupt):
            milvus_engine.add_document(upload)
    finally:
        monkeypatch.undo()
        (Path(milvus_engine.settings.corpus_dir) / "中断.txt").unlink(missing_ok=True)  # the engine may have removed it
    assert milvus_engine.kb.folder == live
    assert set(milvus_collections.client(MilvusBackend(milvus_engine.settings).target).list_collections()) == names
    reopened = load(Path(milvus_engine.settings.index_dir), milvus_engine.settings)
    assert reopened.folder == live
    assert not milvus_engine.ask("纪委监督责任包括什么").abstained


def test_the_cli_lists_and_checks_a_milvus_index(milvus_engine, capsys):
    from rag.cli import main

    settings = milvus_engine.settings
    common = ["--index", str(settings.index_dir), "--corpus", str(settings.corpus_dir), "--store", settings.store]
    assert main(["doctor", *common]) == 0
    assert main(["docs", "-q", *common]) == 0
    listed = capsys.readouterr().out
    assert all(d.source in listed for d in milvus_engine.documents())


def test_a_dropped_collection_is_damage_and_the_previous_build_answers(milvus_engine, tmp_path):
    import shutil

    from rag import Engine

    settings = milvus_engine.settings.replace(
        corpus_dir=tmp_path / "corpus", index_dir=tmp_path / "index", store=f"milvus:{tmp_path / 'copy.db'}"
    )
    shutil.copytree(milvus_engine.settings.corpus_dir, settings.corpus_dir)
    shutil.copytree(milvus_engine.settings.index_dir, settings.index_dir)
    copy = Engine.open(settings)  # moved into its own Milvus Lite file
    upload = tmp_path / "青山县.txt"
    upload.write_text("青山县纪委在2024年开展了“清风行动”专项检查。", encoding="utf-8")
    copy.add_document(upload)  # a second build in that file; the first stays as the previous one
    live, collection = copy.kb.folder, copy.kb.manifest["store"]["collection"]
    milvus = milvus_collections.client(MilvusBackend(settings).target)
    milvus.drop_alias("zhengce")
    milvus.drop_collection(collection)
    copy.reload()
    assert copy.kb.folder != live and copy.warnings
    assert not copy.ask("纪委监督责任包括什么").abstained


# --- damage to a Milvus Lite file (issue 21): noticed, answered from the last good build, repaired ---------

UPLOAD = ("青山县.txt", "青山县纪委在2024年开展了“清风行动”专项检查，共检查单位37家。")


@pytest.fixture(scope="module")
def lite_base(engine, embedder, tmp_path_factory) -> Path:
    """The session's corpus and index moved onto the Milvus Lite file `milvus.db` inside the index
    folder, then one document added: two Milvus builds, each with its collection."""
    import shutil

    from rag import Engine

    base = tmp_path_factory.mktemp("lite-base")
    shutil.copytree(engine.settings.corpus_dir, base / "corpus")
    shutil.copytree(engine.settings.index_dir, base / "index")
    settings = engine.settings.replace(corpus_dir=base / "corpus", index_dir=base / "index", store="milvus")
    moved = Engine(settings, embedder)
    assert moved.build(progress=False).embedded == 0
    (base / "corpus" / UPLOAD[0]).write_text(UPLOAD[1], encoding="utf-8")
    assert moved.build(progress=False).embedded == 1
    milvus_collections.release(MilvusBackend(settings).target)  # the copies below are opened by their own servers
    return base


@pytest.fixture
def lite(lite_base, tmp_path, engine):
    """A private copy of `lite_base` (its Milvus Lite file included); its client released afterwards."""
    import shutil

    shutil.copytree(lite_base, tmp_path / "kb")
    settings = engine.settings.replace(
        corpus_dir=tmp_path / "kb" / "corpus", index_dir=tmp_path / "kb" / "index", store="milvus"
    )
    yield settings
    milvus_collections.release(MilvusBackend(settings).target)


@pytest.fixture
def cli(capsys, caplog):
    """Run `rag … --store milvus` in this process: exit code, stdout, and stderr with the log lines."""
    from rag.cli import main

    def run(settings, *argv: str) -> tuple[int, str, str]:
        caplog.clear()
        common = ["--index", str(settings.index_dir), "--corpus", str(settings.corpus_dir), "--store", "milvus"]
        code = main([*argv, *common])
        out, err = capsys.readouterr()
        err += "".join(f"{r.levelname} {r.name}: {r.getMessage()}\n" for r in caplog.records if r.levelname != "INFO")
        assert "Traceback" not in out + err
        return code, out, err

    return run


def _live(settings) -> Path:
    from rag.index.layout import current_build

    return current_build(Path(settings.index_dir))


def _collection(settings) -> Path:
    """The folder Milvus Lite keeps the live build's collection in."""
    from rag.index.integrity import read_manifest

    name = read_manifest(_live(settings))["store"]["collection"]
    return Path(settings.index_dir) / "milvus.db" / "collections" / name


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    middle = max(0, len(data) * 3 // 4 - 8)
    for i in range(middle, min(len(data), middle + 16)):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


LITE_FILES = {"vectors": "*.idx", "parquet": "*.parquet", "manifest": "manifest.json"}


@pytest.mark.parametrize("kind", LITE_FILES)
def test_flipped_bytes_in_a_milvus_lite_file_are_answered_from_the_previous_build(lite, cli, kind):
    damaged = next(_collection(lite).rglob(LITE_FILES[kind]))
    live = _live(lite)
    _flip(damaged)
    kb = load(Path(lite.index_dir), lite)
    assert kb.folder != live and UPLOAD[0] not in kb.documents
    assert kb.warnings and damaged.name in kb.warnings[0] and "校验和不符" in kb.warnings[0]
    code, out, _ = cli(lite, "doctor")
    assert code == 1 and f"{damaged.name}: checksum differs" in out
    code, out, err = cli(lite, "index")  # a new collection from the stored vectors
    assert code == 0 and "(0 embedded" in out, err
    assert not load(Path(lite.index_dir), lite).warnings
    assert cli(lite, "doctor")[0] == 0


def test_a_lost_milvus_db_is_rebuilt_by_rag_index_without_embedding(lite, cli):
    import shutil

    shutil.rmtree(Path(lite.index_dir) / "milvus.db")
    code, out, err = cli(lite, "index")
    assert code == 0 and "(0 embedded" in out, err
    kb = load(Path(lite.index_dir), lite)
    assert UPLOAD[0] in kb.documents and not kb.warnings
    assert cli(lite, "doctor")[0] == 0
    code, out, _ = cli(lite, "ask", "青山县纪委开展了什么专项检查?")
    assert code == 0 and UPLOAD[0] in out


def test_a_broken_collection_manifest_is_repaired_by_rag_index(lite, cli):
    folder = _collection(lite)
    for name in ("manifest.json", "manifest.json.prev"):  # Milvus Lite's backup is no way out either
        (folder / name).write_text("{broken", encoding="utf-8")
    code, out, err = cli(lite, "ask", "纪委监督责任包括什么")
    assert code == 0 and "来源" in out
    assert "manifest.json" in err and "answering from the previous build" in err
    code, out, err = cli(lite, "index")
    assert code == 0 and "(0 embedded" in out, err
    assert not folder.exists()  # the broken collection is gone with its build
    assert cli(lite, "doctor")[0] == 0


def test_a_corrupted_parquet_file_without_recorded_checksums_is_damage_not_a_traceback(lite, cli):
    import json

    for build in Path(lite.index_dir).glob("build-*"):  # as a build written before the checksums were recorded
        path = build / "manifest.json"
        manifest = json.loads(path.read_text(encoding="utf-8"))
        manifest["store"].pop("files", None)
        path.write_text(json.dumps(manifest), encoding="utf-8")
    (next(_collection(lite).rglob("*.parquet"))).write_bytes(b"PAR1 not a parquet file")
    code, out, err = cli(lite, "doctor")
    assert code == 1 and "cannot verify" in out
    code, out, err = cli(lite, "search", "纪委监督责任")
    assert code == 0
    assert "answering from the previous build" in err or "no earlier build verifies" in err


def test_a_milvus_lite_file_open_in_another_process_is_one_clear_line(lite):
    import subprocess
    import sys
    import time

    db = Path(lite.index_dir) / "milvus.db"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"from pymilvus import MilvusClient; c = MilvusClient(uri={str(db)!r}); c.list_collections(); "
            "print('open', flush=True); import time; time.sleep(120)",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "open"
        common = ["--index", str(lite.index_dir), "--corpus", str(lite.corpus_dir), "--store", "milvus", "-q"]
        for command in (["ask", "纪委监督责任包括什么"], ["index"]):
            started = time.monotonic()
            done = subprocess.run(
                [sys.executable, "-m", "rag.cli", *command, *common], capture_output=True, text=True, timeout=300
            )
            assert done.returncode == 2, done.stderr
            assert "Traceback" not in done.stderr and done.stderr.count("\n") == 1, done.stderr
            assert str(db) in done.stderr and "另一个进程" in done.stderr and "milvus-lite server" in done.stderr
            assert time.monotonic() - started < 120
    finally:
        holder.terminate()
        holder.wait(timeout=30)
