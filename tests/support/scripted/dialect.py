"""One renderer for every dialect: a reply resolved against a request (`Plan`), rendered as
chunks, a completion and usage whose shapes each dialect declares as data (key orders,
templates, where usage and role go), so a new quirk is a new value, not a new renderer."""

from __future__ import annotations

import json
import random
import string
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Protocol

from tests.support.scripted.data import DERIVED, Reply, Request, error_reply
from tests.support.scripted.wire import now_http

Event = tuple[Literal["comment", "data", "done"], bytes]
Headers = tuple[tuple[str, str], ...]
Layout = tuple[str, ...]


class Served(Protocol):
    """The backend settings a dialect consults."""

    model: str
    context_length: int | None
    strict_model: bool
    textgen_stream_tool_bug: bool
    token_counter: Callable[[Request], int]

    def drop_model(self, name: str) -> None: ...


@dataclass
class Call:
    index: int
    name: str
    arguments: str
    id: str
    fragments: list[str]


@dataclass
class Plan:
    """A reply resolved against one request."""

    reply: Reply
    request: Request
    model: str
    stream: bool
    include_usage: bool
    text: list[str]
    reasoning: list[str]
    calls: list[Call]
    finish: str | None
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int | None
    reasoning_tokens: int
    tools_requested: bool
    tool_choice: Any
    cid: str
    created: int = field(default_factory=lambda: int(time.time()))


def pieces(value: str | Sequence[str], size: int) -> list[str]:
    if isinstance(value, str):
        step = max(1, size)
        return [value[i : i + step] for i in range(0, len(value), step)]
    return [p for p in value if p]


def alnum(n: int, alphabet: str = string.ascii_lowercase + string.digits) -> str:
    return "".join(random.choice(alphabet) for _ in range(n))


def ordered(layout: Layout, values: Mapping[str, Any]) -> dict[str, Any]:
    return {key: values[key] for key in layout if key in values}


