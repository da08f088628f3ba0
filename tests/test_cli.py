"""The `rag` command, run in-process on the session's index."""

import io
import json
import subprocess
import sys
from pathlib import Path

from conftest import ANSWER_KEYS, CITATION_KEYS
from llm_server import citing, unused_url

from rag.cli import main

PASSAGE_KEYS = {"rank", "source", "chunk_id", "title", "heading", "score", "text", "kb"}


def _run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_search_json(capsys, engine, kb_settings):
    code, out, _ = _run(
        capsys, "search", "纪委监督责任包括什么", "-k", "3", "--json", "--index", str(kb_settings.index_dir)
    )
    assert code == 0
    payload = json.loads(out)
    assert payload["query"] == "纪委监督责任包括什么"
    assert [p["rank"] for p in payload["passages"]] == [1, 2, 3]
    assert set(payload["passages"][0]) == PASSAGE_KEYS


def test_ask_json_schema(capsys, engine, kb_settings):
    code, out, _ = _run(
        capsys, "ask", "落实两个责任要解决哪些实际问题", "--json", "--index", str(kb_settings.index_dir)
    )
    assert code == 0
    payload = json.loads(out)
    assert set(payload) >= ANSWER_KEYS
    assert payload["abstained"] is False
    assert set(payload["citations"][0]) == CITATION_KEYS
    assert set(payload["passages"][0]) == PASSAGE_KEYS
    assert payload["passages"][0]["rank"] == 1


def _stdin(monkeypatch, data: bytes) -> None:
    """Standard input as a real text stream over bytes (the CLI reads its `.buffer`)."""
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data), encoding="utf-8"))


def test_ask_reads_questions_from_stdin_one_json_per_line(capsys, monkeypatch, engine, kb_settings):
    _stdin(monkeypatch, "纪委监督责任包括什么\n明天北京的天气怎么样?\n".encode())
    code, out, _ = _run(capsys, "ask", "--json", "-", "--index", str(kb_settings.index_dir))
    assert code == 0
    lines = [json.loads(line) for line in out.splitlines()]
    assert [line["abstained"] for line in lines] == [False, True]
    assert all(set(line) >= ANSWER_KEYS for line in lines)


def test_a_batch_answers_every_line_and_reports_bad_ones_in_place(capsys, monkeypatch, engine, kb_settings):
    """Blank lines, invalid UTF-8 and a question that raises each get an error line; the rest are answered."""
    from rag.engine import Engine

    real_ask = Engine.ask

    def ask(self, question, *args, **kwargs):  # the circled-numeral crash of issue 11, on one question
        if question == "第②项是什么":
            raise ValueError("invalid literal for int() with base 10: '②'")
        return real_ask(self, question, *args, **kwargs)

    monkeypatch.setattr(Engine, "ask", ask)
    lines_in = [
        "纪委监督责任包括什么".encode(),
        b"",
        "第②项是什么".encode(),
        b"\xff\xfe\x00bad \xc3\x28",
        b"   ",
        "明天北京的天气怎么样?".encode(),
    ]
    _stdin(monkeypatch, b"\n".join(lines_in) + b"\n")
    code, out, err = _run(capsys, "ask", "--json", "-", "--index", str(kb_settings.index_dir))
    assert code == 1  # some lines failed
    lines = [json.loads(line) for line in out.splitlines()]
    assert len(lines) == len(lines_in)  # outputs line up with inputs
    errors = [i for i, line in enumerate(lines) if "error" in line]
    assert errors == [1, 2, 3, 4]
    assert set(lines[1]) == {"question", "error"} and "问题不能为空" in lines[1]["error"]
    assert lines[2] == {"question": "第②项是什么", "error": "ValueError: invalid literal for int() with base 10: '②'"}
    assert "UTF-8" in lines[3]["error"] and "\ufffd" in lines[3]["question"]
    assert lines[0]["abstained"] is False and lines[5]["abstained"] is True
    assert "line 3" in err and "Traceback" not in err


def test_empty_question_is_a_clear_error(capsys, engine, kb_settings):
    code, _, err = _run(capsys, "ask", "  ", "--index", str(kb_settings.index_dir))
    assert code == 2
    assert "问题" in err and "Traceback" not in err


def test_missing_index_says_how_to_build_it(capsys, tmp_path):
    code, _, err = _run(capsys, "docs", "--index", str(tmp_path / "none"), "--corpus", str(tmp_path / "nothing"))
    assert code == 2
    assert err.startswith("错误 (error):") and str(tmp_path / "nothing") in err
    assert "Traceback" not in err


