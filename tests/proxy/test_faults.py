"""Backend faults: every one ends in a well-formed Anthropic error, within a bounded time,
and the proxy keeps serving."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from tests.support.grammar import check, parse_sse
from tests.support.mlx_server import free_port
from tests.support.proxy import TOKEN, Proxied, serving
from tests.support.scripted import (
    Dialect,
    Reply,
    ScriptedBackend,
    html_error,
    lmstudio_prompt_too_long,
    mlx_lm_error,
    vllm_context_overflow,
)

BODY: dict[str, Any] = {"model": "claude-x", "max_tokens": 100,
                        "messages": [{"role": "user", "content": "hi"}]}
HEADERS = {"x-api-key": TOKEN, "anthropic-version": "2023-06-01"}
Served = tuple[ScriptedBackend, Proxied]


@pytest.fixture
async def mlx() -> AsyncIterator[Served]:
    async with ScriptedBackend("mlx-lm") as backend, \
            serving("mlx-lm", backend, ping_interval=0.2, idle_timeout=2.0) as proxy:
        yield backend, proxy


@pytest.fixture
async def impatient() -> AsyncIterator[Served]:
    """A proxy that gives up on a silent backend after 1 s (for the hang faults)."""
    async with ScriptedBackend("mlx-lm") as backend, \
            serving("mlx-lm", backend, ping_interval=0.2, idle_timeout=1.0) as proxy:
        yield backend, proxy


async def post(proxy: Proxied, body: dict[str, Any] | None = None,
               stream: bool = True) -> aiohttp.ClientResponse:
    payload = {**(body or BODY), "stream": stream}
    response = await proxy.client.post("/v1/messages", json=payload, headers=HEADERS)
    await response.read()
    return response


async def events_of(proxy: Proxied, body: dict[str, Any] | None = None) -> list[Any]:
    return parse_sse(await (await post(proxy, body)).read())


async def still_serves(backend: ScriptedBackend, proxy: Proxied) -> None:
    backend.reply(Reply(text="fine"))
    assert (await proxy.sdk.messages.create(**BODY)).content[0].text == "fine"


async def test_backend_down_is_529_naming_the_url() -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    async with serving("mlx-lm", url=url) as proxy:  # over TCP: the refusal is the point
        for stream in (True, False):
            response = await post(proxy, stream=stream)
            assert response.status == 529
            error = (await response.json())["error"]
            assert error["type"] == "overloaded_error" and url in error["message"]
            assert "MLX_LM_URL" in error["message"]


@pytest.mark.parametrize("fault", ["die_mid_stream", "invalid_json_chunk"])
async def test_stream_broken_mid_way_ends_with_an_error_event(mlx: Served, fault: str) -> None:
    backend, proxy = mlx
    backend.reply(Reply(text="a long answer that gets cut", fault=fault, fault_after=3))  # type: ignore[arg-type]
    response = await post(proxy)
    assert response.status == 200
    events = parse_sse(await response.read())
    check(events, complete=False)
    assert not any(name == "message_stop" for name, _ in events)
    await still_serves(backend, proxy)


async def test_invalid_sse_lines_are_skipped(mlx: Served) -> None:
    backend, proxy = mlx
    backend.reply(Reply(text="survives garbage", fault="invalid_sse"))
    summary = check(await events_of(proxy), complete=True)
    assert summary["text"] == "survives garbage"


async def test_hang_after_headers_fails_within_the_idle_timeout(impatient: Served) -> None:
    backend, proxy = impatient
    backend.reply(Reply(text="never", fault="hang_after_headers"))
    started = time.monotonic()
    events = await events_of(proxy)
    assert time.monotonic() - started < 10  # idle timeout is 1 s here
    summary = check(events, complete=False)
    assert "sent nothing" in summary["error"]["message"]
    assert any(name == "ping" for name, _ in events)
    await backend.until_closed(0)
    await still_serves(backend, proxy)


async def test_hang_before_headers_gets_message_start_pings_then_an_error(
        impatient: Served) -> None:
    backend, proxy = impatient
    backend.reply(Reply(text="never", fault="hang_before_headers"))
    events = await events_of(proxy)
    summary = check(events, complete=False)
    assert "no answer from the backend" in summary["error"]["message"]
    assert [name for name, _ in events][:2] == ["message_start", "ping"]


async def test_no_done_after_a_finish_reason_is_a_complete_answer(mlx: Served) -> None:
    backend, proxy = mlx
    backend.reply(Reply(text="complete anyway", fault="no_done"))
    assert check(await events_of(proxy), complete=True)["text"] == "complete anyway"


@pytest.mark.parametrize(("reply", "status", "kind", "phrase"), [
    (mlx_lm_error("Only 'text' content type is supported."), 400, "invalid_request_error",
     "Only 'text' content type is supported."),
    (html_error(502), 529, "overloaded_error", "HTML error page"),
    (html_error(500), 500, "api_error", "HTML error page"),
])
async def test_backend_http_errors_become_anthropic_errors(
        mlx: Served, reply: Reply, status: int, kind: str, phrase: str) -> None:
    backend, proxy = mlx
    for stream in (True, False):
        backend.reply(reply)
        response = await post(proxy, stream=stream)
        assert response.status == status
        assert response.headers["request-id"].startswith("req_")
        error = (await response.json())["error"]
        assert error["type"] == kind and phrase in error["message"]
    await still_serves(backend, proxy)


@pytest.mark.parametrize(("dialect", "mode", "reply"), [
    ("vllm", "openai", vllm_context_overflow(4096, 5000, 100)),
    ("lmstudio", "lmstudio", lmstudio_prompt_too_long(9000, 4096)),
])
async def test_context_overflow_is_reworded_for_claude_code(dialect: Dialect, mode: str,
                                                            reply: Reply) -> None:
    async with ScriptedBackend(dialect, model="m") as backend, \
            serving(mode, backend, model="m") as proxy:
        backend.reply(reply)
        response = await post(proxy, stream=True)
        assert response.status == 400
        assert "prompt is too long" in (await response.json())["error"]["message"]


async def test_prompt_beyond_the_configured_window_is_refused_before_the_backend() -> None:
    async with ScriptedBackend("mlx-lm") as backend, \
            serving("mlx-lm", backend, context_window=1000) as proxy:
        body = {**BODY, "messages": [{"role": "user", "content": "word " * 5000}]}
        response = await post(proxy, body)
        assert response.status == 400
        message = (await response.json())["error"]["message"]
        assert message.startswith("prompt is too long: ") and message.endswith(
            " tokens > 1000 maximum")
        assert backend.requests == []


async def test_max_tokens_is_clamped_to_what_fits_the_window() -> None:
    async with ScriptedBackend("mlx-lm") as backend, \
            serving("mlx-lm", backend, context_window=4000) as proxy:
        await post(proxy, {**BODY, "max_tokens": 64000}, stream=False)
        sent = backend.requests[0].json["max_tokens"]
        assert 3900 < sent < 4000


async def test_client_disconnect_closes_the_upstream_request_within_a_second(
        mlx: Served) -> None:
    backend, proxy = mlx
    backend.reply(Reply(text="x" * 2000, chunk_size=1, chunk_delay=0.05))
    async with proxy.client.post("/v1/messages", json={**BODY, "stream": True},
                                 headers=HEADERS) as response:
        async for line in response.content:
            if b"content_block_delta" in line:
                break
        response.close()
        gone = time.monotonic()
    record = await backend.until_closed(0)
    assert record.closed_by == "peer" and record.peer_closed_early
    assert record.closed_at is not None and record.closed_at - gone < 1.0


async def test_stop_sequence_closes_the_upstream_request_early(mlx: Served) -> None:
    backend, proxy = mlx
    backend.reply(Reply(text="one two STOP" + " more" * 500, chunk_size=4, chunk_delay=0.01))
    summary = check(await events_of(proxy, {**BODY, "stop_sequences": ["STOP"]}), complete=True)
    assert summary["stop_reason"] == "stop_sequence" and summary["text"] == "one two "
    assert (await backend.until_closed(0)).peer_closed_early


async def test_keepalive_comments_become_pings(mlx: Served) -> None:
    backend, proxy = mlx
    backend.reply(Reply(text="hi", keepalives=3))
    events = await events_of(proxy)
    assert [name for name, _ in events].count("ping") >= 3


async def test_silence_during_generation_is_covered_by_pings(mlx: Served) -> None:
    backend, proxy = mlx
    backend.reply(Reply(text="slow answer", chunk_size=20, chunk_delay=0.5, keepalives=0))
    events = await events_of(proxy)
    check(events, complete=True)
    assert [name for name, _ in events].count("ping") >= 2  # pings every 0.2 s of silence


async def test_a_slow_backend_request_does_not_block_others(mlx: Served) -> None:
    backend, proxy = mlx
    backend.reply(Reply(text="slow " * 10, chunk_size=5, chunk_delay=0.5), Reply(text="quick"))
    slow = asyncio.create_task(post(proxy))
    await backend.until_request(1)
    assert check(await events_of(proxy))["text"] == "quick"
    assert not slow.done() and backend.connections[0].closed_at is None  # still streaming
    slow.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await slow


async def test_a_client_that_stops_reading_does_not_block_others(mlx: Served) -> None:
    backend, proxy = mlx
    backend.reply(Reply(text="x" * 4_000_000, chunk_size=4096), Reply(text="quick"))
    payload = json.dumps({**BODY, "max_tokens": 10, "stream": True}).encode()
    url = proxy.client.make_url("/")
    stalled = socket.socket()
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.connect((url.host, url.port))  # over TCP: a full receive window is the point
    stalled.sendall(b"POST /v1/messages HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
                    b"application/json\r\nx-api-key: " + TOKEN.encode() +
                    b"\r\nContent-Length: " + str(len(payload)).encode() + b"\r\n\r\n" + payload)
    try:
        await backend.until_request(1)
        events = await asyncio.wait_for(events_of(proxy), 30)
        assert check(events)["text"] == "quick"
        assert backend.connections[0].closed_at is None  # the stalled one is still being sent
    finally:
        stalled.close()
