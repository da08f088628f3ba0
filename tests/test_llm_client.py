"""The chat client against a scripted OpenAI-compatible server in this process (no network)."""

import threading
import time
from collections.abc import Callable

import pytest
from llm_server import MODEL, ScriptedLLM, unused_url

from rag.answer.llm_client import ChatClient, LLMError, endpoint
from rag.config import Settings

MESSAGES = [{"role": "user", "content": "纪委监督责任包括什么"}]


def _client(url: str, model: str = "m", **settings: object) -> ChatClient:
    """The client the settings make for a server at `url` (`llm_…` settings by their short names)."""
    client = ChatClient.from_settings(
        Settings(llm_base_url=url, llm_model=model, **{f"llm_{k}": v for k, v in settings.items()})
    )
    assert client is not None
    return client


def test_endpoint_takes_the_base_url_with_or_without_v1():
    assert endpoint("http://h:8080", "chat/completions") == "http://h:8080/v1/chat/completions"
    assert endpoint("http://h:8080/v1/", "models") == "http://h:8080/v1/models"
    assert endpoint("http://h:11434/api/v1", "models") == "http://h:11434/api/v1/models"


def test_no_server_configured_means_no_client():
    assert ChatClient.from_settings(Settings()) is None
    client = ChatClient.from_settings(Settings(llm_base_url="http://h:1/v1", llm_model="m", llm_api_key="secret"))
    assert client is not None and client.model == "m" and "secret" not in repr(client)


def test_whole_reply(scripted_llm):
    scripted_llm.replies = ["纪委要履行监督责任。[1]"]
    client = _client(scripted_llm.url, "qwen2.5-7b-instruct", api_key="k-123", max_tokens=300)
    assert client.complete(MESSAGES) == "纪委要履行监督责任。[1]"
    request = scripted_llm.requests[-1]
    assert request["path"] == "/v1/chat/completions"
    assert request["body"]["model"] == "qwen2.5-7b-instruct"
    assert request["body"]["messages"] == MESSAGES
    assert request["body"]["stream"] is False and request["body"]["max_tokens"] == 300
    assert request["headers"]["Authorization"] == "Bearer k-123"


def test_streamed_reply_comes_in_pieces(scripted_llm):
    reply = "纪委要履行监督责任。[1]\n党委要扛起主体责任。[2]"
    scripted_llm.replies = [reply]
    scripted_llm.chunk = 4
    pieces = list(_client(scripted_llm.url).stream(MESSAGES))
    assert "".join(pieces) == reply
    assert len(pieces) == -(-len(reply) // 4)
    assert scripted_llm.requests[-1]["body"]["stream"] is True


def test_reasoning_is_left_out(scripted_llm):
    scripted_llm.replies = ["<think>先想一想：资料[1]说……</think>纪委要履行监督责任。[1]"]
    client = _client(scripted_llm.url)
    assert client.complete(MESSAGES) == "纪委要履行监督责任。[1]"
    scripted_llm.chunk = 5  # the tags arrive split over events
    assert "".join(client.stream(MESSAGES)) == "纪委要履行监督责任。[1]"


def test_model_name_defaults_to_the_servers_first(scripted_llm):
    scripted_llm.replies = ["好。"]
    client = _client(scripted_llm.url, model="")
    client.complete(MESSAGES)
    assert client.model == MODEL and scripted_llm.requests[-1]["body"]["model"] == MODEL


def test_server_down_is_a_clear_error():
    client = _client(unused_url(), connect_timeout=2.0)
    with pytest.raises(LLMError, match="cannot reach the model server"):
        client.complete(MESSAGES)
    with pytest.raises(LLMError, match="cannot reach the model server"):
        list(client.stream(MESSAGES))


@pytest.mark.parametrize("status, message", [(500, "HTTP 500"), (401, "RAG_LLM_API_KEY")])
def test_http_errors_say_what_the_server_answered(scripted_llm, status, message):
    scripted_llm.status = status
    client = _client(scripted_llm.url)
    with pytest.raises(LLMError, match=message):
        client.complete(MESSAGES)
    with pytest.raises(LLMError, match=message):
        list(client.stream(MESSAGES))


def test_a_stalled_server_times_out(scripted_llm):
    scripted_llm.replies = ["迟到的回答。"]
    scripted_llm.delay = 1.0
    client = _client(scripted_llm.url, timeout=0.3)
    with pytest.raises(LLMError, match="did not answer in time"):
        client.complete(MESSAGES)
    with pytest.raises(LLMError, match="did not answer in time"):
        list(client.stream(MESSAGES))


def test_a_server_that_is_not_openai_compatible_is_an_error():
    with ScriptedLLM() as other:
        client = _client(other.url.removesuffix("/v1") + "/elsewhere")
        with pytest.raises(LLMError, match="HTTP 404"):
            client.complete(MESSAGES)


def _within(seconds: float, call: Callable[[], object]) -> object:
    """What `call` returns or raises, failing the test when it is still running after `seconds`."""
    outcome: list[object] = []

    def run() -> None:
        try:
            outcome.append(call())
        except Exception as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        pytest.fail(f"still waiting for the model server after {seconds} s")
    return outcome[0]


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_a_server_that_never_finishes_is_timed_out_as_a_whole(scripted_llm, stream):
    scripted_llm.trickle = 0.05  # a byte every 50 ms: no single read ever waits long
    client = _client(scripted_llm.url, timeout=1.0)
    started = time.perf_counter()
    outcome = _within(6.0, lambda: list(client.stream(MESSAGES)) if stream else client.complete(MESSAGES))
    elapsed = time.perf_counter() - started
    assert isinstance(outcome, LLMError), outcome
    assert "did not finish within 1 s" in str(outcome)
    assert 1.0 <= elapsed < 2.5, elapsed  # about the timeout (a busy 2-core machine may add a little)
