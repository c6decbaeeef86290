"""`POST /v1/messages` against an OpenAI-compatible backend: streaming and not.

The handler owns the I/O only; what the bytes mean is `translate/`'s business. Streaming:
`message_start` goes out as soon as the backend accepts the request, pings cover silences
(prefill, tool-call generation), each upstream read becomes one socket write, and the
upstream response is closed the moment the client goes away or a stop sequence matches.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from anyclaude.proxy.config import ProxyConfig
from anyclaude.proxy.keys import REQUEST_ID
from anyclaude.proxy.stats import RequestRecord
from anyclaude.translate import errors
from anyclaude.translate.errors import AnthropicError
from anyclaude.translate.request import Limits, Plan, apply_limits, to_openai
from anyclaude.translate.sse import Event, SSEDecoder, encode
from anyclaude.translate.stream import (
    StreamTranslator,
    accumulate,
    merge_deltas,
    response_chunk,
)

CHAT_PATH = "/chat/completions"
SSE_HEADERS = {"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache"}


def _dumps(obj: Any) -> str:
    return orjson.dumps(obj).decode()


async def plan_request(config: ProxyConfig, body: dict[str, Any], *,
                       background: bool = False) -> Plan:
    """Translate, with `max_tokens` clamped to the context window (prompt size estimated,
    counted exactly when it comes close to the window)."""
    model = await config.upstream.model()
    if background and config.small_model:
        model = config.small_model
    window = config.context_window
    plan = to_openai(body, config.backend.dialect, model=model, tool_calls=config.tool_calls)
    prompt = config.tokens.estimate(plan.body)
    if window and prompt > 0.8 * window:
        prompt = config.tokens.count(plan.body)
    apply_limits(plan, Limits(window, config.max_output_tokens, prompt))
    plan.background = background
    return plan


@dataclass
class Exchange:
    """One client request and its upstream counterpart: state shared by the I/O steps."""

    config: ProxyConfig
    request: web.Request
    plan: Plan
    started: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        self.translator = StreamTranslator(self.plan)
        self.record = RequestRecord(mode=self.config.backend.name,
                                    model=self.plan.requested_model,
                                    stream=self.plan.client_stream, started=self.started,
                                    background=self.plan.background)
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
            config.tracer.upstream_request(self.request_id, config.upstream.url(CHAT_PATH),
                                           plan.body, plan.notes)
        response = await config.upstream.post_json(CHAT_PATH, plan.body)
        if response.status < 400:
            return response
        try:
            data = await asyncio.wait_for(response.read(), timeout=config.idle_timeout)
        finally:
            response.close()
        self.upstream_bytes(data)
        raise errors.from_backend(
            response.status, data, response.headers.get("Content-Type", ""),
            url=config.backend_url, prompt_estimate=plan.prompt_tokens,
            window=config.context_window, max_tokens=plan.max_tokens,
            model_setting=config.backend.model_setting)

    def finish(self, error: AnthropicError | None = None) -> None:
        """Book-keeping at the end, whatever happened: stats, calibration, traces."""
        record, translator, config = self.record, self.translator, self.config
        record.duration_s = time.monotonic() - self.started
        if error is not None:
            record.status, record.error = error.status, error.message
        usage = translator.final_usage()
        record.prompt_tokens = usage["input_tokens"] + usage["cache_read_input_tokens"]
        record.cached_tokens = usage["cache_read_input_tokens"]
        record.output_tokens = usage["output_tokens"]
        record.stop_reason = translator.stop_reason() if translator.ended and not error else None
        if translator.usage and translator.usage.prompt_tokens:
            config.tokens.calibrate(self.plan.body, translator.usage.prompt_tokens)
        if config.tracer is not None:
            config.tracer.upstream_response(self.request_id, 200 if error is None else
                                            error.status, b"".join(self.raw))
            if self.events and not any(name == "error" for name, _ in self.events):
                config.tracer.answer(self.request_id, accumulate(self.events))
        config.stats.add(record)


def _whole_answer(data: bytes) -> dict[str, Any] | None:
    try:
        return response_chunk(orjson.loads(data))
    except orjson.JSONDecodeError:
        return None


async def probe(config: ProxyConfig, request: web.Request, plan: Plan) -> web.StreamResponse:
    """A `max_tokens: 1` probe, answered here: it checks that the API answers, and sending
    it to the backend would cost a full prefill of its prompt."""
    exchange = Exchange(config, request, plan)
    translator = exchange.translator
    events = translator.start() + translator.feed(
        {"choices": [{"delta": {"content": "OK"}, "finish_reason": "length"}]}
    ) + translator.finish()
    body = exchange.emit(events)
    exchange.finish()
    headers = {"request-id": exchange.request_id}
    if not plan.client_stream:
        return web.json_response(accumulate(events), dumps=_dumps, headers=headers)
    response = web.StreamResponse(headers={**SSE_HEADERS, **headers})
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
        chunk = _whole_answer(data)
        if chunk is None:
            raise AnthropicError(500, "api_error", "The backend sent an answer that is not a "
                                 "chat completion; check that the URL points at an "
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
    response = web.StreamResponse(headers={**SSE_HEADERS, "request-id": exchange.request_id})
    upstream: aiohttp.ClientResponse | None = None
    failure: AnthropicError | None = None
    try:
        await response.prepare(request)
        await response.write(exchange.emit(translator.start()))
        upstream = await _await_with_pings(exchange, pending, response)
        await (_pump(exchange, upstream, response) if plan.upstream_stream
               else _pump_whole(exchange, upstream, response))
    except AnthropicError as exc:
        failure = exc
        await _write(response, exchange.emit(translator.fail(config.scrubbed(exc))))
    except (ConnectionResetError, asyncio.CancelledError):
        failure = AnthropicError(499, "client_closed", "client disconnected")
        raise
    finally:
        pending.cancel()
        if upstream is not None:
            upstream.close()  # closing the socket is what stops mlx-lm generating
        exchange.finish(failure)
    await _write_eof(response)
    return response


async def _write(response: web.StreamResponse, data: bytes) -> None:
    if data:
        await response.write(data)


async def _write_eof(response: web.StreamResponse) -> None:
    with contextlib.suppress(ConnectionResetError):
        await response.write_eof()


async def _await_with_pings(exchange: Exchange, pending: asyncio.Future[aiohttp.ClientResponse],
                            response: web.StreamResponse) -> aiohttp.ClientResponse:
    config = exchange.config
    silent_since = time.monotonic()
    while True:
        done, _ = await asyncio.wait({pending}, timeout=config.ping_interval)
        if done:
            return pending.result()
        if time.monotonic() - silent_since > config.idle_timeout:
            raise errors.mid_stream(f"no answer from the backend for {config.idle_timeout:.0f} s")
        await _write(response, exchange.emit(exchange.translator.ping()))


async def _pump_whole(exchange: Exchange, upstream: aiohttp.ClientResponse,
                      response: web.StreamResponse) -> None:
    """A non-streaming upstream answer (mlx-textgen with tools) streamed to the client."""
    data = await upstream.read()
    exchange.upstream_bytes(data)
    chunk = _whole_answer(data)
    if chunk is None:
        raise errors.mid_stream("it sent an answer that is not a chat completion")
    translator = exchange.translator
    events = translator.feed(chunk) + translator.finish()
    exchange.first_token()
    await _write(response, exchange.emit(events))


async def _pump(exchange: Exchange, upstream: aiohttp.ClientResponse,
                response: web.StreamResponse) -> None:
    """Upstream SSE -> events, one client write per upstream read."""
    config, translator = exchange.config, exchange.translator
    decoder = SSEDecoder()
    saw_done = False
    last_data = time.monotonic()
    while True:
        try:
            async with asyncio.timeout(config.ping_interval):
                data = await upstream.content.readany()
        except TimeoutError:
            if time.monotonic() - last_data > config.idle_timeout:
                raise errors.mid_stream(
                    f"the backend sent nothing for {config.idle_timeout:.0f} s") from None
            await _write(response, exchange.emit(translator.ping()))
            continue
        except aiohttp.ClientPayloadError as exc:
            raise errors.mid_stream(f"the connection broke ({exc})") from exc
        exchange.upstream_bytes(data)
        events: list[Event] = []
        for kind, text in decoder.feed(data) if data else decoder.close():
            if kind == "comment":
                events.extend(translator.ping())
            elif text.strip() == "[DONE]":
                saw_done = True
                break  # the answer is over: whatever follows in this read is not part of it
            else:
                events.extend(translator.feed(_chunk(text)))
        exchange.first_token()
        if translator.stopped or saw_done or not data:
            if not (translator.stopped or saw_done or translator.finish_reason):
                raise errors.mid_stream("the connection closed before the answer was complete")
            await _write(response, exchange.emit(merge_deltas(events + translator.finish())))
            return
        if events:
            last_data = time.monotonic()
            await _write(response, exchange.emit(merge_deltas(events)))


def _chunk(text: str) -> object:
    """One upstream `data:` payload; garbage or an error object fails the stream."""
    try:
        parsed = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise errors.mid_stream(f"it sent a chunk that is not valid JSON: {text[:120]!r}") from None
    if isinstance(parsed, dict) and "error" in parsed and not parsed.get("choices"):
        raise errors.mid_stream(errors.backend_message(text.encode()))
    return parsed
