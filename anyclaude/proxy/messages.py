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
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from anyclaude.proxy.config import ProxyConfig
from anyclaude.proxy.keys import REQUEST_ID
from anyclaude.proxy.stats import RequestRecord
from anyclaude.translate import errors
from anyclaude.translate.errors import AnthropicError
from anyclaude.translate.request import Limits, Plan, to_openai
from anyclaude.translate.sse import Event, SSEDecoder, encode
from anyclaude.translate.stream import StreamTranslator, accumulate, response_chunk

CHAT_PATH = "/chat/completions"


async def plan_request(config: ProxyConfig, body: dict[str, Any], *,
                       background: bool = False) -> Plan:
    """Translate, with `max_tokens` clamped to the context window (prompt size estimated,
    counted exactly when it comes close to the window)."""
    model = await config.upstream.model()
    if background and config.small_model:
        model = config.small_model
    window = config.context_window
    plan = to_openai(body, config.backend.dialect, model=model,
                     limits=Limits(max_output_tokens=config.max_output_tokens),
                     tool_calls=config.tool_calls)
    prompt = config.tokens.estimate(plan.body)
    if window and prompt > 0.8 * window:
        prompt = config.tokens.count(plan.body)
    if window or prompt:
        plan = to_openai(body, config.backend.dialect, model=model,
                         limits=Limits(window, config.max_output_tokens, prompt),
                         tool_calls=config.tool_calls)
    return plan


def _upstream_error(config: ProxyConfig, plan: Plan, status: int, body: bytes,
                    content_type: str) -> AnthropicError:
    return errors.from_backend(
        status, body, content_type, url=config.backend_url, prompt_estimate=plan.prompt_tokens,
        window=config.context_window, max_tokens=plan.max_tokens,
        model_setting=config.backend.model_setting)


async def _open(config: ProxyConfig, plan: Plan) -> aiohttp.ClientResponse:
    """Send the request; an HTTP error status becomes an AnthropicError."""
    response = await config.upstream.post_json(CHAT_PATH, plan.body)
    if response.status >= 400:
        try:
            data = await asyncio.wait_for(response.read(), timeout=config.idle_timeout)
        finally:
            response.close()
        raise _upstream_error(config, plan, response.status, data,
                              response.headers.get("Content-Type", ""))
    return response


def _record(config: ProxyConfig, plan: Plan, started: float) -> RequestRecord:
    return RequestRecord(mode=config.backend.name, model=plan.requested_model,
                         stream=plan.client_stream, started=started,
                         background=plan.background)


async def probe(config: ProxyConfig, request: web.Request, plan: Plan) -> web.StreamResponse:
    """A `max_tokens: 1` probe, answered here: it checks that the API answers, and sending
    it to the backend would cost a full prefill of its prompt."""
    translator = StreamTranslator(plan)
    events = translator.start() + translator.feed(
        {"choices": [{"delta": {"content": "OK"}, "finish_reason": "length"}]}
    ) + translator.finish()
    record = _record(config, plan, time.monotonic())
    record.stop_reason, record.prompt_tokens = "max_tokens", plan.prompt_tokens
    config.stats.add(record)
    if not plan.client_stream:
        return web.json_response(accumulate(events), dumps=lambda o: orjson.dumps(o).decode(),
                                 headers={"request-id": request[REQUEST_ID]})
    response = web.StreamResponse(headers={
        "Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache",
        "request-id": request[REQUEST_ID]})
    await response.prepare(request)
    await response.write(encode(events))
    await _write_eof(response)
    return response


def _finish_record(config: ProxyConfig, record: RequestRecord, plan: Plan,
                   translator: StreamTranslator) -> None:
    usage = translator.final_usage()
    record.prompt_tokens = usage["input_tokens"] + usage["cache_read_input_tokens"]
    record.cached_tokens = usage["cache_read_input_tokens"]
    record.output_tokens = usage["output_tokens"]
    record.stop_reason = translator.stop_reason() if translator.ended else None
    if translator.usage and translator.usage.prompt_tokens:
        config.tokens.calibrate(plan.body, translator.usage.prompt_tokens)


async def complete(config: ProxyConfig, request: web.Request, plan: Plan) -> web.Response:
    """Non-streaming: one upstream answer through the same state machine as streams."""
    started = time.monotonic()
    record = _record(config, plan, started)
    translator = StreamTranslator(plan)
    try:
        response = await _open(config, plan)
        try:
            if plan.upstream_stream:  # never planned for non-streaming clients
                raise AssertionError("non-streaming client with a streaming plan")
            data = await response.read()
        finally:
            response.close()
        try:
            chunk = response_chunk(orjson.loads(data))
        except orjson.JSONDecodeError:
            chunk = None
        if chunk is None:
            raise AnthropicError(500, "api_error", "The backend sent an answer that is not a "
                                 "chat completion; check that the URL points at an "
                                 "OpenAI-compatible server.", retry=False)
        events = translator.start() + translator.feed(chunk) + translator.finish()
        record.first_token_s = time.monotonic() - started
        message = accumulate(events)
    except AnthropicError as exc:
        record.status, record.error = exc.status, exc.message
        raise
    finally:
        record.duration_s = time.monotonic() - started
        _finish_record(config, record, plan, translator)
        config.stats.add(record)
    return web.json_response(message, dumps=lambda o: orjson.dumps(o).decode(),
                             headers={"request-id": request[REQUEST_ID]})