def test_eval_prints_the_metrics(capsys, engine, kb_settings, tmp_path, dev_questions):
    questions = tmp_path / "q.jsonl"
    questions.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in dev_questions[:4]), encoding="utf-8")
    report = tmp_path / "report.json"
    code, out, _ = _run(capsys, "eval", str(questions), "--json", str(report), "--index", str(kb_settings.index_dir))
    assert code == 0
    metrics = json.loads(out.split("\n\n")[0])
    assert metrics["questions"] == 4 and metrics["errors"] == 0
    assert metrics["hit@5"] == 1.0 and 0.0 <= metrics["hit@1"] <= 1.0
    assert metrics["latency_ms_p50"] <= metrics["latency_ms_p95"]
    rows = json.loads(report.read_text(encoding="utf-8"))["questions"]
    assert [r["id"] for r in rows] == [r["id"] for r in dev_questions[:4]]
    assert all(set(r["answer"]) == ANSWER_KEYS for r in rows)


WRITTEN = "广西共立案查处粮食购销领域有关单位一把手227人。[@227人]\n广西追回资金3.5亿元。[@227人]"


def test_ask_with_a_language_model_prints_the_verified_answer(capsys, engine, kb_settings, scripted_llm):
    scripted_llm.replies = [citing(WRITTEN)]
    argv = ["ask", "广西在粮食购销领域查处了多少一把手?", "--index", str(kb_settings.index_dir)]
    code, out, _ = _run(capsys, *argv, "--llm-url", scripted_llm.url, "--llm-model", "qwen", "--json")
    payload = json.loads(out)
    assert code == 0 and payload["mode"] == "generated"
    assert "227人" in payload["answer"] and "3.5亿" not in payload["answer"]
    assert payload["generation"]["kept"] == 1 and payload["generation"]["dropped"] == 1
    assert scripted_llm.requests[-1]["body"]["model"] == "qwen"

    code, out, _ = _run(capsys, *argv, "--llm-url", scripted_llm.url)  # streamed, as text
    assert code == 0 and "一把手227人。[1]" in out and "3.5亿" not in out
    assert "已删去 1 句" in out and "来源:" in out

    code, out, _ = _run(capsys, *argv, "--llm-url", scripted_llm.url, "--no-llm", "--json")
    assert json.loads(out)["mode"] == "extractive" and json.loads(out)["generation"] is None


def test_ask_with_the_model_server_down_shows_the_extractive_answer_and_says_so(capsys, engine, kb_settings):
    argv = [
        "ask",
        "广西在粮食购销领域查处了多少一把手?",
        "--index",
        str(kb_settings.index_dir),
        "--llm-url",
        unused_url(),
    ]
    code, out, _ = _run(capsys, *argv)
    assert code == 0 and "语言模型服务暂时无法使用" in out and "227人" in out and "Traceback" not in out


def test_llm_flag_without_a_server_is_a_clear_error(capsys, engine, kb_settings, monkeypatch):
    monkeypatch.delenv("RAG_LLM_BASE_URL", raising=False)
    code, _, err = _run(capsys, "ask", "纪委监督责任包括什么", "--llm", "--index", str(kb_settings.index_dir))
    assert code == 2 and "RAG_LLM_BASE_URL" in err


def test_eval_with_a_language_model_reports_kept_dropped_and_fallbacks(
    capsys, engine, kb_settings, tmp_path, scripted_llm
):
    questions = tmp_path / "q.jsonl"
    rows = [
        {"id": "g1", "question": "广西在粮食购销领域查处了多少一把手?", "gold": [{"doc": "002", "any": ["227人"]}]},
        {"id": "g2", "question": "红烧肉怎么做才好吃?", "gold": []},
    ]
    questions.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows), encoding="utf-8")
    scripted_llm.replies = [citing(WRITTEN)]
    code, out, _ = _run(
        capsys, "eval", str(questions), "--index", str(kb_settings.index_dir), "--llm-url", scripted_llm.url
    )
    generation = json.loads(out.split("\n\n")[0])["generation"]
    assert code == 0
    assert generation["asked"] == 1 and generation["not_asked_abstained"] == 1
    assert (generation["sentences"], generation["kept"], generation["dropped"]) == (2, 1, 1)
    assert generation["fell_back_share"] == 0.0 and generation["drop_reasons"] == {"fact": 1}


def test_console_script_is_installed():
    script = Path(sys.executable).with_name("rag")
    result = subprocess.run([str(script), "--help"], capture_output=True, text=True, check=False)
    assert result.returncode == 0 and "index" in result.stdout


