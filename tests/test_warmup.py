"""The warm-up's I/O against a backend whose prefill takes as long as the test says: a request
that starts differently cancels it at once, one that starts the same waits for it, and the
prefix is stored privately for the next session."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

from anyclaude.backends import get
from anyclaude.backends.base import Endpoint
from anyclaude.proxy.background import Gate
from anyclaude.proxy.upstream import Upstream
from anyclaude.timeouts import ANSWER_S
from anyclaude.warmup import WarmUp

TOOLS = [{"type": "function", "function": {"name": "Bash", "parameters": {"type": "object"}}}]
STATIC = "<system-reminder>\nstatic\n</system-reminder>"


def first(words: str, static: str = STATIC) -> dict[str, Any]:
    return {"messages": [{"role": "system", "content": "sys"},
                         {"role": "user", "content": f"{static}\n\n{words}"}],
            "tools": TOOLS, "max_tokens": 100, "stream": True}


class SlowPrefill:
    """Answers a 1-token request once `release` is set; records what happened."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.closed_early = asyncio.Event()
        self.bodies: list[dict[str, Any]] = []

    async def chat(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.bodies.append(body)
        try:
            await self.release.wait()
        except asyncio.CancelledError:  # the client closed the connection
            self.closed_early.set()
            raise
        usage = {"prompt_tokens": 100, "completion_tokens": 1,
                 "prompt_tokens_details": {"cached_tokens": 0}}
        return web.json_response({"choices": [{"message": {"content": "x"},
                                                "finish_reason": "length"}], "usage": usage})


async def scenario(tmp_path: Path, words: str, static: str = STATIC, *,
                   timeout: float = ANSWER_S, answers: bool = True) -> tuple[SlowPrefill, WarmUp]:
    backend = SlowPrefill()
    app = web.Application(handler_args={"handler_cancellation": True})
    app.router.add_post("/v1/chat/completions", backend.chat)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    store = tmp_path / "warm" / "prefix.json"
    store.parent.mkdir()
    store.write_text(json.dumps({"body": {**first("old words"), "messages": [
        {"role": "system", "content": "sys"}, {"role": "user", "content": STATIC}]}}))
    backend_decl = get("mlx-lm")
    assert backend_decl is not None
    upstream = Upstream(backend_decl, Endpoint(str(server.make_url("/v1")), None))
    warm = WarmUp(store, upstream, "max_tokens", Gate(), lambda body: 1234, timeout)
    try:
        assert warm.start() == 1234
        while not backend.bodies:
            await asyncio.sleep(0.01)
        assert backend.bodies[0]["max_tokens"] == 1 and backend.bodies[0]["stream"] is False
        waiting = asyncio.create_task(warm.before(first(words, static)))
        await asyncio.sleep(0.2)
        if not waiting.done() and answers:
            backend.release.set()
        await asyncio.wait_for(waiting, 30)
        if static == STATIC:
            warm.record(first(words, static))
            await asyncio.sleep(0.2)
    finally:
        await warm.close()
        await upstream.close()
        await server.close()
    return backend, warm


def test_a_request_that_starts_differently_cancels_the_warm_up_at_once(tmp_path: Path) -> None:
    backend, warm = asyncio.run(scenario(tmp_path, "hi", static="<system-reminder>\nnew\n"
                                         "</system-reminder>"))
    assert backend.closed_early.is_set(), "the connection was closed, which stops mlx-lm"
    assert warm.outcome is not None and warm.outcome.state == "cancelled"


def test_a_request_that_starts_the_same_waits_for_the_warm_up(tmp_path: Path) -> None:
    backend, warm = asyncio.run(scenario(tmp_path, "new words"))
    assert not backend.closed_early.is_set()
    assert warm.outcome is not None and warm.outcome.state == "warm"
    assert warm.outcome.describe().startswith("100 prompt tokens in ")
    stored = tmp_path / "warm" / "prefix.json"
    assert stored.stat().st_mode & 0o777 == 0o600
    saved = json.loads(stored.read_text())["body"]
    assert saved["messages"][-1]["content"] == STATIC, "the typed words are not stored"


def test_a_warm_up_the_backend_never_answers_is_given_up(tmp_path: Path) -> None:
    """A real request waits for a warm-up it can use, but not for ever."""
    backend, warm = asyncio.run(scenario(tmp_path, "new words", timeout=0.5, answers=False))
    assert warm.outcome is not None and warm.outcome.state == "failed"
    assert warm.outcome.detail == "no answer within 0.5 s"
    assert backend.closed_early.is_set()
