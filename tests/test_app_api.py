"""The chat page's HTTP API through gradio_client (`/ask`, `/search`, `/documents`): answers as the
engine gives them, twenty at once, behind a login, written by a scripted model (served pages from
served_app.py).
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from llm_server import ScriptedLLM, citing
from page_driver import GUANGXI, WRITTEN, app

from ui.access import LOGIN_FREE_TRIES
from ui.render import GENERATED
from ui.tabs import EXAMPLES, READ_CONCURRENCY

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
    assert hits[0]["source"].startswith("004")  # what the answer quotes first (search_as_answers)
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


# --- the server's own guards: logins, uploads, who made a change, slow models --------------------------


def _audit(caplog: pytest.LogCaptureFixture, **match: str) -> list[dict[str, Any]]:
    """The `rag.audit` lines logged, as JSON, whose fields have the values `match` gives."""
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "rag.audit"]
    return [line for line in lines if all(line.get(k) == v for k, v in match.items())]


def _login(url: str, user: str, password: str) -> Any:
    """An HTTP client logged in to the page as `user`."""
    import httpx

    client = httpx.Client(base_url=url, timeout=60)
    assert client.post("login", data={"username": user, "password": password}).status_code == 200
    return client


def _announce_upload(url: str, length: int, cookie: str = "") -> bytes:
    """The reply to an upload that announces `length` bytes and sends none of them."""
    where = urlsplit(url)
    with socket.create_connection((where.hostname, where.port), timeout=10) as sock:
        sock.sendall(
            f"POST /gradio_api/upload HTTP/1.1\r\nHost: {where.netloc}\r\nCookie: {cookie}\r\n"
            f"Content-Type: multipart/form-data; boundary=xyz\r\nContent-Length: {length}\r\n\r\n".encode()
        )
        reply = b""
        while chunk := sock.recv(65536):  # the server answers and closes the connection
            reply += chunk
        return reply


def _cache_files(since: float) -> list[Path]:
    """Files of Gradio's upload cache written since `since` that are larger than 1 MB."""
    from gradio.utils import get_upload_folder

    folder = Path(get_upload_folder())
    found = [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []
    return [p for p in found if p.stat().st_mtime >= since and p.stat().st_size > 2**20]


def test_logins_are_throttled_per_user_and_address_and_recorded(
    guarded_server: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Wrong passwords: after `LOGIN_FREE_TRIES` the user waits (HTTP 429, Retry-After), longer after each
    further failure; 30 tries at once get no more than the free ones checked; other users are not locked;
    every try is one audit line, without the password."""
    import httpx

    def attempt(user: str, password: str) -> httpx.Response:
        return httpx.post(f"{guarded_server}login", data={"username": user, "password": password}, timeout=60)

    with caplog.at_level(logging.INFO, logger="rag.audit"):
        with ThreadPoolExecutor(10) as pool:  # the attack: many guesses at once
            codes = list(pool.map(lambda n: attempt("张三", f"guess{n}").status_code, range(30)))
        assert codes.count(400) == LOGIN_FREE_TRIES and codes.count(429) == 30 - LOGIN_FREE_TRIES, codes
        refused = attempt("张三", "pw1")  # locked: even the right password waits
        assert refused.status_code == 429 and "秒后再试" in refused.json()["detail"]
        wait = int(refused.headers["Retry-After"])
        assert wait >= 1
        time.sleep(wait + 0.2)
        assert attempt("张三", "wrong").status_code == 400  # checked again; one more failure: a longer wait
        again = attempt("张三", "pw1")
        assert again.status_code == 429 and int(again.headers["Retry-After"]) > wait
        assert attempt("admin", "pw2").status_code == 200  # another user from the same address
    logins = _audit(caplog, event="login")
    assert len(logins) == 30 + 4
    assert {e["user"] for e in logins} == {"张三", "admin"} and {e["address"] for e in logins} == {"127.0.0.1"}
    assert sum(e.get("reason") == "throttled" for e in logins) == 30 - LOGIN_FREE_TRIES + 2
    assert sum(e.get("reason") == "wrong_password" for e in logins) == LOGIN_FREE_TRIES + 1
    assert logins[-1]["ok"] is True and not any(e["ok"] for e in logins[:-1])
    text = "\n".join(r.getMessage() for r in caplog.records if r.name == "rag.audit")
    assert "guess" not in text and "pw" not in text and "wrong" not in text.replace("wrong_password", "")


def test_read_only_users_cannot_upload_through_the_http_route(
    locked_server: str, engine, caplog: pytest.LogCaptureFixture
) -> None:
    """`/gradio_api/upload` under `--read-only`: refused to an ordinary user before the body is read (and
    recorded); an administrator's file within the size limit is taken, a larger one refused."""
    since = time.time() - 1
    reader, admin = _login(locked_server, "张三", "pw1"), _login(locked_server, "admin", "pw2")
    cookie = "; ".join(f"{name}={value}" for name, value in reader.cookies.items())
    with caplog.at_level(logging.INFO, logger="rag.audit"):
        reply = _announce_upload(locked_server, 300 * 2**20, cookie)  # 300 MB announced, nothing sent
        assert reply.startswith(b"HTTP/1.1 403"), reply[:200]
        assert "只读模式" in reply.decode("utf-8", "replace")
        small = {"files": ("通报.txt", "青山县纪委通报。".encode())}
        assert reader.post("gradio_api/upload", files=small).status_code == 403
    refused = _audit(caplog, event="refused", action="upload")
    assert len(refused) == 2 and {e["user"] for e in refused} == {"张三"}
    assert all(e["reason"] == "read_only" and e["ok"] is False and "只读模式" in e["error"] for e in refused)
    taken = admin.post("gradio_api/upload", files=small)
    assert taken.status_code == 200 and len(taken.json()) == 1
    Path(taken.json()[0]).unlink(missing_ok=True)
    limit = engine.settings.max_upload_bytes
    too_big = admin.post("gradio_api/upload", files={"files": ("big.txt", b"x" * (limit + 1))})
    assert too_big.status_code == 413
    assert _cache_files(since) == []


def test_uploads_are_bounded_for_everyone(server: str, engine) -> None:
    """On the open page too: an upload announcing more than the server takes is refused at once, a file
    over `Settings.max_upload_bytes` while it streams; nothing of them stays in the cache."""
    import httpx

    since = time.time() - 1
    reply = _announce_upload(server, 300 * 2**20)
    assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
    limit = engine.settings.max_upload_bytes
    big = httpx.post(f"{server}gradio_api/upload", files={"files": ("big.txt", b"x" * (limit + 1))}, timeout=60)
    assert big.status_code == 413
    assert _cache_files(since) == []


def _remove_through_the_page(url: str, source: str, headers: dict[str, str]) -> None:
    """What the 知识库 tab's remove button sends (the browser's confirmation already given)."""
    import httpx

    config = httpx.get(f"{url}config", timeout=60).json()
    remove = next(d["id"] for d in config["dependencies"] if "从知识库删除" in (d.get("js") or ""))
    body = {"data": [source, [], "", "default"], "fn_index": remove, "session_hash": "audit-user-test"}  # in `default`
    reply = httpx.post(f"{url}gradio_api/run/predict", json=body, headers=headers, timeout=60)
    assert reply.status_code == 200 and "已加入处理队列" in json.dumps(reply.json(), ensure_ascii=False)


def _last_change(engine) -> dict[str, Any]:
    assert engine.worker.wait(120)
    log = Path(engine.settings.index_dir) / "changes.jsonl"
    return json.loads(log.read_text(encoding="utf-8").splitlines()[-1])


def test_the_change_log_names_the_socket_address_not_a_forwarded_header(
    server: str, proxied_server: str, engine
) -> None:
    """Without a login the change log's user is the client's address: `X-Forwarded-For` is believed only
    from a configured trusted proxy (`Settings.trusted_proxies`)."""
    forged = {"X-Forwarded-For": "6.6.6.6"}
    _remove_through_the_page(server, "没有这个文件.txt", forged)
    change = _last_change(engine)
    assert change["file"] == "没有这个文件.txt" and change["user"] == "127.0.0.1"
    _remove_through_the_page(proxied_server, "也没有这个文件.txt", {"X-Forwarded-For": "10.20.30.40"})
    change = _last_change(engine)
    assert change["file"] == "也没有这个文件.txt" and change["user"] == "10.20.30.40"


def test_slow_written_answers_do_not_hold_up_searches(slow_server: tuple[str, Any], slow_model: ScriptedLLM) -> None:
    """More chats than the page answers at once wait for a slow model: a search still answers at once,
    and every chat is answered in the end. The page's own chat events share the model's pool."""
    from gradio_client import Client

    url, writer = slow_server
    slow_model.replies = [citing(WRITTEN)]
    client = Client(url, verbose=False)
    chats = [client.submit(GUANGXI, api_name="/ask") for _ in range(READ_CONCURRENCY + 1)]
    deadline = time.monotonic() + 60
    while len(slow_model.requests) < 4 and time.monotonic() < deadline:  # the model is busy with them
        time.sleep(0.1)
    time.sleep(1.0)
    start = time.monotonic()
    hits = client.predict("纪委监督责任包括什么", 3, api_name="/search")
    took = time.monotonic() - start
    assert [h["rank"] for h in hits] == [1, 2, 3]
    assert took < 5.0, f"a search waited {took:.1f} s behind the model's chats"
    answers = [chat.result(timeout=300) for chat in chats]
    assert all(a["mode"] == "generated" and "一把手227人" in a["answer"] for a in answers)

    demo = app.build_app(writer, writer.settings)
    pools = {fn.name: fn.concurrency_id for fn in demo.fns.values() if fn.name}
    assert pools["on_ask"] == pools["on_example"] == pools["api_ask"] != pools["on_search"]
    assert pools["on_search"] == pools["api_search"]
