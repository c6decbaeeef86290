"""The bad-input catalogue: each case gets a 4xx Anthropic error with one clear sentence,
never a 5xx, a dropped connection or a hang, and the proxy keeps serving afterwards."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.proxy import AUTH, Proxied, serving
from tests.support.scripted import ScriptedBackend

on_module_loop = pytest.mark.asyncio(loop_scope="module")
"""Every test here shares one proxy and backend, on the module's loop."""

OK: dict[str, Any] = {"model": "claude-x", "max_tokens": 10,
                      "messages": [{"role": "user", "content": "hi"}]}


def with_(**changes: Any) -> bytes:
    body = {**OK, **changes}
    return json.dumps({k: v for k, v in body.items() if v is not ...}).encode()


def msgs(*messages: Any) -> bytes:
    return with_(messages=list(messages))


def user(*blocks: Any) -> dict[str, Any]:
    return {"role": "user", "content": list(blocks)}


TOOL_USE = {"role": "assistant", "content": [
    {"type": "tool_use", "id": "toolu_1", "name": "Bash", "input": {}}]}

# (name, raw body, content type or None for application/json)
CASES: list[tuple[str, bytes, str | None]] = [
    ("empty body", b"", None),
    ("whitespace body", b"   \n", None),
    ("invalid JSON", b"{not json", None),
    ("truncated JSON", b'{"model": "x", "messages": [', None),
    ("invalid UTF-8", b'{"model": "\xff\xfe", "max_tokens": 1, "messages": []}', None),
    ("JSON array", b"[1, 2, 3]", None),
    ("JSON string", b'"hello"', None),
    ("JSON null", b"null", None),
    ("JSON number", b"42", None),
    ("wrong content type", with_(), "text/plain"),
    ("form content type", b"model=x", "application/x-www-form-urlencoded"),
    ("missing model", with_(model=...), None),
    ("empty model", with_(model=""), None),
    ("model is a number", with_(model=3), None),
    ("missing max_tokens", with_(max_tokens=...), None),
    ("max_tokens is a string", with_(max_tokens="10"), None),
    ("max_tokens is a float", with_(max_tokens=10.5), None),
    ("max_tokens is a boolean", with_(max_tokens=True), None),
    ("negative max_tokens", with_(max_tokens=-5), None),
    ("zero max_tokens", with_(max_tokens=0), None),
    ("huge max_tokens", with_(max_tokens=10**12), None),
    ("missing messages", with_(messages=...), None),
    ("messages is an object", with_(messages={"role": "user"}), None),
    ("empty messages", with_(messages=[]), None),
    ("message is a string", msgs("hi"), None),
    ("role is a number", msgs({"role": 3, "content": "hi"}), None),
    ("only a message of an unknown role", msgs({"role": "robot", "content": "hi"}), None),
    ("missing content", msgs({"role": "user"}), None),
    ("content is a number", msgs({"role": "user", "content": 5}), None),
    ("block is a string", msgs(user("hi")), None),
    ("block without type", msgs(user({"text": "hi"})), None),
    ("block type is a number", msgs(user({"type": 7, "data": "x"})), None),
    ("text block without text", msgs(user({"type": "text"})), None),
    ("text is a number", msgs(user({"type": "text", "text": 5})), None),
    ("image without source", msgs(user({"type": "image"})), None),
    ("image with unknown source", msgs(user({"type": "image", "source": {"type": "file"}})), None),
    ("base64 image without data", msgs(user({"type": "image", "source": {
        "type": "base64", "media_type": "image/png"}})), None),
    ("tool_result without tool_use", msgs(user({"type": "tool_result", "tool_use_id": "toolu_x",
                                                "content": "ok"})), None),
    ("tool_result without id", msgs({"role": "user", "content": "go"}, TOOL_USE,
                                    user({"type": "tool_result", "content": "ok"})), None),
    ("tool_result bad is_error", msgs({"role": "user", "content": "go"}, TOOL_USE, user(
        {"type": "tool_result", "tool_use_id": "toolu_1", "is_error": "yes"})), None),
    ("tool_result bad content", msgs({"role": "user", "content": "go"}, TOOL_USE, user(
        {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"text": "x"}]})), None),
    ("tool_use in a user turn", msgs(user({"type": "tool_use", "id": "t", "name": "B",
                                           "input": {}})), None),
    ("tool_use input is a string", msgs({"role": "user", "content": "go"}, {
        "role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "B",
                                          "input": "{}"}]}), None),
    ("system is a number", with_(system=5), None),
    ("system block without type", with_(system=[{"text": "be brief"}]), None),
    ("tools is an object", with_(tools={"name": "x"}), None),
    ("tool without name", with_(tools=[{"input_schema": {"type": "object"}}]), None),
    ("tool without schema", with_(tools=[{"name": "x"}]), None),
    ("tool_choice type is a number", with_(tool_choice={"type": 1}), None),
    ("tool_choice names a missing tool", with_(tool_choice={"type": "tool", "name": "x"}), None),
    ("temperature is a string", with_(temperature="hot"), None),
    ("temperature out of range", with_(temperature=7), None),
    ("top_p out of range", with_(top_p=1.5), None),
    ("negative top_k", with_(top_k=-1), None),
    ("stop_sequences is a string", with_(stop_sequences="END"), None),
    ("stop sequence is a number", with_(stop_sequences=[1]), None),
    ("stream is a string", with_(stream="yes"), None),
    ("thinking is a string", with_(thinking="on"), None),
    ("metadata is a list", with_(metadata=[1]), None),
    ("deeply nested JSON", b'{"model": "x", "max_tokens": 1, "messages": ' + b"[" * 5000
     + b"]" * 5000 + b"}", None),
]


