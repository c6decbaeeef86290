"""`POST /v1/messages` against an OpenAI-compatible backend: streaming and not.

The handler owns the I/O only; what the bytes mean is `translate/`'s business. Streaming:
`message_start` goes out as soon as the backend accepts the request, pings cover the
client's every silence (`pacing`), each upstream read becomes one socket write, and the
upstream response is closed the moment the client goes away or a stop sequence matches
(a complete answer's keep-alive connection goes back to the pool instead). Once the stream
has started, whatever fails ends it with an `error` event. Every wait on the backend is
bounded: `idle_timeout` without progress in a stream, `answer_timeout` for an answer that
arrives all at once.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from anyclaude import timeouts
from anyclaude.proxy.config import ProxyConfig
from anyclaude.proxy.keys import REQUEST_ID, ROUTE
from anyclaude.proxy.pacing import Out, whole_body, with_pings, write_eof
from anyclaude.proxy.stats import RequestRecord
from anyclaude.proxy.upstream import FAILURES, next_piece, trouble
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

log = logging.getLogger("anyclaude.proxy")
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
            async with asyncio.timeout(config.idle_timeout):
                data = await response.read()
        except FAILURES:  # the status says enough (TimeoutError is an OSError)
            data = b""
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
    await write_eof(response)
    return response


async def complete(config: ProxyConfig, request: web.Request, plan: Plan) -> web.Response:
    """Non-streaming: one upstream answer through the same state machine as streams."""
    exchange = Exchange(config, request, plan)
    translator = exchange.translator
    try:
        data = await _whole_answer(exchange)
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


async def _whole_answer(exchange: Exchange) -> bytes:
    """The upstream answer's whole body, within `answer_timeout` of the request."""
    config = exchange.config
    deadline = exchange.started + config.answer_timeout
    try:
        async with asyncio.timeout(deadline - time.monotonic()):
            response = await exchange.open()
        try:
            return await whole_body(response, deadline)
        finally:
            response.close()
    except TimeoutError:
        raise errors.timed_out(config.backend_url, config.answer_timeout,
                               timeouts.ANSWER_ENV) from None
    except FAILURES as exc:
        raise errors.broken_answer(config.backend_url, trouble(exc)) from exc


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
    out = Out(response, config.ping_interval, lambda: exchange.emit(translator.ping()))
    upstream: aiohttp.ClientResponse | None = None
    failure: AnthropicError | None = None
    answered = False
    try:
        await response.prepare(request)
        out.held = exchange.emit(translator.start())
        if not pending.done():
            await out.write(b"")  # the backend is slow to answer: message_start goes now
        if plan.upstream_stream:
            upstream = await with_pings(out, pending, exchange.started + config.idle_timeout,
                                        errors.mid_stream("no answer from the backend for "
                                                          f"{config.idle_timeout:g} s"))
            await _pump(exchange, upstream, out)
        else:
            upstream = await with_pings(out, pending, exchange.started + config.answer_timeout,
                                        _no_whole_answer(config))
            await _pump_whole(exchange, upstream, out)
        answered = not translator.stopped
    except (ConnectionResetError, asyncio.CancelledError):
        failure = errors.client_closed()
        raise
    except Exception as exc:  # whatever it is, the stream that started ends with an error
        failure = exc if isinstance(exc, AnthropicError) else _unexpected(exc)
        await out.write(exchange.emit(translator.fail(config.scrubbed(failure))))
    finally:
        pending.cancel()
        if upstream is not None and answered:
            await _recycle(upstream)
        elif upstream is not None:
            upstream.close()  # closing the socket is what stops mlx-lm generating
        exchange.finish(failure)
    await write_eof(response)
    return response


def _unexpected(exc: Exception) -> AnthropicError:
    if isinstance(exc, FAILURES):
        return errors.mid_stream(trouble(exc))
    log.error("internal error in a stream", exc_info=exc)
    return errors.internal()


def _no_whole_answer(config: ProxyConfig) -> AnthropicError:
    return errors.mid_stream(f"it sent no complete answer within {config.answer_timeout:g} s "
                             f"({timeouts.ANSWER_ENV})")


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


async def _pump_whole(exchange: Exchange, upstream: aiohttp.ClientResponse, out: Out) -> None:
    """A non-streaming upstream answer (mlx-textgen with tools) streamed to the client."""
    await out.write(b"")
    try:
        data = await whole_body(upstream, exchange.started + exchange.config.answer_timeout, out)
    except TimeoutError:
        raise _no_whole_answer(exchange.config) from None
    except FAILURES as exc:
        raise errors.mid_stream(trouble(exc)) from exc
    exchange.upstream_bytes(data)
    chunk = whole_answer(data)
    if chunk is None:
        raise errors.mid_stream("it sent an answer that is not a chat completion")
    translator = exchange.translator
    events = translator.feed(chunk) + translator.finish()
    exchange.first_token()
    await out.write(exchange.emit(events))


async def _pump(exchange: Exchange, upstream: aiohttp.ClientResponse, out: Out) -> None:
    """Upstream SSE -> events, one client write per upstream read. What arrived with the
    headers (mlx-lm's first `: keepalive`) is taken at once, to go out with message_start.
    Pings cover the client's every silence; the idle limit counts the backend's silence in
    progress (`ChunkStream.progress`), so empty deltas cannot hold a stream open."""
    idle = exchange.config.idle_timeout
    chunks = ChunkStream(exchange.translator)
    progress, progressed = chunks.progress, time.monotonic()
    try:
        data: bytes | None = upstream.content.read_nowait() or None
    except FAILURES as exc:
        raise errors.mid_stream(trouble(exc)) from exc
    while True:
        events: list[Event] = []
        if data is not None:
            exchange.upstream_bytes(data)
            events = chunks.feed(data)
            exchange.first_token()
            if chunks.over:
                await out.write(exchange.emit(merge_deltas(events + chunks.finish())))
                return
        now = time.monotonic()
        if chunks.progress != progress:
            progress, progressed = chunks.progress, now
        elif now - progressed >= idle:
            raise errors.mid_stream(f"the backend sent nothing new for {idle:g} s")
        if events or out.held:
            await out.write(exchange.emit(merge_deltas(events)))
        elif now >= out.ping_due:
            await out.ping()
        try:
            data = await next_piece(upstream, min(out.ping_due, progressed + idle)
                                    - time.monotonic())
        except FAILURES as exc:
            raise errors.mid_stream(trouble(exc)) from exc
