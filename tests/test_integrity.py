"""Index integrity and recovery (`rag.index.integrity`, `rag.index.build`): every damaged file is noticed,
questions are answered from the last good build, `rag index` repairs from the corpus re-using what
verifies, `rag doctor` says healthy or not, and no case ends in a traceback.

One index with two builds (three documents, then a fourth added) is built per module with the real
model; each test damages its own copy.
"""

from __future__ import annotations

import errno
import json
import os
import random
import shutil
from pathlib import Path

import numpy as np
import pytest

from rag.cli import main
from rag.config import Settings
from rag.engine import Engine
from rag.index import commit, integrity
from rag.index.build import build
from rag.index.commit import IndexWriteError
from rag.index.knowledge_base import IndexDamaged, load, load_build
from rag.index.layout import CURRENT, IndexUnavailable, current_build

DOCS = {
    "a.txt": "纪委监督责任\n纪委要履行监督责任，聚焦主责主业，做到有案必查。",
    "b.txt": "党委主体责任\n党委要担负起全面从严治党主体责任，书记是第一责任人。",
    "c.txt": "基层减负\n基层减负要精简会议文件，减少督查检查考核。",
}
ADDED = ("d.txt", "巡视整改\n巡视整改要压实整改主体责任，整改不到位的要严肃问责。")


@pytest.fixture(scope="module")
def two_builds(tmp_path_factory, embedder) -> Path:
    """A corpus of four documents and an index whose live build has all four, the previous one three."""
    base = tmp_path_factory.mktemp("two-builds")
    corpus = base / "corpus"
    corpus.mkdir()
    for name, text in DOCS.items():
        (corpus / name).write_text(text, encoding="utf-8")
    settings = Settings(corpus_dir=corpus, index_dir=base / "index")
    build(settings, embedder, progress=False)
    (corpus / ADDED[0]).write_text(ADDED[1], encoding="utf-8")
    build(settings, embedder, progress=False)
    return base


@pytest.fixture
def kb(two_builds, tmp_path) -> Settings:
    """A private copy of `two_builds` (modification times kept, so the builds keep their order)."""
    shutil.copytree(two_builds, tmp_path / "kb")
    return Settings(corpus_dir=tmp_path / "kb" / "corpus", index_dir=tmp_path / "kb" / "index")


def live(settings: Settings) -> Path:
    return current_build(Path(settings.index_dir))


@pytest.fixture
def cli(capsys, caplog):
    """Run `rag …` in this process: exit code, stdout, and stderr with the log lines."""

    def run(settings: Settings, *argv: str) -> tuple[int, str, str]:
        caplog.clear()
        code = main([*argv, "--index", str(settings.index_dir), "--corpus", str(settings.corpus_dir)])
        out, err = capsys.readouterr()
        err += "".join(f"{r.levelname} {r.name}: {r.getMessage()}\n" for r in caplog.records if r.levelname != "INFO")
        assert "Traceback" not in out + err
        return code, out, err

    return run


# --- ways to damage a file ------------------------------------------------------------------


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def delete(path: Path) -> None:
    path.unlink()


