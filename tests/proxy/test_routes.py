"""Routes, the locked door (token, Host, Origin, body size), count_tokens and models."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from anyclaude.hub import find_tokenizer
from anyclaude.proxy.server import ThreadedProxy
from anyclaude.proxy.tokens import TokenCounter
from tests.support.proxy import TOKEN, client, running_proxy
from tests.support.scripted_backend import ScriptedBackend
from tests.support.tiny_model import build_scripted_model, default_models_dir

BODY: dict[str, Any] = {"model": "claude-x", "max_tokens": 10,
                        "messages": [{"role": "user", "content": "hi"}]}
AUTH = {"x-api-key": TOKEN}


@pytest.fixture
def served() -> Iterator[tuple[ScriptedBackend, ThreadedProxy]]:
    with ScriptedBackend("mlx-lm") as backend, running_proxy("mlx-lm", backend.url) as proxy:
        yield backend, proxy


def test_beta_query_is_ignored(served: tuple[ScriptedBackend, ThreadedProxy]) -> None:
    _, proxy = served
    response = httpx.post(proxy.url + "/v1/messages?beta=true", json=BODY, headers=AUTH)
    assert response.status_code == 200 and response.json()["type"] == "message"


@pytest.mark.parametrize(("method", "path"), [("GET", "/"), ("HEAD", "/"), ("POST", "/v1/complete"),
                                              ("GET", "/v1/messages/batches"),
                                              ("POST", "/v1/files")])
def test_unknown_routes_are_404_with_an_anthropic_body_and_nothing_is_forwarded(
        served: tuple[ScriptedBackend, ThreadedProxy], method: str, path: str) -> None:
    backend, proxy = served
    response = httpx.request(method, proxy.url + path, headers=AUTH)
    assert response.status_code == 404
    if method != "HEAD":
        assert response.json()["error"]["type"] == "not_found_error"
    assert backend.requests == []


def test_wrong_method_is_405_with_an_anthropic_body(
        served: tuple[ScriptedBackend, ThreadedProxy]) -> None:
    _, proxy = served
    response = httpx.get(proxy.url + "/v1/messages", headers=AUTH)
    assert response.status_code == 405
    assert response.json()["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize("headers", [{}, {"x-api-key": "wrong"},
                                     {"Authorization": "Bearer wrong"},
                                     {"Authorization": TOKEN}])
def test_requests_without_the_token_get_401(served: tuple[ScriptedBackend, ThreadedProxy],
                                            headers: dict[str, str]) -> None:
    backend, proxy = served
    response = httpx.post(proxy.url + "/v1/messages", json=BODY, headers=headers)
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "authentication_error"
    assert backend.requests == []


@pytest.mark.parametrize("headers", [{"x-api-key": TOKEN}, {"Authorization": f"Bearer {TOKEN}"},
                                     {"x-anyclaude-token": TOKEN}])
def test_the_token_is_accepted_in_each_header(served: tuple[ScriptedBackend, ThreadedProxy],
                                              headers: dict[str, str]) -> None:
    _, proxy = served
    assert httpx.post(proxy.url + "/v1/messages", json=BODY, headers=headers).status_code == 200


@pytest.mark.parametrize("host", ["evil.example.com", "evil.example.com:8080", "192.168.1.5",
                                  "localhost.evil.com"])
def test_non_loopback_host_is_refused(served: tuple[ScriptedBackend, ThreadedProxy],
                                      host: str) -> None:
    _, proxy = served
    response = httpx.post(proxy.url + "/v1/messages", json=BODY, headers={**AUTH, "Host": host})
    assert response.status_code == 403 and "loopback" in response.json()["error"]["message"]


@pytest.mark.parametrize("host", ["localhost", "localhost:1234", "127.0.0.1:9", "[::1]:80"])
def test_loopback_hosts_are_accepted(served: tuple[ScriptedBackend, ThreadedProxy],
                                     host: str) -> None:
    _, proxy = served
    response = httpx.post(proxy.url + "/v1/messages", json=BODY, headers={**AUTH, "Host": host})
    assert response.status_code == 200


@pytest.mark.parametrize("origin", ["https://evil.example.com", "http://localhost:3000", "null"])
def test_browser_origin_is_refused(served: tuple[ScriptedBackend, ThreadedProxy],
                                   origin: str) -> None:
    backend, proxy = served
    response = httpx.post(proxy.url + "/v1/messages", json=BODY, headers={**AUTH, "Origin": origin})
    assert response.status_code == 403 and backend.requests == []


def test_bodies_up_to_32_mb_are_accepted_and_larger_ones_get_413(
        served: tuple[ScriptedBackend, ThreadedProxy]) -> None:
    _, proxy = served
    big = {**BODY, "messages": [{"role": "user", "content": "x" * (5 * 1024 * 1024)}]}
    assert httpx.post(proxy.url + "/v1/messages", json=big, headers=AUTH,
                      timeout=60).status_code == 200
    huge = {**BODY, "messages": [{"role": "user", "content": "x" * (33 * 1024 * 1024)}]}
    response = httpx.post(proxy.url + "/v1/messages", json=huge, headers=AUTH, timeout=60)
    assert response.status_code == 413
    assert response.json()["error"]["type"] == "request_too_large"


def test_health_needs_no_token(served: tuple[ScriptedBackend, ThreadedProxy]) -> None:
    _, proxy = served
    assert httpx.get(proxy.url + "/health").json() == {"status": "ok", "mode": "mlx-lm"}


def test_models_lists_the_served_model(served: tuple[ScriptedBackend, ThreadedProxy]) -> None:
    _, proxy = served
    sdk = client(proxy)
    models = sdk.models.list()
    assert [m.id for m in models.data] == ["anyclaude-mlx-lm"]
    assert sdk.models.retrieve("anyclaude-mlx-lm").id == "anyclaude-mlx-lm"
    assert httpx.get(proxy.url + "/v1/models/nope", headers=AUTH).status_code == 404


def test_count_tokens_is_answered_locally(served: tuple[ScriptedBackend, ThreadedProxy]) -> None:
    backend, proxy = served
    sdk = client(proxy)
    small = sdk.messages.count_tokens(model="claude-x", messages=BODY["messages"])
    tools = [{"name": "Bash", "description": "Run a command " * 50,
              "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}}}]
    bigger = sdk.messages.count_tokens(model="claude-x", messages=BODY["messages"], tools=tools,
                                       system="You are helpful. " * 20)
    assert 0 < small.input_tokens < bigger.input_tokens
    assert backend.requests == []


def test_count_tokens_uses_the_models_own_tokenizer_when_it_is_a_local_folder() -> None:
    model = build_scripted_model(default_models_dir() / "scripted")
    tokenizer = find_tokenizer(str(model))
    assert tokenizer is not None
    counter = TokenCounter(tokenizer)
    body = {"messages": [{"role": "user", "content": "def main():\n    return 0\n" * 40}]}
    from tokenizers import Tokenizer

    direct = len(Tokenizer.from_file(str(tokenizer)).encode(body["messages"][0]["content"],
                                                            add_special_tokens=False).ids)
    assert counter.exact and counter.count(body) == direct + 4
    with ScriptedBackend("mlx-lm") as backend, running_proxy("mlx-lm", backend.url,
                                                              tokens=counter) as proxy:
        counted = client(proxy).messages.count_tokens(model="x", messages=body["messages"])
        assert counted.input_tokens == direct + 4


def test_estimates_calibrate_on_the_backends_real_prompt_size() -> None:
    counter = TokenCounter(None)
    body = {"messages": [{"role": "user", "content": "word " * 2000}]}
    before = counter.estimate(body)
    for _ in range(10):
        counter.calibrate(body, 2004)
    assert abs(counter.estimate(body) - 2004) < abs(before - 2004)


def test_probes_are_answered_without_the_backend(
        served: tuple[ScriptedBackend, ThreadedProxy]) -> None:
    backend, proxy = served
    message = client(proxy).messages.create(model="claude-x", max_tokens=1,
                                            messages=BODY["messages"])
    assert message.stop_reason == "max_tokens" and backend.requests == []


def test_background_requests_wait_for_the_main_conversation() -> None:
    import threading

    from tests.support.scripted_backend import Reply

    with ScriptedBackend("mlx-lm") as backend, running_proxy("mlx-lm", backend.url) as proxy:
        backend.reply(Reply(text="main answer " * 5, chunk_size=3, chunk_delay=0.1),
                      Reply(text="A title"))
        sdk = client(proxy)
        main = threading.Thread(target=lambda: sdk.messages.create(**BODY))
        main.start()
        backend.wait_for_request(1)
        title = sdk.messages.create(model="anyclaude-background", max_tokens=50,
                                    messages=[{"role": "user", "content": "title please"}])
        main.join()
        assert title.content[0].text == "A title"  # type: ignore[union-attr]
        first, second = backend.connections[0], backend.connections[1]
        assert first.closed_at is not None and second.opened_at >= first.closed_at - 0.05
