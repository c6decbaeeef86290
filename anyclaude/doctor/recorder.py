"""A stand-in Anthropic server on 127.0.0.1 that records every request and answers from a
script: what doctor's compatibility check runs the real Claude Code against (and what the
test suite records its Claude Code captures with).

It speaks just enough of the Messages API for Claude Code to finish a turn: streaming (with
`event:` lines) and non-streaming answers, `count_tokens`, and the `HEAD /` Claude Code sends
first. The answer to each request is chosen by a `Script`: text, or a tool call.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from anyclaude.translate.ids import message_id, tool_use_id

HOST = "127.0.0.1"
BODY_LIMIT = 64 * 1024 * 1024
"""Claude Code's requests grow with the session; Anthropic accepts 32 MB."""


@dataclass(frozen=True)
class Answer:
    """What the stand-in answers: text, then optionally one tool call."""

    text: str = "OK."
    tool: str | None = None
    tool_input: Mapping[str, Any] = field(default_factory=dict)


Script = Callable[[Mapping[str, Any]], Answer]
"""Chooses the answer from the request body."""


def always_text(body: Mapping[str, Any]) -> Answer:
    return Answer()


@dataclass(frozen=True)
class Recorded:
    """One request as it arrived (headers lower-cased, body parsed when it was JSON)."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: Any


def _blocks(answer: Answer) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = [{"type": "text", "text": answer.text}]
    if answer.tool:
        blocks.append({"type": "tool_use", "id": tool_use_id(), "name": answer.tool,
                       "input": dict(answer.tool_input)})
    return blocks


def message(answer: Answer, model: str) -> dict[str, Any]:
    """The whole answer as a non-streaming Message."""
    return {"id": message_id(), "type": "message", "role": "assistant", "model": model,
            "content": _blocks(answer), "stop_reason": "tool_use" if answer.tool else "end_turn",
            "stop_sequence": None, "usage": {"input_tokens": 10, "output_tokens": 5}}


def events(answer: Answer, model: str) -> list[dict[str, Any]]:
    """The same answer as a stream of Messages API events."""
    whole = message(answer, model)
    start = {**whole, "content": [], "stop_reason": None,
             "usage": {"input_tokens": 10, "output_tokens": 1}}
    out: list[dict[str, Any]] = [{"type": "message_start", "message": start}]
    for index, block in enumerate(whole["content"]):
        opening: dict[str, Any]
        if block["type"] == "text":
            opening = {"type": "text", "text": ""}
            delta = {"type": "text_delta", "text": block["text"]}
        else:
            opening = {**block, "input": {}}
            delta = {"type": "input_json_delta", "partial_json": json.dumps(block["input"])}
        out += [{"type": "content_block_start", "index": index, "content_block": opening},
                {"type": "content_block_delta", "index": index, "delta": delta},
                {"type": "content_block_stop", "index": index}]
    out += [{"type": "message_delta", "delta": {"stop_reason": whole["stop_reason"],
                                                "stop_sequence": None},
             "usage": {"output_tokens": 5}},
            {"type": "message_stop"}]
    return out


class Recorder:
    """`async with Recorder(script) as server:` then point ANTHROPIC_BASE_URL at `server.url`;
    `server.requests` lists what arrived, in order."""

    def __init__(self, script: Script = always_text) -> None:
        self.script = script
        self.requests: list[Recorded] = []
        self.url = ""
        self._runner: web.AppRunner | None = None
        self._ids = itertools.count(1)

    async def _record(self, request: web.Request) -> Recorded:
        raw = await request.read()
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        seen = Recorded(request.method, request.path, request.query_string,
                        {k.lower(): v for k, v in request.headers.items()}, body)
        self.requests.append(seen)
        return seen

    async def _messages(self, request: web.Request) -> web.StreamResponse:
        seen = await self._record(request)
        body = seen.body if isinstance(seen.body, dict) else {}
        answer = self.script(body)
        model = str(body.get("model") or "model")
        headers = {"request-id": f"req_recorded_{next(self._ids)}"}
        if not body.get("stream"):
            return web.json_response(message(answer, model), headers=headers)
        response = web.StreamResponse(headers={**headers, "Content-Type": "text/event-stream"})
        await response.prepare(request)
        for event in events(answer, model):
            await response.write(f"event: {event['type']}\ndata: {json.dumps(event)}\n\n"
                                 .encode())
        await response.write_eof()
        return response

    async def _count(self, request: web.Request) -> web.Response:
        seen = await self._record(request)
        return web.json_response({"input_tokens": len(json.dumps(seen.body)) // 4 + 1})

    async def _other(self, request: web.Request) -> web.Response:
        await self._record(request)
        return web.Response(status=200 if request.method == "HEAD" else 404)

    async def __aenter__(self) -> Recorder:
        app = web.Application(client_max_size=BODY_LIMIT)
        app.router.add_post("/v1/messages", self._messages)
        app.router.add_post("/v1/messages/count_tokens", self._count)
        app.router.add_route("*", "/{tail:.*}", self._other)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, HOST, 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://{HOST}:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
