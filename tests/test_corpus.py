"""The corpus folder (`rag/service/corpus.py`): safe names, kept versions, the corpus restored when indexing fails."""

import errno
import threading
from pathlib import Path

import pytest

from rag.config import Settings
from rag.index.commit import IndexWriteError
from rag.index.report import BuildReport
from rag.service.corpus import MAX_NAME_BYTES, CorpusFolder, DocumentError, DocumentExists, safe_filename

FACT = "青山县纪委开展了“清风行动”专项检查，共检查单位37家。"


def test_safe_filename_keeps_files_inside_the_corpus():
    assert safe_filename("../../etc/passwd") == "passwd"
    assert safe_filename("..\\..\\x.txt") == "x.txt"
    assert safe_filename(".hidden.md") == "hidden.md"
    assert safe_filename("报告 (2024).TXT") == "报告_(2024).txt"
    assert "/" not in safe_filename("a/b/c.pdf")
    assert safe_filename("《关于 印发》，通知.TXT") == "《关于_印发》，通知.txt"


def test_safe_filename_is_bounded_in_bytes():
    long_name = "关于进一步加强基层纪检监察机构规范化建设的实施意见" * 8 + ".txt"  # 200 characters, 600 bytes
    name = safe_filename(long_name)
    assert len(name.encode()) <= MAX_NAME_BYTES and name.endswith(".txt") and name.startswith("关于")


@pytest.fixture
def folder(tmp_path) -> CorpusFolder:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "通报.txt").write_text("旧的通报。", encoding="utf-8")
    return CorpusFolder(Settings(corpus_dir=corpus, index_dir=tmp_path / "index"))


def _upload(tmp_path: Path, name: str = "通报.txt") -> Path:
    upload = tmp_path / "uploads" / name
    upload.parent.mkdir(exist_ok=True)
    upload.write_text(FACT, encoding="utf-8")
    return upload


def _files(folder: CorpusFolder) -> dict[str, str]:
    return {p.name: p.read_text(encoding="utf-8") for p in folder.path.iterdir() if p.is_file()}


def _fails(error: BaseException):
    def reindex() -> BuildReport:
        raise error

    return reindex


def test_check_upload_names_the_file_and_what_it_would_replace(folder, tmp_path):
    assert folder.check_upload(_upload(tmp_path, "新 文件.txt")) == ("新_文件.txt", None)
    assert folder.check_upload(_upload(tmp_path), "通报.TXT") == ("通报.txt", "通报.txt")
    with pytest.raises(DocumentError, match="不支持这种文件类型"):
        folder.check_upload(_upload(tmp_path, "tool.exe"))
    with pytest.raises(DocumentError, match="没有收到完整的文件"):
        folder.check_upload(tmp_path / "missing.txt")


def test_a_replaced_file_is_kept_and_a_removed_one_too(folder, tmp_path):
    with pytest.raises(DocumentExists):
        folder.add(_upload(tmp_path), None, False, BuildReport, threading.RLock())
    report = folder.add(_upload(tmp_path), None, True, BuildReport, threading.RLock())
    assert _files(folder) == {"通报.txt": FACT}
    assert (folder.path / ".versions" / report.kept["通报.txt"]).read_text(encoding="utf-8") == "旧的通报。"
    report = folder.remove("通报.TXT", BuildReport, threading.RLock())
    assert _files(folder) == {}
    assert (folder.path / ".versions" / report.kept["通报.txt"]).read_text(encoding="utf-8") == FACT
    assert len(list((folder.path / ".versions").iterdir())) == 2


def test_a_failed_build_restores_the_corpus(folder, tmp_path):
    before = _files(folder)
    full = IndexWriteError("no space")
    full.__cause__ = OSError(errno.ENOSPC, "No space left on device")
    with pytest.raises(DocumentError, match="文件已撤回：磁盘空间不足"):
        folder.add(_upload(tmp_path, "新.txt"), None, False, _fails(full), threading.RLock())
    with pytest.raises(DocumentError, match="文件已撤回：没有写入权限"):
        folder.add(_upload(tmp_path), None, True, _fails(OSError(errno.EROFS, "read-only")), threading.RLock())
    with pytest.raises(DocumentError, match="文件已恢复：磁盘空间不足"):
        folder.remove("通报.txt", _fails(full), threading.RLock())
    with pytest.raises(KeyboardInterrupt):
        folder.remove("通报.txt", _fails(KeyboardInterrupt()), threading.RLock())
    assert _files(folder) == before
    assert not any(folder.path.glob(".upload-*"))


def test_changes_need_a_corpus_folder(tmp_path):
    single = tmp_path / "corpus.jsonl"
    single.write_text("", encoding="utf-8")
    folder = CorpusFolder(Settings(corpus_dir=single))
    with pytest.raises(DocumentError, match="不是一个文件夹"):
        folder.check_upload(_upload(tmp_path))
    with pytest.raises(DocumentError, match="不是一个文件夹"):
        folder.remove("corpus.jsonl", BuildReport, threading.RLock())


@pytest.fixture
def twins(tmp_path) -> CorpusFolder:
    """A corpus holding `Case.txt` and `case.txt`: two documents whose names differ only in case."""
    corpus = tmp_path / "twins"
    corpus.mkdir()
    (corpus / "Case.txt").write_text("大写的文档。", encoding="utf-8")
    (corpus / "case.txt").write_text("小写的文档。", encoding="utf-8")
    return CorpusFolder(Settings(corpus_dir=corpus, index_dir=tmp_path / "index"))


def test_a_name_identifies_its_exact_file_among_case_twins(twins, tmp_path):
    """Identity is the exact name: removing `case.txt` removes `case.txt`, never `Case.txt`."""
    report = twins.remove("case.txt", BuildReport, threading.RLock())
    assert _files(twins) == {"Case.txt": "大写的文档。"}
    assert set(report.kept) == {"case.txt"}
    (twins.path / "case.txt").write_text("小写的文档。", encoding="utf-8")
    report = twins.remove("Case.txt", BuildReport, threading.RLock())
    assert _files(twins) == {"case.txt": "小写的文档。"}
    assert set(report.kept) == {"Case.txt"}


def test_an_upload_replaces_the_exact_twin_and_conflicts_ignoring_case(twins, tmp_path):
    """Conflict ignores case (an upload named like a document asks first); replacing acts on the exact name."""
    assert twins.check_upload(_upload(tmp_path, "case.txt")) == ("case.txt", "case.txt")
    assert twins.check_upload(_upload(tmp_path, "Case.txt")) == ("Case.txt", "Case.txt")
    assert twins.check_upload(_upload(tmp_path, "CASE.TXT"))[1] in {"Case.txt", "case.txt"}
    with pytest.raises(DocumentExists):
        twins.add(_upload(tmp_path, "CASE.txt"), None, False, BuildReport, threading.RLock())
    report = twins.add(_upload(tmp_path, "case.txt"), None, True, BuildReport, threading.RLock())
    assert _files(twins) == {"Case.txt": "大写的文档。", "case.txt": FACT}
    assert set(report.kept) == {"case.txt"}


def test_a_name_matching_several_twins_only_by_case_is_refused(twins):
    """`CASE.TXT` could be either file: nothing is removed, the message names both."""
    with pytest.raises(DocumentError, match=r"“Case\.txt”、“case\.txt”"):
        twins.remove("CASE.TXT", BuildReport, threading.RLock())
    assert len(_files(twins)) == 2
