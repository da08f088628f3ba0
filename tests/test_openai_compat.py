"""The OpenAI-compatible endpoint (`/v1/models`, `/v1/chat/completions`, ui/openai_compat.py) through
the real `openai` client package, on the real server (served_app.py): the same answer and citations as
`rag ask`, whole and streamed, follow-ups, written answers, one model per knowledge base, errors in
OpenAI's shape, and the login (an API key from the users file).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from typing import Any

import httpx
import pytest
from llm_server import ScriptedLLM, citing
from page_driver import GUANGXI, WRITTEN
from test_rest import README_URL, readme_examples

pytest_plugins = ["served_app"]

QUESTION = "纪委监督责任包括什么"


def client(url: str, key: str = "none") -> Any:
    import openai

    return openai.OpenAI(base_url=url + "v1", api_key=key, timeout=180, max_retries=0)


def streamed(chat: Any, **request: Any) -> tuple[str, list[dict[str, Any]]]:
    """The streamed reply's text and the citations of its last chunk."""
    text, citations, finish = "", None, None
    for chunk in chat.chat.completions.create(stream=True, **request):
        assert chunk.object == "chat.completion.chunk" and chunk.model == request["model"]
        text += chunk.choices[0].delta.content or ""
        finish = chunk.choices[0].finish_reason or finish
        citations = (chunk.model_extra or {}).get("citations", citations)
    assert finish == "stop" and citations is not None
    return text, citations


