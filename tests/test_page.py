"""The chat page's handlers without a browser, over the real engine: the 知识库 tab's uploads,
replacements and removals (`ui.library`), the 问答 tab's answers, follow-ups and streamed written
answers (`ui.chat`), and what every tab says while the engine is not ready (`ui.page`).

The real page in Chromium is tested in test_app*.py; rendering and access in test_ui.py.
"""

from __future__ import annotations

import re
import sys
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # ui/ sits at the top of the project, outside the installed package
    sys.path.insert(0, str(ROOT))

from page_driver import GUANGXI, WRITTEN  # noqa: E402

from ui.access import Access  # noqa: E402
from ui.chat import Chat, recent  # noqa: E402
from ui.library import Library, discard_upload  # noqa: E402
from ui.page import Page  # noqa: E402
from ui.render import GENERATED, WRITING, chat_text, export_markdown, md_text  # noqa: E402
from ui.search import Search  # noqa: E402
from ui.startup import EngineLoader  # noqa: E402

FACT = "青山县纪委在2024年开展了“清风行动”专项检查，共检查单位37家。"
CJK = re.compile(r"[\u3400-\u9fff]")


def _chat(engine) -> Chat:
    return Chat(EngineLoader.of(engine))


def _library(engine, access: Access | None = None) -> Library:
    return Library(EngineLoader.of(engine), access)


def _search(engine) -> Search:
    return Search(EngineLoader.of(engine))


def _request(user: str | None = None, host: str = "10.0.0.7") -> SimpleNamespace:
    """What the handlers read of a Gradio request: the login name and the client's address."""
    return SimpleNamespace(username=user, client=SimpleNamespace(host=host))


def _upload(tmp_path: Path, name: str, data: bytes | str) -> Path:
    """A file as Gradio hands an upload over: in a folder of its own in its cache."""
    folder = tmp_path / "gradio" / f"{len(list(tmp_path.glob('gradio/*'))):04d}"
    folder.mkdir(parents=True)
    path = folder / name
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def _settle(library: Library, jobs: list[int], status: str = "") -> str:
    """Wait for the page's queued jobs, then let the timer report them: the session's status text."""
    engine = library.loader.engine
    assert engine.worker.wait(600)
    *_, reported = library.on_tick(None, jobs, status)
    return reported if isinstance(reported, str) else status  # not a str: nothing new to report


# --- the 知识库 tab (ui.library) ---------------------------------------------------------------------


def test_uploads_are_queued_named_safely_and_reported(engine, tmp_path: Path) -> None:
    library = _library(engine)
    corpus = Path(engine.settings.corpus_dir)
    before = sorted(p.name for p in corpus.iterdir() if p.is_file())
    sneaky = _upload(tmp_path, "..\\..\\outside.txt", FACT)  # a Windows-style path as a browser may send it
    try:
        status, files, jobs, *_ = library.on_upload([str(sneaky)], [], "", _request())
        assert "已加入处理队列" in status and files is None and len(jobs) == 1
        status = _settle(library, jobs, status)
        assert "已添加" in status and "outside.txt" in status
        assert (corpus / "outside.txt").is_file() and not sneaky.exists()  # Gradio's copy let go
        assert not (corpus.parent / "outside.txt").exists() and not (corpus.parent.parent / "outside.txt").exists()
    finally:
        if "outside.txt" in {d.source for d in engine.documents()}:
            engine.remove_document("outside.txt")
    big = _upload(tmp_path, "big.txt", b"")
    with big.open("wb") as f:
        f.truncate(engine.settings.max_upload_bytes + 1)
    status, *_ = library.on_upload([str(big)], [], "", _request())
    assert "未能添加** big.txt" in status and "文件过大" in status and "MB" in status
    assert not big.exists()
    assert sorted(p.name for p in corpus.iterdir() if p.is_file()) == before


