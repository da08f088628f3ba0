"""The REST API (`/api/v1/`, ui/rest.py, ui/rest_library.py, ui/rest_auth.py) on the real server
(served_app.py): its schema validates and every route in it answers as documented; two knowledge bases
answer their own questions; filters change what is cited; streams carry the answer's sentences; the
login, read-only and throttle rules of the page; errors as JSON with stable codes.
"""

from __future__ import annotations

import base64
import http.client
import json
import re
import subprocess
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from llm_server import citing
from page_driver import GUANGXI, USERS, WRITTEN, app

from ui.access import LOGIN_FREE_TRIES, Access
from ui.startup import EngineLoader

pytest_plugins = ["served_app"]

QUESTION = "纪委监督责任包括什么"
NOTICE_KB = "疫情政策"
NOTICE = "关于做好社区疫情防控工作的通知\n各街道社区应当在每日18时前报送核酸检测结果，做到应检尽检。\n居民返乡须提前三天向所在社区报备行程。\n"
NOTICE_QUESTION = "社区每天要报送什么?"


def api(url: str, auth: Any = None) -> httpx.Client:
    return httpx.Client(base_url=url + "api/v1", timeout=180, auth=auth)


def finished(client: httpx.Client, job: dict[str, Any], timeout: float = 120) -> dict[str, Any]:
    """The job once done or failed."""
    deadline = time.monotonic() + timeout
    while job["state"] in ("queued", "running"):
        assert time.monotonic() < deadline, job
        time.sleep(0.2)
        job = client.get(f"/jobs/{job['id']}", params={"kb": job["kb"]}).json()
    return job


def error_of(response: httpx.Response, status: int, code: str) -> str:
    """The message of a JSON error of that status and code (the shape checked)."""
    assert response.status_code == status, response.text
    body = response.json()
    assert list(body) == ["error"] and set(body["error"]) == {"code", "message"}, body
    assert body["error"]["code"] == code, body
    return body["error"]["message"]


@pytest.fixture(scope="module")
def notices(server: str) -> Any:
    """A second knowledge base, made through the API, holding one notice; removed afterwards."""
    client = api(server)
    assert client.post("/kbs", json={"name": NOTICE_KB}).status_code == 201
    upload = client.post("/documents", files={"file": ("防控通知.txt", NOTICE.encode())}, data={"kb": NOTICE_KB})
    assert upload.status_code == 202, upload.text
    job = finished(client, upload.json())
    assert job["state"] == "done" and job["kb"] == NOTICE_KB, job
    yield job["source"]
    assert client.delete(f"/kbs/{NOTICE_KB}").status_code == 200


# --- the schema, and every route in it ----------------------------------------------------------------


def check(spec: dict[str, Any], method: str, template: str, response: httpx.Response) -> None:
    """The response's status is documented for the route, and its body matches the documented schema."""
    from openapi_schema_validator import OAS31Validator

    documented = spec["paths"][template][method]["responses"]
    assert str(response.status_code) in documented, (method, template, response.status_code, response.text)
    content = documented[str(response.status_code)].get("content", {})
    kind = response.headers.get("content-type", "").split(";")[0]
    assert kind in content, (method, template, kind, list(content))
    bodies = [json.loads(line[5:]) for line in response.text.splitlines() if line.startswith("data:")]
    for body in bodies if kind == "text/event-stream" else [response.json()]:
        OAS31Validator({**content[kind]["schema"], "components": spec["components"]}).validate(body)


