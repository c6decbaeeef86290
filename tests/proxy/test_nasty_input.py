"""The nastiest input of each kind, on every request path (issue 11, class 6).

Each gets a 4xx (bad input) or a mapped backend error (a broken backend), in Anthropic's
shape with one sentence; never a 500 "internal error", and never a traceback in the log,
since these come before authentication too and any local process could fill the log.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from anyclaude.proxy.trace import Tracer
from tests.support.proxy import TOKEN, Proxied, serving
from tests.support.raw import RawBackend, exchange, parse, request_bytes, sends
from tests.support.scripted import ScriptedBackend

BODY: dict[str, Any] = {"model": "claude-x", "max_tokens": 10,
                        "messages": [{"role": "user", "content": "hi"}]}
PATHS = [("GET", "/health"), ("POST", "/v1/messages"), ("POST", "/v1/messages/count_tokens"),
         ("GET", "/v1/models"), ("GET", "/v1/models/x"), ("GET", "/nowhere")]
NOT_UTF8 = b"\xff\xfe\x80 caf\xe9"


@pytest.fixture(autouse=True)
def no_tracebacks(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Nothing here may log an error or a traceback, from us or from aiohttp."""
    caplog.set_level(logging.WARNING)
    yield
    bad = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not bad, [f"{r.name}: {r.getMessage()}" for r in bad]


@pytest.fixture
async def local() -> AsyncIterator[Proxied]:
    async with ScriptedBackend("mlx-lm") as backend, serving("mlx-lm", backend) as proxy:
        yield proxy


def raw_request(method: str, path: bytes, headers: list[tuple[bytes, bytes]],
                body: bytes = b"") -> bytes:
    host = [] if any(k == b"Host" for k, _ in headers) else [b"Host: 127.0.0.1"]
    lines = [method.encode() + b" " + path + b" HTTP/1.1", *host, b"Connection: close",
             *(k + b": " + v for k, v in headers)]
    if method == "POST":
        if not any(k == b"Content-Type" for k, _ in headers):
            lines.append(b"Content-Type: application/json")
        lines.append(b"Content-Length: " + str(len(body)).encode())
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def assert_anthropic_error(data: bytes, statuses: range = range(400, 500)) -> str:
    response = parse(data)
    assert response.status in statuses, (response.status, response.body[:300])
    error = json.loads(response.body)
    assert error["type"] == "error" and error["request_id"].startswith("req_")
    message = str(error["error"]["message"])
    assert "internal error" not in message and "\n" not in message
    return message


def valid_body(path: str) -> bytes:
    return json.dumps(BODY).encode() if path.startswith("/v1/messages") else b""


@pytest.mark.parametrize("header", [b"x-api-key", b"Authorization", b"x-anyclaude-token"])
@pytest.mark.parametrize(("method", "path"), PATHS)
async def test_non_utf8_bytes_in_a_token_header_are_a_401(
        local: Proxied, header: bytes, method: str, path: str) -> None:
    value = (b"Bearer " if header == b"Authorization" else b"") + NOT_UTF8
    raw = raw_request(method, path.encode(), [(header, value)], valid_body(path))
    data = await exchange(local, raw)
    if path == "/health":
        assert parse(data).status == 200
    else:
        assert "token" in assert_anthropic_error(data, range(401, 402))


@pytest.mark.parametrize(("header", "value"), [
    (b"Host", NOT_UTF8), (b"Origin", NOT_UTF8), (b"Content-Type", NOT_UTF8),
    (b"x-api-key", TOKEN.encode() + b"\xff"), (b"anthropic-version", NOT_UTF8)])
@pytest.mark.parametrize(("method", "path"), PATHS[1:])
async def test_non_utf8_bytes_in_other_headers_never_break_an_answer(
        local: Proxied, header: bytes, value: bytes, method: str, path: str) -> None:
    auth = [] if header == b"x-api-key" else [(b"x-api-key", TOKEN.encode())]
    raw = raw_request(method, path.encode(), [*auth, (header, value)], valid_body(path))
    response = parse(await exchange(local, raw))
    assert response.status < 500, response.body[:300]
    assert json.loads(response.body)


@pytest.mark.parametrize("path", [b"/v1/models/%ff%fe", b"/v1/models/%ed%a0%80", b"/v1/%00",
                                  b"/" + b"a" * 6000, b"/v1/models/" + b"%ff" * 2000])