def test_an_existing_name_is_asked_about_and_replaced_only_on_yes(engine, tmp_path: Path) -> None:
    library = _library(engine)
    corpus = Path(engine.settings.corpus_dir)
    name = sorted(d.source for d in engine.documents())[1]
    original = (corpus / name).read_bytes()
    upload = _upload(tmp_path, name.replace(".txt", ".TXT"), FACT)
    status, _, jobs, pending, confirm, question = library.on_upload([str(upload)], [], "", _request())
    assert jobs == [] and pending == [[str(upload), upload.name, name]]
    assert confirm.visible is True and md_text(name) in question and "替换" in question
    status, pending, confirm, _ = library.on_keep(pending, status)
    assert "未替换" in status and pending == [] and not upload.exists()
    assert (corpus / name).read_bytes() == original

    upload = _upload(tmp_path, name.replace(".txt", ".TXT"), FACT)
    *_, pending, _, _ = library.on_upload([str(upload)], [], "", _request())
    kept_before = set((corpus / ".versions").iterdir()) if (corpus / ".versions").exists() else set()
    try:
        status, jobs, *_ = library.on_replace(pending, [], "", _request("admin"))
        status = _settle(library, jobs, status)
        assert "已替换" in status
        kept = set((corpus / ".versions").iterdir()) - kept_before
        assert len(kept) == 1 and next(iter(kept)).read_bytes() == original
        assert "清风行动" in engine.ask("青山县纪委开展了什么专项检查?").answer
    finally:
        (corpus / name).write_bytes(original)
        engine.build(progress=False)


def test_removal_of_an_unknown_or_outside_name_says_so(engine) -> None:
    library = _library(engine)
    before = sorted(p.name for p in Path(engine.settings.corpus_dir).iterdir() if p.is_file())
    status, jobs = library.on_remove("../corpus/000_9bcc8b3cecb20cc5.txt", [], "", _request())
    status = _settle(library, jobs, status)
    assert "未能删除" in status and "知识库中没有文件" in status
    assert str(engine.settings.corpus_dir) not in status
    assert sorted(p.name for p in Path(engine.settings.corpus_dir).iterdir() if p.is_file()) == before


def test_read_only_refuses_changes_from_ordinary_users(engine, tmp_path: Path) -> None:
    library = _library(engine, Access.from_spec("张三:pw1,admin:pw2:admin", read_only=True))
    upload = _upload(tmp_path, "通报.txt", FACT)
    status, *_ = library.on_upload([str(upload)], [], "", _request("张三"))
    assert "只读模式" in status and not upload.exists()
    status, jobs = library.on_remove(sorted(d.source for d in engine.documents())[0], [], "", _request("张三"))
    assert "只读模式" in status and jobs == []
    assert library.on_load(_request("张三"))["visible"] is False
    assert library.on_load(_request("admin"))["visible"] is True


def test_refused_changes_are_in_the_audit_log_with_user_and_reason(engine, tmp_path: Path, caplog) -> None:
    """A read-only user's upload, replacement and removal are refused and each leaves one line in the
    `rag.audit` log and the change log: who, what and why; before the engine is open, in the audit log."""
    import json
    import logging

    access = Access.from_spec("张三:pw1,admin:pw2:admin", read_only=True)
    library = _library(engine, access)
    source = sorted(d.source for d in engine.documents())[0]
    changes = Path(engine.settings.index_dir) / "changes.jsonl"
    logged = len(changes.read_text(encoding="utf-8").splitlines()) if changes.exists() else 0
    with caplog.at_level(logging.INFO, logger="rag.audit"):
        library.on_upload([str(_upload(tmp_path, "通报.txt", FACT))], [], "", _request("张三"))
        library.on_replace([[str(_upload(tmp_path, "b.txt", FACT)), "b.txt", source]], [], "", _request("张三"))
        library.on_remove(source, [], "", _request("张三", host="10.1.2.3"))
        library.on_remove(source, [], "", _request(None, host="10.9.8.7"))  # no login: the address is the user
        opening = Library(EngineLoader(lambda: engine), access)  # the engine not open yet
        opening.on_upload([str(_upload(tmp_path, "c.txt", FACT))], [], "", _request("张三", host="10.1.2.3"))
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "rag.audit"]
    assert [(e["event"], e["action"], e["file"], e["user"], e["ok"]) for e in lines] == [
        ("refused", "add", "通报.txt", "张三", False),
        ("refused", "replace", "b.txt", "张三", False),
        ("refused", "remove", source, "张三", False),
        ("refused", "remove", source, "10.9.8.7", False),
        ("refused", "add", "c.txt", "张三", False),
    ]
    assert all("只读模式" in e["error"] for e in lines) and lines[-1]["address"] == "10.1.2.3"
    recorded = [json.loads(line) for line in changes.read_text(encoding="utf-8").splitlines()[logged:]]
    assert [(e["action"], e["user"]) for e in recorded] == [(e["action"], e["user"]) for e in lines[:4]]
    assert {d.source for d in engine.documents()} >= {source}


