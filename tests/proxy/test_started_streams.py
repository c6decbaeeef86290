"""A response that has started is never followed by a second one (issue 11, class 1).

Once the proxy has sent a status line, whatever breaks ends that response: an `error` event
for an Anthropic stream, a closed connection for claude-mode passthrough (whose bytes are
the upstream's). The client reads raw bytes here and their HTTP framing is checked strictly,
so an `HTTP/1.1 5xx` written into an open chunked body fails the test.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from tests.support.grammar import check, parse_sse
from tests.support.proxy import serving
from tests.support.raw import RawBackend, Response, exchange, parse, request_bytes, sends
from tests.support.scripted import Reply, ScriptedBackend

BODY: dict[str, Any] = {"model": "claude-x", "max_tokens": 100, "stream": True,
                        "messages": [{"role": "user", "content": "hi"}]}
SSE_HEAD = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n")
FIRST = b'event: message_start\ndata: {"type": "message_start"}\n\n'
CHUNK = (b'data: {"choices": [{"index": 0, "delta": {"content": "Hi"}, '
         b'"finish_reason": null}]}\n\n')


def frame(payload: bytes) -> bytes:
    return f"{len(payload):x}\r\n".encode() + payload + b"\r\n"


# What the upstream sends first, and then once the client has the first bytes of the answer:
# in claude mode (Anthropic's own stream, passed through) and in the OpenAI modes (after the
# proxy committed to a 200 stream).
PASSTHROUGH_CUTS: dict[str, tuple[bytes, bytes]] = {
    "one chunk, then a reset": (SSE_HEAD + frame(FIRST), b""),
    "cut inside a chunk": (SSE_HEAD + frame(FIRST)[:-10], b""),
    "bad chunk framing": (SSE_HEAD + frame(FIRST), b"zz\r\nnot a chunk\r\n"),
    "short Content-Length body": (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                                  b"Content-Length: 500\r\n\r\n" + b'{"type": "mess', b""),
}
LATE_FAULTS: dict[str, tuple[bytes, bytes]] = {
    "a malformed status line": (b"", b"HTTP/1.1 OK but not a status\r\n\r\n"),
    "a header over 8 KB": (b"", b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n"),
    "bad chunk framing": (b"", SSE_HEAD + frame(CHUNK) + b"zz\r\nnot a chunk\r\n"),
    "bad chunk framing once the answer flows": (SSE_HEAD + frame(CHUNK), b"zz\r\nno chunk\r\n"),
    "a chunk longer than its size": (SSE_HEAD + frame(CHUNK), b"3\r\nabcdef\r\n"),
    "a cut after one chunk": (b"", SSE_HEAD + frame(CHUNK)),
    "garbage instead of HTTP": (b"", b"\x00\x01\x02 this is not HTTP at all\r\n\r\n"),
}


def one_response(data: bytes) -> Response:
    response = parse(data)
    assert b"HTTP/1." not in response.body, "a second status line inside the body"
    return response


@pytest.mark.parametrize("cut", list(PASSTHROUGH_CUTS), ids=list(PASSTHROUGH_CUTS))
async def test_claude_mode_closes_a_broken_passthrough_instead_of_answering_twice(
        cut: str) -> None:
    first, then = PASSTHROUGH_CUTS[cut]
    started = asyncio.Event()
    async with RawBackend(sends(first, then, after=started)) as backend, \
            serving("claude", url="http://upstream.test", connector=backend.connector) as proxy:
        raw = request_bytes("POST", "/v1/messages", json.dumps(BODY).encode(),
                            {"x-anyclaude-token": proxy.config.token}, token=False)
        response = one_response(await exchange(proxy, raw, started))
        assert response.status == 200 and not response.complete
        sent = FIRST if b"chunked" in first else first.partition(b"\r\n\r\n")[2]
        assert response.body and sent.startswith(response.body)
        assert (await proxy.client.get("/health")).status == 200


async def test_mlx_textgen_with_tools_ends_a_body_cut_mid_way_with_an_error_event() -> None:
    tools = [{"name": "Bash", "input_schema": {"type": "object", "properties": {
        "command": {"type": "string"}}}}]
    async with ScriptedBackend("mlx-textgen") as backend, \
            serving("mlx-textgen", backend, model="scripted") as proxy:
        backend.reply(Reply(tool_calls=[("Bash", '{"command": "ls"}')], fault="die_mid_stream"))
        raw = request_bytes("POST", "/v1/messages", json.dumps({**BODY, "tools": tools}).encode(),
                            {"Content-Type": "application/json"})
        response = one_response(await exchange(proxy, raw))
        assert response.status == 200 and response.complete
        summary = check(parse_sse(response.body), complete=False)
        assert "backend" in summary["error"]["message"]


@pytest.mark.parametrize("fault", list(LATE_FAULTS), ids=list(LATE_FAULTS))
async def test_openai_faults_after_the_header_grace_end_the_stream_with_an_error_event(
        fault: str) -> None:
    started = asyncio.Event()
    first, then = LATE_FAULTS[fault]
    async with RawBackend(sends(first, then, after=started)) as backend, \
            serving("openai", url="http://vllm.test/v1", model="m", header_grace=0.01,
                    ping_interval=0.2, connector=backend.connector) as proxy:
        raw = request_bytes("POST", "/v1/messages", json.dumps(BODY).encode(),
                            {"Content-Type": "application/json"})
        response = one_response(await exchange(proxy, raw, started))
        assert response.status == 200 and response.complete
        summary = check(parse_sse(response.body), complete=False)
        message = summary["error"]["message"]
        assert "internal error" not in message and "\n" not in message
        assert (await proxy.client.get("/health")).status == 200


async def test_a_handler_bug_after_the_stream_started_ends_it_with_an_error_event(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Not a backend fault at all: an exception of any kind, once the stream is open."""
    from anyclaude.translate import stream as stream_module

    def broken(self: Any, chunk: object) -> Any:
        raise KeyError("a bug")

    monkeypatch.setattr(stream_module.StreamTranslator, "feed", broken)
    async with ScriptedBackend("mlx-lm") as backend, serving("mlx-lm", backend) as proxy:
        raw = request_bytes("POST", "/v1/messages", json.dumps(BODY).encode(),
                            {"Content-Type": "application/json"})
        response = one_response(await exchange(proxy, raw))
        assert response.status == 200 and response.complete
        summary = check(parse_sse(response.body), complete=False)
        assert "internal error" in summary["error"]["message"]