class DialectBase:
    """How one server family frames and shapes its responses; the defaults are the OpenAI
    shape as FastAPI/uvicorn servers send it."""

    name: ClassVar[str] = ""
    http_version: ClassVar[str] = "HTTP/1.1"
    keep_alive: ClassVar[bool] = True
    chunked_stream: ClassVar[bool] = True
    needs_length: ClassVar[bool] = False
    """Refuse a POST without Content-Length (411) before reading it."""
    keeps_query: ClassVar[bool] = False
    """Route on the raw target, query included."""
    chat_paths: ClassVar[Layout] = ("/v1/chat/completions",)
    model_paths: ClassVar[Layout] = ("/v1/models",)
    json_type: ClassVar[str] = "application/json; charset=utf-8"
    echo_default: ClassVar[str | None] = None
    """The model named in answers when the request names none; None: the served model."""
    health: ClassVar[Mapping[str, Any] | bytes | None] = None
    """The body of GET /health, or None for a 404."""

    fixed_headers: ClassVar[Headers] = (
        ("date", "{date}"), ("server", "uvicorn"),
        ("content-length", "{length}"), ("content-type", "{type}"),
    )
    completion_headers: ClassVar[Headers | None] = None
    """Headers of a finished completion; None: the same as `fixed_headers`."""
    stream_headers: ClassVar[Headers] = (
        ("date", "{date}"), ("server", "uvicorn"),
        ("content-type", "text/event-stream; charset=utf-8"), ("Transfer-Encoding", "chunked"),
    )

    reasoning_field: str | None = "reasoning_content"
    """Where reasoning goes; None: inline `<think>` text (settable per backend)."""
    keepalives: ClassVar[int] = 0
    template: ClassVar[Mapping[str, Any]] = {}
    """Every delta, the finish delta and the message start from these keys."""
    first_delta: ClassVar[Mapping[str, Any] | None] = None
    """A role-only opening delta; None: the role rides on the first real delta."""
    whole_calls: ClassVar[bool] = False
    """Each tool call in one delta; else a start delta, then argument fragments."""
    calls_at_index_zero: ClassVar[bool] = False
    start_has_arguments: ClassVar[bool] = True
    call_layout: ClassVar[Layout] = ("id", "type", "function")
    stream_call_layout: ClassVar[Layout] = ("index", "id", "type", "function")
    chunk_layout: ClassVar[Layout] = ("id", "object", "created", "model", "choices")
    choice_layout: ClassVar[Layout] = ("index", "delta", "logprobs", "finish_reason")
    completion_layout: ClassVar[Layout] = (
        "id", "object", "created", "model", "choices", "usage")
    completion_choice_layout: ClassVar[Layout] = (
        "index", "message", "logprobs", "finish_reason")
    usage_layout: ClassVar[Layout] = (
        "prompt_tokens", "completion_tokens", "total_tokens", "prompt_tokens_details")
    cached_default: ClassVar[int | None] = None
    """Cached tokens reported when the reply sets none; None: no details."""
    usage_chunk_object: ClassVar[str] = "chat.completion.chunk"
    usage_in_finish: ClassVar[bool] = False
    """Usage rides on the finish chunk (never a chunk of its own)."""
    fingerprint: ClassVar[str | None] = None
    """`system_fingerprint` where the layout has one; None: the model name."""
    null_content_with_calls: ClassVar[bool] = True
    done: ClassVar[bytes] = b"data: [DONE]\n\n"

    def __init__(self, backend: Served) -> None:
        self.be = backend

    # encoding, headers, ids --------------------------------------------------------
    def dumps(self, obj: Any) -> bytes:
        return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()

    def sse(self, obj: Any) -> bytes:
        return b"data: " + self.dumps(obj) + b"\n\n"

    def content_type(self, content_type: str) -> str:
        return content_type

    def headers(self, table: Headers, content_type: str = "", length: int = 0) -> list[tuple[str, str]]:
        values = {"date": now_http(), "type": self.content_type(content_type), "length": length}
        return [(k, v.format(**values)) for k, v in table]

    def completion_id(self) -> str:
        return "chatcmpl-" + uuid.uuid4().hex

    def call_id(self, index: int) -> str:
        return "call_" + uuid.uuid4().hex[:24]

    # routes --------------------------------------------------------------------------
    def error_json(self, status: int, message: str) -> Mapping[str, Any]:
        return {"error": {"message": message, "type": "invalid_request_error", "param": None,
                          "code": status}}

    def not_found(self, method: str, path: str) -> Reply:
        return error_reply(404, {"detail": "Not Found"})

    def models(self, path: str) -> Reply:
        data = [{"id": self.be.model, "object": "model", "created": int(time.time()),
                 "owned_by": "scripted"}]
        return Reply(error_body={"object": "list", "data": data})

    def check(self, req: Request) -> Reply | None:
        """Dialect-specific request validation: an error reply, or None to generate."""
        body = req.json
        if not isinstance(body, dict):
            return error_reply(400, self.error_json(400, "Invalid JSON in request body"))
        if not isinstance(body.get("messages"), list):
            return error_reply(400, self.error_json(400, "'messages' is a required property"))
        return None

    def plan(self, req: Request, reply: Reply) -> Plan:
        body: Mapping[str, Any] = req.json if isinstance(req.json, dict) else {}
        text = pieces(reply.text, reply.chunk_size)
        reasoning = pieces(reply.reasoning, reply.chunk_size)
        calls: list[Call] = []
        for i, (name, args) in enumerate(reply.tool_calls):
            cid = reply.tool_call_ids[i] if i < len(reply.tool_call_ids) else self.call_id(i)
            calls.append(Call(i, name, args, cid, pieces(args, reply.arg_chunk_size)))
        finish = reply.finish_reason
        if finish == DERIVED:
            finish = "tool_calls" if calls else "stop"
        options = body.get("stream_options")
        wants_usage = isinstance(options, dict) and bool(options.get("include_usage"))
        u = reply.usage
        sent = len(text) + len(reasoning) + sum(max(1, len(c.fragments)) for c in calls)
        model = body.get("model")
        return Plan(
            reply=reply, request=req,
            model=model if isinstance(model, str) else (self.echo_default or self.be.model),
            stream=body.get("stream") is True,
            include_usage=wants_usage if reply.include_usage is None else reply.include_usage,
            text=text, reasoning=reasoning, calls=calls, finish=finish,
            prompt_tokens=self.be.token_counter(req) if u.prompt_tokens is None
            else u.prompt_tokens,
            completion_tokens=sent if u.completion_tokens is None else u.completion_tokens,
            cached_tokens=u.cached_tokens,
            reasoning_tokens=len(reasoning) if u.reasoning_tokens is None
            else u.reasoning_tokens,
            tools_requested=bool(body.get("tools")), tool_choice=body.get("tool_choice"),
            cid=self.completion_id(),
        )

    # rendering ---------------------------------------------------------------------
    def reasoning_inline(self, plan: Plan) -> list[str]:
        """Reasoning pieces as inline `<think>` text when the server does not separate it."""
        if not plan.reasoning:
            return []
        out = list(plan.reasoning)
        out[0] = "<think>\n" + out[0]
        out[-1] = out[-1] + "\n</think>\n\n"
        return out

    def reasoning_delta(self, piece: str) -> dict[str, Any]:
        assert self.reasoning_field is not None
        return {**self.template, self.reasoning_field: piece}

    def usage(self, plan: Plan) -> dict[str, Any]:
        cached = plan.cached_tokens if plan.cached_tokens is not None else self.cached_default
        values: dict[str, Any] = {
            "prompt_tokens": plan.prompt_tokens, "completion_tokens": plan.completion_tokens,
            "total_tokens": plan.prompt_tokens + plan.completion_tokens,
            "completion_tokens_details": {"reasoning_tokens": plan.reasoning_tokens}}
        if cached is not None:
            values["prompt_tokens_details"] = {"cached_tokens": cached}
        return ordered(self.usage_layout, values)

    def envelope(self, plan: Plan, layout: Layout, **values: Any) -> dict[str, Any]:
        common = {"id": plan.cid, "created": plan.created, "model": plan.model,
                  "system_fingerprint": self.fingerprint or plan.model, "stats": {}}
        return ordered(layout, {**common, **values})

    def chunk(self, plan: Plan, delta: Mapping[str, Any], finish: str | None,
              usage: Any = None) -> dict[str, Any]:
        choice = ordered(self.choice_layout, {"index": 0, "delta": delta, "logprobs": None,
                                              "finish_reason": finish})
        return self.envelope(plan, self.chunk_layout, object="chat.completion.chunk",
                             choices=[choice], usage=usage)

    def usage_chunk(self, plan: Plan) -> dict[str, Any]:
        layout = self.chunk_layout + (() if "usage" in self.chunk_layout else ("usage",))
        return self.envelope(plan, layout, object=self.usage_chunk_object, choices=[],
                             usage=self.usage(plan))

    def call(self, call: Call, layout: Layout, arguments: str | None) -> dict[str, Any]:
        function = {"name": call.name} if arguments is None else {
            "name": call.name, "arguments": arguments}
        index = 0 if self.calls_at_index_zero else call.index
        return ordered(layout, {"index": index, "id": call.id, "type": "function",
                                "function": function})

    def call_deltas(self, plan: Plan) -> list[dict[str, Any]]:
        """Tool calls as stream deltas: whole, or a start per call then argument fragments
        (alternating between calls when the reply interleaves them)."""
        if self.whole_calls:
            return [self.call(c, self.stream_call_layout, c.arguments) for c in plan.calls]
        start = "" if self.start_has_arguments else None
        queues = [[self.call(c, self.stream_call_layout, start)]
                  + [{"index": c.index, "function": {"arguments": f}} for f in c.fragments]
                  for c in plan.calls]
        if not plan.reply.interleave:
            return [tc for q in queues for tc in q]
        out: list[dict[str, Any]] = []
        while any(queues):
            out += [q.pop(0) for q in queues if q]
        return out

    def drops_calls(self, plan: Plan) -> bool:
        """A server bug that loses the calls and the finish chunk of a stream."""
        return False

    def cut_stream(self, plan: Plan) -> bool:
        """A server bug that ends the stream right after the finish chunk."""
        return False

    def stream_events(self, plan: Plan) -> list[Event]:
        n = plan.reply.keepalives if plan.reply.keepalives is not None else self.keepalives
        events: list[Event] = [
            ("comment", f": keepalive {i}/{n}\n\n".encode()) for i in range(1, n + 1)]
        t = self.template
        deltas: list[dict[str, Any]] = []
        if self.first_delta is not None:
            deltas.append({**t, **self.first_delta})
        if self.reasoning_field is None:
            deltas += [{**t, "content": p} for p in self.reasoning_inline(plan)]
        else:
            deltas += [self.reasoning_delta(p) for p in plan.reasoning]
        deltas += [{**t, "content": p} for p in plan.text]
        dropped = self.drops_calls(plan)
        if not dropped:
            deltas += [{**t, "tool_calls": [tc]} for tc in self.call_deltas(plan)]
        if self.first_delta is None and deltas:
            deltas[0] = {"role": "assistant", **deltas[0]}
        events += [("data", self.sse(self.chunk(plan, d, None))) for d in deltas]
        if not dropped:
            usage = self.usage(plan) if self.usage_in_finish else None
            events.append(("data", self.sse(self.chunk(plan, dict(t), plan.finish, usage))))
        if self.cut_stream(plan):
            return events
        if plan.include_usage and not self.usage_in_finish:
            events.append(("data", self.sse(self.usage_chunk(plan))))
        events.append(("done", self.done))
        return events

    def message(self, plan: Plan) -> dict[str, Any]:
        msg: dict[str, Any] = {**self.template, "role": "assistant"}
        text = "".join(plan.text)
        if self.reasoning_field is None:
            text = "".join(self.reasoning_inline(plan)) + text
        msg["content"] = text or None
        if self.reasoning_field is not None and plan.reasoning:
            msg[self.reasoning_field] = "".join(plan.reasoning)
        if plan.calls:
            msg["tool_calls"] = [self.call(c, self.call_layout, c.arguments) for c in plan.calls]
            if msg["content"] is None and not self.null_content_with_calls:
                del msg["content"]
        return msg

    def completion(self, plan: Plan) -> dict[str, Any]:
        choice = ordered(self.completion_choice_layout, {
            "index": 0, "message": self.message(plan), "logprobs": None,
            "finish_reason": plan.finish})
        return self.envelope(plan, self.completion_layout, object="chat.completion",
                             choices=[choice], usage=self.usage(plan))