def test_discard_upload_removes_the_file_and_its_empty_folder(tmp_path: Path) -> None:
    folder = tmp_path / "gradio" / "abc123"
    folder.mkdir(parents=True)
    (folder / "a.txt").write_text("x", encoding="utf-8")
    discard_upload(folder / "a.txt")
    assert not folder.exists()
    discard_upload(folder / "a.txt")  # twice is harmless


# --- the 问答 tab (ui.chat) -------------------------------------------------------------------------


def test_a_question_before_the_engine_is_open_waits_and_says_so(engine) -> None:
    gate = threading.Event()

    def slow_open():
        gate.wait(60)
        return engine

    chat = Chat(EngineLoader(slow_open).start())
    replies = chat.on_ask("纪委监督责任包括什么", [], [])
    _, chat, turns, *_ = next(replies)
    assert chat[-1]["role"] == "assistant" and "正在启动" in chat[-1]["content"] and turns == []
    gate.set()
    _, chat, turns, sources, *_ = next(replies)
    expected = engine.ask("纪委监督责任包括什么")
    assert turns[-1].citations == expected.citations
    assert "正在启动" not in chat[-1]["content"] and "cite-0-1" in chat[-1]["content"]
    assert f'id="cite-0-{expected.citations[0].id}"' in sources


def test_a_question_during_the_first_build_says_how_far_it_is(kb_settings, embedder, tmp_path: Path) -> None:
    from rag import Engine

    settings = kb_settings.replace(corpus_dir=tmp_path / "corpus", index_dir=tmp_path / "index")
    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "通报.txt").write_text(FACT, encoding="utf-8")
    fresh = Engine(settings, embedder)
    with fresh._write_lock:  # hold the build at its start, as a long first build would be
        fresh.worker.build(user="系统")
        replies = list(_chat(fresh).on_ask("青山县纪委开展了什么专项检查", [], []))
        assert "正在建立索引" in replies[-1][1][-1]["content"] and "完成后即可提问" in replies[-1][1][-1]["content"]
    assert fresh.worker.wait(120)
    *_, (_, chat, turns, *_) = _chat(fresh).on_ask("青山县纪委开展了什么专项检查", [], [])
    assert turns[-1] is not None and not turns[-1].abstained and "清风行动" in chat[-1]["content"]
    fresh.worker.close()


def test_a_lone_surrogate_in_a_question_is_answered(engine) -> None:
    *_, (_, chat, turns, *_) = _chat(engine).on_ask("纪委监督责任\ud800包括什么", [], [])
    assert turns[-1] is not None and "\ud800" not in chat[0]["content"] + chat[1]["content"]
    chat[0]["content"].encode("utf-8")  # sendable


def test_clearing_forgets_the_conversation(engine) -> None:
    question, chat, turns, sources, export, download = _chat(engine).on_clear()
    assert (question, chat, turns, export) == ("", [], [], "")
    assert "提问后" in sources and download.interactive is False


def test_follow_ups_carry_the_last_answers_the_settings_allow(engine, monkeypatch) -> None:
    """`Settings.followup_history` answers of the session go with a question; failed turns do not count."""
    answers = [engine.ask(q) for q in ("纪委监督责任包括什么", "党委主体责任具体指什么", "什么是两个责任")]
    assert recent([answers[0], None, answers[1], answers[2]], 2) == answers[1:]
    assert recent(answers, 8) == answers and recent(answers, 0) == []
    sent = []
    ask_stream = engine.ask_stream

    def spy(question, history=None, **kwargs):
        sent.append(list(history or []))
        return ask_stream(question, history=history, **kwargs)

    monkeypatch.setattr(engine, "ask_stream", spy)
    monkeypatch.setattr(engine, "settings", engine.settings.replace(followup_history=2))
    *_, (_, _, turns, *_) = _chat(engine).on_ask("还有呢", [], [answers[0], None, answers[1], answers[2]])
    assert sent == [answers[1:]] and turns[-1] is not None


