"""The chat page's HTTP API through gradio_client (`/ask`, `/search`, `/documents`): answers as the
engine gives them, twenty at once, behind a login, written by a scripted model (served pages from
served_app.py).
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from llm_server import ScriptedLLM, citing
from page_driver import GUANGXI, WRITTEN

from ui.render import GENERATED
from ui.tabs import EXAMPLES

pytest_plugins = ["served_app"]

QUESTIONS = [
    *EXAMPLES,
    "明天北京的天气怎么样?",
    "什么是两个责任",
    "纪委如何加强监督执纪问责",
    "党委书记是第一责任人吗",
    "北京市如何强化压力传导?",
    "全国总工会机关纪检监察组做了什么",
    "两个责任落实不力的主要表现有哪些",
    "怎样解决基层纪委监督不力的问题",
    "问责条例修订后有什么变化",
    "派驻机构的监督作用",
    "主体责任和监督责任是什么关系",
    "如何推动管党治党向基层延伸",
    "2018年至2020年开展了什么专项治理",
    "责任清单包括哪些内容",
    "纪检监察机关的职责定位",
    "股票明天会涨吗",
]


# --- HTTP API ----------------------------------------------------------------------------------------


def _without_markdown(result: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in result.items() if k != "markdown"}


def test_twenty_questions_at_once_through_the_api(server: str, engine) -> None:
    from gradio_client import Client

    client = Client(server, verbose=False)
    one_by_one = [client.predict(q, api_name="/ask") for q in QUESTIONS]
    start = threading.Barrier(len(QUESTIONS))

    def ask(question: str) -> dict[str, Any]:
        start.wait(timeout=60)  # all 20 requests leave together
        return client.predict(question, api_name="/ask")

    with ThreadPoolExecutor(len(QUESTIONS)) as pool:
        at_once = list(pool.map(ask, QUESTIONS, timeout=300))
    assert len(at_once) == 20 and all(r["answer"] for r in at_once)
    assert [_without_markdown(r) for r in at_once] == [_without_markdown(r) for r in one_by_one]
    direct = engine.ask(QUESTIONS[0]).to_dict()
    assert _without_markdown(one_by_one[0])["citations"] == direct["citations"]
    assert one_by_one[0]["markdown"].startswith(f"# 问：{QUESTIONS[0]}")
    abstained = [r["question"] for r in at_once if r["abstained"]]
    assert "明天北京的天气怎么样?" in abstained and "股票明天会涨吗" in abstained


def test_api_search_documents_and_errors(server: str, engine) -> None:
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    client = Client(server, verbose=False)
    hits = client.predict("纪委监督责任包括什么", 3, api_name="/search")
    assert [h["rank"] for h in hits] == [1, 2, 3]
    assert hits[0]["score"] >= hits[1]["score"] >= hits[2]["score"]
    assert [h["chunk_id"] for h in hits] == [p.chunk_id for p in engine.search("纪委监督责任包括什么", k=3)]
    documents = client.predict(api_name="/documents")
    assert [d["source"] for d in documents] == [d.source for d in engine.documents()]
    follow_up = client.predict("还有呢", ["纪委监督责任包括什么"], api_name="/ask")
    assert follow_up["question"] == "还有呢" and follow_up["citations"]
    with pytest.raises(AppError, match="问题不能为空"):
        client.predict("   ", api_name="/ask")


def test_a_lone_surrogate_in_a_question_does_not_drop_the_connection(server: str) -> None:
    """JSON may carry an unpaired surrogate (`\\ud800`); the answer comes back, with U+FFFD in its place."""
    import json
    import urllib.request

    body = json.dumps({"data": ["纪委监督责任\ud800包括什么", [], 5]}).encode()  # ASCII JSON with the escape
    request = urllib.request.Request(f"{server}gradio_api/call/ask", body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        event = json.loads(response.read())["event_id"]
    with urllib.request.urlopen(f"{server}gradio_api/call/ask/{event}", timeout=300) as response:
        stream = response.read().decode("utf-8")
    assert "event: complete" in stream, stream
    data = json.loads(stream.split("event: complete", 1)[1].split("data:", 1)[1].strip().splitlines()[0])
    assert data[0]["question"] == "纪委监督责任\ufffd包括什么" and data[0]["citations"]


# --- HTTP API: behind a login, and written answers -----------------------------------------------------


def test_the_api_needs_a_login_when_auth_is_set(locked_server: str, engine) -> None:
    from gradio_client import Client

    with pytest.raises(Exception):  # noqa: B017 - gradio_client raises several kinds for a refused login
        Client(locked_server, verbose=False).predict("纪委监督责任包括什么", api_name="/ask")
    client = Client(locked_server, auth=("张三", "pw1"), verbose=False)
    answer = client.predict("纪委监督责任包括什么", api_name="/ask")
    assert answer["citations"] == engine.ask("纪委监督责任包括什么").to_dict()["citations"]


def test_the_api_returns_the_verified_written_answer(written_server: tuple[str, Any], model: ScriptedLLM) -> None:
    from gradio_client import Client

    url, writer = written_server
    model.replies = [citing(WRITTEN)]
    result = Client(url, verbose=False).predict(GUANGXI, api_name="/ask")
    assert result["mode"] == "generated" and not result["abstained"]
    assert result["generation"]["kept"] == 2 and result["generation"]["dropped"] == 1
    assert "3.5亿" not in result["answer"] and "一把手227人" in result["answer"]
    assert model.requests[-1]["body"]["stream"] is False  # the whole reply, then checked
    for c in result["citations"]:
        assert writer.document(c["source"]).text[c["start"] : c["end"]] == c["quote"]
    assert GENERATED in result["markdown"] and "已删去 1 句" in result["markdown"]