async def test_strange_paths_get_an_anthropic_4xx(local: Proxied, path: bytes) -> None:
    data = await exchange(local, raw_request("GET", path, [(b"x-api-key", TOKEN.encode())]))
    assert_anthropic_error(data)


@pytest.mark.parametrize("path", [b"/v1/models/\xff\xfe", b"/v1/\xe9t\xe9", b"/v1/ models"])
async def test_paths_that_are_not_http_get_aiohttps_400_without_a_traceback(
        local: Proxied, path: bytes) -> None:
    """aiohttp's parser refuses these before any handler runs (its own plain 400)."""
    data = await exchange(local, raw_request("GET", path, [(b"x-api-key", TOKEN.encode())]))
    assert parse(data).status == 400


CORRUPT_GZIP = [b"this is not gzip", gzip.compress(json.dumps(BODY).encode())[:-12] + b"\x00" * 12,
                b"\x1f\x8b\x08\x00" + b"\xff" * 64]


@pytest.mark.parametrize("token", [True, False], ids=["with token", "without token"])
@pytest.mark.parametrize("body", CORRUPT_GZIP, ids=["not gzip", "bad crc", "bad deflate"])
@pytest.mark.parametrize("path", ["/v1/messages", "/v1/messages/count_tokens"])
async def test_a_corrupt_gzip_body_is_a_400(local: Proxied, path: str, body: bytes,
                                            token: bool) -> None:
    raw = request_bytes("POST", path, body, {"Content-Type": "application/json",
                                             "Content-Encoding": "gzip"}, token=token)
    message = assert_anthropic_error(await exchange(local, raw))
    assert ("gzip" in message) if token else ("token" in message)


DEEP = "@deep@"
"""Where the deep value goes; it is spliced in as text (Python's json cannot write it)."""


def nested(depth: int) -> str:
    """A JSON schema `depth` properties deep (two levels of JSON each)."""
    return '{"type": "object", "properties": {"x": ' * depth + '{"type": "string"}' + "}}" * depth


def deep_list(depth: int) -> str:
    return "[" * depth + '"leaf"' + "]" * depth


def spliced(body: dict[str, Any], deep: str) -> bytes:
    return json.dumps(body).replace(json.dumps(DEEP), deep).encode()


def deep_bodies(depth: int) -> dict[str, bytes]:
    return {
        "input_schema": spliced({**BODY, "tools": [{"name": "T", "input_schema": DEEP}]},
                                nested(depth)),
        "tool_use.input": spliced({**BODY, "messages": [
            {"role": "user", "content": "go"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "T",
                                               "input": {"x": DEEP}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1",
                                          "content": "ok"}]}]}, deep_list(depth)),
        "output_config.format.schema": spliced({**BODY, "output_config": {"format": {
            "type": "json_schema", "schema": DEEP}}}, nested(depth)),
        "metadata": spliced({**BODY, "metadata": {"x": DEEP}}, deep_list(depth)),
        "an unknown field": spliced({**BODY, "something_new": DEEP}, deep_list(depth)),
    }


@pytest.mark.parametrize("depth", [130, 254, 300, 600, 1000])
@pytest.mark.parametrize("where", list(deep_bodies(1)))
@pytest.mark.parametrize("path", ["/v1/messages", "/v1/messages/count_tokens"])
async def test_deep_json_anywhere_is_a_400(local: Proxied, where: str, depth: int,
                                           path: str) -> None:
    raw = request_bytes("POST", path, deep_bodies(depth)[where],
                        {"Content-Type": "application/json"})
    assert "nested" in assert_anthropic_error(await exchange(local, raw))


async def test_deep_json_is_a_400_with_full_traces_on(tmp_path: Path) -> None:
    log = open(tmp_path / "log", "w")  # noqa: SIM115
    tracer = Tracer(3, log, tmp_path / "trace.jsonl")
    try:
        async with ScriptedBackend("mlx-lm") as backend, \
                serving("mlx-lm", backend, tracer=tracer) as proxy:
            for depth in (300, 1000):
                raw = request_bytes("POST", "/v1/messages", deep_bodies(depth)["metadata"],
                                    {"Content-Type": "application/json"})
                assert_anthropic_error(await exchange(proxy, raw))
            response = await proxy.sdk.messages.create(**BODY)
            assert response.content
    finally:
        tracer.close()
        log.close()