def test_index_runs_are_in_the_change_log_under_the_os_user(capsys, small_kb):
    """`rag index` changes the knowledge base as an upload does: who ran it and what changed is logged."""
    import pwd

    from conftest import SMALL_DOCS

    argv = ["--corpus", str(small_kb.corpus_dir), "--index", str(small_kb.index_dir)]
    assert _run(capsys, "index", *argv)[0] == 0
    (small_kb.corpus_dir / "d.txt").write_text("巡视整改\n巡视整改要做到件件有着落。", encoding="utf-8")
    (small_kb.corpus_dir / "a.txt").unlink()
    assert _run(capsys, "index", *argv)[0] == 0
    assert _run(capsys, "index", "--rebuild", *argv)[0] == 0
    log = small_kb.index_dir / "changes.jsonl"
    records = [json.loads(line) for line in log.read_text(encoding="utf-8").split("\n")[:-1]]
    me = pwd.getpwuid(__import__("os").getuid()).pw_name
    assert [(r["user"], r["action"], r["ok"]) for r in records] == [(me, "index", True)] * 2 + [(me, "rebuild", True)]
    assert (records[0]["added"], records[0]["removed"]) == (sorted(SMALL_DOCS), [])
    assert (records[1]["added"], records[1]["removed"]) == (["d.txt"], ["a.txt"])
    assert records[2]["chunks_embedded"] >= 3


# --- knowledge bases and filters ------------------------------------------------------------------


def test_kb_commands_create_list_rename_and_delete(capsys, tmp_path):
    data = ["--data", str(tmp_path / "data")]
    code, out, _ = _run(capsys, "kb", "create", "疫情政策", *data)
    assert code == 0 and "kbs/疫情政策/corpus" in out
    (tmp_path / "data/kbs/疫情政策/corpus/防疫.txt").write_text("疫情防控\n做好隔离。", encoding="utf-8")
    code, out, _ = _run(capsys, "kb", "list", "--json", *data)
    assert json.loads(out)["kbs"][1] | {"created": ""} == {
        "name": "疫情政策", "documents": 1, "store": "local", "created": ""
    }  # fmt: skip
    assert _run(capsys, "kb", "rename", "疫情政策", "防疫", *data)[0] == 0
    code, out, _ = _run(capsys, "kb", "list", *data)
    assert [line.split("\t")[0] for line in out.splitlines()] == ["default", "防疫"]
    code, out, _ = _run(capsys, "kb", "delete", "防疫", *data)
    assert code == 0 and ".archive" in out
    assert list((tmp_path / "data/kbs/.archive").glob("防疫.*/corpus/防疫.txt"))
    code, _, err = _run(capsys, "kb", "create", "a/b", *data)
    assert code == 2 and "知识库名称" in err
    code, _, err = _run(capsys, "kb", "delete", "default", *data)
    assert code == 2 and "不能删除" in err


def test_ask_in_a_named_knowledge_base(capsys, two_kbs):
    data = str(two_kbs.settings.data_dir)
    code, out, _ = _run(capsys, "ask", "上海市如何落实管党治党政治责任", "--kb", "主体责任", "--data", data, "--json")
    assert code == 0
    payload = json.loads(out)
    assert {(c["kb"], c["source"]) for c in payload["citations"]} == {("主体责任", "003_f1c9c6d7a3f56b9a.txt")}
    code, out, _ = _run(capsys, "search", "全面从严治党主体责任", "--kb", "default,主体责任", "--data", data, "--json")
    assert {p["kb"] for p in json.loads(out)["passages"]} == {"default", "主体责任"}
    code, out, _ = _run(capsys, "docs", "--kb", "主体责任", "--data", data)
    assert [line.split("\t")[0] for line in out.splitlines()] == [
        "001_3c3daffbd3ff1c74.txt",
        "003_f1c9c6d7a3f56b9a.txt",
    ]
    code, _, err = _run(capsys, "ask", "问题", "--kb", "没有这个", "--data", data)
    assert code == 2 and "没有名为“没有这个”的知识库" in err


def test_source_and_date_filters(capsys, engine, kb_settings):
    index = ["--index", str(kb_settings.index_dir)]
    code, out, _ = _run(capsys, "search", "纪委监督责任", "--source", "主体责任", "--json", *index)
    assert code == 0 and {p["source"] for p in json.loads(out)["passages"]} == {"001_3c3daffbd3ff1c74.txt"}
    code, out, _ = _run(capsys, "search", "纪委监督责任", "--date-from", "2023-01-01", "--json", *index)
    assert {p["source"] for p in json.loads(out)["passages"]} == {"004_9af9869cdca38ca3.txt"}
    code, _, err = _run(capsys, "ask", "纪委监督责任包括什么", "--date-to", "2022/12/31", *index)
    assert code == 2 and "YYYY-MM-DD" in err