Served = tuple[ScriptedBackend, Proxied]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def served() -> AsyncIterator[Served]:
    async with ScriptedBackend("mlx-lm") as backend, serving("mlx-lm", backend) as proxy:
        yield backend, proxy


async def send(proxy: Proxied, raw: bytes, content_type: str | None = None,
               path: str = "/v1/messages") -> aiohttp.ClientResponse:
    headers = {**AUTH, "Content-Type": content_type or "application/json"}
    response = await proxy.client.post(path, data=raw, headers=headers)
    await response.read()
    return response


async def assert_clear_4xx(response: aiohttp.ClientResponse) -> str:
    assert 400 <= response.status < 500, (response.status, await response.text())
    body = await response.json()
    assert body["type"] == "error" and body["request_id"].startswith("req_")
    message = body["error"]["message"]
    assert body["error"]["type"] in ("invalid_request_error", "request_too_large")
    assert message and "\n" not in message and "Traceback" not in message
    return str(message)


def test_the_catalogue_has_at_least_thirty_cases() -> None:
    assert len(CASES) >= 30 and len({name for name, _, _ in CASES}) == len(CASES)


@on_module_loop
@pytest.mark.parametrize(("name", "raw", "content_type"), CASES, ids=[c[0] for c in CASES])
async def test_bad_input_gets_a_clear_4xx(served: Served, name: str, raw: bytes,
                                          content_type: str | None) -> None:
    backend, proxy = served
    before = len(backend.requests)
    await assert_clear_4xx(await send(proxy, raw, content_type))
    assert len(backend.requests) == before, "a bad request reached the backend"


@on_module_loop
async def test_the_message_names_the_field(served: Served) -> None:
    _, proxy = served
    message = await assert_clear_4xx(await send(proxy, msgs(user({"type": "text", "text": 5}))))
    assert message.startswith("messages.0.content.0.text:")


@on_module_loop
async def test_enormous_strings_are_fine_when_valid(served: Served) -> None:
    _, proxy = served
    response = await send(proxy, msgs({"role": "user", "content": "é" * 2_000_000}))
    assert response.status == 200


@on_module_loop
async def test_count_tokens_rejects_bad_input_too(served: Served) -> None:
    _, proxy = served
    await assert_clear_4xx(await send(proxy, b"[]", path="/v1/messages/count_tokens"))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(
        st.sampled_from(["type", "text", "role", "content", "id", "tool_use_id", "name", "input",
                         "source", "data", "x"]), children, max_size=4),
    max_leaves=12)
request_bodies = st.fixed_dictionaries({}, optional={
    "model": st.sampled_from(["claude-x", "", 5]),
    "max_tokens": st.sampled_from([1, 10, -1, "5", None]),
    "messages": st.lists(json_values, max_size=3) | json_values,
    "system": json_values, "tools": json_values, "tool_choice": json_values,
    "stop_sequences": json_values, "stream": st.sampled_from([False, True, "x"]),
    "temperature": json_values, "thinking": json_values})


@on_module_loop
@settings(max_examples=150, deadline=None, suppress_health_check=[
    HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(request_bodies)
async def test_fuzzed_requests_never_get_a_5xx(served: Served, body: dict[str, Any]) -> None:
    _, proxy = served
    response = await send(proxy, json.dumps(body).encode())
    assert response.status < 500, await response.text()
    if response.status >= 400:
        await assert_clear_4xx(response)