def test_the_schema_validates_and_every_route_answers_as_documented(server: str, engine) -> None:
    from openapi_spec_validator import validate

    client = api(server)
    spec = client.get("/openapi.json").json()
    validate(spec)
    assert spec["servers"] == [{"url": "/api/v1"}]
    docs = client.get("/docs").text
    scripts = re.findall(r'(?:src|href)="([^"]+\.(?:js|css))"', docs)
    assert len(scripts) >= 2 and all(url.startswith("/api/v1/") for url in scripts), scripts  # offline: no CDN
    assert all(client.get(url.removeprefix("/api/v1")).status_code == 200 for url in scripts)
    kb, seen = "接口测试", set()

    def call(method: str, template: str, path: str | None = None, **kwargs: Any) -> httpx.Response:
        response = client.request(method.upper(), path or template, **kwargs)
        check(spec, method, template, response)
        seen.add((method, template))
        return response

    assert call("get", "/kbs").json()["kbs"][0]["name"] == "default"
    created = call("post", "/kbs", json={"name": kb}).json()
    assert (created["name"], created["documents"], created["store"]) == (kb, 0, "local") and created["created"]
    assert call("get", "/documents", params={"kb": kb}).json() == {"documents": []}
    upload = call("post", "/documents", files={"file": ("通知.txt", NOTICE.encode())}, data={"kb": kb})
    assert upload.status_code == 202 and upload.json()["state"] in ("queued", "running", "done")
    job = call("get", "/jobs/{job_id}", f"/jobs/{upload.json()['id']}", params={"kb": kb}).json()
    assert finished(client, job)["state"] == "done"
    listed = call("get", "/documents", params={"kb": kb}).json()["documents"]
    assert [(d["source"], d["kb"]) for d in listed] == [("通知.txt", kb)]
    answer = call("post", "/ask", json={"question": NOTICE_QUESTION, "kbs": [kb]}).json()
    assert [(c["source"], c["kb"]) for c in answer["citations"]] == [("通知.txt", kb)], answer
    call("post", "/ask", json={"question": QUESTION, "stream": True})
    passages = call("post", "/search", json={"question": QUESTION, "k": 3}).json()["passages"]
    assert [p["chunk_id"] for p in passages] == [p.chunk_id for p in engine.search(QUESTION, k=3)]
    removal = call("delete", "/documents/{source}", "/documents/通知.txt", params={"kb": kb})
    assert removal.status_code == 202 and finished(client, removal.json())["state"] == "done"
    renamed = call("patch", "/kbs/{name}", f"/kbs/{kb}", json={"name": kb + "2"})
    assert renamed.json()["name"] == kb + "2"
    assert call("delete", "/kbs/{name}", f"/kbs/{kb}2").json() == {"name": kb + "2", "archived": True}
    assert kb + "2" not in [k["name"] for k in client.get("/kbs").json()["kbs"]]
    operations = {(method, path) for path, item in spec["paths"].items() for method in item}
    assert seen == operations, "a route in the schema was not called"


# --- knowledge bases and filters ------------------------------------------------------------------------


def test_each_knowledge_base_answers_its_own_questions(server: str, notices: str) -> None:
    client = api(server)
    own = client.post("/ask", json={"question": NOTICE_QUESTION, "kbs": [NOTICE_KB]}).json()
    assert not own["abstained"] and {(c["kb"], c["source"]) for c in own["citations"]} == {(NOTICE_KB, notices)}
    assert "核酸检测结果" in own["answer"] and f"（知识库：{NOTICE_KB}）" in own["markdown"]
    default = client.post("/ask", json={"question": NOTICE_QUESTION}).json()
    assert all(c["kb"] == "default" and "核酸" not in c["quote"] for c in default["citations"]), default
    both = client.post("/ask", json={"question": NOTICE_QUESTION, "kbs": ["default", NOTICE_KB]}).json()
    assert NOTICE_KB in {c["kb"] for c in both["citations"]}
    for question, first in [(NOTICE_QUESTION, NOTICE_KB), (QUESTION, "default")]:
        found = client.post("/search", json={"question": question, "kbs": ["default", NOTICE_KB]}).json()
        assert found["passages"][0]["kb"] == first, found
    assert client.get("/documents", params={"kb": NOTICE_KB}).json()["documents"][0]["source"] == notices


