"""`POST /v1/messages` against an OpenAI-compatible backend: streaming and not.

The handler owns the I/O only; what the bytes mean is `translate/`'s business. Streaming:
`message_start` goes out as soon as the backend accepts the request, pings cover silences
(prefill, tool-call generation), each upstream read becomes one socket write, and the
upstream response is closed the moment the client goes away or a stop sequence matches
(a complete answer's keep-alive connection goes back to the pool instead).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from anyclaude.proxy.config import ProxyConfig
from anyclaude.proxy.keys import REQUEST_ID, ROUTE
from anyclaude.proxy.stats import RequestRecord
from anyclaude.routing import Route
from anyclaude.translate import errors
from anyclaude.translate.chunks import ChunkStream, probe_events, whole_answer
from anyclaude.translate.errors import AnthropicError
from anyclaude.translate.events import accumulate, merge_deltas
from anyclaude.translate.plan import Limits, apply_limits, draft, wants_exact_count
from anyclaude.translate.protocol import MessagesRequest
from anyclaude.translate.request import Plan
from anyclaude.translate.sse import Event, encode
from anyclaude.translate.stream import StreamTranslator

CHAT_PATH = "/chat/completions"
SSE_HEADERS = {"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache"}


class SSEResponse(web.StreamResponse):
    """A stream whose headers go out with its first events, in one socket write (on
    loopback every write costs the client a wake-up: measurable in time to first token)."""

    _send_headers_immediately = False


def _dumps(obj: Any) -> str:
    return orjson.dumps(obj).decode()


async def plan_request(config: ProxyConfig, body: MessagesRequest, *,
                       count_only: bool = False, route: Route | None = None) -> Plan:
    """`translate/plan.py`'s planning step for the route's model (`anyclaude.routing`), with
    its I/O: the model name (which may need asking the server) and the exact count, in an
    executor so the loop keeps serving."""
    route = route or config.router.main
    model = None
    if not count_only:
        model = route.model or await config.upstream_for(route).model()
    plan = draft(body, route.dialect(config.backend.dialect), model=model,
                 tool_calls=config.tool_calls, chars_per_token=config.tokens.chars_per_token,
                 count_only=count_only)
    window = route.window or config.context_window
    if config.tokens.exact and wants_exact_count(plan.prompt_tokens, window,
                                                 count_only=count_only):
        plan.prompt_tokens = await _count(config, plan)
    if not count_only:
        apply_limits(plan, Limits(window, config.max_output_tokens))
    return plan


async def _count(config: ProxyConfig, plan: Plan) -> int:
    """The exact count, in an executor; a client that goes away stops it."""
    stop = threading.Event()
    try:
        return await asyncio.get_running_loop().run_in_executor(
            None, config.tokens.count, plan.body, stop)
    finally:
        stop.set()


@dataclass
class Exchange:
    """One client request and its upstream counterpart: state shared by the I/O steps."""

    config: ProxyConfig
    request: web.Request
    plan: Plan
    started: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        self.translator = StreamTranslator(self.plan)
        self.route = self.request.get(ROUTE) or self.config.router.main
        self.upstream = self.config.upstream_for(self.route)
        self.record = RequestRecord(mode=self.config.backend.name,
                                    model=self.plan.requested_model,
                                    stream=self.plan.client_stream, started=self.started,
                                    background=self.plan.background is not None,
                                    served=self.route.display, role=self.route.role)
        tracer = self.config.tracer
        self.tracing = tracer is not None and tracer.level >= 2
        self.events: list[Event] = []
        self.raw: list[bytes] = []

    @property
    def request_id(self) -> str:
        return self.request[REQUEST_ID]

    def emit(self, events: list[Event]) -> bytes:
        """Encode events for the client (and keep them when tracing)."""
        if self.tracing:
            self.events.extend(events)
        return encode(events)

    def upstream_bytes(self, data: bytes) -> None:
        if self.tracing:
            self.raw.append(data)

    def first_token(self) -> None:
        if self.record.first_token_s is None and self.translator.blocks:
            self.record.first_token_s = time.monotonic() - self.started

    async def open(self) -> aiohttp.ClientResponse:
        """Send the request; an HTTP error status becomes an AnthropicError."""
        config, plan = self.config, self.plan
        if config.tracer is not None:
            config.tracer.upstream_request(self.request_id, self.upstream.url(CHAT_PATH),
                                           plan.body, plan.notes)
        response = await self.upstream.post_json(CHAT_PATH, plan.body)
        if response.status < 400:
            return response
        try:
            data = await asyncio.wait_for(response.read(), timeout=config.idle_timeout)
        finally:
            response.close()
        self.upstream_bytes(data)
        raise errors.from_backend(
            response.status, data, response.headers.get("Content-Type", ""),
            url=self.upstream.endpoint.url, prompt_estimate=plan.prompt_tokens,
            window=self.route.window or config.context_window, max_tokens=plan.max_tokens,
            model_setting=config.backend.model_setting)

    def finish(self, error: AnthropicError | None = None) -> None:
        """Book-keeping at the end, whatever happened: stats, calibration, traces."""
        record, translator, config = self.record, self.translator, self.config
        record.duration_s = time.monotonic() - self.started
        if error is not None:
            record.status, record.error = error.status, error.message
        record.prompt_tokens, record.cached_tokens, record.output_tokens = translator.counts()
        record.stop_reason = translator.stop_reason() if translator.ended and not error else None
        if translator.usage and translator.usage.prompt_tokens:
            config.tokens.calibrate(self.plan.body, translator.usage.prompt_tokens)
        if config.tracer is not None:
            config.tracer.upstream_response(self.request_id, 200 if error is None else
                                            error.status, b"".join(self.raw))
            if self.events and not translator.failed:
                config.tracer.answer(self.request_id, accumulate(self.events))
        config.stats.add(record)


async def probe(config: ProxyConfig, request: web.Request, plan: Plan) -> web.StreamResponse:
    """A `max_tokens: 1` probe, answered here (see `chunks.probe_events`)."""
    exchange = Exchange(config, request, plan)
    events = probe_events(exchange.translator)
    body = exchange.emit(events)
    exchange.finish()
    headers = {"request-id": exchange.request_id}
    if not plan.client_stream:
        return web.json_response(accumulate(events), dumps=_dumps, headers=headers)
    response = SSEResponse(headers={**SSE_HEADERS, **headers})
    await response.prepare(request)
    await response.write(body)
    await _write_eof(response)
    return response


async def complete(config: ProxyConfig, request: web.Request, plan: Plan) -> web.Response:
    """Non-streaming: one upstream answer through the same state machine as streams."""
    exchange = Exchange(config, request, plan)
    translator = exchange.translator
    try:
        response = await exchange.open()
        try:
            data = await response.read()
        finally:
            response.close()
        exchange.upstream_bytes(data)
        chunk = whole_answer(data)
        if chunk is None:
            raise errors.of_status(500, "The backend sent an answer that is not a chat "
                                   "completion; check that the URL points at an "
                                   "OpenAI-compatible server.", retry=False)
        events = translator.start() + translator.feed(chunk) + translator.finish()
        exchange.emit(events)
        exchange.first_token()
        message = accumulate(events)
    except AnthropicError as exc:
        exchange.finish(exc)
        raise
    exchange.finish()
    return web.json_response(message, dumps=_dumps, headers={"request-id": exchange.request_id})


async def stream(config: ProxyConfig, request: web.Request, plan: Plan) -> web.StreamResponse:
    """Streaming: see the module docstring."""
    exchange = Exchange(config, request, plan)
    translator = exchange.translator
    pending = asyncio.ensure_future(exchange.open())
    try:
        # Wait briefly for the backend's status line so a refusal (prompt too long, bad
        # model) is a real HTTP error; a backend that stalls gets message_start anyway.
        done, _ = await asyncio.wait({pending}, timeout=config.header_grace)
        if done:
            pending.result()  # raises the AnthropicError before any byte was sent
    except AnthropicError as exc:
        exchange.finish(exc)
        raise
    except BaseException:
        pending.cancel()
        raise
    response = SSEResponse(headers={**SSE_HEADERS, "request-id": exchange.request_id})
    out = _Out(response)
    upstream: aiohttp.ClientResponse | None = None
    failure: AnthropicError | None = None
    answered = False
    try:
        await response.prepare(request)
        out.held = exchange.emit(translator.start())
        if not pending.done():
            await out.write(b"")  # the backend is slow to answer: message_start goes now
        upstream = await _await_with_pings(exchange, pending, out)
        await (_pump(exchange, upstream, out) if plan.upstream_stream
               else _pump_whole(exchange, upstream, out))
        answered = not translator.stopped
    except AnthropicError as exc:
        failure = exc
        await out.write(exchange.emit(translator.fail(config.scrubbed(exc))))
    except (ConnectionResetError, asyncio.CancelledError):
        failure = errors.client_closed()
        raise
    finally:
        pending.cancel()
        if upstream is not None and answered:
            await _recycle(upstream)
        elif upstream is not None:
            upstream.close()  # closing the socket is what stops mlx-lm generating
        exchange.finish(failure)
    await _write_eof(response)
    return response


RECYCLE_WAIT = 0.1
"""How long a finished answer's connection may take to end its body before it is closed."""


