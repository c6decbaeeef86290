"""Backend faults: every one ends in a well-formed Anthropic error, within a bounded time,
and the proxy keeps serving."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.grammar import check, parse_sse
from tests.support.mlx_server import free_port
from tests.support.proxy import TOKEN, ThreadedProxy, client, running_proxy
from tests.support.scripted import (
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


@pytest.fixture
def mlx() -> Iterator[tuple[ScriptedBackend, ThreadedProxy]]:
    with ScriptedBackend("mlx-lm") as backend, \
            running_proxy("mlx-lm", backend.url, ping_interval=0.2, idle_timeout=2.0) as proxy:
        yield backend, proxy


def post(proxy: ThreadedProxy, body: dict[str, Any] | None = None, stream: bool = True,
         timeout: float = 15.0) -> httpx.Response:
    payload = {**(body or BODY), "stream": stream}
    return httpx.post(proxy.url + "/v1/messages", json=payload, headers=HEADERS, timeout=timeout)


def still_serves(backend: ScriptedBackend, proxy: ThreadedProxy) -> None:
    backend.reply(Reply(text="fine"))
    assert client(proxy).messages.create(**BODY).content[0].text == "fine"  # type: ignore[union-attr]


def test_backend_down_is_529_naming_the_url() -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    with running_proxy("mlx-lm", url) as proxy:
        for stream in (True, False):
            response = post(proxy, stream=stream)
            assert response.status_code == 529
            error = response.json()["error"]
            assert error["type"] == "overloaded_error" and url in error["message"]
            assert "MLX_LM_URL" in error["message"]


@pytest.mark.parametrize("fault", ["die_mid_stream", "invalid_json_chunk"])
def test_stream_broken_mid_way_ends_with_an_error_event(
        mlx: tuple[ScriptedBackend, ThreadedProxy], fault: str) -> None:
    backend, proxy = mlx
    backend.reply(Reply(text="a long answer that gets cut", fault=fault, fault_after=3))  # type: ignore[arg-type]
    response = post(proxy)
    assert response.status_code == 200
    events = parse_sse(response.content)
    check(events, complete=False)
    assert not any(name == "message_stop" for name, _ in events)
    still_serves(backend, proxy)


def test_invalid_sse_lines_are_skipped(mlx: tuple[ScriptedBackend, ThreadedProxy]) -> None:
    backend, proxy = mlx
    backend.reply(Reply(text="survives garbage", fault="invalid_sse"))
    summary = check(parse_sse(post(proxy).content), complete=True)
    assert summary["text"] == "survives garbage"


def test_hang_after_headers_fails_within_the_idle_timeout(
        mlx: tuple[ScriptedBackend, ThreadedProxy]) -> None:
    backend, proxy = mlx
    backend.reply(Reply(text="never", fault="hang_after_headers"))
    started = time.monotonic()
    events = parse_sse(post(proxy).content)
    assert time.monotonic() - started < 10  # idle timeout is 2 s here
    summary = check(events, complete=False)
    assert "sent nothing" in summary["error"]["message"]
    assert any(name == "ping" for name, _ in events)
    backend.wait_closed(0)
    still_serves(backend, proxy)


def test_hang_before_headers_gets_message_start_pings_then_an_error(
        mlx: tuple[ScriptedBackend, ThreadedProxy]) -> None:
    backend, proxy = mlx
    backend.reply(Reply(text="never", fault="hang_before_headers"))
    events = parse_sse(post(proxy).content)
    summary = check(events, complete=False)
    assert "no answer from the backend" in summary["error"]["message"]
    assert [name for name, _ in events][:2] == ["message_start", "ping"]


def test_no_done_after_a_finish_reason_is_a_complete_answer(
        mlx: tuple[ScriptedBackend, ThreadedProxy]) -> None:
    backend, proxy = mlx
    backend.reply(Reply(text="complete anyway", fault="no_done"))
    assert check(parse_sse(post(proxy).content), complete=True)["text"] == "complete anyway"


@pytest.mark.parametrize(("reply", "status", "kind", "phrase"), [
    (mlx_lm_error("Only 'text' content type is supported."), 400, "invalid_request_error",
     "Only 'text' content type is supported."),
    (html_error(502), 529, "overloaded_error", "HTML error page"),
    (html_error(500), 500, "api_error", "HTML error page"),
])
def test_backend_http_errors_become_anthropic_errors(
        mlx: tuple[ScriptedBackend, ThreadedProxy], reply: Reply, status: int, kind: str,
        phrase: str) -> None:
    backend, proxy = mlx
    for stream in (True, False):
        backend.reply(reply)
        response = post(proxy, stream=stream)
        assert response.status_code == status
        assert response.headers["request-id"].startswith("req_")
        error = response.json()["error"]
        assert error["type"] == kind and phrase in error["message"]
    still_serves(backend, proxy)


@pytest.mark.parametrize(("dialect", "mode", "reply"), [
    ("vllm", "openai", vllm_context_overflow(4096, 5000, 100)),
    ("lmstudio", "lmstudio", lmstudio_prompt_too_long(9000, 4096)),
])
def test_context_overflow_is_reworded_for_claude_code(dialect: str, mode: str,
                                                      reply: Reply) -> None:
    with ScriptedBackend(dialect, model="m") as backend, \
            running_proxy(mode, backend.url, "m") as proxy:
        backend.reply(reply)
        response = post(proxy, stream=True)
        assert response.status_code == 400
        assert "prompt is too long" in response.json()["error"]["message"]


def test_prompt_beyond_the_configured_window_is_refused_before_the_backend() -> None:
    with ScriptedBackend("mlx-lm") as backend, \
            running_proxy("mlx-lm", backend.url, context_window=1000) as proxy:
        body = {**BODY, "messages": [{"role": "user", "content": "word " * 5000}]}
        response = post(proxy, body)
        assert response.status_code == 400
        message = response.json()["error"]["message"]
        assert message.startswith("prompt is too long: ") and message.endswith(
            " tokens > 1000 maximum")
        assert backend.requests == []


def test_max_tokens_is_clamped_to_what_fits_the_window() -> None:
    with ScriptedBackend("mlx-lm") as backend, \
            running_proxy("mlx-lm", backend.url, context_window=4000) as proxy:
        post(proxy, {**BODY, "max_tokens": 64000}, stream=False)
        sent = backend.requests[0].json["max_tokens"]
        assert 3900 < sent < 4000


def test_client_disconnect_closes_the_upstream_request_within_a_second(
        mlx: tuple[ScriptedBackend, ThreadedProxy]) -> None:
    backend, proxy = mlx
    backend.reply(Reply(text="x" * 2000, chunk_size=1, chunk_delay=0.05))
    with httpx.stream("POST", proxy.url + "/v1/messages", json={**BODY, "stream": True},
                      headers=HEADERS, timeout=10) as response:
        lines = response.iter_lines()
        while "content_block_delta" not in next(lines):
            pass
        gone = time.monotonic()
    record = backend.wait_closed(0, timeout=5)
    assert record.closed_by == "peer" and record.peer_closed_early
    assert record.closed_at is not None and record.closed_at - gone < 1.0


def test_stop_sequence_closes_the_upstream_request_early(
        mlx: tuple[ScriptedBackend, ThreadedProxy]) -> None:
    backend, proxy = mlx
    backend.reply(Reply(text="one two STOP" + " more" * 500, chunk_size=4, chunk_delay=0.01))
    body = {**BODY, "stop_sequences": ["STOP"]}
    summary = check(parse_sse(post(proxy, body).content), complete=True)
    assert summary["stop_reason"] == "stop_sequence" and summary["text"] == "one two "
    assert backend.wait_closed(0).peer_closed_early


def test_keepalive_comments_become_pings(mlx: tuple[ScriptedBackend, ThreadedProxy]) -> None:
    backend, proxy = mlx
    backend.reply(Reply(text="hi", keepalives=3))
    events = parse_sse(post(proxy).content)
    assert [name for name, _ in events].count("ping") >= 3


def test_silence_during_generation_is_covered_by_pings(
        mlx: tuple[ScriptedBackend, ThreadedProxy]) -> None:
    backend, proxy = mlx
    backend.reply(Reply(text="slow answer", chunk_size=20, chunk_delay=1.0))
    events = parse_sse(post(proxy).content)
    check(events, complete=True)
    assert [name for name, _ in events].count("ping") >= 2


def test_a_slow_backend_request_does_not_block_others(
        mlx: tuple[ScriptedBackend, ThreadedProxy]) -> None:
    import threading

    backend, proxy = mlx
    backend.reply(Reply(text="slow " * 10, chunk_size=5, chunk_delay=0.5), Reply(text="quick"))
    slow = threading.Thread(target=post, args=(proxy,))
    slow.start()
    backend.wait_for_request(1)
    started = time.monotonic()
    assert check(parse_sse(post(proxy).content))["text"] == "quick"
    quick = time.monotonic() - started
    slow.join()
    assert quick < 2.0  # the slow one takes ~5 s


def test_a_client_that_stops_reading_does_not_block_others(
        mlx: tuple[ScriptedBackend, ThreadedProxy]) -> None:
    backend, proxy = mlx
    backend.reply(Reply(text="x" * 4_000_000, chunk_size=4096), Reply(text="quick"))
    host, port = proxy.url.removeprefix("http://").split(":")
    payload = json.dumps({**BODY, "max_tokens": 10, "stream": True}).encode()
    stalled = socket.create_connection((host, int(port)))
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.sendall(b"POST /v1/messages HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
                    b"application/json\r\nx-api-key: " + TOKEN.encode() +
                    b"\r\nContent-Length: " + str(len(payload)).encode() + b"\r\n\r\n" + payload)
    try:
        backend.wait_for_request(1)
        started = time.monotonic()
        assert check(parse_sse(post(proxy).content))["text"] == "quick"
        assert time.monotonic() - started < 5.0
    finally:
        stalled.close()