def test_source_and_date_filters_change_what_is_cited(server: str, engine) -> None:
    client = api(server)
    everything = client.post("/search", json={"question": QUESTION, "k": 10}).json()["passages"]
    other = next(d.source for d in engine.documents() if d.source != everything[0]["source"])
    narrowed = client.post("/search", json={"question": QUESTION, "k": 10, "source": [other]}).json()["passages"]
    assert narrowed and {p["source"] for p in narrowed} == {other}
    answer = client.post("/ask", json={"question": QUESTION, "source": other}).json()
    assert answer["citations"] and {c["source"] for c in answer["citations"]} == {other}
    dated = {d.source: d.date for d in engine.documents()}
    since = max(date for date in dated.values() if date)
    recent = client.post("/search", json={"question": QUESTION, "k": 10, "date_from": since}).json()["passages"]
    assert recent and {dated[p["source"]] for p in recent} == {since}
    bad = client.post("/search", json={"question": QUESTION, "date_from": "昨天"})
    error_of(bad, 400, "invalid_question")


def test_a_follow_up_takes_the_earlier_questions_or_the_returned_answers(server: str, engine) -> None:
    client = api(server)
    first = client.post("/ask", json={"question": QUESTION}).json()
    expected = engine.ask("还有呢", history=[QUESTION]).to_dict()
    by_question = client.post("/ask", json={"question": "还有呢", "history": [QUESTION]}).json()
    by_answer = client.post("/ask", json={"question": "还有呢", "history": [first]}).json()
    assert by_question["citations"] == by_answer["citations"] == expected["citations"] != first["citations"]
    assert by_answer["standalone_question"] == expected["standalone_question"]


# --- streams -------------------------------------------------------------------------------------------


def test_a_streamed_answer_is_its_sentences_then_the_answer(server: str, engine) -> None:
    expected = engine.ask(QUESTION).to_dict()
    client = api(server)
    sse = client.post("/ask", json={"question": QUESTION, "stream": True})
    assert sse.headers["content-type"].startswith("text/event-stream")
    events = [json.loads(line[6:]) for line in sse.text.splitlines() if line.startswith("data: ")]
    ndjson = client.post(
        "/ask", json={"question": QUESTION, "stream": True}, headers={"Accept": "application/x-ndjson"}
    )
    assert ndjson.headers["content-type"].startswith("application/x-ndjson")
    assert [json.loads(line) for line in ndjson.text.splitlines()] == events
    deltas, final = events[:-1], events[-1]
    assert len(deltas) >= 2 and {e["type"] for e in deltas} == {"delta"} and final["type"] == "final"
    assert "".join(e["text"] for e in deltas) == final["answer"]["answer"] == expected["answer"]
    assert [c for e in deltas for c in e["citations"]] == final["answer"]["citations"] == expected["citations"]
    empty = client.post("/ask", json={"question": " ", "stream": True})
    error_of(empty, 400, "invalid_question")


def test_a_written_answer_streams_the_sentences_that_passed(written_server: tuple[str, Any], model: Any) -> None:
    url, _ = written_server
    model.replies = [citing(WRITTEN)]
    events, arrived = [], []
    with api(url).stream("POST", "/ask", json={"question": GUANGXI, "stream": True}) as response:
        for line in response.iter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line[6:]))
                arrived.append(time.monotonic())
    assert arrived[-1] - arrived[0] > 0.5, arrived  # each sentence as it passed, not all at the end
    deltas, final = events[:-1], events[-1]["answer"]
    assert final["mode"] == "generated" and final["generation"]["dropped"] == 1, final["generation"]
    assert len(deltas) == 2 and "".join(e["text"] for e in deltas).strip() == final["answer"]
    assert "3.5亿元" not in final["answer"] and [c for e in deltas for c in e["citations"]] == final["citations"]


# --- errors --------------------------------------------------------------------------------------------