async def test_non_utf8_header_bytes_are_traced_escaped(tmp_path: Path) -> None:
    log = open(tmp_path / "log", "w")  # noqa: SIM115
    tracer = Tracer(3, log, tmp_path / "trace.jsonl")
    try:
        async with ScriptedBackend("mlx-lm") as backend, \
                serving("mlx-lm", backend, tracer=tracer) as proxy:
            raw = raw_request("POST", b"/v1/messages", [(b"x-api-key", TOKEN.encode()),
                                                        (b"anthropic-beta", NOT_UTF8)],
                              json.dumps(BODY).encode())
            assert parse(await exchange(proxy, raw)).status == 200
    finally:
        tracer.close()
        log.close()
    first = json.loads((tmp_path / "trace.jsonl").read_text().splitlines()[0])
    assert "caf" in str(first["data"]["headers"])


async def test_moderately_deep_json_is_still_fine(local: Proxied) -> None:
    for body in deep_bodies(40).values():
        response = await local.client.post("/v1/messages", data=body, headers={
            "x-api-key": TOKEN, "Content-Type": "application/json"})
        assert response.status == 200, await response.text()


# Non-streaming backend faults: what an OpenAI backend sends instead of a good answer.
BACKEND_FAULTS: dict[str, bytes] = {
    "a truncated body": (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 400\r\n\r\n" + b'{"choices": [{"mess'),
    "a malformed status line": b"HTTP/1.1 two hundred OK\r\n\r\n",
    "a header over 8 KB": b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n",
    "bad chunk framing": (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                          b"Transfer-Encoding: chunked\r\n\r\n5\r\n{\"cho\r\nzz\r\n"),
    "garbage instead of HTTP": b"\x00\x01garbage\r\n\r\n",
    "a reset before answering": b"",
    "headers, then a reset": (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                              b"Transfer-Encoding: chunked\r\n\r\n"),
    "a body that is not gzip": (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                                b"Content-Encoding: gzip\r\nContent-Length: 8\r\n\r\nnot gzip"),
}


CHUNKED_HEAD = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n5\r\n{\"cho\r\n")
LATER_FAULTS: dict[str, tuple[bytes, bytes]] = {
    "bad chunk framing after a pause": (CHUNKED_HEAD, b"zz\r\n"),
    "a chunk longer than its size after a pause": (CHUNKED_HEAD, b"2\r\nabcdef\r\n"),
}
"""Faults that come a moment after the head (the proxy is reading the body by then)."""


def after_a_pause(first: bytes, then: bytes) -> Any:
    async def script(_request: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(first)
        await writer.drain()
        await asyncio.sleep(0.2)
        writer.write(then)
        await writer.drain()

    return script


@pytest.mark.parametrize("fault", [*BACKEND_FAULTS, *LATER_FAULTS])
async def test_non_streaming_backend_faults_are_mapped_backend_errors(fault: str) -> None:
    script = sends(BACKEND_FAULTS[fault]) if fault in BACKEND_FAULTS else \
        after_a_pause(*LATER_FAULTS[fault])
    async with RawBackend(script) as backend, \
            serving("openai", url="http://vllm.test/v1", model="m",
                    connector=backend.connector) as proxy:
        raw = request_bytes("POST", "/v1/messages", json.dumps(BODY).encode(),
                            {"Content-Type": "application/json"})
        message = assert_anthropic_error(await exchange(proxy, raw), range(500, 600))
        assert "http://vllm.test/v1" in message


@pytest.mark.parametrize("fault", ["a malformed status line", "a header over 8 KB",
                                   "garbage instead of HTTP", "a reset before answering"])
async def test_claude_mode_maps_upstream_faults_before_the_answer_started(fault: str) -> None:
    async with RawBackend(sends(BACKEND_FAULTS[fault])) as backend, \
            serving("claude", url="http://upstream.test", connector=backend.connector) as proxy:
        raw = request_bytes("POST", "/v1/messages", json.dumps(BODY).encode(),
                            {"x-anyclaude-token": TOKEN, "Content-Type": "application/json"},
                            token=False)
        assert "http://upstream.test" in assert_anthropic_error(await exchange(proxy, raw),
                                                                range(500, 600))


@pytest.mark.parametrize("body", CORRUPT_GZIP[:1])
async def test_claude_mode_refuses_a_corrupt_gzip_body(body: bytes) -> None:
    async with RawBackend(sends(b"")) as backend, \
            serving("claude", url="http://upstream.test", connector=backend.connector) as proxy:
        raw = request_bytes("POST", "/v1/messages", body,
                            {"x-anyclaude-token": TOKEN, "Content-Encoding": "gzip"}, token=False)
        assert "gzip" in assert_anthropic_error(await exchange(proxy, raw))
        assert backend.requests == []
