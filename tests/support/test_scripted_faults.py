"""Every fault and error reply the scripted backend offers, its scripting and recording, and
its two ways to run (a thread on a port, or in-process behind the connector seam)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from typing import Any

import aiohttp
import httpx
import pytest

from tests.support.scripted import FAULTS, Reply, ScriptedBackend, html_error, mlx_lm_error
from tests.support.scripted.capture import CHAT, MLX, chunks, mask, split_fixture, sse_data

# --------------------------------------------------------------------------- faults


def stream_body(model: str = "scripted") -> dict[str, Any]:
    return {"model": model, "messages": CHAT, "stream": True}


@pytest.mark.parametrize("dialect", ["mlx-lm", "lmstudio"])
def test_die_mid_stream(dialect: str) -> None:
    with ScriptedBackend(dialect) as be:  # type: ignore[arg-type]
        be.reply(Reply(text="abcdefghijkl", fault="die_mid_stream", fault_after=2))
        received = b""
        with httpx.stream("POST", be.url + "/chat/completions", json=stream_body()) as r:
            try:
                for part in r.iter_bytes():
                    received += part
            except httpx.RemoteProtocolError:
                assert dialect == "lmstudio"  # chunked body cut before its last chunk
        data = sse_data(received.decode())
        assert len(data) == 2 and "[DONE]" not in data
        assert be.wait_closed(0).closed_by == "server"


def test_hang_after_headers_and_peer_close_is_recorded(mlx: ScriptedBackend) -> None:
    mlx.reply(Reply(fault="hang_after_headers"))
    with (
        pytest.raises(httpx.ReadTimeout),
        httpx.stream(
            "POST",
            mlx.url + "/chat/completions",
            json=stream_body(),
            timeout=httpx.Timeout(5, read=0.3),
        ) as r,
    ):
        assert r.status_code == 200
        r.read()
    gone_at = time.monotonic()
    rec = mlx.wait_closed(0, timeout=5)
    assert rec.closed_by == "peer" and rec.peer_closed_early
    assert rec.closed_at is not None and rec.closed_at - gone_at < 1.0
    assert mlx.open_connections() == 0


def test_hang_before_headers(mlx: ScriptedBackend) -> None:
    mlx.reply(Reply(fault="hang_before_headers"))
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            mlx.url + "/chat/completions",
            json={"messages": CHAT},
            timeout=httpx.Timeout(5, read=0.3),
        )
    assert mlx.wait_closed(0).peer_closed_early


def test_client_leaving_mid_stream_is_noticed_between_chunks() -> None:
    """The double notices a close while it sleeps, so a test can time the proxy's reaction."""
    with ScriptedBackend("lmstudio") as be:
        be.reply(Reply(text="x" * 30, chunk_size=1, chunk_delay=0.05))
        with httpx.stream("POST", be.url + "/chat/completions", json=stream_body()) as r:
            next(r.iter_lines())
        rec = be.wait_closed(0, timeout=5)
        assert rec.closed_by == "peer" and rec.peer_closed_early
        assert rec.responses_completed == 0


@pytest.mark.parametrize(
    ("fault", "marker"),
    [("invalid_json_chunk", "data: {not json"), ("invalid_sse", "this line is not SSE")],
)
def test_garbage_in_stream(mlx: ScriptedBackend, fault: str, marker: str) -> None:
    mlx.reply(Reply(text="abcdef", fault=fault, fault_after=1))  # type: ignore[arg-type]
    r = httpx.post(mlx.url + "/chat/completions", json=stream_body())
    lines = r.text.split("\n")
    assert marker in lines
    assert lines.index(marker) < lines.index("data: [DONE]")
    assert (
        "".join(
            c["choices"][0]["delta"].get("content", "")
            for c in chunks(r.text.replace(marker, ""))[:-1]
        )
        == "abcdef"
    )


def test_html_error(mlx: ScriptedBackend) -> None:
    mlx.reply(Reply(fault="html_error"), html_error(502))
    for status in (500, 502):
        r = httpx.post(mlx.url + "/chat/completions", json=stream_body())
        assert r.status_code == status
        assert r.headers["content-type"] == "text/html"
        assert r.text.startswith("<html>")


def test_no_done() -> None:
    with ScriptedBackend("vllm") as be:
        be.reply(Reply(text="ab", fault="no_done"))
        r = httpx.post(be.url + "/chat/completions", json=stream_body())  # a clean chunked end
        data = sse_data(r.text)
        assert "[DONE]" not in data
        assert json.loads(data[-1])["choices"][0]["finish_reason"] == "stop"
        assert be.wait_closed(0).closed_by == "server"


def test_slow(mlx: ScriptedBackend) -> None:
    mlx.reply(Reply(text="abc", chunk_size=1, fault="slow", chunk_delay=0.05))
    start = time.monotonic()
    r = httpx.post(mlx.url + "/chat/completions", json=stream_body())
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks(r.text)) == "abc"
    assert time.monotonic() - start >= 4 * 0.05 * 0.5  # four chunks, each delayed (lower bound)


def test_keepalives_with_delay(mlx: ScriptedBackend) -> None:
    mlx.reply(Reply(text="a", keepalives=3, keepalive_delay=0.01))
    r = httpx.post(mlx.url + "/chat/completions", json=stream_body())
    assert r.text.startswith(": keepalive 1/3\n\n: keepalive 2/3\n\n: keepalive 3/3\n\ndata: ")


def test_fault_list_is_covered() -> None:
    assert set(FAULTS) == {
        "die_mid_stream",
        "hang_after_headers",
        "hang_before_headers",
        "invalid_json_chunk",
        "invalid_sse",
        "html_error",
        "no_done",
        "slow",
    }