def test_errors_are_json_with_stable_codes(server: str, engine) -> None:
    client = api(server)
    assert "问题" in error_of(client.post("/ask", json={"question": "   "}), 400, "invalid_question")
    error_of(client.post("/ask", json={"q": QUESTION}), 422, "invalid_request")
    error_of(client.post("/ask", json={"question": QUESTION, "k": 0}), 422, "invalid_request")
    error_of(
        client.post("/ask", content=b"{not json", headers={"content-type": "application/json"}), 422, "invalid_request"
    )
    error_of(client.get("/nowhere"), 404, "not_found")
    error_of(client.get("/ask"), 405, "method_not_allowed")
    error_of(client.post("/ask", json={"question": QUESTION, "kbs": ["没有这个库"]}), 404, "kb_not_found")
    error_of(client.get("/documents", params={"kb": "没有这个库"}), 404, "kb_not_found")
    error_of(client.get("/jobs/987654"), 404, "job_not_found")
    error_of(client.delete("/documents/没有这个文件.txt"), 404, "document_not_found")
    error_of(client.post("/kbs", json={"name": "default"}), 409, "kb_exists")
    error_of(client.post("/kbs", json={"name": "a/b"}), 400, "invalid_kb")
    error_of(client.patch("/kbs/没有这个库", json={"name": "x"}), 404, "kb_not_found")
    error_of(client.delete("/kbs/default"), 400, "invalid_kb")
    assert client.post("/kbs", json={"name": "空库"}).status_code == 201
    try:
        empty = client.post("/ask", json={"question": QUESTION, "kbs": ["空库"]}).json()  # answers, with nothing
        assert empty["abstained"] and empty["citations"] == [] and empty["passages"] == []
        assert client.get("/documents", params={"kb": "空库"}).json() == {"documents": []}
    finally:
        assert client.delete("/kbs/空库").status_code == 200
    existing = engine.documents()[0].source
    same_name = client.post("/documents", files={"file": (existing, b"x")})
    assert existing in error_of(same_name, 409, "document_exists")
    error_of(client.post("/documents", files={"file": ("程序.exe", b"MZ")}), 400, "invalid_document")
    assert [d.source for d in engine.documents()].count(existing) == 1
    elsewhere = {"Origin": "https://example.com"}  # a form on another site's page, posted by the browser
    refused = client.post("/documents", files={"file": ("新.txt", "纪委监督。".encode())}, headers=elsewhere)
    assert "其他网站" in error_of(refused, 403, "forbidden")
    here = {"Origin": server.rstrip("/")}
    error_of(client.post("/documents", files={"file": ("程序.exe", b"MZ")}, headers=here), 400, "invalid_document")
    assert client.post("/ask", json={"question": QUESTION}, headers=elsewhere).status_code == 200


def test_the_readme_lists_every_error_code_with_its_status() -> None:
    from ui.rest_models import CODES

    listed = dict(re.findall(r"`([a-z_]+)` (\d{3})", README.read_text(encoding="utf-8")))
    assert {code: int(listed.get(code, 0)) for code in CODES} == {code: status for code, (status, _) in CODES.items()}


def declared(url: str, path: str, kind: str, length: int) -> tuple[int, dict[str, Any]]:
    """The status and JSON of a request that declares a body of `length` bytes and sends none."""
    address = urlsplit(url)
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=30)
    connection.putrequest("POST", path)
    connection.putheader("Content-Type", kind)
    connection.putheader("Content-Length", str(length))
    connection.endheaders()  # no body is sent: the answer comes anyway
    response = connection.getresponse()
    return response.status, json.loads(response.read())


def test_bodies_too_large_are_refused_before_they_are_read(server: str, engine) -> None:
    upload = engine.settings.max_upload_bytes * 2
    status, body = declared(server, "/api/v1/documents", "multipart/form-data; boundary=x", upload)
    assert (status, body["error"]["code"]) == (413, "too_large") and "MB" in body["error"]["message"]
    status, body = declared(server, "/api/v1/ask", "application/json", 10**9)
    assert (status, body["error"]["code"]) == (413, "too_large")

    def chunked() -> Any:  # no length given: refused, not read
        yield json.dumps({"question": QUESTION}).encode()

    refused = api(server).post("/ask", content=chunked(), headers={"content-type": "application/json"})
    error_of(refused, 411, "length_required")


# --- login and read-only ---------------------------------------------------------------------------------

WRITES = [
    ("POST", "/documents", {"files": {"file": ("新文件.txt", "纪委监督。".encode())}}),
    ("DELETE", "/documents/000_9bcc8b3cecb20cc5.txt", {}),
    ("POST", "/kbs", {"json": {"name": "只读测试"}}),
    ("PATCH", "/kbs/default", {"json": {"name": "改名"}}),
    ("DELETE", "/kbs/default", {}),
]