# --- written answers (a scripted model server stands in for the language model) -------------------


@pytest.fixture
def writer(engine, scripted_llm):
    """The session's index behind an engine whose answers the scripted server writes."""
    from rag import Engine

    writer = Engine(engine.settings.replace(llm_base_url=scripted_llm.url, llm_model="scripted"), engine.embedder)
    writer.reload()
    return writer


def test_a_written_answer_streams_then_is_replaced_by_the_verified_one(engine, writer, scripted_llm) -> None:
    from llm_server import citing

    scripted_llm.replies = [citing(WRITTEN)]
    updates = list(_chat(writer).on_ask(GUANGXI, [], []))
    messages = [update[1][-1]["content"] for update in updates]
    assert len(messages) == 4, messages  # writing…, one sentence, two sentences, the final answer
    assert md_text(WRITING) in messages[0] and "cite-" not in messages[0]
    assert "党委统筹指挥" in messages[1] and "(#cite-0-1 " in messages[1] and "227人" not in messages[1]
    assert "227人" in messages[2] and md_text(WRITING) in messages[2]
    assert all(update[2] == [] for update in updates[:-1])  # the turn is recorded when it is final
    assert all(update[4] == "" and update[5].interactive is False for update in updates[:-1])
    assert 'id="cite-0-1"' in updates[1][3] and "一把手227人" in updates[2][3]  # sources as it grows

    _, chat, turns, sources, export, download = updates[-1]
    answer = turns[-1]
    assert answer.mode == "generated" and answer.generation.dropped == 1
    final = chat[-1]["content"]
    assert final.startswith(f"*{md_text(GENERATED)}；已删去 1 句无法在原文中核实的内容。*")
    assert md_text(WRITING) not in final and "3.5" not in final and "2022" not in final
    for citation in answer.citations:
        assert f"(#cite-0-{citation.id} " in final and f'id="cite-0-{citation.id}"' in sources
        assert engine.document(citation.source).text[citation.start : citation.end] == citation.quote
    assert f"*{GENERATED}；已删去 1 句无法在原文中核实的内容。*" in export and "3.5" not in export
    assert download.interactive is True


def test_a_server_that_is_down_gives_the_extractive_answer_with_a_note(engine, writer, scripted_llm) -> None:
    scripted_llm.down()
    updates = list(_chat(writer).on_ask(GUANGXI, [], []))
    _, chat, turns, *_ = updates[-1]
    expected = engine.ask(GUANGXI)
    assert turns[-1].answer == expected.answer and turns[-1].generation.fell_back
    assert chat[-1]["content"] == f"> {md_text(turns[-1].generation.note)}\n\n{chat_text(expected, 0)}"
    assert "语言模型服务暂时无法使用" in chat[-1]["content"] and md_text(GENERATED) not in chat[-1]["content"]
    assert "语言模型服务暂时无法使用" in export_markdown(turns[-1])


def test_without_a_model_answers_are_not_marked(engine) -> None:
    updates = list(_chat(engine).on_ask(GUANGXI, [], []))
    assert len(updates) == 1  # nothing streams
    _, chat, turns, *_ = updates[0]
    assert chat[-1]["content"] == chat_text(engine.ask(GUANGXI), 0)
    assert GENERATED not in chat[-1]["content"] + export_markdown(turns[-1]) and WRITING not in chat[-1]["content"]


# --- every tab (ui.page) --------------------------------------------------------------------------


def test_every_page_message_is_chinese(engine, tmp_path: Path) -> None:
    """Messages the handlers produce for failures hold Chinese and no English sentence."""
    library = _library(engine)
    messages = []
    for name, data in (("a.exe", b"MZ"), ("b.txt", b"\x00\x01" * 100), ("c.docx", b"not a zip")):
        path = _upload(tmp_path, name, data)
        status, _, jobs, *_ = library.on_upload([str(path)], [], "", _request())
        messages.append(_settle(library, jobs, status))
    messages.append(_search(engine).on_search("   ", 5))
    for message in filter(None, messages):
        assert CJK.search(message), message
        assert not re.search(r"\b(?:the|not|cannot|file|error|unsupported)\b", message, re.I), message