def test_fixed_200_body_for_malformed_completions() -> None:
    with ScriptedBackend("vllm") as be:
        be.reply(Reply(error_body=b'{"choices": "nope"}'))
        r = httpx.post(be.url + "/chat/completions", json={"model": "scripted", "messages": CHAT})
        assert (r.status_code, r.content) == (200, b'{"choices": "nope"}')


def test_error_helpers_render_in_dialect(mlx: ScriptedBackend) -> None:
    mlx.reply(mlx_lm_error("boom", 404), Reply(status=503))
    r = httpx.post(mlx.url + "/chat/completions", json={"messages": CHAT})
    assert (r.status_code, r.json()) == (404, {"error": "boom"})
    assert "content-length" not in r.headers  # mlx-lm errors end with the connection
    r = httpx.post(mlx.url + "/chat/completions", json={"messages": CHAT})
    assert r.status_code == 503 and isinstance(r.json()["error"], str)


# --------------------------------------------------------------------------- scripting, recording


def test_queue_then_responder_then_default() -> None:
    seen: list[str] = []

    def responder(req: Any) -> Reply | None:
        seen.append(req.messages[-1]["content"])
        return Reply(text="from responder") if req.messages[-1]["content"] == "r" else None

    with ScriptedBackend("vllm", responder=responder) as be, httpx.Client() as c:
        be.reply(Reply(text="queued"))

        def ask(content: str) -> str:
            body = {"model": "scripted", "messages": [{"role": "user", "content": content}]}
            return str(
                c.post(be.url + "/chat/completions", json=body).json()["choices"][0]["message"][
                    "content"
                ]
            )

        assert [ask("q"), ask("r"), ask("d")] == [
            "queued",
            "from responder",
            "Hello! I am the tiny scripted test model.",
        ]
        assert seen == ["r", "d"]
        req = be.wait_for_request(2)
        assert req.json["messages"][0]["content"] == "r"
        assert req.headers["content-type"] == "application/json"
        assert req.raw.startswith(b"POST /v1/chat/completions HTTP/1.1\r\n")
        assert req.raw.endswith(req.body)
        with pytest.raises(TimeoutError):
            be.wait_for_request(4, timeout=0.05)


def test_works_from_a_client_with_its_own_event_loop() -> None:
    async def call(url: str) -> list[str]:
        async with (
            aiohttp.ClientSession() as session,
            session.post(url + "/chat/completions", json=stream_body()) as resp,
        ):
            return [line.decode() async for line in resp.content]

    with ScriptedBackend("mlx-textgen") as be:
        lines = asyncio.run(call(be.url))
        assert lines[-1] == "data: [DONE]"  # aiohttp yields the final line without a newline


def test_close_ends_hanging_connections_promptly() -> None:
    be = ScriptedBackend("lmstudio").start()
    be.reply(Reply(fault="hang_before_headers"))
    sock = socket.create_connection(("127.0.0.1", be.port))
    body = json.dumps({"model": "scripted", "messages": CHAT}).encode()
    sock.sendall(
        b"POST /v1/chat/completions HTTP/1.1\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    be.wait_for_request(1)
    assert be.open_connections() == 1
    start = time.monotonic()
    be.close()
    assert time.monotonic() - start < 5
    with contextlib.suppress(ConnectionResetError):  # an abort may arrive as a reset
        assert sock.recv(10) == b""
    sock.close()
    rec = be.connections[0]
    assert rec.closed_by == "server"


# --------------------------------------------------------------------------- in-process


async def test_in_process_it_speaks_the_same_bytes_without_a_port() -> None:
    request, expected = split_fixture(MLX / "02_stream_basic.http")
    async with ScriptedBackend("mlx-lm") as be:
        client, server = socket.socketpair()
        await be.accept(server)
        reader, writer = await asyncio.open_connection(sock=client)
        writer.write(request)
        got = await reader.read()  # mlx-lm closes after the response
        writer.close()
        assert mask(got) == mask(expected)
        assert be.port == 0 and (await be.until_closed(0)).closed_by == "server"


async def test_in_process_the_connector_keeps_connections_alive_like_the_server_does() -> None:
    async with ScriptedBackend("lmstudio") as be, \
            aiohttp.ClientSession(connector=be.connector()) as session:
        be.reply(Reply(text="one"), Reply(text="two"))
        texts = []
        for _ in range(2):
            async with session.post(be.url + "/chat/completions", json=stream_body()) as r:
                texts.append("".join(c["choices"][0]["delta"].get("content") or ""
                                     for c in chunks(await r.text()) if c["choices"]))
        assert texts == ["one", "two"]
        assert (await be.until_request(2)).connection == 0 and len(be.connections) == 1


async def test_a_threaded_backend_is_reachable_through_the_connector_too() -> None:
    with ScriptedBackend("vllm") as be:
        async with aiohttp.ClientSession(connector=be.connector()) as session, \
                session.post(be.url + "/chat/completions", json=stream_body()) as r:
            assert r.status == 200 and "[DONE]" in sse_data(await r.text())
        assert be.wait_for_request(1).path == "/v1/chat/completions"


async def test_leaving_the_context_ends_hanging_connections() -> None:
    be = ScriptedBackend("mlx-lm")
    async with aiohttp.ClientSession(connector=be.connector()) as session:
        async with be:
            be.reply(Reply(fault="hang_before_headers"))
            pending = asyncio.create_task(session.post(be.url + "/chat/completions",
                                                       json=stream_body()))
            await be.until_request(1)
        with pytest.raises(aiohttp.ClientError):
            await pending
    assert be.connections[0].closed_by == "server"
