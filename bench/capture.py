"""Claude Code's real requests, captured at bench time: `claude -p` of a given version runs
against a tiny server that records every `/v1/messages` body and answers "OK".

    .venv/bin/python -m bench.capture [--version 2.1.197]   # prints what it captured
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from aiohttp import web

from tests.support.claude_code import CLAUDE_VERSIONS, claude_path, headless_env

KEY = "bench-capture-key-0123456789"
PROMPT = "Find the failing test in this project and fix it."

_ANSWER = [
    ("message_start", {"type": "message_start", "message": {
        "id": "msg_01capture", "type": "message", "role": "assistant", "model": "bench",
        "content": [], "stop_reason": None, "stop_sequence": None,
        "usage": {"input_tokens": 10, "output_tokens": 1}}}),
    ("content_block_start", {"type": "content_block_start", "index": 0,
                             "content_block": {"type": "text", "text": ""}}),
    ("content_block_delta", {"type": "content_block_delta", "index": 0,
                             "delta": {"type": "text_delta", "text": "OK"}}),
    ("content_block_stop", {"type": "content_block_stop", "index": 0}),
    ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn",
                                                          "stop_sequence": None},
                       "usage": {"output_tokens": 1}}),
    ("message_stop", {"type": "message_stop"}),
]


class CaptureServer:
    """Records request bodies; answers every message with "OK" (streamed or not)."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.url = ""
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None

    async def _messages(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        self.bodies.append(raw)
        if not json.loads(raw).get("stream"):
            message = {**_ANSWER[0][1]["message"], "content": [{"type": "text", "text": "OK"}],
                       "stop_reason": "end_turn"}
            return web.json_response(message)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for name, data in _ANSWER:
            await response.write(f"event: {name}\ndata: {json.dumps(data)}\n\n".encode())
        await response.write_eof()
        return response

    async def _count(self, request: web.Request) -> web.Response:
        await request.read()
        return web.json_response({"input_tokens": 10})

    async def _start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/messages", self._messages)
        app.router.add_post("/v1/messages/count_tokens", self._count)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"

    def __enter__(self) -> CaptureServer:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(30)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


@contextmanager
def _project() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="anyclaude-capture-") as tmp:
        cwd = Path(tmp) / "project"
        cwd.mkdir()
        (cwd / "app.py").write_text("def add(a, b):\n    return a - b\n")
        (cwd / "test_app.py").write_text("from app import add\n\n\ndef test_add():\n"
                                         "    assert add(1, 2) == 3\n")
        yield cwd


def capture(version: str) -> list[dict[str, Any]]:
    """Every `/v1/messages` request `claude -p` of `version` sends for one prompt, with the
    environment the launcher gives it."""
    with CaptureServer() as server, _project() as cwd:
        env = headless_env(cwd.parent / "home", cwd, api_key=KEY, extra={
            "ANTHROPIC_BASE_URL": server.url, "ANTHROPIC_API_KEY": KEY,
            "ANTHROPIC_MODEL": "bench-model", "ANTHROPIC_DEFAULT_OPUS_MODEL": "bench-model",
            "ANTHROPIC_DEFAULT_SONNET_MODEL": "bench-model",
            "ANTHROPIC_DEFAULT_HAIKU_MODEL": "anyclaude-background",
            "CLAUDE_CODE_ATTRIBUTION_HEADER": "0"})
        done = subprocess.run([str(claude_path(version)), "-p", PROMPT, "--output-format", "json"],
                              cwd=cwd, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, timeout=300)
        if not server.bodies:
            raise RuntimeError(f"Claude Code {version} sent no request: {done.stderr[-1000:]}")
        return [json.loads(body) for body in server.bodies]


def main_request(version: str) -> dict[str, Any]:
    """The main conversation's request: the one with the tool list (the largest, if several)."""
    requests = [r for r in capture(version) if r.get("tools")]
    if not requests:
        raise RuntimeError(f"Claude Code {version} sent no request with tools")
    return max(requests, key=lambda r: len(json.dumps(r)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--version", choices=CLAUDE_VERSIONS, default=CLAUDE_VERSIONS[0])
    args = parser.parse_args()
    for request in capture(args.version):
        print(f"{len(json.dumps(request)):7} bytes, {len(request.get('tools') or []):2} tools, "
              f"{len(request['messages'])} messages, max_tokens {request.get('max_tokens')}, "
              f"stream {request.get('stream')}, model {request.get('model')}")


if __name__ == "__main__":
    main()