async def stream(config: ProxyConfig, request: web.Request, plan: Plan) -> web.StreamResponse:
    """Streaming: see the module docstring."""
    started = time.monotonic()
    record = _record(config, plan, started)
    translator = StreamTranslator(plan)
    pending = asyncio.ensure_future(_open(config, plan))
    try:
        # Wait briefly for the backend's status line so a refusal (prompt too long, bad
        # model) is a real HTTP error; a backend that stalls gets message_start anyway.
        done, _ = await asyncio.wait({pending}, timeout=config.header_grace)
        if done:
            pending.result()  # raises the AnthropicError before any byte was sent
    except AnthropicError as exc:
        record.status, record.error = exc.status, exc.message
        record.duration_s = time.monotonic() - started
        config.stats.add(record)
        raise
    except BaseException:
        pending.cancel()
        raise
    response = web.StreamResponse(headers={
        "Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache",
        "request-id": request[REQUEST_ID]})
    upstream: aiohttp.ClientResponse | None = None
    try:
        await response.prepare(request)
        await response.write(encode(translator.start()))
        upstream = await _await_with_pings(config, pending, translator, response)
        if upstream is not None:
            await _pump(config, upstream, translator, response, record, started)
    except AnthropicError as exc:
        record.error = exc.message
        await _write(response, encode(translator.fail(exc)))
    except (ConnectionResetError, asyncio.CancelledError):
        record.error = "client disconnected"
        raise
    finally:
        pending.cancel()
        if upstream is not None:
            upstream.close()  # closing the socket is what stops mlx-lm generating
        record.duration_s = time.monotonic() - started
        _finish_record(config, record, plan, translator)
        config.stats.add(record)
    await _write_eof(response)
    return response


async def _write(response: web.StreamResponse, data: bytes) -> None:
    if data:
        await response.write(data)


async def _write_eof(response: web.StreamResponse) -> None:
    with contextlib.suppress(ConnectionResetError):
        await response.write_eof()


async def _await_with_pings(config: ProxyConfig, pending: asyncio.Future[aiohttp.ClientResponse],
                            translator: StreamTranslator,
                            response: web.StreamResponse) -> aiohttp.ClientResponse | None:
    silent_since = time.monotonic()
    while True:
        done, _ = await asyncio.wait({pending}, timeout=config.ping_interval)
        if done:
            return pending.result()
        if time.monotonic() - silent_since > config.idle_timeout:
            raise errors.mid_stream(f"no answer from the backend for {config.idle_timeout:.0f} s")
        await _write(response, encode(translator.ping()))


async def _pump_whole(upstream: aiohttp.ClientResponse, translator: StreamTranslator,
                      response: web.StreamResponse, record: RequestRecord,
                      started: float) -> None:
    """A non-streaming upstream answer (mlx-textgen with tools) streamed to the client."""
    data = await upstream.read()
    try:
        chunk = response_chunk(orjson.loads(data))
    except orjson.JSONDecodeError:
        chunk = None
    if chunk is None:
        raise errors.mid_stream("it sent an answer that is not a chat completion")
    events = translator.feed(chunk) + translator.finish()
    record.first_token_s = time.monotonic() - started
    await _write(response, encode(events))


async def _pump(config: ProxyConfig, upstream: aiohttp.ClientResponse,
                translator: StreamTranslator, response: web.StreamResponse,
                record: RequestRecord, started: float) -> None:
    """Upstream body -> events, one client write per upstream read."""
    if not translator.plan.upstream_stream:
        await _pump_whole(upstream, translator, response, record, started)
        return
    decoder = SSEDecoder()
    saw_done = False
    events: list[Event]
    last_write = time.monotonic()
    while True:
        try:
            data = await asyncio.wait_for(upstream.content.readany(),
                                          timeout=config.ping_interval)
        except TimeoutError:
            if time.monotonic() - last_write > config.idle_timeout:
                raise errors.mid_stream(
                    f"the backend sent nothing for {config.idle_timeout:.0f} s") from None
            await _write(response, encode(translator.ping()))
            continue
        except aiohttp.ClientPayloadError as exc:
            raise errors.mid_stream(f"the connection broke ({exc})") from exc
        items = decoder.feed(data) if data else decoder.close()
        events = []
        for kind, text in items:
            if kind == "comment":
                events.extend(translator.ping())
                continue
            if text.strip() == "[DONE]":
                saw_done = True
                continue
            try:
                parsed = orjson.loads(text)
            except orjson.JSONDecodeError:
                raise errors.mid_stream("it sent a chunk that is not valid JSON: "
                                        f"{text[:120]!r}") from None
            if isinstance(parsed, dict) and "error" in parsed and not parsed.get("choices"):
                raise errors.mid_stream(errors.backend_message(text.encode()))
            events.extend(translator.feed(parsed))
        if record.first_token_s is None and translator.blocks:
            record.first_token_s = time.monotonic() - started
        if translator.stopped or saw_done or not data:
            if not (translator.stopped or saw_done or translator.finish_reason):
                events.extend(translator.fail(errors.mid_stream(
                    "the connection closed before the answer was complete")))
            else:
                events.extend(translator.finish())
            await _write(response, encode(events))
            return
        if events:
            await _write(response, encode(events))
            last_write = time.monotonic()
