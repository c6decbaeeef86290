"""A scripted OpenAI-compatible backend: a test double for servers we cannot run here.

Why: mlx-textgen only runs on macOS, LM Studio is a desktop app, vLLM and llama.cpp need
weights, and even the real mlx-lm cannot be made to cut a stream, hang, or send broken SSE on
demand. This server speaks each dialect byte for byte as captured in
`/work/shared/fixtures/` (mlx-lm 0.32.2, mlx-textgen 0.2.1) or as documented
(protocol-notes §G for LM Studio, vLLM, llama.cpp), and plays back scripted model output.

It is a raw asyncio server (no HTTP framework) so that every byte is ours: HTTP/1.0 with a
close after each response (mlx-lm), chunked HTTP/1.1 with keep-alive (the others), a
`data: [DONE]` without the blank line (mlx-textgen), cut connections and hangs. It runs on
its own event loop in a background thread, so sync tests, tests with their own loop and
subprocess proxies can all talk to it.

    with ScriptedBackend("mlx-lm") as be:
        be.reply(Reply(text="Hi", tool_calls=[("Read", '{"file_path": "/x"}')]))
        ...  # point the proxy at be.url ("http://127.0.0.1:PORT/v1")
        req = be.wait_for_request(1)
        be.wait_closed(0)
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import http
import json
import random
import string
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Final, Literal, get_args

Dialect = Literal["mlx-lm", "lmstudio", "mlx-textgen", "vllm", "llamacpp"]
DIALECTS: Final[tuple[str, ...]] = get_args(Dialect)

Fault = Literal[
    "die_mid_stream",
    "hang_after_headers",
    "hang_before_headers",
    "invalid_json_chunk",
    "invalid_sse",
    "html_error",
    "no_done",
    "slow",
]
FAULTS: Final[tuple[str, ...]] = get_args(Fault)

DERIVED: Final = "<derived>"
"""`Reply.finish_reason` default: "tool_calls" when the reply has calls, else "stop"."""

DEFAULT_PIECES: Final[tuple[str, ...]] = (
    "Hel", "lo", "!", " I", " a", "m", " the", " t", "in", "y",
    " s", "cri", "p", "ted", " test", " mode", "l", ".",
)  # fmt: skip
"""The token pieces of the scripted test model in the captures ("Hello! I am the tiny
scripted test model."); the default reply, so a bare request reproduces fixture 02."""

MLX_FINGERPRINT: Final = "0.32.2-0.32.4-Linux-6.18.44-fc-v669-x86_64-with-glibc2.36-x86_64"
MLX_SERVER: Final = "BaseHTTP/0.6 Python/3.11.7"
MLX_OFFLINE_ERROR: Final = (
    "Cannot find an appropriate cached snapshot folder for the specified revision on the "
    "local disk and outgoing traffic has been disabled. To enable repo look-ups and downloads "
    "online, set 'HF_HUB_OFFLINE=0' as environment variable."
)  # fixture 50: what mlx-lm says after trying a Claude model name as a Hub repo id
HTML_PAGE: Final = (
    "<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n"
    "<center><h1>{status} {reason}</h1></center>\r\n<hr><center>nginx</center>\r\n"
    "</body>\r\n</html>\r\n"
)
SLOW_DELAY: Final = 0.2
"""Per-chunk delay of the `slow` fault when the reply sets no `chunk_delay`."""


# --------------------------------------------------------------------------- public data


@dataclass(frozen=True)
class Usage:
    """Token counts to report; None means "derive": prompt ≈ len(request body) // 4,
    completion = number of pieces sent, cached = 0 (reported only by dialects that report it:
    mlx-lm always; the others only when given explicitly)."""

    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cached_tokens: int | None = None
    reasoning_tokens: int | None = None


@dataclass(frozen=True)
class Reply:
    """What the scripted model "generates" for one request, rendered in the backend's dialect.

    `text` / `reasoning`: a string split into `chunk_size`-character pieces, or explicit pieces.
    `tool_calls`: (name, arguments JSON text) pairs; mlx-lm and mlx-textgen send each call whole,
    the others send a start delta and `arg_chunk_size` fragments (`interleave=True` alternates
    the fragments of several calls by index). `status != 200` or an `error_body` makes it a
    fixed response instead (a mapping is JSON-encoded in the dialect's style, str/bytes are
    sent as is; no body gives the dialect's usual error shape), framed like that server's
    errors. `fault` breaks the response on purpose (see `FAULTS`).
    """

    text: str | Sequence[str] = ""
    reasoning: str | Sequence[str] = ""
    tool_calls: Sequence[tuple[str, str]] = ()
    finish_reason: str | None = DERIVED
    usage: Usage = Usage()
    include_usage: bool | None = None
    """None: follow the request's `stream_options.include_usage` (dialect rules apply)."""
    chunk_size: int = 3
    arg_chunk_size: int = 6
    interleave: bool = False
    tool_call_ids: Sequence[str] = ()
    """Upstream ids to report; default: minted in the dialect's format."""
    keepalives: int | None = None
    """`: keepalive i/n` comments before the first chunk; None: 1 for mlx-lm, 0 otherwise."""
    keepalive_delay: float = 0.0
    """Seconds to wait after each keepalive (prefill time)."""
    delay: float = 0.0
    """Seconds to wait before the status line (queueing, non-streaming generation)."""
    chunk_delay: float = 0.0
    """Seconds to wait before each data chunk."""
    status: int = 200
    error_body: Mapping[str, Any] | str | bytes | None = None
    content_type: str | None = None
    fault: Fault | None = None
    fault_after: int = 2
    """Data chunks sent before `die_mid_stream` closes / the invalid chunk is inserted."""


@dataclass(frozen=True)
class Request:
    """One request as received (headers keyed in lower case)."""

    index: int
    connection: int
    method: str
    path: str
    version: str
    headers: Mapping[str, str]
    body: bytes
    raw: bytes
    json: Any
    """The parsed body, or None when absent or not JSON."""
    received_at: float

    @property
    def stream(self) -> bool:
        return isinstance(self.json, dict) and self.json.get("stream") is True

    @property
    def model(self) -> Any:
        return self.json.get("model") if isinstance(self.json, dict) else None

    @property
    def messages(self) -> list[Any]:
        msgs = self.json.get("messages") if isinstance(self.json, dict) else None
        return msgs if isinstance(msgs, list) else []


@dataclass(frozen=True)
class ConnectionRecord:
    """One TCP connection: when it opened and closed (time.monotonic), who closed it, and
    whether the peer went away while a response was still being sent."""

    index: int
    opened_at: float
    closed_at: float | None = None
    closed_by: Literal["peer", "server"] | None = None
    peer_closed_early: bool = False
    requests: tuple[int, ...] = ()
    responses_completed: int = 0


Responder = Callable[[Request], "Reply | None"]


# --------------------------------------------------------------------------- error helpers


def error_reply(
    status: int, body: Mapping[str, Any] | str | bytes, content_type: str | None = None
) -> Reply:
    """A plain error reply; the body is JSON-encoded in the dialect's style when a mapping."""
    return Reply(status=status, error_body=body, content_type=content_type)


def mlx_lm_error(message: str, status: int = 404) -> Reply:
    """mlx-lm's `{"error": "..."}`; 404 is what it answers for anything raised while
    setting up generation (bad model name, non-text parts, invalid tool arguments)."""
    return error_reply(status, {"error": message})


def textgen_error(message: str, status: int = 404) -> Reply:
    """mlx-textgen's own error shape (wrong model name)."""
    return error_reply(status, {"error": message})


def textgen_detail(detail: str, status: int = 500) -> Reply:
    """mlx-textgen's FastAPI error shape, e.g. the Metal lookup failure on Linux (tg01)."""
    return error_reply(status, {"detail": detail})


def lmstudio_model_not_found(model: str) -> Reply:
    """LM Studio's 400 for an unknown model identifier (protocol-notes §G.2)."""
    return error_reply(
        400,
        {
            "error": {
                "message": f'Invalid model identifier "{model}". Please specify a valid '
                "downloaded model (e.g., qwen/qwen3-4b).",
                "type": "invalid_request_error",
                "param": "model",
                "code": "model_not_found",
            }
        },
    )


def lmstudio_no_models_loaded() -> Reply:
    """LM Studio with JIT loading off and nothing loaded: `error` is a string here."""
    return error_reply(
        400,
        {
            "error": "No models loaded. Please load a model in the developer page or use the "
            "`lms load` command."
        },
    )


def lmstudio_prompt_too_long(prompt_tokens: int, context_length: int) -> Reply:
    """LM Studio reports a too-long prompt as HTTP 500 (text from its bug tracker)."""
    return error_reply(
        500,
        {
            "error": f"Trying to keep the first {prompt_tokens} tokens when context the "
            f"overflows. However, the model is loaded with context length of only "
            f"{context_length} tokens, which is not enough. Try to load the model with a "
            "larger context length, or provide a shorter input"
        },
    )


def vllm_context_overflow(max_len: int = 4096, prompt: int = 4000, completion: int = 1000) -> Reply:
    """vLLM's 400 for prompt + max_tokens over `--max-model-len`."""
    message = (
        f"This model's maximum context length is {max_len} tokens. However, you requested "
        f"{prompt + completion} tokens ({prompt} in the messages, {completion} in the "
        "completion). Please reduce the length of the messages or completion."
    )
    return error_reply(
        400, {"error": {"message": message, "type": "BadRequestError", "param": None, "code": 400}}
    )


def llamacpp_context_overflow(n_prompt: int, n_ctx: int) -> Reply:
    """llama-server's 400 `exceed_context_size_error`."""
    return error_reply(
        400,
        {
            "error": {
                "code": 400,
                "message": "the request exceeds the available context size, try increasing it",
                "type": "exceed_context_size_error",
                "n_prompt_tokens": n_prompt,
                "n_ctx": n_ctx,
            }
        },
    )


def html_error(status: int = 500) -> Reply:
    """An HTML error page, as a reverse proxy or a crashed gateway would send."""
    reason = _reason(status)
    page = HTML_PAGE.format(status=status, reason=reason)
    return error_reply(status, page, "text/html")


# --------------------------------------------------------------------------- internals


class _PeerGone(Exception):
    """The client closed the connection; unwinds the response being written."""


def _reason(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def _now_http() -> str:
    return email.utils.formatdate(usegmt=True)


def _alnum(n: int, alphabet: str = string.ascii_lowercase + string.digits) -> str:
    return "".join(random.choice(alphabet) for _ in range(n))


def _pieces(value: str | Sequence[str], size: int) -> list[str]:
    if isinstance(value, str):
        step = max(1, size)
        return [value[i : i + step] for i in range(0, len(value), step)]
    return [p for p in value if p]


@dataclass
class _Call:
    index: int
    name: str
    arguments: str
    id: str
    fragments: list[str]


@dataclass
class _Plan:
    """A reply resolved against one request."""

    reply: Reply
    request: Request
    model: str
    stream: bool
    include_usage: bool
    text: list[str]
    reasoning: list[str]
    calls: list[_Call]
    finish: str | None
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int | None
    reasoning_tokens: int
    tools_requested: bool
    tool_choice: Any
    cid: str
    created: int = field(default_factory=lambda: int(time.time()))

    @property
    def full_text(self) -> str:
        return "".join(self.text)

    @property
    def full_reasoning(self) -> str:
        return "".join(self.reasoning)


Event = tuple[Literal["comment", "data", "done"], bytes]


class _Conn(asyncio.Protocol):
    """One client connection: a byte buffer plus events, so the handler can notice at once
    when the peer goes away, even while it sleeps or hangs."""

    def __init__(self, backend: ScriptedBackend) -> None:
        self.backend = backend
        self.buf = bytearray()
        self.wakeup = asyncio.Event()
        self.gone = asyncio.Event()
        self.writable = asyncio.Event()
        self.writable.set()
        self.transport: asyncio.Transport | None = None
        self.index = -1
        self.in_request = False
        self.task: asyncio.Task[None] | None = None

    # asyncio.Protocol ------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.index = self.backend._open_connection(self)
        self.task = asyncio.get_running_loop().create_task(self.backend._serve(self))

    def data_received(self, data: bytes) -> None:
        self.buf += data
        self.wakeup.set()

    def eof_received(self) -> bool:
        self._mark_gone("peer")
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._mark_gone("peer")
        self.writable.set()

    def pause_writing(self) -> None:
        self.writable.clear()

    def resume_writing(self) -> None:
        self.writable.set()

    # helpers -----------------------------------------------------------------------
    def _mark_gone(self, by: Literal["peer", "server"]) -> None:
        if self.gone.is_set():
            return
        self.gone.set()
        self.wakeup.set()
        self.backend._close_connection(self.index, by, early=by == "peer" and self.in_request)

    def close(self) -> None:
        """Close from our side (after a response, or to cut a stream)."""
        self._mark_gone("server")
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        self._mark_gone("server")
        if self.transport is not None:
            self.transport.abort()

    async def read_until(self, sep: bytes, limit: int = 1 << 20) -> bytes | None:
        while True:
            i = self.buf.find(sep)
            if i >= 0:
                out = bytes(self.buf[: i + len(sep)])
                del self.buf[: i + len(sep)]
                return out
            if self.gone.is_set() or len(self.buf) > limit:
                return None
            self.wakeup.clear()
            await self.wakeup.wait()

    async def read_exactly(self, n: int) -> bytes | None:
        while len(self.buf) < n:
            if self.gone.is_set():
                return None
            self.wakeup.clear()
            await self.wakeup.wait()
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    async def pause(self, seconds: float) -> None:
        """Sleep, but give up at once (raising) when the peer goes away."""
        if self.gone.is_set():
            raise _PeerGone
        if seconds <= 0:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.gone.wait(), seconds)
            raise _PeerGone

    async def send(self, data: bytes) -> None:
        if self.gone.is_set() or self.transport is None or self.transport.is_closing():
            raise _PeerGone
        self.transport.write(data)
        await self.writable.wait()
        if self.gone.is_set():
            raise _PeerGone


# --------------------------------------------------------------------------- dialects


class _DialectBase:
    """How one server family frames and shapes its responses."""

    name: str = ""
    http_version = "HTTP/1.1"
    keep_alive = True
    chunked_stream = True
    reasoning_field: str | None = "reasoning_content"
    chat_paths: tuple[str, ...] = ("/v1/chat/completions",)

    def __init__(self, backend: ScriptedBackend) -> None:
        self.be = backend

    # encoding ---------------------------------------------------------------------
    def dumps(self, obj: Any) -> bytes:
        return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()

    def sse(self, obj: Any) -> bytes:
        return b"data: " + self.dumps(obj) + b"\n\n"

    def done(self) -> bytes:
        return b"data: [DONE]\n\n"

    # headers ------------------------------------------------------------------------
    def fixed_headers(self, content_type: str, length: int, error: bool) -> list[tuple[str, str]]:
        return [
            ("date", _now_http()),
            ("server", "uvicorn"),
            ("content-length", str(length)),
            ("content-type", content_type),
        ]

    def stream_headers(self) -> list[tuple[str, str]]:
        return [
            ("date", _now_http()),
            ("server", "uvicorn"),
            ("content-type", "text/event-stream; charset=utf-8"),
            ("Transfer-Encoding", "chunked"),
        ]

    # ids ----------------------------------------------------------------------------
    def completion_id(self) -> str:
        return "chatcmpl-" + uuid.uuid4().hex

    def call_id(self, index: int) -> str:
        return "call_" + uuid.uuid4().hex[:24]

    # routes -------------------------------------------------------------------------
    def error_json(self, status: int, message: str) -> Mapping[str, Any]:
        return {
            "error": {
                "message": message,
                "type": "invalid_request_error",
                "param": None,
                "code": status,
            }
        }

    def not_found(self, method: str, path: str) -> Reply:
        return error_reply(404, {"detail": "Not Found"})

    def health(self) -> Reply | None:
        return None

    def models(self, path: str) -> Reply:
        data = [
            {
                "id": self.be.model,
                "object": "model",
                "created": int(time.time()),
                "owned_by": "scripted",
            }
        ]
        return Reply(error_body={"object": "list", "data": data})

    def check(self, req: Request) -> Reply | None:
        """Dialect-specific request validation: an error reply, or None to generate."""
        body = req.json
        if not isinstance(body, dict):
            return error_reply(400, self.error_json(400, "Invalid JSON in request body"))
        if not isinstance(body.get("messages"), list):
            return error_reply(400, self.error_json(400, "'messages' is a required property"))
        return None

    def model_echo(self, body: Mapping[str, Any]) -> str:
        model = body.get("model")
        return model if isinstance(model, str) else self.be.model

    # rendering ----------------------------------------------------------------------
    def reasoning_inline(self, plan: _Plan) -> list[str]:
        """Reasoning pieces as inline `<think>` text when the server does not separate it."""
        if not plan.reasoning:
            return []
        out = list(plan.reasoning)
        out[0] = "<think>\n" + out[0]
        out[-1] = out[-1] + "\n</think>\n\n"
        return out

    def usage_obj(self, plan: _Plan) -> dict[str, Any]:
        usage: dict[str, Any] = {
            "prompt_tokens": plan.prompt_tokens,
            "completion_tokens": plan.completion_tokens,
            "total_tokens": plan.prompt_tokens + plan.completion_tokens,
        }
        if plan.cached_tokens is not None:
            usage["prompt_tokens_details"] = {"cached_tokens": plan.cached_tokens}
        return usage

    def chunk(self, plan: _Plan, delta: Mapping[str, Any], finish: str | None) -> dict[str, Any]:
        return {
            "id": plan.cid,
            "object": "chat.completion.chunk",
            "created": plan.created,
            "model": plan.model,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }

    def usage_chunk(self, plan: _Plan) -> dict[str, Any]:
        return {
            "id": plan.cid,
            "object": "chat.completion.chunk",
            "created": plan.created,
            "model": plan.model,
            "choices": [],
            "usage": self.usage_obj(plan),
        }

    def first_delta(self) -> dict[str, Any] | None:
        """A role-only opening delta, for servers that send one."""
        return None

    def call_start(self, call: _Call) -> dict[str, Any]:
        return {
            "index": call.index,
            "id": call.id,
            "type": "function",
            "function": {"name": call.name, "arguments": ""},
        }

    def call_fragment(self, call: _Call, fragment: str) -> dict[str, Any]:
        return {"index": call.index, "function": {"arguments": fragment}}

    def tool_schedule(self, plan: _Plan) -> list[dict[str, Any]]:
        """Incremental tool-call deltas: a start per call, then argument fragments."""
        queues = [
            [self.call_start(c)] + [self.call_fragment(c, f) for f in c.fragments]
            for c in plan.calls
        ]
        out: list[dict[str, Any]] = []
        if plan.reply.interleave:
            while any(queues):
                for q in queues:
                    if q:
                        out.append(q.pop(0))
        else:
            for q in queues:
                out.extend(q)
        return out

    def stream_events(self, plan: _Plan) -> list[Event]:
        events: list[Event] = []
        deltas: list[dict[str, Any]] = []
        first = self.first_delta()
        if first is not None:
            deltas.append(first)
        if self.reasoning_field is None:
            deltas += [{"content": p} for p in self.reasoning_inline(plan)]
        else:
            deltas += [{self.reasoning_field: p} for p in plan.reasoning]
        deltas += [{"content": p} for p in plan.text]
        deltas += [{"tool_calls": [tc]} for tc in self.tool_schedule(plan)]
        if first is None and deltas:
            deltas[0] = {"role": "assistant", **deltas[0]}
        events += [("data", self.sse(self.chunk(plan, d, None))) for d in deltas]
        events.append(("data", self.sse(self.chunk(plan, {}, plan.finish))))
        if plan.include_usage:
            events.append(("data", self.sse(self.usage_chunk(plan))))
        events.append(("done", self.done()))
        return events

    def message(self, plan: _Plan) -> dict[str, Any]:
        msg: dict[str, Any] = {"role": "assistant"}
        text = plan.full_text
        if self.reasoning_field is None:
            text = "".join(self.reasoning_inline(plan)) + text
        msg["content"] = text or None
        if self.reasoning_field is not None and plan.reasoning:
            msg[self.reasoning_field] = plan.full_reasoning
        if plan.calls:
            msg["tool_calls"] = [
                {
                    "id": c.id,
                    "type": "function",
                    "function": {"name": c.name, "arguments": c.arguments},
                }
                for c in plan.calls
            ]
        return msg

    def completion(self, plan: _Plan) -> dict[str, Any]:
        return {
            "id": plan.cid,
            "object": "chat.completion",
            "created": plan.created,
            "model": plan.model,
            "choices": [
                {
                    "index": 0,
                    "message": self.message(plan),
                    "logprobs": None,
                    "finish_reason": plan.finish,
                }
            ],
            "usage": self.usage_obj(plan),
        }


class _MlxLm(_DialectBase):
    """mlx-lm 0.32.2 (`mlx_lm.server`, BaseHTTPRequestHandler): HTTP/1.0, a close after every
    response, Python `json.dumps` defaults (ASCII, ", "/": "), role in every delta, whole tool
    calls, errors without Content-Length. Shapes from fixtures 01–56 and server.py."""

    name = "mlx-lm"
    http_version = "HTTP/1.0"
    keep_alive = False
    chunked_stream = False
    reasoning_field = "reasoning"
    chat_paths = ("/v1/chat/completions", "/chat/completions")

    def dumps(self, obj: Any) -> bytes:
        return json.dumps(obj).encode()

    def _base_headers(self, content_type: str) -> list[tuple[str, str]]:
        return [("Server", MLX_SERVER), ("Date", _now_http()), ("Content-type", content_type)]

    def _cors(self) -> list[tuple[str, str]]:
        return [
            ("Access-Control-Allow-Origin", "*"),
            ("Access-Control-Allow-Methods", "*"),
            ("Access-Control-Allow-Headers", "*"),
        ]

    def fixed_headers(self, content_type: str, length: int, error: bool) -> list[tuple[str, str]]:
        headers = self._base_headers(content_type) + self._cors()
        if not error:  # only a finished completion gets a Content-Length
            headers.append(("Content-Length", str(length)))
        return headers

    def stream_headers(self) -> list[tuple[str, str]]:
        return [
            *self._base_headers("text/event-stream"),
            ("Cache-Control", "no-cache"),
            *self._cors(),
        ]

    def completion_id(self) -> str:
        return f"chatcmpl-{uuid.uuid4()}"

    def call_id(self, index: int) -> str:
        return str(uuid.uuid4())

    def error_json(self, status: int, message: str) -> Mapping[str, Any]:
        return {"error": message}

    def not_found(self, method: str, path: str) -> Reply:
        return error_reply(404, b"Not Found", "application/json")

    def health(self) -> Reply | None:
        return Reply(error_body=b'{"status": "ok"}')

    def models(self, path: str) -> Reply:
        data = [{"id": self.be.model, "object": "model", "created": int(time.time())}]
        return Reply(error_body={"object": "list", "data": data})

    def model_echo(self, body: Mapping[str, Any]) -> str:
        model = body.get("model", "default_model")
        return model if isinstance(model, str) else "default_model"

    def check(self, req: Request) -> Reply | None:
        if req.json is _INVALID:
            try:
                json.loads(req.body.decode(errors="replace"))
            except json.JSONDecodeError as e:
                return mlx_lm_error(f"Invalid JSON in request body: {e}", 400)
        body = req.json
        if not isinstance(body, dict):
            return mlx_lm_error("Request should be a JSON dictionary", 400)
        problem = _mlx_validate_params(body)
        if problem is not None:
            return mlx_lm_error(problem, 400)
        if "messages" not in body:
            return mlx_lm_error("Request did not contain messages", 400)
        model = body.get("model", "default_model")
        if self.be.strict_model and model not in ("default_model", self.be.model):
            self.be._drop_model(str(model))
            return mlx_lm_error(MLX_OFFLINE_ERROR)
        messages = body["messages"]
        if not messages:
            return mlx_lm_error(
                "Cannot apply chat template to an empty conversation. Provide at least one message."
            )
        for m in messages if isinstance(messages, list) else []:
            if not isinstance(m, dict):
                continue
            content = m.get("content")
            if isinstance(content, list) and any(
                not isinstance(p, dict) or p.get("type") != "text" for p in content
            ):
                return mlx_lm_error("Only 'text' content type is supported.")
            for tc in m.get("tool_calls") or []:
                args = tc.get("function", {}).get("arguments") if isinstance(tc, dict) else None
                if isinstance(args, str):
                    try:
                        json.loads(args)
                    except json.JSONDecodeError as e:
                        return mlx_lm_error(str(e))
        return None

    def _chunk(self, plan: _Plan, delta: Mapping[str, Any], finish: str | None) -> dict[str, Any]:
        return {
            "id": plan.cid,
            "system_fingerprint": MLX_FINGERPRINT,
            "object": "chat.completion.chunk",
            "model": plan.model,
            "created": plan.created,
            "choices": [{"index": 0, "finish_reason": finish, "delta": delta}],
        }

    def _usage(self, plan: _Plan) -> dict[str, Any]:
        return {
            "prompt_tokens": plan.prompt_tokens,
            "completion_tokens": plan.completion_tokens,
            "total_tokens": plan.prompt_tokens + plan.completion_tokens,
            "prompt_tokens_details": {"cached_tokens": plan.cached_tokens or 0},
        }

    def _call(self, call: _Call, stream: bool) -> dict[str, Any]:
        out: dict[str, Any] = {
            "function": {"name": call.name, "arguments": call.arguments},
            "type": "function",
            "id": call.id,
        }
        if stream:
            out["index"] = call.index
        return out

    def stream_events(self, plan: _Plan) -> list[Event]:
        role = {"role": "assistant"}
        n = plan.reply.keepalives if plan.reply.keepalives is not None else 1
        events: list[Event] = [
            ("comment", f": keepalive {i}/{n}\n\n".encode()) for i in range(1, n + 1)
        ]
        deltas: list[dict[str, Any]] = []
        if self.reasoning_field is None:
            deltas += [{**role, "content": p} for p in self.reasoning_inline(plan)]
        else:
            deltas += [{**role, self.reasoning_field: p} for p in plan.reasoning]
        deltas += [{**role, "content": p} for p in plan.text]
        deltas += [{**role, "tool_calls": [self._call(c, True)]} for c in plan.calls]
        events += [("data", self.sse(self._chunk(plan, d, None))) for d in deltas]
        events.append(("data", self.sse(self._chunk(plan, role, plan.finish))))
        options = plan.request.json.get("stream_options")
        if isinstance(options, dict) and "include_usage" not in options:
            return events  # server.py indexes stream_options["include_usage"]: KeyError, cut
        if plan.include_usage:
            usage = self._chunk(plan, {}, None)
            usage["object"] = "chat.completion"
            usage["choices"] = []
            usage["usage"] = self._usage(plan)
            events.append(("data", self.sse(usage)))
        events.append(("done", self.done()))
        return events

    def completion(self, plan: _Plan) -> dict[str, Any]:
        msg = self.message(plan)
        if plan.calls:  # mlx-lm's own key order, without `index`
            msg["tool_calls"] = [self._call(c, False) for c in plan.calls]
        out = self._chunk(plan, {}, plan.finish)
        out["object"] = "chat.completion"
        out["choices"] = [{"index": 0, "finish_reason": plan.finish, "message": msg}]
        out["usage"] = self._usage(plan)
        return out


def _mlx_validate_params(body: Mapping[str, Any]) -> str | None:
    """mlx-lm's `validate_model_parameters`, with 0.32.2's `max_tokens >= 1` (fixture 19)."""
    max_tokens = body.get("max_completion_tokens")
    if max_tokens is None:
        max_tokens = body.get("max_tokens", 512)
    num: tuple[type, ...] = (float, int)
    checks: list[tuple[str, Any, type | tuple[type, ...], float | None, float | None]] = [
        ("stream", body.get("stream", False), bool, None, None),
        ("max_tokens", max_tokens, int, 1, None),
        ("temperature", body.get("temperature", 0.0), num, 0, None),
        ("top_p", body.get("top_p", 1.0), num, 0, 1),
        ("top_k", body.get("top_k", 0), int, 0, None),
        ("min_p", body.get("min_p", 0.0), num, 0, 1),
        ("repetition_penalty", body.get("repetition_penalty", 0.0), num, 0, None),
        ("presence_penalty", body.get("presence_penalty", 0.0), num, None, None),
        ("frequency_penalty", body.get("frequency_penalty", 0.0), num, None, None),
        ("logprobs", body.get("logprobs", False), bool, None, None),
        ("requested_model", body.get("model", "default_model"), str, None, None),
    ]
    for name, value, kind, lo, hi in checks:
        if not isinstance(value, kind):
            allowed = tuple(k.__name__ for k in kind) if isinstance(kind, tuple) else kind.__name__
            return f"{name} must be of type {allowed}"
        number: Any = value
        if lo is not None and number < lo:
            return f"{name} must be at least {lo}"
        if hi is not None and number > hi:
            return f"{name} must be at most {hi}"
    top_logprobs = body.get("top_logprobs", -1)
    if not isinstance(top_logprobs, int):
        return "top_logprobs must be of type int"
    if top_logprobs != -1 and not 0 <= top_logprobs <= 11:
        return (
            "top_logprobs must be at most 11"
            if top_logprobs > 11
            else "top_logprobs must be at least 0"
        )
    if body.get("seed") is not None and not isinstance(body.get("seed"), int):
        return "seed must be of type int"
    if body.get("logit_bias") is not None and not isinstance(body.get("logit_bias"), dict):
        return "logit_bias must be of type dict"
    return None


class _TextgenAbort(Exception):
    """An mlx-textgen `chat_generate` error: 500 `{"detail"}`, or a cut stream."""


class _MlxTextgen(_DialectBase):
    """mlx-textgen 0.2.1 (FastAPI/uvicorn): chunked SSE, every delta serialises role/content/
    reasoning_content/tool_calls, usage inside the finish chunk, `data: [DONE]` with no blank
    line, tool calls at index 0 with `call_<8 hex>` ids, and the 0.2.1 bug that a stream with
    tools (tool_choice auto) drops the call and the finish chunk. Shapes from fixtures tg01–tg08
    and the sdist's server.py / engine.py / chat_utils.py."""

    name = "mlx-textgen"
    reasoning_field = None  # inline <think> unless --use-reasoning-content

    def done(self) -> bytes:
        return b"data: [DONE]"

    def call_id(self, index: int) -> str:
        return "call_" + uuid.uuid4().hex[:8]

    def fixed_headers(self, content_type: str, length: int, error: bool) -> list[tuple[str, str]]:
        if content_type == "application/json; charset=utf-8":
            content_type = "application/json"
        return super().fixed_headers(content_type, length, error)

    def error_json(self, status: int, message: str) -> Mapping[str, Any]:
        return {"detail": message}

    def models(self, path: str) -> Reply:
        info = {
            "id": self.be.model,
            "object": "model",
            "created": int(time.time()),
            "owned_by": None,
            "permission": [],
            "root": "root",
            "info": {"tokenizer_id": self.be.model, "tokenizer_kwargs": None},
        }
        if path.rstrip("/") != "/v1/models":
            wanted = path.rstrip("/").removeprefix("/v1/models/")
            if wanted != self.be.model:
                return error_reply(404, {"detail": f'Model "{wanted}" does not exist.'})
            return Reply(error_body=info)
        return Reply(error_body={"object": "list", "data": [info]})

    def check(self, req: Request) -> Reply | None:
        body = req.json
        if not isinstance(body, dict):  # request.json() or content.get() raises: plain 500
            return error_reply(500, b"Internal Server Error", "text/plain; charset=utf-8")
        model = body.get("model")
        if self.be.strict_model and model != self.be.model:
            return textgen_error(f'Model "{model}" does not exist.')
        try:
            _textgen_chat_generate_checks(body)
        except _TextgenAbort as e:
            if body.get("stream"):
                # gen() raises after StreamingResponse sent its headers: uvicorn drops the socket
                return Reply(fault="die_mid_stream", fault_after=0)
            return textgen_detail(str(e))
        return None

    def _delta(self, **kw: Any) -> dict[str, Any]:
        delta: dict[str, Any] = {
            "role": None,
            "content": None,
            "reasoning_content": None,
            "tool_calls": [],
        }
        delta.update(kw)
        return delta

    def _chunk(
        self, plan: _Plan, delta: Mapping[str, Any], finish: str | None, usage: Any = None
    ) -> dict[str, Any]:
        return {
            "id": plan.cid,
            "object": "chat.completion.chunk",
            "created": plan.created,
            "model": plan.model,
            "choices": [{"index": 0, "finish_reason": finish, "logprobs": None, "delta": delta}],
            "usage": usage,
        }

    def _usage(self, plan: _Plan) -> dict[str, Any]:
        return {
            "prompt_tokens": plan.prompt_tokens,
            "completion_tokens": plan.completion_tokens,
            "total_tokens": plan.prompt_tokens + plan.completion_tokens,
            "completion_tokens_details": {"reasoning_tokens": plan.reasoning_tokens},
        }

    def _call(self, call: _Call) -> dict[str, Any]:
        return {
            "index": 0,
            "id": call.id,
            "function": {"name": call.name, "arguments": call.arguments},
            "type": "function",
        }

    def _drops_calls(self, plan: _Plan) -> bool:
        choice = plan.tool_choice
        auto = choice is None or choice == "auto"
        return (
            self.be.textgen_stream_tool_bug and plan.tools_requested and auto and bool(plan.calls)
        )

    def stream_events(self, plan: _Plan) -> list[Event]:
        deltas = [self._delta(role="assistant", content="")]
        if self.be._reasoning_field() is None:
            deltas += [self._delta(content=p) for p in self.reasoning_inline(plan)]
        else:
            deltas += [self._delta(content="", reasoning_content=p) for p in plan.reasoning]
        deltas += [self._delta(content=p) for p in plan.text]
        events: list[Event] = [("data", self.sse(self._chunk(plan, d, None))) for d in deltas]
        if not self._drops_calls(plan):
            events += [
                ("data", self.sse(self._chunk(plan, self._delta(tool_calls=[self._call(c)]), None)))
                for c in plan.calls
            ]
            finish = self._chunk(plan, self._delta(), plan.finish, self._usage(plan))
            events.append(("data", self.sse(finish)))
        events.append(("done", self.done()))
        return events

    def completion(self, plan: _Plan) -> dict[str, Any]:
        text = plan.full_text
        reasoning: str | None = None
        if self.be._reasoning_field() is None:
            text = "".join(self.reasoning_inline(plan)) + text
        else:
            reasoning = plan.full_reasoning or None
        message = {
            "role": "assistant",
            "content": text or None,
            "reasoning_content": reasoning,
            "tool_calls": [self._call(c) for c in plan.calls],
        }
        return {
            "id": plan.cid,
            "object": "chat.completion",
            "created": plan.created,
            "model": plan.model,
            "choices": [
                {"index": 0, "message": message, "finish_reason": plan.finish, "logprobs": None}
            ],
            "usage": self._usage(plan),
        }


def _pydantic_error(model: str, message: str, value: Any) -> str:
    shown = repr(value)
    if len(shown) > 60:
        shown = shown[:27] + "..." + shown[-27:]
    return (
        f"1 validation error for {model}\n  Value error, {message} "
        f"[type=value_error, input_value={shown}, input_type={type(value).__name__}]\n"
        "    For further information visit https://errors.pydantic.dev/2.11/v/value_error"
    )


def _textgen_chat_generate_checks(body: Mapping[str, Any]) -> None:
    """What mlx-textgen 0.2.1's `chat_generate` / `ChatMessage` / `_validate_msg_seq` reject,
    in their order; raises `_TextgenAbort` with the text it would put in `detail`."""
    if "messages" not in body:
        raise _TextgenAbort(
            "InferenceEngine.chat_generate() missing 1 required positional argument: 'messages'"
        )
    for tool in body.get("tools") or []:
        params = tool.get("function", {}).get("parameters") if isinstance(tool, dict) else None
        if not (
            isinstance(params, dict)
            and params.get("type") == "object"
            and isinstance(params.get("properties"), dict)
        ):
            raise _TextgenAbort(
                "1 validation error for OpenAIToolSchema\nfunction.parameters\n"
                "  parameters must be {'type': 'object', 'properties': {...}}"
            )
    if body.get("reasoning_effort"):
        raise _TextgenAbort("'dict' object is not callable")  # rmap(reasoning_effort)
    messages = body["messages"]
    if not messages:
        raise _TextgenAbort("list index out of range")
    roles = []
    for m in messages:
        role = m.get("role") if isinstance(m, dict) else None
        if role not in ("system", "developer", "user", "assistant", "tool"):
            raise _TextgenAbort(_pydantic_error("ChatMessage", f"invalid role {role!r}", m))
        assert isinstance(m, dict)
        role = "system" if role == "developer" else role
        content = m.get("content")
        if isinstance(content, list) and all(
            isinstance(p, dict) and p.get("type") == "text" for p in content
        ):
            content = "\n".join(str(p.get("text", "")) for p in content)
        calls = m.get("tool_calls") or None
        for tc in calls or []:
            args = str(tc.get("function", {}).get("arguments", "")).strip()
            if args:
                try:
                    json.loads(args)
                except json.JSONDecodeError as e:
                    raise _TextgenAbort(str(e)) from e
        if role == "assistant":
            if content is not None and not isinstance(content, str):
                raise _TextgenAbort(
                    _pydantic_error("ChatMessage", '"assistant" content must be string.', m)
                )
            if content is None and not calls:
                raise _TextgenAbort(
                    _pydantic_error(
                        "ChatMessage", 'No "tool_calls" or "content" for the assistant message.', m
                    )
                )
            if content is not None and calls:
                raise _TextgenAbort(
                    _pydantic_error("ChatMessage", "Cannot have both tool_calls and content.", m)
                )
        elif role != "user":
            if content is None:
                raise _TextgenAbort(
                    _pydantic_error("ChatMessage", f'Content cannot be None for role "{role}".', m)
                )
            if isinstance(content, list):
                raise _TextgenAbort(
                    _pydantic_error(
                        "ChatMessage", f'Content can only be string for role "{role}".', m
                    )
                )
        roles.append((role, content))
    systems = sum(1 for r, _ in roles if r == "system")
    if systems > 1:
        raise _TextgenAbort("Cannot have more than one system messages.")
    if systems == 1 and roles[0][0] != "system":
        raise _TextgenAbort("If system messages is provided, it must be the first message.")
    if systems == 1 and len(roles) < 2:
        raise _TextgenAbort("Cannot have a messages list with only a system message.")
    if any(isinstance(c, list) for _, c in roles):
        raise _TextgenAbort("Text only template only support string contents.")


class _LmStudio(_DialectBase):
    """LM Studio (Express): chunked SSE, role in the first delta only, tool calls streamed as a
    start delta (numeric-looking id, name, arguments "") then argument fragments, usage only
    with include_usage. From its docs (protocol-notes §G.2); no capture exists."""

    name = "lmstudio"
    reasoning_field = "reasoning_content"

    def fixed_headers(self, content_type: str, length: int, error: bool) -> list[tuple[str, str]]:
        return [
            ("X-Powered-By", "Express"),
            ("Access-Control-Allow-Origin", "*"),
            ("Access-Control-Allow-Headers", "*"),
            ("Content-Type", content_type),
            ("Content-Length", str(length)),
            ("Date", _now_http()),
            ("Connection", "keep-alive"),
            ("Keep-Alive", "timeout=5"),
        ]

    def stream_headers(self) -> list[tuple[str, str]]:
        return [
            ("X-Powered-By", "Express"),
            ("Access-Control-Allow-Origin", "*"),
            ("Access-Control-Allow-Headers", "*"),
            ("Content-Type", "text/event-stream"),
            ("Cache-Control", "no-cache"),
            ("Date", _now_http()),
            ("Connection", "keep-alive"),
            ("Keep-Alive", "timeout=5"),
            ("Transfer-Encoding", "chunked"),
        ]

    def completion_id(self) -> str:
        return "chatcmpl-" + _alnum(22)

    def call_id(self, index: int) -> str:
        return str(random.randint(100_000_000, 999_999_999))

    def error_json(self, status: int, message: str) -> Mapping[str, Any]:
        return {"error": message}

    def not_found(self, method: str, path: str) -> Reply:
        return error_reply(404, {"error": f"Unexpected endpoint or method. ({method} {path})"})

    def models(self, path: str) -> Reply:
        if path.startswith("/api/v0/models"):  # the native API reports context lengths
            entry: dict[str, Any] = {
                "id": self.be.model,
                "object": "model",
                "type": "llm",
                "publisher": "scripted",
                "arch": "qwen3",
                "compatibility_type": "gguf",
                "quantization": "Q4_K_M",
                "state": "loaded",
            }
            if self.be.context_length is not None:
                entry["max_context_length"] = self.be.context_length
                entry["loaded_context_length"] = self.be.context_length
            if path.rstrip("/") != "/api/v0/models":
                return Reply(error_body=entry)
            return Reply(error_body={"object": "list", "data": [entry]})
        data = [{"id": self.be.model, "object": "model", "owned_by": "organization_owner"}]
        return Reply(error_body={"data": data, "object": "list"})

    def check(self, req: Request) -> Reply | None:
        problem = super().check(req)
        if problem is not None:
            return problem
        model = req.model
        if self.be.strict_model and model is not None and model != self.be.model:
            return lmstudio_model_not_found(str(model))
        ctx = self.be.context_length
        if ctx is not None:
            prompt = self.be.token_counter(req)
            if prompt > ctx:
                return lmstudio_prompt_too_long(prompt, ctx)
        return None

    def chunk(self, plan: _Plan, delta: Mapping[str, Any], finish: str | None) -> dict[str, Any]:
        return {
            "id": plan.cid,
            "object": "chat.completion.chunk",
            "created": plan.created,
            "model": plan.model,
            "system_fingerprint": plan.model,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }

    def usage_chunk(self, plan: _Plan) -> dict[str, Any]:
        out = self.chunk(plan, {}, None)
        out["choices"] = []
        out["usage"] = self.usage_obj(plan)
        return out

    def message(self, plan: _Plan) -> dict[str, Any]:
        msg = super().message(plan)
        if plan.calls and msg["content"] is None:
            del msg["content"]  # as in the docs' tool-call example
        return msg

    def completion(self, plan: _Plan) -> dict[str, Any]:
        return {
            "id": plan.cid,
            "object": "chat.completion",
            "created": plan.created,
            "model": plan.model,
            "choices": [
                {
                    "index": 0,
                    "logprobs": None,
                    "finish_reason": plan.finish,
                    "message": self.message(plan),
                }
            ],
            "usage": self.usage_obj(plan),
            "stats": {},
            "system_fingerprint": plan.model,
        }


class _Vllm(_DialectBase):
    """vLLM (FastAPI/uvicorn): OpenAI-standard chunks, `reasoning` field, a first tool delta
    with `chatcmpl-tool-` id and the name, then argument fragments; 400 for context overflow."""

    name = "vllm"
    reasoning_field = "reasoning"

    def fixed_headers(self, content_type: str, length: int, error: bool) -> list[tuple[str, str]]:
        return super().fixed_headers(content_type.replace("; charset=utf-8", ""), length, error)

    def call_id(self, index: int) -> str:
        return "chatcmpl-tool-" + uuid.uuid4().hex

    def error_json(self, status: int, message: str) -> Mapping[str, Any]:
        kind = {400: "BadRequestError", 404: "NotFoundError"}.get(status, "InternalServerError")
        return {"error": {"message": message, "type": kind, "param": None, "code": status}}

    def health(self) -> Reply | None:
        return Reply(error_body=b"")

    def models(self, path: str) -> Reply:
        entry: dict[str, Any] = {
            "id": self.be.model,
            "object": "model",
            "created": int(time.time()),
            "owned_by": "vllm",
            "root": self.be.model,
            "parent": None,
        }
        if self.be.context_length is not None:
            entry["max_model_len"] = self.be.context_length
        return Reply(error_body={"object": "list", "data": [entry]})

    def check(self, req: Request) -> Reply | None:
        problem = super().check(req)
        if problem is not None:
            return problem
        model = req.model
        if self.be.strict_model and model != self.be.model:
            return error_reply(404, self.error_json(404, f"The model `{model}` does not exist."))
        ctx = self.be.context_length
        if ctx is not None:
            prompt = self.be.token_counter(req)
            body = req.json
            completion = body.get("max_completion_tokens") or body.get("max_tokens") or 0
            if not isinstance(completion, int):
                completion = 0
            if prompt + completion > ctx:
                return vllm_context_overflow(ctx, prompt, completion)
        return None

    def first_delta(self) -> dict[str, Any] | None:
        return {"role": "assistant", "content": ""}

    def call_start(self, call: _Call) -> dict[str, Any]:
        return {
            "id": call.id,
            "type": "function",
            "index": call.index,
            "function": {"name": call.name},
        }

    def usage_obj(self, plan: _Plan) -> dict[str, Any]:
        usage: dict[str, Any] = {
            "prompt_tokens": plan.prompt_tokens,
            "total_tokens": plan.prompt_tokens + plan.completion_tokens,
            "completion_tokens": plan.completion_tokens,
        }
        if plan.cached_tokens is not None:
            usage["prompt_tokens_details"] = {"cached_tokens": plan.cached_tokens}
        return usage


class _LlamaCpp(_DialectBase):
    """llama.cpp `llama-server` (cpp-httplib, nlohmann ordered_json): `choices` first in each
    chunk, `reasoning_content`, tool-call fragments, `{"error": {"code", "message", "type"}}`."""

    name = "llamacpp"
    reasoning_field = "reasoning_content"

    def fixed_headers(self, content_type: str, length: int, error: bool) -> list[tuple[str, str]]:
        return [
            ("Access-Control-Allow-Origin", ""),
            ("Content-Length", str(length)),
            ("Content-Type", content_type),
            ("Keep-Alive", "timeout=5, max=100"),
            ("Server", "llama.cpp"),
        ]

    def stream_headers(self) -> list[tuple[str, str]]:
        return [
            ("Access-Control-Allow-Origin", ""),
            ("Content-Type", "text/event-stream"),
            ("Keep-Alive", "timeout=5, max=100"),
            ("Server", "llama.cpp"),
            ("Transfer-Encoding", "chunked"),
        ]

    def completion_id(self) -> str:
        return "chatcmpl-" + _alnum(32, string.ascii_letters + string.digits)

    def call_id(self, index: int) -> str:
        return _alnum(32, string.ascii_letters + string.digits)

    def error_json(self, status: int, message: str) -> Mapping[str, Any]:
        kind = {400: "invalid_request_error", 404: "not_found_error"}.get(status, "server_error")
        return {"error": {"code": status, "message": message, "type": kind}}

    def not_found(self, method: str, path: str) -> Reply:
        return error_reply(404, self.error_json(404, "File Not Found"))

    def health(self) -> Reply | None:
        return Reply(error_body={"status": "ok"})

    def models(self, path: str) -> Reply:
        meta: dict[str, Any] = {"vocab_type": 2, "n_vocab": 151936}
        if self.be.context_length is not None:
            meta["n_ctx_train"] = self.be.context_length
        data = [
            {
                "id": self.be.model,
                "object": "model",
                "created": int(time.time()),
                "owned_by": "llamacpp",
                "meta": meta,
            }
        ]
        return Reply(
            error_body={
                "models": [{"name": self.be.model, "model": self.be.model}],
                "object": "list",
                "data": data,
            }
        )

    def check(self, req: Request) -> Reply | None:
        if req.json is _INVALID:
            return error_reply(
                500, self.error_json(500, "[json.exception.parse_error.101] parse error")
            )
        problem = super().check(req)
        if problem is not None:
            return problem
        ctx = self.be.context_length
        if ctx is not None:
            prompt = self.be.token_counter(req)
            if prompt > ctx:
                return llamacpp_context_overflow(prompt, ctx)
        return None

    def chunk(self, plan: _Plan, delta: Mapping[str, Any], finish: str | None) -> dict[str, Any]:
        return {
            "choices": [{"finish_reason": finish, "index": 0, "delta": delta}],
            "created": plan.created,
            "id": plan.cid,
            "model": plan.model,
            "system_fingerprint": "b6000-scripted",
            "object": "chat.completion.chunk",
        }

    def usage_chunk(self, plan: _Plan) -> dict[str, Any]:
        out = self.chunk(plan, {}, None)
        out["choices"] = []
        out["usage"] = self.usage_obj(plan)
        return out

    def first_delta(self) -> dict[str, Any] | None:
        return {"role": "assistant", "content": None}


_DIALECT_CLASSES: Final[Mapping[str, type[_DialectBase]]] = {
    "mlx-lm": _MlxLm,
    "mlx-textgen": _MlxTextgen,
    "lmstudio": _LmStudio,
    "vllm": _Vllm,
    "llamacpp": _LlamaCpp,
}

_INVALID: Final[Any] = object()
"""`Request.json` sentinel while parsing: the body was present but not valid JSON (the
recorded request carries None)."""


# --------------------------------------------------------------------------- the server


class ScriptedBackend:
    """A scripted OpenAI-compatible server on 127.0.0.1 (ephemeral port) in a thread.

    `model`: the served model name (mlx-lm also accepts an omitted model and "default_model";
    with `strict_model` other names are rejected in the dialect's way, and mlx-lm records that
    it dropped its loaded model). `context_length`: reported by /v1/models where the dialect
    does, and enforced (LM Studio 500, vLLM/llama.cpp 400) using `token_counter`.
    `reasoning_field`: where reasoning goes ("default": the dialect's own field; None: inline
    `<think>` in content, as mlx-textgen without --use-reasoning-content).
    `validate=False` turns off the dialect's request checks (rejections consume no reply).
    `textgen_stream_tool_bug`: mlx-textgen 0.2.1 drops tool calls (and the finish chunk) from
    streams when `tools` are sent with tool_choice auto.
    `responder(request)` is asked when the queue is empty (None: use `default_reply`); it runs
    on the server's thread, so it must not block.
    `token_counter(request)` gives the prompt size for usage and context checks (default:
    body length // 4).
    """

    def __init__(
        self,
        dialect: Dialect = "mlx-lm",
        *,
        model: str = "scripted",
        context_length: int | None = None,
        strict_model: bool = True,
        validate: bool = True,
        reasoning_field: str | None = "default",
        textgen_stream_tool_bug: bool = True,
        default_reply: Reply | None = None,
        responder: Responder | None = None,
        token_counter: Callable[[Request], int] | None = None,
    ) -> None:
        if dialect not in _DIALECT_CLASSES:
            raise ValueError(f"unknown dialect {dialect!r}; one of {', '.join(DIALECTS)}")
        self.dialect: Dialect = dialect
        self.model = model
        self.context_length = context_length
        self.strict_model = strict_model
        self.validate = validate
        self.textgen_stream_tool_bug = textgen_stream_tool_bug
        self.default_reply = default_reply or Reply(text=DEFAULT_PIECES)
        self.responder: Responder | None = responder
        self.token_counter: Callable[[Request], int] = token_counter or (lambda r: len(r.body) // 4)
        self._d = _DIALECT_CLASSES[dialect](self)
        if reasoning_field != "default":
            self._d.reasoning_field = reasoning_field
        self._cond = threading.Condition()
        self._replies: deque[Reply] = deque()
        self._requests: list[Request] = []
        self._connections: list[ConnectionRecord] = []
        self._conns: dict[int, _Conn] = {}
        self._dropped: list[str] = []
        self._errors: list[str] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self.port = 0

    # lifecycle ------------------------------------------------------------------------
    def start(self) -> ScriptedBackend:
        """Start the server thread; returns once the port is bound."""
        if self._thread is not None:
            return self
        loop = asyncio.new_event_loop()
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                self._server = loop.run_until_complete(
                    loop.create_server(lambda: _Conn(self), "127.0.0.1", 0)
                )
                self.port = self._server.sockets[0].getsockname()[1]
            except BaseException as e:  # surfaced in start()
                failure.append(e)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()

        self._loop = loop
        self._thread = threading.Thread(target=run, name=f"scripted-{self.dialect}", daemon=True)
        self._thread.start()
        ready.wait(10)
        if failure:
            self._thread.join(5)
            self._thread = None
            raise failure[0]
        return self

    def close(self) -> None:
        """Close every connection (hanging ones included), stop the loop, join the thread."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        if loop.is_running():
            fut = asyncio.run_coroutine_threadsafe(self._shutdown(), loop)
            with contextlib.suppress(Exception):
                fut.result(5)
            loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        self._thread = None
        self._loop = None

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        conns = list(self._conns.values())
        for conn in conns:
            conn.abort()
        tasks = [c.task for c in conns if c.task is not None and not c.task.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def __enter__(self) -> ScriptedBackend:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # addresses ------------------------------------------------------------------------
    @property
    def root_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """The OpenAI base URL, with `/v1`."""
        return self.root_url + "/v1"

    # scripting -------------------------------------------------------------------------
    def reply(self, *replies: Reply) -> None:
        """Queue replies for the next chat requests, consumed in order. Requests the
        dialect rejects (validation errors) consume nothing."""
        with self._cond:
            self._replies.extend(replies)

    @property
    def pending_replies(self) -> int:
        with self._cond:
            return len(self._replies)

    def _next_reply(self, req: Request) -> Reply:
        with self._cond:
            if self._replies:
                return self._replies.popleft()
        if self.responder is not None:
            chosen = self.responder(req)
            if chosen is not None:
                return chosen
        return self.default_reply

    # recording ---------------------------------------------------------------------------
    @property
    def requests(self) -> list[Request]:
        with self._cond:
            return list(self._requests)

    @property
    def connections(self) -> list[ConnectionRecord]:
        with self._cond:
            return list(self._connections)

    @property
    def dropped_models(self) -> list[str]:
        """Model names that made mlx-lm unload its model (the next request reloads it)."""
        with self._cond:
            return list(self._dropped)

    @property
    def errors(self) -> list[str]:
        """Internal errors of the double itself (a test may assert this stays empty)."""
        with self._cond:
            return list(self._errors)

    def open_connections(self) -> int:
        with self._cond:
            return sum(1 for c in self._connections if c.closed_at is None)

    def _wait(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        with self._cond:
            if not self._cond.wait_for(predicate, timeout):
                raise TimeoutError(
                    f"scripted backend: timed out after {timeout}s waiting for {what}"
                )

    def wait_for_request(self, n: int = 1, timeout: float = 5.0) -> Request:
        """Wait until `n` requests have arrived; return the n-th (1-based)."""
        self._wait(lambda: len(self._requests) >= n, timeout, f"request #{n}")
        with self._cond:
            return self._requests[n - 1]

    def wait_for_connections(self, n: int = 1, timeout: float = 5.0) -> ConnectionRecord:
        """Wait until `n` connections were opened; return the n-th (1-based)."""
        self._wait(lambda: len(self._connections) >= n, timeout, f"connection #{n}")
        with self._cond:
            return self._connections[n - 1]

    def wait_closed(self, i: int = -1, timeout: float = 5.0) -> ConnectionRecord:
        """Wait until connection `i` (0-based index, -1: the latest) is closed."""

        def closed() -> bool:
            if not self._connections:
                return False
            return self._connections[i].closed_at is not None

        self._wait(closed, timeout, f"connection {i} to close")
        with self._cond:
            return self._connections[i]

    # called on the loop thread --------------------------------------------------------
    def _open_connection(self, conn: _Conn) -> int:
        with self._cond:
            index = len(self._connections)
            self._connections.append(ConnectionRecord(index=index, opened_at=time.monotonic()))
            self._conns[index] = conn
            self._cond.notify_all()
            return index

    def _close_connection(self, index: int, by: Literal["peer", "server"], early: bool) -> None:
        with self._cond:
            rec = self._connections[index]
            self._connections[index] = replace(
                rec, closed_at=time.monotonic(), closed_by=by, peer_closed_early=early
            )
            self._conns.pop(index, None)
            self._cond.notify_all()

    def _record_request(self, req: Request) -> None:
        with self._cond:
            self._requests.append(req)
            rec = self._connections[req.connection]
            self._connections[req.connection] = replace(rec, requests=(*rec.requests, req.index))
            self._cond.notify_all()

    def _response_done(self, conn: _Conn) -> None:
        with self._cond:
            rec = self._connections[conn.index]
            self._connections[conn.index] = replace(
                rec, responses_completed=rec.responses_completed + 1
            )
            self._cond.notify_all()

    def _drop_model(self, name: str) -> None:
        with self._cond:
            self._dropped.append(name)

    def _reasoning_field(self) -> str | None:
        return self._d.reasoning_field

    # HTTP ------------------------------------------------------------------------------
    async def _serve(self, conn: _Conn) -> None:
        try:
            while not conn.gone.is_set():
                keep = await self._one_exchange(conn)
                if not keep:
                    break
        except _PeerGone:
            pass
        except asyncio.CancelledError:
            raise
        except Exception as e:  # a bug in the double: record it, drop the connection
            with self._cond:
                self._errors.append(f"{type(e).__name__}: {e}")
        finally:
            conn.in_request = False
            if not conn.gone.is_set():
                conn.close()

    async def _one_exchange(self, conn: _Conn) -> bool:
        head = await conn.read_until(b"\r\n\r\n")
        if head is None:
            return False
        conn.in_request = True
        lines = head.decode("latin-1").split("\r\n")
        try:
            method, target, version = lines[0].split(" ", 2)
        except ValueError:
            await self._send_fixed(conn, error_reply(400, b"Bad Request", "text/plain"), True)
            return False
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if ":" in line:
                k, v = line.split(":", 1)
                headers[k.strip().lower()] = v.strip()
        d = self._d
        if d.keep_alive and headers.get("expect", "").lower() == "100-continue":
            await conn.send(b"HTTP/1.1 100 Continue\r\n\r\n")  # mlx-lm (HTTP/1.0) never does
        body = b""
        length_required = False
        if "content-length" in headers:
            got = await conn.read_exactly(int(headers["content-length"] or 0))
            if got is None:
                return False
            body = got
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            if isinstance(d, _MlxLm) and method == "POST":
                length_required = True  # answered before reading the body (fixture 22)
            else:
                got = await self._read_chunked(conn)
                if got is None:
                    return False
                body = got
        elif isinstance(d, _MlxLm) and method == "POST":
            length_required = True
        parsed: Any = _INVALID if method == "POST" and not body else None
        if body:
            try:
                parsed = json.loads(body)
            except (ValueError, UnicodeDecodeError):
                parsed = _INVALID
        with self._cond:
            index = len(self._requests)
        req = Request(
            index=index,
            connection=conn.index,
            method=method,
            path=target,
            version=version,
            headers=headers,
            body=body,
            raw=head + body,
            json=None if parsed is _INVALID else parsed,
            received_at=time.monotonic(),
        )
        self._record_request(req)
        keep = (
            d.keep_alive
            and version == "HTTP/1.1"
            and headers.get("connection", "").lower() != "close"
        )
        checked = replace(req, json=parsed)
        keep = await self._route(conn, checked, length_required, keep)
        conn.in_request = False
        self._response_done(conn)
        if not keep:
            conn.close()
        return keep

    async def _read_chunked(self, conn: _Conn) -> bytes | None:
        out = bytearray()
        while True:
            size_line = await conn.read_until(b"\r\n")
            if size_line is None:
                return None
            size = int(size_line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                await conn.read_until(b"\r\n")
                return bytes(out)
            data = await conn.read_exactly(size + 2)
            if data is None:
                return None
            out += data[:-2]

    async def _route(self, conn: _Conn, req: Request, length_required: bool, keep: bool) -> bool:
        d = self._d
        path = req.path if isinstance(d, _MlxLm) else req.path.split("?", 1)[0]
        if req.method == "POST" and path in d.chat_paths:
            if length_required:
                return await self._send_fixed(
                    conn, mlx_lm_error("Content-Length header is required", 411), keep
                )
            problem = d.check(req) if self.validate else None
            if problem is None and not isinstance(req.json, dict):
                problem = error_reply(400, d.error_json(400, "Invalid JSON in request body"))
            if problem is not None:
                return await self._render(conn, req, problem, keep)
            return await self._render(conn, req, self._next_reply(req), keep)
        if req.method == "OPTIONS":
            return await self._send_fixed(conn, Reply(status=204, error_body=b""), keep)
        if req.method == "GET" and (
            path.startswith("/v1/models") or path.startswith("/api/v0/models")
        ):
            if path.startswith("/api/v0") and not isinstance(d, _LmStudio):
                return await self._send_fixed(conn, d.not_found(req.method, path), keep)
            return await self._send_fixed(conn, d.models(path), keep)
        if req.method == "GET" and path == "/health":
            answer = d.health()
            if answer is not None:
                return await self._send_fixed(conn, answer, keep)
        return await self._send_fixed(conn, d.not_found(req.method, path), keep)

    def _encode_body(self, reply: Reply) -> tuple[bytes, str]:
        body = reply.error_body
        if isinstance(body, bytes):
            return body, reply.content_type or "application/json"
        if isinstance(body, str):
            return body.encode(), reply.content_type or "text/plain; charset=utf-8"
        if body is None:
            message = f"scripted error {reply.status}"
            return self._d.dumps(self._d.error_json(reply.status, message)), "application/json"
        ct = reply.content_type or (
            "application/json" if isinstance(self._d, _MlxLm) else "application/json; charset=utf-8"
        )
        return self._d.dumps(body), ct

    async def _send_head(self, conn: _Conn, status: int, headers: list[tuple[str, str]]) -> None:
        lines = [f"{self._d.http_version} {status} {_reason(status)}"]
        lines += [f"{k}: {v}" for k, v in headers]
        await conn.send(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))

    async def _send_fixed(self, conn: _Conn, reply: Reply, keep: bool) -> bool:
        """A complete non-streaming response (JSON, error page, health, models)."""
        await conn.pause(reply.delay)
        body, ct = self._encode_body(reply)
        headers = self._d.fixed_headers(ct, len(body), True)
        await self._send_head(conn, reply.status, headers)
        if body:
            await conn.send(body)
        return keep

    async def _render(self, conn: _Conn, req: Request, reply: Reply, keep: bool) -> bool:
        fault = reply.fault
        if fault == "hang_before_headers":
            await conn.gone.wait()
            raise _PeerGone
        if fault == "html_error":
            return await self._send_fixed(conn, replace(html_error(), delay=reply.delay), keep)
        if reply.status != 200 or reply.error_body is not None:
            return await self._send_fixed(conn, reply, keep)
        plan = self._plan(req, reply)
        if plan.stream:
            return await self._send_stream(conn, plan, keep)
        return await self._send_completion(conn, plan, keep)

    def _plan(self, req: Request, reply: Reply) -> _Plan:
        d = self._d
        body: Mapping[str, Any] = req.json if isinstance(req.json, dict) else {}
        text = _pieces(reply.text, reply.chunk_size)
        reasoning = _pieces(reply.reasoning, reply.chunk_size)
        calls: list[_Call] = []
        for i, (name, args) in enumerate(reply.tool_calls):
            cid = reply.tool_call_ids[i] if i < len(reply.tool_call_ids) else d.call_id(i)
            calls.append(_Call(i, name, args, cid, _pieces(args, reply.arg_chunk_size)))
        finish = reply.finish_reason
        if finish == DERIVED:
            finish = "tool_calls" if calls else "stop"
        options = body.get("stream_options")
        wants_usage = isinstance(options, dict) and bool(options.get("include_usage"))
        include_usage = wants_usage if reply.include_usage is None else reply.include_usage
        u = reply.usage
        pieces = len(text) + len(reasoning) + sum(max(1, len(c.fragments)) for c in calls)
        return _Plan(
            reply=reply,
            request=req,
            model=d.model_echo(body),
            stream=body.get("stream") is True,
            include_usage=include_usage,
            text=text,
            reasoning=reasoning,
            calls=calls,
            finish=finish,
            prompt_tokens=u.prompt_tokens
            if u.prompt_tokens is not None
            else self.token_counter(req),
            completion_tokens=u.completion_tokens if u.completion_tokens is not None else pieces,
            cached_tokens=u.cached_tokens,
            reasoning_tokens=u.reasoning_tokens
            if u.reasoning_tokens is not None
            else len(reasoning),
            tools_requested=bool(body.get("tools")),
            tool_choice=body.get("tool_choice"),
            cid=d.completion_id(),
        )

    async def _send_completion(self, conn: _Conn, plan: _Plan, keep: bool) -> bool:
        d = self._d
        reply = plan.reply
        await conn.pause(
            reply.delay + (reply.chunk_delay or (SLOW_DELAY if reply.fault == "slow" else 0))
        )
        body = d.dumps(d.completion(plan))
        ct = (
            "application/json"
            if isinstance(d, (_MlxLm, _MlxTextgen, _Vllm))
            else "application/json; charset=utf-8"
        )
        headers = d.fixed_headers(ct, len(body), False)
        fault = reply.fault
        if fault == "invalid_json_chunk":
            body = b"{not json"
        elif fault == "invalid_sse":
            body = b"this is not JSON\n"
        if fault in ("invalid_json_chunk", "invalid_sse"):
            headers = d.fixed_headers(ct, len(body), False)
        await self._send_head(conn, 200, headers)
        if fault == "hang_after_headers":
            await conn.gone.wait()
            raise _PeerGone
        if fault == "die_mid_stream":
            await conn.send(body[: len(body) // 2])
            return False
        await conn.send(body)
        return keep

    async def _send_stream(self, conn: _Conn, plan: _Plan, keep: bool) -> bool:
        d = self._d
        reply = plan.reply
        fault = reply.fault
        chunk_delay = reply.chunk_delay or (SLOW_DELAY if fault == "slow" else 0.0)
        await conn.pause(reply.delay)
        await self._send_head(conn, 200, d.stream_headers())
        if fault == "hang_after_headers":
            await conn.gone.wait()
            raise _PeerGone

        async def emit(payload: bytes) -> None:
            if d.chunked_stream:
                payload = f"{len(payload):x}\r\n".encode() + payload + b"\r\n"
            await conn.send(payload)

        sent = 0
        injected = False
        for kind, payload in d.stream_events(plan):
            if kind == "comment":
                await emit(payload)
                await conn.pause(reply.keepalive_delay)
                continue
            if kind == "done" or sent == reply.fault_after:
                if fault == "die_mid_stream":
                    return False  # the caller closes: no [DONE], no terminating chunk
                if fault in ("invalid_json_chunk", "invalid_sse") and not injected:
                    injected = True
                    if fault == "invalid_json_chunk":
                        await emit(b"data: {not json\n\n")
                    else:
                        await emit(b"this line is not SSE\nneither: is this one\n\n")
            if kind == "done":
                if fault == "no_done":
                    break
                await emit(payload)
                continue
            await conn.pause(chunk_delay)
            await emit(payload)
            sent += 1
        if d.chunked_stream:
            await conn.send(b"0\r\n\r\n")
        return keep and fault != "no_done"
