"""Knowledge bases (`rag.service.kbs`, through `Engine`): names, where they live, create, rename and delete;
two knowledge bases from different documents answer their own questions; an existing index opens as `default`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import KB_DOCUMENTS, SMALL_DOCS

from rag import Engine, Settings
from rag.service.kbs import (
    KnowledgeBaseError,
    KnowledgeBaseExists,
    KnowledgeBases,
    UnknownKnowledgeBase,
    check_name,
)


@pytest.mark.parametrize("name", ["疫情政策", "2024 年度制度", "unit-rules_v2", "纪检（一）"])
def test_chinese_and_plain_names_are_accepted(name):
    assert check_name(f"  {name} ") == name


@pytest.mark.parametrize("name", ["", "   ", "a/b", "a\\b", "..", ".hidden", "a,b", "zhengce:x", "x" * 65, "a\nb"])
def test_names_that_are_paths_or_separators_are_refused(name):
    with pytest.raises(KnowledgeBaseError, match="知识库名称"):
        check_name(name)


def test_where_knowledge_bases_live(tmp_path: Path):
    plain = KnowledgeBases(Settings(corpus_dir=tmp_path / "c", index_dir=tmp_path / "i"))
    assert plain.folder == tmp_path / "kbs"  # beside the index folder
    assert plain.settings_of("default").corpus_dir == tmp_path / "c"
    data = Settings.from_env(data_dir=tmp_path / "data")
    assert (data.corpus_dir, data.index_dir) == (tmp_path / "data" / "corpus", tmp_path / "data" / "index")
    kbs = KnowledgeBases(data)
    info = kbs.create("疫情政策")
    assert (info.corpus_dir, info.index_dir) == (
        tmp_path / "data/kbs/疫情政策/corpus",
        tmp_path / "data/kbs/疫情政策/index",
    )
    settings = kbs.settings_of("疫情政策")
    assert settings.corpus_dir == info.corpus_dir and settings.milvus_collection.startswith("zhengce_kb")
    assert [i.name for i in kbs.infos()] == ["default", "疫情政策"]
    with pytest.raises(KnowledgeBaseExists):
        kbs.create("疫情政策")
    with pytest.raises(KnowledgeBaseExists):
        kbs.create("default")
    with pytest.raises(UnknownKnowledgeBase, match="没有名为“别的”的知识库"):
        kbs.settings_of("别的")
    with pytest.raises(KnowledgeBaseError, match="default"):
        kbs.delete("default")


def test_names_differing_only_in_case_clash(tmp_path: Path):
    kbs = KnowledgeBases(Settings(corpus_dir=tmp_path / "c", index_dir=tmp_path / "i"))
    kbs.create("Rules")
    with pytest.raises(KnowledgeBaseExists, match="Rules"):
        kbs.create("rules")


@pytest.fixture
def small_library(small_kb: Settings, fake_embedder) -> Engine:
    """An engine on `SMALL_DOCS` (fake model) with a second knowledge base `疫情政策` of one document."""
    engine = Engine(small_kb, fake_embedder)
    engine.build(progress=False)
    info = engine.create_kb("疫情政策")
    (info.corpus_dir / "防疫.txt").write_text("疫情防控\n疫情防控要做好核酸检测和隔离管控。", encoding="utf-8")
    return engine


def test_a_new_knowledge_base_is_indexed_on_its_own(small_library: Engine):
    kb = small_library.engine_for("疫情政策")
    assert kb.name == "疫情政策" and kb.embedder is small_library.embedder  # one model in memory
    assert [d.source for d in small_library.documents(kb="疫情政策")] == ["防疫.txt"]
    assert [d.source for d in small_library.documents()] == sorted(SMALL_DOCS)
    assert {p.source for p in small_library.search("疫情防控", kbs=["疫情政策"])} == {"防疫.txt"}
    assert all(p.kb == "疫情政策" for p in small_library.search("疫情防控", kbs=["疫情政策"]))
    assert (Path(kb.settings.index_dir) / "CURRENT").is_file()
    assert Path(kb.settings.index_dir).parent == Path(small_library.settings.index_dir).parent / "kbs" / "疫情政策"
    with pytest.raises(UnknownKnowledgeBase):
        small_library.search("疫情防控", kbs=["没有这个"])


def test_documents_are_added_and_removed_per_knowledge_base(small_library: Engine, tmp_path: Path):
    upload = tmp_path / "复工.txt"
    upload.write_text("复工复产\n企业复工复产要落实防控措施。", encoding="utf-8")
    report = small_library.add_document(upload, kb="疫情政策")
    assert report.added == ["复工.txt"]
    assert {d.source for d in small_library.documents(kb="疫情政策")} == {"防疫.txt", "复工.txt"}
    assert "复工.txt" not in {d.source for d in small_library.documents()}
    small_library.remove_document("防疫.txt", kb="疫情政策")
    assert [d.source for d in small_library.documents(kb="疫情政策")] == ["复工.txt"]
    kept = Path(small_library.engine_for("疫情政策").settings.corpus_dir) / ".versions"
    assert any(p.name.startswith("防疫.") for p in kept.iterdir())


def test_rename_keeps_the_index_and_its_store(small_library: Engine):
    before = small_library.engine_for("疫情政策")
    build, collection = before.health().build, before.settings.milvus_collection
    info = small_library.rename_kb("疫情政策", "防疫制度", user="admin")
    assert info.name == "防疫制度" and info.documents == 1
    renamed = small_library.engine_for("防疫制度")
    assert renamed.health().build == build  # the same build, not rebuilt
    assert renamed.settings.milvus_collection == collection
    first = small_library.search("疫情防控", kbs=["防疫制度"])[0]
    assert (first.kb, first.source) == ("防疫制度", "防疫.txt")
    assert [i.name for i in small_library.knowledge_bases()] == ["default", "防疫制度"]
    with pytest.raises(UnknownKnowledgeBase):
        small_library.engine_for("疫情政策")
    with pytest.raises(KnowledgeBaseError, match="default"):
        small_library.rename_kb("default", "主库")


def test_delete_archives_the_documents_and_the_change_log(small_library: Engine, tmp_path: Path):
    upload = tmp_path / "复工.txt"
    upload.write_text("复工复产\n企业复工复产要落实防控措施。", encoding="utf-8")
    small_library.engine_for("疫情政策").worker.add(upload, "复工.txt", user="admin")
    assert small_library.engine_for("疫情政策").worker.wait(60)
    home = Path(small_library.engine_for("疫情政策").settings.index_dir).parent
    archive = small_library.delete_kb("疫情政策", user="admin")
    assert not home.exists()
    assert archive.parent.name == ".archive" and archive.name.startswith("疫情政策.")
    assert sorted(p.name for p in (archive / "corpus").iterdir() if p.is_file()) == ["复工.txt", "防疫.txt"]
    log = [json.loads(line) for line in (archive / "changes.jsonl").read_text(encoding="utf-8").splitlines()]
    assert any(r["action"] == "add" and r["file"] == "复工.txt" and r["user"] == "admin" for r in log)
    assert [i.name for i in small_library.knowledge_bases()] == ["default"]
    with pytest.raises(UnknownKnowledgeBase):
        small_library.ask("疫情防控", kbs=["疫情政策"])
    again = small_library.create_kb("疫情政策")  # the name is free again, the new one empty
    assert again.documents == 0


def test_an_existing_index_opens_as_default_without_a_rebuild(engine, kb_settings: Settings, embedder):
    builds = sorted(p.name for p in Path(kb_settings.index_dir).iterdir())
    opened = Engine.open(kb_settings, embedder=embedder)
    assert opened.health().build == engine.health().build
    assert sorted(p.name for p in Path(kb_settings.index_dir).iterdir()) == builds  # nothing written
    assert [(i.name, i.documents) for i in opened.knowledge_bases()] == [("default", 5)]
    assert opened.ask("纪委监督责任包括什么").citations[0].kb == "default"


# --- two knowledge bases from different documents, the real model -----------------------------


OWN_QUESTIONS = {
    "default": "驻全总机关纪检监察组如何强化两个责任贯通协同",
    "主体责任": "上海市如何落实管党治党政治责任",
}


@pytest.mark.parametrize("kb", list(KB_DOCUMENTS))
def test_each_knowledge_base_answers_its_own_question_from_its_own_documents(two_kbs, kb):
    answer = two_kbs.ask(OWN_QUESTIONS[kb], kbs=[kb])
    assert not answer.abstained
    assert {c.source for c in answer.citations} <= set(KB_DOCUMENTS[kb])
    assert {c.kb for c in answer.citations} == {kb}
    for c in answer.citations:
        assert two_kbs.document(c.source, kb=c.kb).text[c.start : c.end] == c.quote


@pytest.mark.parametrize(("kb", "other"), [("default", "主体责任"), ("主体责任", "default")])
def test_a_knowledge_base_does_not_answer_the_others_question(two_kbs, kb, other):
    answer = two_kbs.ask(OWN_QUESTIONS[other], kbs=[kb])
    assert not {c.source for c in answer.citations} & set(KB_DOCUMENTS[other])
    assert answer.abstained or {c.kb for c in answer.citations} == {kb}


def test_the_knowledge_bases_are_listed_with_their_documents(two_kbs):
    assert [(i.name, i.documents) for i in two_kbs.knowledge_bases()] == [("default", 2), ("主体责任", 2)]
    assert [i.to_dict()["name"] for i in two_kbs.knowledge_bases()] == ["default", "主体责任"]
