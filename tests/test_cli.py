"""The `rag` command, run in-process on the session's index."""

import io
import json
import subprocess
import sys
from pathlib import Path

from rag.cli import main

ANSWER_KEYS = {"question", "answer", "abstained", "citations", "passages"}
CITATION_KEYS = {"id", "source", "title", "quote", "start", "end"}
PASSAGE_KEYS = {"rank", "source", "chunk_id", "score", "text"}


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
    assert set(payload["passages"][0]) == {"rank", "source", "chunk_id", "title", "score", "text"}


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
    assert "corpus not found" in err or "rag index" in err


def test_eval_prints_the_metrics(capsys, engine, kb_settings, tmp_path, dev_questions):
    questions = tmp_path / "q.jsonl"
    questions.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in dev_questions[:4]), encoding="utf-8")
    report = tmp_path / "report.json"
    code, out, _ = _run(capsys, "eval", str(questions), "--json", str(report), "--index", str(kb_settings.index_dir))
    assert code == 0
    metrics = json.loads(out.split("\n\n")[0])
    assert {"hit@1", "hit@5", "mrr@10", "citation_hit", "latency_ms_p50", "latency_ms_p95"} <= set(metrics)
    assert len(json.loads(report.read_text(encoding="utf-8"))["questions"]) == 4


def test_console_script_is_installed():
    script = Path(sys.executable).with_name("rag")
    result = subprocess.run([str(script), "--help"], capture_output=True, text=True, check=False)
    assert result.returncode == 0 and "index" in result.stdout
