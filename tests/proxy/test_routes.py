"""Routes, the locked door (token, Host, Origin, body size), count_tokens and models."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from anyclaude.hub import find_tokenizer
from anyclaude.proxy.tokens import TokenCounter
from tests.support.proxy import AUTH, TOKEN, Proxied, serving
from tests.support.scripted import Reply, ScriptedBackend
from tests.support.tiny_model import build_scripted_model, default_models_dir

BODY: dict[str, Any] = {"model": "claude-x", "max_tokens": 10,
                        "messages": [{"role": "user", "content": "hi"}]}
Served = tuple[ScriptedBackend, Proxied]


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    async with ScriptedBackend("mlx-lm") as backend, serving("mlx-lm", backend) as proxy:
        yield backend, proxy


async def test_beta_query_is_ignored(served: Served) -> None:
    _, proxy = served
    response = await proxy.client.post("/v1/messages?beta=true", json=BODY, headers=AUTH)
    assert response.status == 200 and (await response.json())["type"] == "message"


@pytest.mark.parametrize(("method", "path"), [("GET", "/"), ("HEAD", "/"), ("POST", "/v1/complete"),
                                              ("GET", "/v1/messages/batches"),
                                              ("POST", "/v1/files")])
async def test_unknown_routes_are_404_with_an_anthropic_body_and_nothing_is_forwarded(
        served: Served, method: str, path: str) -> None:
    backend, proxy = served
    response = await proxy.client.request(method, path, headers=AUTH)
    assert response.status == 404
    if method != "HEAD":
        assert (await response.json())["error"]["type"] == "not_found_error"
    assert backend.requests == []


async def test_wrong_method_is_405_with_an_anthropic_body(served: Served) -> None:
    _, proxy = served
    response = await proxy.client.get("/v1/messages", headers=AUTH)
    assert response.status == 405
    assert (await response.json())["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize("headers", [{}, {"x-api-key": "wrong"},
                                     {"Authorization": "Bearer wrong"},
                                     {"Authorization": TOKEN}])
async def test_requests_without_the_token_get_401(served: Served, headers: dict[str, str]) -> None:
    backend, proxy = served
    response = await proxy.client.post("/v1/messages", json=BODY, headers=headers)
    assert response.status == 401
    assert (await response.json())["error"]["type"] == "authentication_error"
    assert backend.requests == []


@pytest.mark.parametrize("headers", [{"x-api-key": TOKEN}, {"Authorization": f"Bearer {TOKEN}"},
                                     {"x-anyclaude-token": TOKEN}])
async def test_the_token_is_accepted_in_each_header(served: Served,
                                                    headers: dict[str, str]) -> None:
    _, proxy = served
    assert (await proxy.client.post("/v1/messages", json=BODY, headers=headers)).status == 200


@pytest.mark.parametrize("host", ["evil.example.com", "evil.example.com:8080", "192.168.1.5",
                                  "localhost.evil.com"])
async def test_non_loopback_host_is_refused(served: Served, host: str) -> None:
    _, proxy = served
    response = await proxy.client.post("/v1/messages", json=BODY, headers={**AUTH, "Host": host})
    assert response.status == 403 and "loopback" in (await response.json())["error"]["message"]


@pytest.mark.parametrize("host", ["localhost", "localhost:1234", "127.0.0.1:9", "[::1]:80"])
async def test_loopback_hosts_are_accepted(served: Served, host: str) -> None:
    _, proxy = served
    response = await proxy.client.post("/v1/messages", json=BODY, headers={**AUTH, "Host": host})
    assert response.status == 200


@pytest.mark.parametrize("origin", ["https://evil.example.com", "http://localhost:3000", "null"])
async def test_browser_origin_is_refused(served: Served, origin: str) -> None:
    backend, proxy = served
    response = await proxy.client.post("/v1/messages", json=BODY,
                                       headers={**AUTH, "Origin": origin})
    assert response.status == 403 and backend.requests == []


async def test_bodies_up_to_32_mb_are_accepted_and_larger_ones_get_413(served: Served) -> None:
    _, proxy = served
    big = {**BODY, "messages": [{"role": "user", "content": "x" * (5 * 1024 * 1024)}]}
    assert (await proxy.client.post("/v1/messages", json=big, headers=AUTH)).status == 200
    huge = {**BODY, "messages": [{"role": "user", "content": "x" * (33 * 1024 * 1024)}]}
    response = await proxy.client.post("/v1/messages", json=huge, headers=AUTH)
    assert response.status == 413
    assert (await response.json())["error"]["type"] == "request_too_large"


async def test_health_needs_no_token(served: Served) -> None:
    _, proxy = served
    response = await proxy.client.get("/health")
    assert await response.json() == {"status": "ok", "mode": "mlx-lm"}


async def test_models_lists_the_served_model(served: Served) -> None:
    _, proxy = served
    models = await proxy.sdk.models.list()
    assert [m.id for m in models.data] == ["anyclaude-mlx-lm"]
    assert (await proxy.sdk.models.retrieve("anyclaude-mlx-lm")).id == "anyclaude-mlx-lm"
    assert (await proxy.client.get("/v1/models/nope", headers=AUTH)).status == 404


async def test_count_tokens_is_answered_locally(served: Served) -> None:
    backend, proxy = served
    small = await proxy.sdk.messages.count_tokens(model="claude-x", messages=BODY["messages"])
    tools: Any = [{"name": "Bash", "description": "Run a command " * 50, "input_schema": {
        "type": "object", "properties": {"command": {"type": "string"}}}}]
    bigger = await proxy.sdk.messages.count_tokens(model="claude-x", messages=BODY["messages"],
                                                   tools=tools, system="You are helpful. " * 20)
    assert 0 < small.input_tokens < bigger.input_tokens
    assert backend.requests == []


async def test_count_tokens_uses_the_models_own_tokenizer_when_it_is_a_local_folder() -> None:
    model = build_scripted_model(default_models_dir() / "scripted")
    tokenizer = find_tokenizer(str(model))
    assert tokenizer is not None
    counter = TokenCounter(tokenizer)
    body: dict[str, Any] = {
        "messages": [{"role": "user", "content": "def main():\n    return 0\n" * 40}]}
    from tokenizers import Tokenizer

    direct = len(Tokenizer.from_file(str(tokenizer)).encode(body["messages"][0]["content"],
                                                            add_special_tokens=False).ids)
    assert counter.exact and counter.count(body) == direct + 4
    async with ScriptedBackend("mlx-lm") as backend, \
            serving("mlx-lm", backend, tokens=counter) as proxy:
        counted = await proxy.sdk.messages.count_tokens(model="x", messages=body["messages"])
        assert counted.input_tokens == direct + 4


def test_estimates_calibrate_on_the_backends_real_prompt_size() -> None:
    counter = TokenCounter(None)
    body = {"messages": [{"role": "user", "content": "word " * 2000}]}
    before = counter.estimate(body)
    for _ in range(10):
        counter.calibrate(body, 2004)
    assert abs(counter.estimate(body) - 2004) < abs(before - 2004)


async def test_probes_are_answered_without_the_backend(served: Served) -> None:
    backend, proxy = served
    message = await proxy.sdk.messages.create(model="claude-x", max_tokens=1,
                                              messages=BODY["messages"])
    assert message.stop_reason == "max_tokens" and backend.requests == []


async def test_background_requests_wait_for_the_main_conversation(served: Served) -> None:
    backend, proxy = served
    backend.reply(Reply(text="main answer " * 5, chunk_size=3, chunk_delay=0.1),
                  Reply(text="A title"))
    main = asyncio.create_task(proxy.sdk.messages.create(**BODY))
    await backend.until_request(1)
    title = await proxy.sdk.messages.create(model="anyclaude-background", max_tokens=50,
                                            messages=[{"role": "user", "content": "title please"}])
    await main
    assert title.content[0].text == "A title"  # type: ignore[union-attr]
    first, second = backend.connections[0], backend.connections[1]
    assert first.closed_at is not None and second.opened_at >= first.closed_at - 0.05