def test_a_read_only_user_gets_403_on_every_change_and_an_anonymous_one_401(locked_server: str, engine) -> None:
    spec = api(locked_server, ("张三", "pw1")).get("/openapi.json").json()
    writes = {(m.upper(), p.split("/")[1]) for p, item in spec["paths"].items() for m in item if m not in ("get",)}
    writes -= {("POST", "ask"), ("POST", "search")}
    assert writes == {(m, p.split("/")[1]) for m, p, _ in WRITES}, "a change route the test does not try"
    before = [d.source for d in engine.documents()]
    reader, anonymous = api(locked_server, ("张三", "pw1")), api(locked_server)
    for method, path, kwargs in WRITES:
        assert "只读" in error_of(reader.request(method, path, **kwargs), 403, "forbidden")
        refused = anonymous.request(method, path, **kwargs)
        error_of(refused, 401, "unauthorized")
        assert refused.headers["www-authenticate"].startswith("Basic")
    for token in ["张三:pw1", base64.b64encode("张三:pw1".encode()).decode()]:
        bearer = api(locked_server).post(
            "/kbs", json={"name": "x"}, headers={"Authorization": f"Bearer {token}".encode()}
        )
        error_of(bearer, 403, "forbidden")
    assert [d.source for d in engine.documents()] == before
    assert reader.post("/ask", json={"question": QUESTION}).json()["citations"]
    assert reader.get("/documents").status_code == 200
    admin = api(locked_server, ("admin", "pw2"))
    error_of(admin.post("/documents", files={"file": ("程序.exe", b"MZ")}), 400, "invalid_document")
    admin_bearer = api(locked_server).get("/kbs", headers={"Authorization": "Bearer admin:pw2"})
    assert admin_bearer.status_code == 200
    log = (engine.settings.index_dir / "changes.jsonl").read_text(encoding="utf-8").splitlines()
    refusals = [json.loads(line) for line in log if '"refused"' in line and "张三" in line]
    assert {r["action"] for r in refusals} >= {"add", "remove"}


def test_read_only_without_a_login_refuses_every_change_to_everyone(engine) -> None:
    from served_app import serve

    served = serve(engine, Access(read_only=True))
    client = api(next(served))
    try:
        for method, path, kwargs in WRITES:
            error_of(client.request(method, path, **kwargs), 403, "forbidden")
        assert client.post("/ask", json={"question": QUESTION}).json()["citations"]
    finally:
        served.close()


def test_wrong_passwords_are_throttled_as_on_the_login_page(locked_server: str) -> None:
    client = api(locked_server, ("李四", "wrong"))
    for _ in range(LOGIN_FREE_TRIES - 1):
        error_of(client.get("/kbs"), 401, "unauthorized")
    error_of(client.get("/kbs"), 401, "unauthorized")
    throttled = client.get("/kbs")
    error_of(throttled, 429, "too_many_attempts")
    assert int(throttled.headers["retry-after"]) >= 1


# --- while the engine opens ------------------------------------------------------------------------------


def test_the_api_answers_503_while_the_engine_loads(engine) -> None:
    from served_app import free_port

    opened = threading.Event()
    loader = EngineLoader(lambda: opened.wait(60) and engine)
    demo = app.build_app(loader, engine.settings, Access())
    port = free_port()
    app.launch(demo, engine.settings, "127.0.0.1", port, prevent_thread_lock=True, quiet=True)
    try:
        client = api(f"http://127.0.0.1:{port}/")
        waiting = client.post("/ask", json={"question": QUESTION})
        assert "正在加载" in error_of(waiting, 503, "loading") and waiting.headers["retry-after"]
        assert client.get("/openapi.json").status_code == 200  # the schema needs no engine
        opened.set()
        assert loader.wait(60) is engine
        assert client.post("/ask", json={"question": QUESTION}).json()["citations"]
    finally:
        opened.set()
        demo.close()


# --- the README's examples ---------------------------------------------------------------------------