def rag_ask(engine: Any, question: str, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    """`rag ask --json` on the served engine's folders."""
    from rag.cli import main

    capsys.readouterr()
    folders = ["--index", str(engine.settings.index_dir), "--corpus", str(engine.settings.corpus_dir)]
    assert main(["ask", "--json", "--no-llm", *folders, question]) == 0
    return json.loads(capsys.readouterr().out)


def test_the_answer_and_citations_are_rag_asks_whole_and_streamed(server: str, engine, capsys) -> None:
    expected = rag_ask(engine, QUESTION, capsys)
    assert expected["citations"] == engine.ask(QUESTION).to_dict()["citations"]
    chat = client(server)
    reply = chat.chat.completions.create(model="zhengce:default", messages=[{"role": "user", "content": QUESTION}])
    content = reply.choices[0].message.content
    assert reply.object == "chat.completion" and reply.choices[0].finish_reason == "stop"
    assert content.startswith(expected["answer"] + "\n\n**来源**")
    assert reply.model_extra["citations"] == expected["citations"] and not reply.model_extra["abstained"]
    for citation in expected["citations"]:
        assert f"[{citation['id']}] 《{citation['title']}》" in content
    text, citations = streamed(chat, model="zhengce:default", messages=[{"role": "user", "content": QUESTION}])
    assert text == content and citations == expected["citations"]


def test_earlier_turns_are_the_history(server: str, engine) -> None:
    first = engine.ask(QUESTION)
    expected = engine.ask("还有呢", history=[QUESTION])
    messages = [
        {"role": "system", "content": "你是助手"},
        {"role": "user", "content": QUESTION},
        {"role": "assistant", "content": first.answer},
        {"role": "user", "content": [{"type": "text", "text": "还有呢"}]},  # content parts, as some clients send
    ]
    reply = client(server).chat.completions.create(model="zhengce:default", messages=messages)
    assert reply.model_extra["citations"] == [c.to_dict() for c in expected.citations]
    assert reply.choices[0].message.content.startswith(expected.answer)
    assert {c.quote for c in expected.citations}.isdisjoint({c.quote for c in first.citations})


def test_filters_ride_in_extra_fields(server: str, engine) -> None:
    first = engine.ask(QUESTION).citations[0].source
    other = next(d.source for d in engine.documents() if d.source != first)
    reply = client(server).chat.completions.create(
        model="zhengce:default", messages=[{"role": "user", "content": QUESTION}], extra_body={"source": [other]}
    )
    cited = {c["source"] for c in reply.model_extra["citations"]}
    assert cited and cited == {c.source for c in engine.ask(QUESTION, source=[other]).citations} and first not in cited


def test_an_abstention_is_the_refusal_without_sources(server: str) -> None:
    reply = client(server).chat.completions.create(
        model="zhengce:default", messages=[{"role": "user", "content": "明天北京的天气怎么样?"}]
    )
    assert reply.choices[0].message.content.startswith("知识库中没有找到能回答这个问题的内容。")
    assert reply.model_extra == {"citations": [], "abstained": True}


def test_one_model_per_knowledge_base_and_unknown_ones_are_404(server: str) -> None:
    import openai

    chat = client(server)
    assert next(m.id for m in chat.models.list()) == "zhengce:default"
    created = httpx.post(server + "api/v1/kbs", json={"name": "模型测试"}, timeout=60)
    assert created.status_code == 201
    try:
        assert {m.id for m in chat.models.list()} >= {"zhengce:default", "zhengce:模型测试"}
    finally:
        assert httpx.delete(server + "api/v1/kbs/模型测试", timeout=60).status_code == 200
    with pytest.raises(openai.NotFoundError) as raised:
        chat.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": QUESTION}])
    error = raised.value.body
    assert (
        error["code"] == "model_not_found"
        and error["type"] == "invalid_request_error"
        and "zhengce:default" in error["message"]
    )
    with pytest.raises(openai.BadRequestError) as raised:
        chat.chat.completions.create(model="zhengce:default", messages=[{"role": "user", "content": "  "}])
    assert raised.value.body["code"] == "invalid_question"
    with pytest.raises(openai.BadRequestError) as raised:
        chat.chat.completions.create(model="zhengce:default", messages=[{"role": "assistant", "content": "你好"}])
    assert raised.value.body["code"] == "invalid_request"


def test_the_api_key_is_a_login_of_the_users_file(locked_server: str) -> None:
    import base64

    import openai

    reader = client(locked_server, base64.b64encode("张三:pw1".encode()).decode())  # headers are ASCII
    assert reader.chat.completions.create(model="zhengce:default", messages=[{"role": "user", "content": QUESTION}])
    assert next(m.id for m in client(locked_server, "admin:pw2").models.list()) == "zhengce:default"
    for key in ["admin:wrong", "none"]:
        with pytest.raises(openai.AuthenticationError) as raised:
            client(locked_server, key).models.list()
        assert raised.value.status_code == 401 and raised.value.body["code"] == "unauthorized"


def test_a_written_answer_streams_its_verified_sentences(written_server: tuple[str, Any], model: ScriptedLLM) -> None:
    url, writer = written_server
    model.replies = [citing(WRITTEN)]
    expected = writer.ask(GUANGXI)
    assert expected.mode == "generated" and expected.generation.dropped == 1
    chat = client(url)
    request = {"model": "zhengce:default", "messages": [{"role": "user", "content": GUANGXI}]}
    whole = chat.chat.completions.create(**request)
    text, citations = streamed(chat, **request)
    assert whole.choices[0].message.content == text and text.startswith(expected.answer)
    assert "3.5亿元" not in text and citations == whole.model_extra["citations"] == [
        c.to_dict() for c in expected.citations
    ]


# --- the README's examples ---------------------------------------------------------------------------


def test_the_readmes_python_example_prints_the_answer_its_citations_and_its_stream(locked_server: str, engine) -> None:
    (code,) = readme_examples("python").values()
    code = code.replace(README_URL, locked_server.rstrip("/"))
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=300)
    assert run.returncode == 0, run.stderr.decode()
    out = run.stdout.decode("utf-8")
    expected = engine.ask(QUESTION)
    assert out.startswith(expected.answer + "\n\n**来源**") and out.count(expected.answer) == 2
    for c in expected.citations:
        assert f"{c.id} {c.kb} {c.source} {c.quote[:20]}" in out


def test_the_readmes_client_configuration_works(locked_server: str, engine) -> None:
    (table,) = readme_examples("table").values()
    rows = dict(re.findall(r"^\| ([^|]+?) \| `([^`]+)` \|$", table, re.M))
    base_url = rows["API base URL (API 地址)"].replace(README_URL, locked_server.rstrip("/"))
    chat = client(base_url.removesuffix("v1"), rows["API key (API 密钥)"])
    model = rows["model (模型)"]
    assert model in [m.id for m in chat.models.list()]
    reply = chat.chat.completions.create(model=model, messages=[{"role": "user", "content": QUESTION}])
    assert reply.model_extra["citations"] == [c.to_dict() for c in engine.ask(QUESTION).citations]