def test_engine_warnings_are_shown_above_the_chat_in_chinese(engine, monkeypatch) -> None:
    """An engine that reports a damaged index (`engine.warnings`, from the index checks) says so on the page."""
    page = Page(EngineLoader.of(engine))
    assert page.banner(engine, engine.worker.status()) == ""
    warnings = ["向量文件已损坏，正在使用上一次完好的索引 (dense.faiss is damaged)", "bad manifest"]
    monkeypatch.setattr(type(engine), "warnings", property(lambda self: warnings))
    banner = page.banner(engine, engine.worker.status())
    assert "注意：向量文件已损坏，正在使用上一次完好的索引" in banner and "dense.faiss" not in banner
    assert "bad manifest" not in banner and "请联系管理员" in banner


# --- knowledge bases on the page (ui.library, ui.chat, ui.search) ------------------------------------


def test_knowledge_bases_are_created_and_deleted_only_by_those_who_may_edit(small_kb, fake_embedder) -> None:
    from page_driver import USERS

    from rag import Engine

    engine = Engine(small_kb, fake_embedder)
    engine.build(progress=False)
    locked = _library(engine, Access.from_spec(USERS, read_only=True))
    status, *_ = locked.on_create("疫情政策", "", _request("张三"))
    assert "只读" in status and [i.name for i in engine.knowledge_bases()] == ["default"]
    status, name, managed, menu = locked.on_create("疫情政策", "", _request("admin"))
    assert "**已新建知识库** 疫情政策" in status and name == "" and managed.value == "疫情政策"
    assert ("疫情政策", "疫情政策") in menu.choices and ("默认", "default") in menu.choices
    status, *_ = locked.on_create("a/b", status, _request("admin"))
    assert "未能新建知识库" in status and "不可用" in status
    status, *_ = locked.on_delete("疫情政策", "", _request("张三"))
    assert "只读" in status and "疫情政策" in [i.name for i in engine.knowledge_bases()]
    status, *_ = locked.on_delete("default", "", _request("admin"))
    assert "不能删除" in status
    status, managed, menu = locked.on_delete("疫情政策", "", _request("admin"))
    assert "**已删除知识库** 疫情政策" in status and managed.value == "default"
    assert [i.name for i in engine.knowledge_bases()] == ["default"]


def test_the_knowledge_base_tab_lists_uploads_to_and_asks_in_the_chosen_one(small_kb, fake_embedder, tmp_path) -> None:
    from rag import Engine

    engine = Engine(small_kb, fake_embedder)
    engine.build(progress=False)
    engine.create_kb("疫情政策")
    library = _library(engine)
    status, _, jobs, *_ = library.on_upload(
        [str(_upload(tmp_path, "防疫.txt", "疫情防控\n疫情防控要做好核酸检测和隔离管控。"))],
        [],
        "",
        _request(),
        "疫情政策",
    )
    assert jobs == [["疫情政策", jobs[0][1]]]
    assert engine.engine_for("疫情政策").worker.wait(60)
    *_, table, _, _, still, menu, _, reported = library.on_tick(None, jobs, status, "疫情政策")
    assert "已添加" in reported and still == []
    assert [row[1] for row in table] == ["防疫.txt"]  # the managed knowledge base's documents, not default's
    assert ("疫情政策", "疫情政策") in menu.choices
    html = _search(engine).on_search("疫情防控", 3, ["疫情政策"])
    assert "疫情防控" in html and "知识库：疫情政策" in html
    *_, (_, _, turns, sources, *_) = _chat(engine).on_ask("疫情防控要做什么", [], [], ["疫情政策"])
    assert all(c.kb == "疫情政策" for c in turns[-1].citations) and turns[-1].passages[0].source == "防疫.txt"
    assert "隔离管控" in sources or turns[-1].abstained
    assert "YYYY-MM-DD" in _search(engine).on_search("疫情防控", 3, None, "", "2022-1-1")