async def _recycle(upstream: aiohttp.ClientResponse) -> None:
    """After a complete answer (the client has every event, only the end of its body is
    still to come), read the rest of the upstream body (a chunked body's last chunk follows
    `[DONE]`) so the connection goes back to the pool before the client can send its next
    request; mlx-lm's HTTP/1.0 bodies end with their connection anyway."""
    try:
        if upstream.version is not None and upstream.version >= aiohttp.HttpVersion11:
            async with asyncio.timeout(RECYCLE_WAIT):
                while await upstream.content.readany():
                    pass
    except (TimeoutError, aiohttp.ClientError):
        pass
    finally:
        upstream.close()  # a no-op once the body has ended: aiohttp pooled the connection


class _Out:
    """The client's side of a stream. `held` bytes go out with the next write: when the
    backend has answered by then, message_start leaves with its first output in one
    socket write (each write costs the client a wake-up on the way to the first token)."""

    def __init__(self, response: web.StreamResponse) -> None:
        self.response = response
        self.held = b""

    async def write(self, data: bytes) -> None:
        data, self.held = self.held + data, b""
        if data:
            await self.response.write(data)


async def _write_eof(response: web.StreamResponse) -> None:
    with contextlib.suppress(ConnectionResetError):
        await response.write_eof()


async def _await_with_pings(exchange: Exchange, pending: asyncio.Future[aiohttp.ClientResponse],
                            out: _Out) -> aiohttp.ClientResponse:
    config = exchange.config
    silent_since = time.monotonic()
    while not pending.done():
        await asyncio.wait({pending}, timeout=config.ping_interval)
        if pending.done():
            break
        if time.monotonic() - silent_since > config.idle_timeout:
            raise errors.mid_stream(f"no answer from the backend for {config.idle_timeout:.0f} s")
        await out.write(exchange.emit(exchange.translator.ping()))
    return pending.result()


