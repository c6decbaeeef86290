"""Upstream connections: a keep-alive backend's connection is reused after a complete answer
and closed at once when the answer is cut short (a stop sequence, a client that leaves), so
the server stops generating; mlx-lm closes its own after every answer."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

import httpx
from aiohttp import web

from tests.support.proxy import TOKEN, running_proxy
from tests.support.scripted import Reply, ScriptedBackend

HEADERS = {"x-api-key": TOKEN}
BODY: dict[str, Any] = {"model": "claude-x", "max_tokens": 50, "stream": True,
                        "messages": [{"role": "user", "content": "hi"}]}


class KeepAliveBackend:
    """A chat server on aiohttp's own HTTP/1.1 stack, in a thread: its chunked bodies end
    in a write of their own after `[DONE]` (as uvicorn- and aiohttp-based servers do), and
    it records the client port of every request."""

    def __init__(self) -> None:
        self.ports: list[int] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        await request.read()
        assert request.transport is not None
        self.ports.append(request.transport.get_extra_info("peername")[1])
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for delta, finish in (({"content": "Hi"}, None), ({}, "stop")):
            chunk = {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
            await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
        await response.write(b"data: [DONE]\n\n")
        await asyncio.sleep(0.01)  # the body's end comes after [DONE], as from a busy server
        return response  # aiohttp ends the chunked body in a write of its own

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}/v1"

    def __enter__(self) -> KeepAliveBackend:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(30)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._runner is not None
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


def test_complete_answers_reuse_one_keep_alive_connection() -> None:
    with KeepAliveBackend() as backend, running_proxy("openai", backend.url, "m") as proxy:
        for _ in range(3):
            response = httpx.post(proxy.url + "/v1/messages", json=BODY, headers=HEADERS,
                                  timeout=30)
            assert response.status_code == 200 and b"message_stop" in response.content
    assert len(backend.ports) == 3 and len(set(backend.ports)) == 1, backend.ports


def test_a_stopped_answer_closes_its_keep_alive_connection() -> None:
    with ScriptedBackend("vllm", model="m") as backend, \
            running_proxy("openai", backend.url, "m") as proxy:
        backend.reply(Reply(text="one two STOP" + " more" * 500, chunk_size=4, chunk_delay=0.01),
                      Reply(text="again"))
        for body in ({**BODY, "stop_sequences": ["STOP"]}, BODY):
            assert httpx.post(proxy.url + "/v1/messages", json=body, headers=HEADERS,
                              timeout=30).status_code == 200
        first = backend.wait_closed(0)
        assert first.closed_by == "peer" and first.peer_closed_early
        assert [c.requests for c in backend.connections] == [(0,), (1,)]


def test_mlx_lm_answers_each_on_their_own_connection() -> None:
    with ScriptedBackend("mlx-lm") as backend, running_proxy("mlx-lm", backend.url) as proxy:
        for _ in range(2):
            assert httpx.post(proxy.url + "/v1/messages", json=BODY, headers=HEADERS,
                              timeout=30).status_code == 200
        assert [c.requests for c in backend.connections] == [(0,), (1,)]