def flip(path: Path) -> None:
    """Flip 16 bytes in the second half of the file (the size stays the same)."""
    data = bytearray(path.read_bytes())
    middle = max(0, len(data) * 3 // 4 - 8)
    for i in range(middle, min(len(data), middle + 16)):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


DAMAGES = {"truncated": truncate, "deleted": delete, "corrupted": flip}
SERVING = [
    "dense.faiss",
    "documents.jsonl",
    "chunks.jsonl",
    "bm25_words/vocab.index.json",
    "bm25_bigrams/params.index.json",
]
SERVING_MAPPED = ["bm25_words/data.csc.index.npy", "bm25_bigrams/indices.csc.index.npy"]
NOT_SERVING = ["vectors.npy", "text_hashes.npy", "tokens_words.npy", "offsets_bigrams.npy"]
CASES = [(f, d) for f in SERVING + SERVING_MAPPED + NOT_SERVING for d in DAMAGES]


# --- loading: the last good build answers ---------------------------------------------------


@pytest.mark.parametrize(("name", "damage"), [(f, d) for f in SERVING for d in DAMAGES])
def test_a_damaged_serving_file_is_answered_from_the_previous_build(kb, name, damage):
    damaged = live(kb)
    DAMAGES[damage](damaged / name)
    loaded = load(Path(kb.index_dir))
    assert loaded.folder != damaged
    assert len(loaded.chunks) == 3 and "d.txt" not in loaded.documents
    assert loaded.warnings and "当前索引已损坏" in loaded.warnings[0]
    assert name.split("/")[0] in loaded.warnings[0]


@pytest.mark.parametrize("damage", ["truncated", "deleted"])
@pytest.mark.parametrize("name", SERVING_MAPPED)
def test_a_truncated_or_missing_posting_file_is_noticed_at_load(kb, name, damage):
    DAMAGES[damage](live(kb) / name)
    assert load(Path(kb.index_dir)).folder != live(kb)


@pytest.mark.parametrize(("name", "damage"), [(f, d) for f in NOT_SERVING for d in ("truncated", "deleted")])
def test_damage_only_the_next_build_needs_keeps_the_live_build_with_a_warning(kb, name, damage):
    DAMAGES[damage](live(kb) / name)
    loaded = load(Path(kb.index_dir))
    assert loaded.folder == live(kb) and len(loaded.chunks) == 4
    assert loaded.warnings and name in loaded.warnings[0] and "问答不受影响" in loaded.warnings[0]


def test_flipped_bytes_in_the_dense_index_never_answer_silently(kb, embedder):
    flip(live(kb) / "dense.faiss")
    engine = Engine(kb, embedder)
    engine.reload()
    health = engine.health()
    assert not health.ok and health.build != live(kb).name
    assert "dense.faiss 校验和不符" in health.warnings[0]
    assert engine.warnings == health.warnings
    hits = engine.search("巡视整改主体责任")
    assert {h.source for h in hits} <= set(DOCS)  # the previous build: three documents, none damaged


def test_shuffled_chunks_are_noticed(kb):
    path = live(kb) / "chunks.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    random.Random(1).shuffle(lines)
    path.write_text("".join(lines), encoding="utf-8")
    assert load(Path(kb.index_dir)).folder != live(kb)
    # even with the checksum rewritten to match, the order of the chunks gives it away
    manifest = json.loads((live(kb) / "manifest.json").read_text(encoding="utf-8"))
    manifest["files"]["chunks.jsonl"]["sha256"] = integrity.digest(path)
    (live(kb) / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    with pytest.raises(integrity.Damaged, match="out of order"):
        load_build(live(kb))


@pytest.mark.parametrize("manifest", ["[1, 2]", '{"format": 1}', "{broken", ""])
def test_a_bad_manifest_is_damage_not_a_traceback(kb, manifest):
    (live(kb) / "manifest.json").write_text(manifest, encoding="utf-8")
    loaded = load(Path(kb.index_dir))
    assert loaded.folder != live(kb) and loaded.warnings


def test_a_manifest_without_model_is_rebuilt_by_rag_index(kb, cli):
    path = live(kb) / "manifest.json"
    manifest = json.loads(path.read_text(encoding="utf-8"))
    del manifest["model"]
    path.write_text(json.dumps(manifest), encoding="utf-8")
    code, out, err = cli(kb, "index")
    assert code == 0
    assert "manifest.json: no model section" in err
    assert "(1 embedded" in out  # whose vectors the live build holds is unknown: the previous build's are used
    loaded = load(Path(kb.index_dir))
    assert len(loaded.chunks) == 4 and not loaded.warnings


def test_no_build_that_verifies_is_a_clear_error_then_rag_index_rebuilds(kb, cli):
    for folder in Path(kb.index_dir).glob("build-*"):
        truncate(folder / "dense.faiss")
    with pytest.raises(IndexDamaged, match="no earlier build verifies: run `rag index`"):
        load(Path(kb.index_dir))
    code, out, _ = cli(kb, "index")
    assert code == 0 and "(0 embedded" in out  # vectors.npy of the live build still verifies
    assert len(load(Path(kb.index_dir)).chunks) == 4


def test_opening_an_engine_on_an_index_where_nothing_verifies_rebuilds_it(kb, cli):
    for folder in Path(kb.index_dir).glob("build-*"):
        flip(folder / "chunks.jsonl")
    code, out, err = cli(kb, "search", "巡视整改主体责任", "--json")
    assert code == 0 and "no earlier build verifies" in err
    assert json.loads(out)["passages"][0]["source"] == "d.txt"


# --- rag index repairs, re-using what verifies -------------------------------------------------


@pytest.mark.parametrize(("name", "damage"), CASES)
def test_rag_index_repairs_every_damaged_file(kb, cli, name, damage):
    DAMAGES[damage](live(kb) / name)
    code, out, err = cli(kb, "index")
    assert code == 0
    damage_lines = [line for line in err.splitlines() if "is damaged" in line]
    assert len(damage_lines) == 1 and name in damage_lines[0]
    embedded = int(out.split(" embedded")[0].rsplit("(", 1)[1])
    # vectors are re-used: from the live build, or (when its vectors or hashes are damaged) from the
    # previous build, which lacks only d.txt's
    assert embedded == (1 if name in ("vectors.npy", "text_hashes.npy") else 0)
    loaded = load(Path(kb.index_dir))
    assert loaded.folder == live(kb) and not loaded.warnings
    assert sorted(loaded.documents) == ["a.txt", "b.txt", "c.txt", "d.txt"] and len(loaded.chunks) == 4
    assert cli(kb, "doctor")[0] == 0


def test_a_chunk_lost_from_the_end_of_chunks_jsonl_comes_back(kb, embedder):
    path = live(kb) / "chunks.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    path.write_text("".join(lines[:-1]), encoding="utf-8")
    (Path(kb.corpus_dir) / "e.txt").write_text("作风建设\n作风建设要锲而不舍、久久为功。", encoding="utf-8")
    report = build(kb, embedder, progress=False)  # an incremental build on the damaged index
    assert report.embedded == 1  # only the new document; the lost chunk's vector was verified and re-used
    loaded = load(Path(kb.index_dir))
    assert [c.source for c in loaded.chunks] == ["a.txt", "b.txt", "c.txt", "d.txt", "e.txt"]
    assert loaded.chunks_of("d.txt")[0].text.startswith("巡视整改要压实整改主体责任")


def test_documents_and_chunks_that_disagree_are_rebuilt(kb, cli):
    path = live(kb) / "documents.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    path.write_text("".join(lines[1:]), encoding="utf-8")  # a.txt's document is gone, its chunk is not
    manifest = json.loads((live(kb) / "manifest.json").read_text(encoding="utf-8"))
    manifest["files"]["documents.jsonl"] = {"size": path.stat().st_size, "sha256": integrity.digest(path)}
    (live(kb) / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    code, out, err = cli(kb, "index")
    assert code == 0 and "(0 embedded" in out
    assert "belongs to no document" in err
    assert sorted(load(Path(kb.index_dir)).documents) == ["a.txt", "b.txt", "c.txt", "d.txt"]


# --- rag doctor ---------------------------------------------------------------------------------


def test_doctor_on_a_healthy_index(kb, cli):
    before = {p: p.stat().st_mtime_ns for p in Path(kb.index_dir).rglob("*")}
    code, out, _ = cli(kb, "doctor")
    assert code == 0 and out.splitlines()[-1] == "index is healthy"
    assert "(live): ok: 4 documents, 4 chunks" in out and "(previous): ok: 3 documents" in out
    assert {p: p.stat().st_mtime_ns for p in Path(kb.index_dir).rglob("*")} == before  # nothing changed
    assert cli(kb, "index", "--check")[0] == 0


@pytest.mark.parametrize("name", ["vectors.npy", "tokens_words.npy", "offsets_bigrams.npy"])
def test_doctor_finds_flipped_bytes_that_loading_does_not_read(kb, cli, name):
    flip(live(kb) / name)
    code, out, _ = cli(kb, "doctor")
    assert code == 1
    assert f"DAMAGED: {name}: checksum differs" in out
    assert "run `rag index` to repair it" in out


def test_doctor_without_an_index(tmp_path, cli):
    settings = Settings(corpus_dir=tmp_path, index_dir=tmp_path / "nothing")
    code, _, err = cli(settings, "doctor")
    assert code == 2 and "no index" in err


def test_doctor_says_when_the_pipeline_changed(kb, cli, monkeypatch):
    monkeypatch.setattr("rag.ingest.clean._MARKDOWN_HEADING", __import__("re").compile(r"^#{1,3}\s+"))
    code, out, _ = cli(kb, "doctor")
    assert code == 0 and "built by another pipeline (clean changed)" in out


# --- writing: verified before live, disk full, leftovers -----------------------------------------


def test_a_build_that_does_not_verify_never_goes_live(kb, embedder, monkeypatch):
    pointer = (Path(kb.index_dir) / CURRENT).read_text(encoding="utf-8")
    write_jsonl = commit._write_jsonl

    def drop_last_chunk(path, records):
        records = list(records)
        write_jsonl(path, records[:-1] if path.name == "chunks.jsonl" else records)

    monkeypatch.setattr(commit, "_write_jsonl", drop_last_chunk)
    (Path(kb.corpus_dir) / "e.txt").write_text("作风建设\n作风建设要锲而不舍。", encoding="utf-8")
    with pytest.raises(IndexUnavailable, match=r"does not verify.*previous index is still in use"):
        build(kb, embedder, progress=False)
    assert (Path(kb.index_dir) / CURRENT).read_text(encoding="utf-8") == pointer
    assert len(list(Path(kb.index_dir).glob("build-*"))) == 2
    assert len(load(Path(kb.index_dir)).chunks) == 4


def _disk_full(monkeypatch, how: str) -> None:
    save = np.save

    def full(path, array, *args, **kwargs):
        if Path(path).name == "tokens_words.npy":
            if how == "errno":
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            Path(path).write_bytes(b"\x93NUMPY" + b"\0" * 100)
            raise OSError("23040 requested and 7136 written")  # what numpy says on a short write
        save(path, array, *args, **kwargs)

    monkeypatch.setattr(np, "save", full)


@pytest.mark.parametrize("how", ["errno", "short-write"])
def test_disk_full_during_rag_index(kb, cli, monkeypatch, how):
    pointer = (Path(kb.index_dir) / CURRENT).read_text(encoding="utf-8")
    builds = sorted(p.name for p in Path(kb.index_dir).glob("build-*"))
    (Path(kb.corpus_dir) / "e.txt").write_text("作风建设\n作风建设要锲而不舍。", encoding="utf-8")
    _disk_full(monkeypatch, how)
    code, _, err = cli(kb, "index")
    assert code == 2
    assert err.count("\n") == 1 and "磁盘空间不足" in err and "free some space" in err
    assert "previous index is still in use" in err
    assert (Path(kb.index_dir) / CURRENT).read_text(encoding="utf-8") == pointer
    assert sorted(p.name for p in Path(kb.index_dir).glob("build-*")) == builds  # nothing half-written
    monkeypatch.undo()
    assert len(load(Path(kb.index_dir)).chunks) == 4
    assert cli(kb, "index")[0] == 0
    assert len(load(Path(kb.index_dir)).chunks) == 5


def test_disk_full_through_the_engine_is_an_index_write_error(kb, embedder, monkeypatch):
    engine = Engine(kb, embedder)
    engine.reload()
    (Path(kb.corpus_dir) / "e.txt").write_text("作风建设\n作风建设要锲而不舍。", encoding="utf-8")
    _disk_full(monkeypatch, "errno")
    with pytest.raises(IndexWriteError, match="磁盘空间不足"):
        engine.build(progress=False)
    assert len(engine.kb.chunks) == 4 and engine.health().ok  # still answering from the live build


def test_index_pointing_at_a_file(tmp_path, cli):
    target = tmp_path / "index.txt"
    target.write_text("not an index", encoding="utf-8")
    settings = Settings(corpus_dir=tmp_path, index_dir=target)
    for command in (["index"], ["search", "纪委"], ["doctor"]):
        code, _, err = cli(settings, *command)
        assert code == 2 and "is a file, not a folder" in err and err.count("\n") == 1
    assert target.read_text(encoding="utf-8") == "not an index"


def test_leftovers_of_a_build_killed_at_the_switch_are_removed(kb, embedder):
    index_dir = Path(kb.index_dir)
    (index_dir / f".{CURRENT}.99999.tmp").write_text("build-20200101-000000-99999-000000", encoding="utf-8")
    half = index_dir / "build-20200101-000000-99999-000000"
    half.mkdir()
    (half / "vectors.npy").write_bytes(b"half")
    report = build(kb, embedder, progress=False)
    assert not report.changed_anything
    assert not list(index_dir.glob(".CURRENT.*")) and not half.exists()


def test_the_previous_build_kept_is_one_that_verifies(kb, embedder):
    index_dir = Path(kb.index_dir)
    previous = next(p for p in index_dir.glob("build-*") if p != live(kb))
    truncate(live(kb) / "vectors.npy")
    (Path(kb.corpus_dir) / "e.txt").write_text("作风建设\n作风建设要锲而不舍。", encoding="utf-8")
    damaged = live(kb)
    build(kb, embedder, progress=False)
    kept = sorted(p.name for p in index_dir.glob("build-*"))
    assert damaged.name not in kept and previous.name in kept and len(kept) == 2


# --- issue 21: postings, CURRENT, unverifiable manifests, a full disk ---------------------------

POSTINGS = [f"bm25_{n}/{part}.csc.index.npy" for n in ("words", "bigrams") for part in ("data", "indices", "indptr")]


@pytest.mark.parametrize("name", POSTINGS)
def test_flipped_bytes_in_a_posting_file_are_answered_from_the_previous_build(kb, embedder, cli, name):
    flip(live(kb) / name)
    engine = Engine(kb, embedder)
    engine.reload()  # no traceback, no silent re-ranking: the damaged build does not answer
    health = engine.health()
    assert not health.ok and health.build != live(kb).name
    assert f"{name} 校验和不符" in health.warnings[0]
    assert len(engine.kb.chunks) == 3
    assert {p.source for p in engine.search("巡视整改主体责任")} <= set(DOCS)
    code, out, _ = cli(kb, "doctor")
    assert code == 1 and f"DAMAGED: {name}: checksum differs" in out


def _not_utf8(path: Path) -> None:
    path.write_bytes(b"build-\xff\xfe\x80")


def _a_folder(path: Path) -> None:
    path.unlink()
    path.mkdir()
    (path / "stray").write_text("x", encoding="utf-8")


BROKEN_POINTERS = {"not-utf8": _not_utf8, "a-folder": _a_folder}


@pytest.mark.parametrize("how", BROKEN_POINTERS)
def test_a_broken_current_answers_from_the_newest_build_that_verifies(kb, cli, how):
    newest = live(kb)
    BROKEN_POINTERS[how](Path(kb.index_dir) / CURRENT)
    loaded = load(Path(kb.index_dir))
    assert loaded.folder == newest and len(loaded.chunks) == 4
    assert loaded.warnings and "CURRENT" in loaded.warnings[0] and "rag index" in loaded.warnings[0]
    code, out, err = cli(kb, "search", "巡视整改主体责任", "--json")
    assert code == 0 and json.loads(out)["passages"][0]["source"] == "d.txt"
    assert "CURRENT" in err and "(0 embedded" not in err  # a warning line; nothing was rebuilt
    code, out, _ = cli(kb, "doctor")
    assert code == 1 and "CURRENT" in out


@pytest.mark.parametrize("rebuild", [False, True], ids=["index", "rebuild"])
@pytest.mark.parametrize("how", BROKEN_POINTERS)
def test_rag_index_replaces_a_broken_current(kb, cli, how, rebuild):
    BROKEN_POINTERS[how](Path(kb.index_dir) / CURRENT)
    code, out, err = cli(kb, "index", *(["--rebuild"] if rebuild else []))
    assert code == 0, err
    if not rebuild:
        assert "(0 embedded" in out  # the newest build's vectors are re-used
    assert (Path(kb.index_dir) / CURRENT).is_file()
    loaded = load(Path(kb.index_dir))
    assert loaded.folder == live(kb) and not loaded.warnings and len(loaded.chunks) == 4
    assert cli(kb, "doctor")[0] == 0


def test_a_broken_current_without_any_build_is_rebuilt(kb, cli):
    for folder in Path(kb.index_dir).glob("build-*"):
        shutil.rmtree(folder)
    _a_folder(Path(kb.index_dir) / CURRENT)
    code, _, err = cli(kb, "index")
    assert code == 0, err
    assert len(load(Path(kb.index_dir)).chunks) == 4


def _without_checksums(folder: Path) -> None:
    path = folder / "manifest.json"
    manifest = json.loads(path.read_text(encoding="utf-8"))
    del manifest["files"]
    path.write_text(json.dumps(manifest), encoding="utf-8")


def test_doctor_cannot_call_a_manifest_without_checksums_healthy(kb, cli):
    _without_checksums(live(kb))
    code, out, _ = cli(kb, "doctor")
    assert code == 1 and out.splitlines()[-1] != "index is healthy"
    assert "cannot verify" in out
    code, out, err = cli(kb, "index")  # writes a build with checksums
    assert code == 0 and "no checksums" in err
    assert cli(kb, "doctor")[0] == 0


def test_a_short_write_is_a_full_disk_for_every_caller(kb, embedder, monkeypatch):
    engine = Engine(kb, embedder)
    engine.reload()
    (Path(kb.corpus_dir) / "e.txt").write_text("作风建设\n作风建设要锲而不舍。", encoding="utf-8")
    _disk_full(monkeypatch, "short-write")
    with pytest.raises(IndexWriteError, match="磁盘空间不足") as failure:
        engine.build(progress=False)
    cause = failure.value.__cause__
    assert isinstance(cause, OSError) and cause.errno == errno.ENOSPC  # what the page's message is made from
    assert cause.filename == str(kb.index_dir)


def _tmpfs(path: Path, kilobytes: int) -> bool:
    """Mount a tmpfs of `kilobytes` on `path` (root only); False when this machine does not allow it."""
    import subprocess

    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={kilobytes}k", "tmpfs", str(path)], capture_output=True)
    return done.returncode == 0


@pytest.mark.parametrize("free_kb", [4, 12, 24, 40])
def test_a_real_full_disk_says_so_and_names_the_folder(kb, embedder, tmp_path, free_kb):
    import subprocess

    disk = tmp_path / "disk"
    if not _tmpfs(disk, 2048):
        pytest.skip("cannot mount a small file system here (needs root)")
    try:
        shutil.copytree(kb.index_dir, disk / "index")
        settings = kb.replace(index_dir=disk / "index")
        engine = Engine(settings, embedder)
        engine.reload()
        upload = tmp_path / "作风建设.txt"
        upload.write_text("作风建设\n" + "作风建设要锲而不舍、久久为功，持之以恒纠治四风。" * 40, encoding="utf-8")
        free = shutil.disk_usage(disk).free - free_kb * 1024
        (disk / "filler").write_bytes(b"\0" * max(0, free))
        with pytest.raises(Exception) as failure:
            engine.add_document(upload)
        assert "磁盘空间不足" in str(failure.value) and "未知错误" not in str(failure.value)
        cause = failure.value.__cause__
        while cause is not None and not isinstance(cause, IndexWriteError):
            cause = cause.__cause__
        assert cause is not None and str(disk / "index") in str(cause)
        assert len(engine.kb.chunks) == 4 and engine.health().ok
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)  # lazily: the engine still maps files there