async def _pump_whole(exchange: Exchange, upstream: aiohttp.ClientResponse, out: _Out) -> None:
    """A non-streaming upstream answer (mlx-textgen with tools) streamed to the client."""
    await out.write(b"")
    data = await upstream.read()
    exchange.upstream_bytes(data)
    chunk = whole_answer(data)
    if chunk is None:
        raise errors.mid_stream("it sent an answer that is not a chat completion")
    translator = exchange.translator
    events = translator.feed(chunk) + translator.finish()
    exchange.first_token()
    await out.write(exchange.emit(events))


async def _pump(exchange: Exchange, upstream: aiohttp.ClientResponse, out: _Out) -> None:
    """Upstream SSE -> events, one client write per upstream read. What arrived with the
    headers (mlx-lm's first `: keepalive`) is taken at once, to go out with message_start."""
    config, translator = exchange.config, exchange.translator
    chunks = ChunkStream(translator)
    last_data = time.monotonic()
    try:
        data: bytes | None = upstream.content.read_nowait() or None
    except aiohttp.ClientPayloadError as exc:
        raise errors.mid_stream(f"the connection broke ({exc})") from exc
    while True:
        events: list[Event] = []
        if data is not None:
            exchange.upstream_bytes(data)
            last_data = time.monotonic()  # any bytes: a role-only or usage chunk is life too
            events = chunks.feed(data)
            exchange.first_token()
            if chunks.over:
                await out.write(exchange.emit(merge_deltas(events + chunks.finish())))
                return
        if events or out.held:
            await out.write(exchange.emit(merge_deltas(events)))
        try:
            async with asyncio.timeout(config.ping_interval):
                data = await upstream.content.readany()
        except TimeoutError:
            if time.monotonic() - last_data > config.idle_timeout:
                raise errors.mid_stream(
                    f"the backend sent nothing for {config.idle_timeout:.0f} s") from None
            await out.write(exchange.emit(translator.ping()))
            data = None
        except aiohttp.ClientPayloadError as exc:
            raise errors.mid_stream(f"the connection broke ({exc})") from exc
