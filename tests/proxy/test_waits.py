"""Every wait on the backend has a bound, and pings cover every silence toward the client
(issue 11, class 2).

The limits are set small here so the tests finish quickly; the assertions are about what
the client gets (an answer, an error, pings), with generous liveness bounds only.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.support.grammar import check, parse_sse
from tests.support.proxy import TOKEN, Proxied, serving
from tests.support.raw import LIVENESS_S, RawBackend, exchange, parse, request_bytes
from tests.support.scripted import Reply, ScriptedBackend

BODY: dict[str, Any] = {"model": "claude-x", "max_tokens": 100,
                        "messages": [{"role": "user", "content": "hi"}]}
HEADERS = {"x-api-key": TOKEN, "anthropic-version": "2023-06-01"}
TOOLS = [{"name": "Bash", "input_schema": {"type": "object", "properties": {
    "command": {"type": "string"}}}}]
SSE_HEAD = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n")


def frame(payload: bytes) -> bytes:
    return f"{len(payload):x}\r\n".encode() + payload + b"\r\n"


def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
    body = {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return frame(b"data: " + json.dumps(body).encode() + b"\n\n")


def empty_deltas(count: int, every: float, then: bytes = b"", first: bytes = b"") -> Any:
    """A stream that sends `first`, `count` empty deltas (one every `every` seconds), `then`."""
    async def script(_request: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(SSE_HEAD + first)
        for _ in range(count):
            writer.write(chunk({}))
            await writer.drain()
            await asyncio.sleep(every)
        writer.write(then)
        await writer.drain()

    return script


async def events(proxy: Proxied, body: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    async def run() -> bytes:
        async with proxy.client.post("/v1/messages", json={**body, "stream": True},
                                     headers=HEADERS) as response:
            assert response.status == 200
            return await response.read()

    return parse_sse(await asyncio.wait_for(run(), LIVENESS_S))


@pytest.fixture
async def impatient_mlx() -> AsyncIterator[tuple[ScriptedBackend, Proxied]]:
    async with ScriptedBackend("mlx-lm") as backend, \
            serving("mlx-lm", backend, ping_interval=0.2, idle_timeout=1.0,
                    answer_timeout=1.0) as proxy:
        yield backend, proxy


@pytest.mark.parametrize("fault", ["hang_before_headers", "hang_after_headers"])
async def test_a_non_streaming_request_to_a_silent_backend_gets_an_answer(
        impatient_mlx: tuple[ScriptedBackend, Proxied], fault: str) -> None:
    backend, proxy = impatient_mlx
    backend.reply(Reply(text="never", fault=fault))  # type: ignore[arg-type]
    response = await asyncio.wait_for(proxy.client.post(
        "/v1/messages", json=BODY, headers=HEADERS), LIVENESS_S)
    assert response.status == 504
    message = (await response.json())["error"]["message"]
    assert "ANYCLAUDE_ANSWER_TIMEOUT" in message and "\n" not in message
    await backend.until_closed(0)  # the upstream request was given up, its socket closed


async def test_mlx_textgen_with_tools_silent_after_headers_pings_then_fails() -> None:
    async with ScriptedBackend("mlx-textgen") as backend, \
            serving("mlx-textgen", backend, model="scripted", ping_interval=0.2,
                    answer_timeout=1.5) as proxy:
        backend.reply(Reply(tool_calls=[("Bash", '{"command": "ls"}')],
                            fault="hang_after_headers"))
        got = await events(proxy, {**BODY, "tools": TOOLS})
        summary = check(got, complete=False)
        assert "ANYCLAUDE_ANSWER_TIMEOUT" in summary["error"]["message"]
        assert [name for name, _ in got].count("ping") >= 2


async def test_empty_deltas_more_often_than_the_ping_interval_still_get_pings() -> None:
    """The backend writes every 0.05 s but says nothing: the client must still hear pings,
    since pings are about the client's silence, not the backend's."""
    done = chunk({"content": "Hi"}) + chunk({}, "stop") + frame(b"data: [DONE]\n\n") + b"0\r\n\r\n"
    async with RawBackend(empty_deltas(40, 0.05, done)) as backend, \
            serving("openai", url="http://vllm.test/v1", model="m", ping_interval=0.5,
                    connector=backend.connector) as proxy:
        got = await events(proxy, BODY)
        assert check(got, complete=True)["text"] == "Hi"
        assert [name for name, _ in got].count("ping") >= 2


async def test_empty_deltas_forever_end_at_the_idle_limit() -> None:
    async with RawBackend(empty_deltas(100_000, 0.05)) as backend, \
            serving("openai", url="http://vllm.test/v1", model="m", ping_interval=0.2,
                    idle_timeout=1.0, connector=backend.connector) as proxy:
        summary = check(await events(proxy, BODY), complete=False)
        assert "sent nothing new for 1 s" in summary["error"]["message"]


async def test_empty_deltas_after_text_end_at_the_idle_limit_too() -> None:
    script = empty_deltas(100_000, 0.05, first=chunk({"content": "Hel"}))
    async with RawBackend(script) as backend, \
            serving("openai", url="http://vllm.test/v1", model="m", ping_interval=0.2,
                    idle_timeout=1.0, connector=backend.connector) as proxy:
        summary = check(await events(proxy, BODY), complete=False)
        assert summary["text"] == "Hel" and "sent nothing new" in summary["error"]["message"]


async def test_a_long_prefill_with_progress_comments_outlasts_the_idle_limit() -> None:
    """mlx-lm's `: keepalive n/total` comments while it reads a long prompt are progress."""
    async with ScriptedBackend("mlx-lm") as backend, \
            serving("mlx-lm", backend, ping_interval=0.2, idle_timeout=0.5) as proxy:
        backend.reply(Reply(text="after a long prefill", keepalives=8, keepalive_delay=0.15))
        assert check(await events(proxy, BODY), complete=True)["text"] == "after a long prefill"


async def test_a_long_tool_call_outlasts_the_idle_limit() -> None:
    """Tool-call pieces produce no event for the client until the call is whole, but they
    are progress: only silence counts toward the idle limit."""
    async with ScriptedBackend("vllm", model="m") as backend, \
            serving("openai", backend, model="m", ping_interval=0.2, idle_timeout=0.5) as proxy:
        arguments = json.dumps({"command": "echo " + "x" * 60})
        backend.reply(Reply(tool_calls=[("Bash", arguments)], arg_chunk_size=4,
                            chunk_delay=0.1))
        summary = check(await events(proxy, {**BODY, "tools": TOOLS}), complete=True)
        assert summary["stop_reason"] == "tool_use"


@pytest.mark.parametrize("what", ["never answers", "sends headers, then nothing"])
async def test_claude_mode_bounds_a_silent_upstream(what: str) -> None:
    head = b"" if what == "never answers" else (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{")

    async def script(_request: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(head)
        await writer.drain()
        await asyncio.Event().wait()

    async with RawBackend(script) as backend, \
            serving("claude", url="http://upstream.test", answer_timeout=0.5,
                    connector=backend.connector) as proxy:
        raw = request_bytes("POST", "/v1/messages", json.dumps(BODY).encode(),
                            {"x-anyclaude-token": TOKEN}, token=False)
        response = parse(await exchange(proxy, raw))
        if head:
            assert response.status == 200 and not response.complete
        else:
            assert response.status == 504
            assert "ANYCLAUDE_ANSWER_TIMEOUT" in json.loads(response.body)["error"]["message"]