README = Path(__file__).resolve().parent.parent / "README.md"
README_URL = "http://127.0.0.1:7860"
"""The server the README's examples name; the tests run them against theirs."""
_EXAMPLE = re.compile(r"<!-- example: ([\w-]+) -->\n(?:```(\w+)\n(.*?)\n```|(\|.*?)\n\n)", re.S)


def readme_examples(kind: str) -> dict[str, str]:
    """The README's marked examples of one kind (`sh`, `python`, or `table`), by name, in order."""
    found = {}
    for name, language, code, table in _EXAMPLE.findall(README.read_text(encoding="utf-8")):
        if (language or "table") == kind:
            found[name] = code or table
    return found


def json_values(text: str) -> list[Any]:
    """The JSON values printed one after another (curl prints no newline between them)."""
    decoder, values, at = json.JSONDecoder(), [], 0
    while at < len(text.rstrip()):
        value, at = decoder.raw_decode(text, at)
        values.append(value)
        while at < len(text) and text[at].isspace():
            at += 1
    return values


def _asked(out: str, engine: Any) -> None:
    (answer,) = json_values(out)
    dated = {d.source: d.date for d in engine.documents()}
    assert answer["citations"] and all(dated[c["source"]] >= "2016-01-01" for c in answer["citations"]), answer


def _streamed(out: str, engine: Any) -> None:
    events = [json.loads(line[6:]) for line in out.splitlines() if line.startswith("data: ")]
    assert [e["type"] for e in events][-1] == "final" and events[0]["type"] == "delta"
    assert "".join(e["text"] for e in events[:-1]) == events[-1]["answer"]["answer"] == engine.ask(QUESTION).answer


def _searched(out: str, engine: Any) -> None:
    found, listed = json_values(out)
    assert found["passages"] and {p["source"] for p in found["passages"]} == {"001_3c3daffbd3ff1c74.txt"}
    assert [d["source"] for d in listed["documents"]] == [d.source for d in engine.documents()]


def _managed(out: str, engine: Any) -> None:
    created, job, listed = json_values(out)
    assert created["name"] == job["kb"] == "疫情防控" and job["state"] in ("queued", "running", "done")
    assert "疫情防控" in [k["name"] for k in listed["kbs"]]


def _deleted(out: str, engine: Any) -> None:
    assert json_values(out) == [{"name": "疫情防控", "archived": True}]


README_CHECKS = {
    "rest-ask": _asked,
    "rest-stream": _streamed,
    "rest-search": _searched,
    "rest-kbs": _managed,
    "rest-kb-delete": _deleted,
}


def test_the_readmes_curl_examples_work_as_shown(locked_server: str, engine, tmp_path: Path) -> None:
    """Run with curl against a server started as the README says (`--auth "张三:pw1,admin:pw2:admin" --read-only`)."""
    assert Access.from_spec(USERS).users == Access.from_spec("张三:pw1,admin:pw2:admin").users
    examples = readme_examples("sh")
    assert list(examples) == list(README_CHECKS), "every curl example of the README is checked"
    (tmp_path / "通知.txt").write_text(NOTICE, encoding="utf-8")
    for name, code in examples.items():
        script = code.replace(README_URL, locked_server.rstrip("/")).replace("curl ", "curl --fail-with-body ")
        run = subprocess.run(
            ["bash", "-c", f"set -eo pipefail\n{script}"], cwd=tmp_path, capture_output=True, timeout=300
        )
        assert run.returncode == 0, (name, run.stdout.decode(), run.stderr.decode())
        README_CHECKS[name](run.stdout.decode("utf-8"), engine)
        if name == "rest-kbs":  # the upload is indexed before the knowledge base is asked and removed
            admin = api(locked_server, ("admin", "pw2"))
            job = admin.get("/jobs/1", params={"kb": "疫情防控"}).json()
            assert finished(admin, job)["state"] == "done", job
            answer = admin.post("/ask", json={"question": NOTICE_QUESTION, "kbs": ["疫情防控"]}).json()
            assert {c["source"] for c in answer["citations"]} == {"通知.txt"}
