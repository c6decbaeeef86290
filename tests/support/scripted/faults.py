"""Writing one reply in a dialect's framing, broken on purpose when the reply asks for a
fault: cut mid-way, hang before or after the status line, garbage in the stream, an HTML
page, no `[DONE]`, slow chunks. Each returns whether the connection may serve another
request."""

from __future__ import annotations

from dataclasses import replace
from typing import Final

from tests.support.scripted.data import SLOW_DELAY, Reply, Request, html_error
from tests.support.scripted.dialect import DialectBase, Plan
from tests.support.scripted.wire import LAST_CHUNK, Conn, chunk_frame, head_bytes

GARBAGE_EVENT: Final = {
    "invalid_json_chunk": b"data: {not json\n\n",
    "invalid_sse": b"this line is not SSE\nneither: is this one\n\n",
}
"""What each garbage fault inserts into a stream, after `fault_after` data chunks."""
GARBAGE_BODY: Final = {"invalid_json_chunk": b"{not json", "invalid_sse": b"this is not JSON\n"}
"""What each garbage fault sends instead of a non-streaming completion."""


def encode_body(d: DialectBase, reply: Reply) -> tuple[bytes, str]:
    body = reply.error_body
    if isinstance(body, bytes):
        return body, reply.content_type or "application/json"
    if isinstance(body, str):
        return body.encode(), reply.content_type or "text/plain; charset=utf-8"
    if body is None:
        return d.dumps(d.error_json(reply.status, f"scripted error {reply.status}")), \
            "application/json"
    return d.dumps(body), reply.content_type or d.json_type


async def send_fixed(conn: Conn, d: DialectBase, reply: Reply, keep: bool) -> bool:
    """A complete non-streaming response (JSON, error page, health, models)."""
    await conn.pause(reply.delay)
    body, content_type = encode_body(d, reply)
    await conn.send(head_bytes(d.http_version, reply.status,
                               d.headers(d.fixed_headers, content_type, len(body))))
    if body:
        await conn.send(body)
    return keep


async def send_reply(conn: Conn, d: DialectBase, req: Request, reply: Reply, keep: bool) -> bool:
    """A chat completion request answered with `reply`."""
    if reply.fault == "hang_before_headers":
        await conn.hang()
    if reply.fault == "html_error":
        return await send_fixed(conn, d, replace(html_error(), delay=reply.delay), keep)
    if reply.status != 200 or reply.error_body is not None:
        return await send_fixed(conn, d, reply, keep)
    plan = d.plan(req, reply)
    if plan.stream:
        return await send_stream(conn, d, plan, keep)
    return await send_completion(conn, d, plan, keep)


def chunk_delay(reply: Reply) -> float:
    return reply.chunk_delay or (SLOW_DELAY if reply.fault == "slow" else 0.0)


async def send_completion(conn: Conn, d: DialectBase, plan: Plan, keep: bool) -> bool:
    reply = plan.reply
    await conn.pause(reply.delay + chunk_delay(reply))
    fault = reply.fault
    body = GARBAGE_BODY.get(fault or "") or d.dumps(d.completion(plan))
    table = d.completion_headers or d.fixed_headers
    await conn.send(head_bytes(d.http_version, 200, d.headers(table, d.json_type, len(body))))
    if fault == "hang_after_headers":
        await conn.hang()
    if fault == "die_mid_stream":
        await conn.send(body[: len(body) // 2])
        return False
    await conn.send(body)
    return keep


async def send_stream(conn: Conn, d: DialectBase, plan: Plan, keep: bool) -> bool:
    reply = plan.reply
    fault = reply.fault
    await conn.pause(reply.delay)
    await conn.send(head_bytes(d.http_version, 200, d.headers(d.stream_headers)))
    if fault == "hang_after_headers":
        await conn.hang()

    async def emit(payload: bytes) -> None:
        await conn.send(chunk_frame(payload) if d.chunked_stream else payload)

    sent = 0
    garbage = GARBAGE_EVENT.get(fault or "")
    for kind, payload in d.stream_events(plan):
        if kind == "comment":
            await emit(payload)
            await conn.pause(reply.keepalive_delay)
            continue
        if kind == "done" or sent == reply.fault_after:
            if fault == "die_mid_stream":
                return False  # the caller closes: no [DONE], no terminating chunk
            if garbage is not None:
                await emit(garbage)
                garbage = None
        if kind == "done":
            if fault == "no_done":
                break
            await emit(payload)
            continue
        await conn.pause(chunk_delay(reply))
        await emit(payload)
        sent += 1
    if d.chunked_stream:
        await conn.send(LAST_CHUNK)
    return keep and fault != "no_done"
