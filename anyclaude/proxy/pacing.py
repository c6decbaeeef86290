"""The client's side of a stream, and the waits on the backend behind it.

Pings are about what the client hears: one goes out whenever the client has had no byte
for a ping interval, whatever the backend is sending meanwhile (empty deltas included).
Every wait on the backend has a deadline, and a wait on a body also notices the breaks
aiohttp does not report (`upstream.next_piece`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import TypeVar

import aiohttp
from aiohttp import web

from anyclaude.proxy.upstream import WATCH_S, next_piece
from anyclaude.translate.errors import AnthropicError

T = TypeVar("T")


class Out:
    """Writes to the client. `held` bytes go out with the next write: when the backend has
    answered by then, message_start leaves with its first output in one socket write (each
    write costs the client a wake-up on the way to the first token). `ping_due`: when the
    client will have heard nothing for a ping interval."""

    def __init__(self, response: web.StreamResponse, interval: float,
                 ping: Callable[[], bytes]) -> None:
        self.response = response
        self.held = b""
        self.interval = interval
        self.ping_due = time.monotonic() + interval
        self._ping = ping

    async def write(self, data: bytes) -> None:
        data, self.held = self.held + data, b""
        if data:
            await self.response.write(data)
            self.ping_due = time.monotonic() + self.interval

    async def ping(self) -> None:
        await self.write(self._ping())
        self.ping_due = time.monotonic() + self.interval  # also when there was nothing to say


async def write_eof(response: web.StreamResponse) -> None:
    with contextlib.suppress(ConnectionResetError):
        await response.write_eof()


async def with_pings(out: Out, task: asyncio.Future[T], deadline: float,
                     failure: AnthropicError) -> T:
    """`task`'s result, pinging the client meanwhile; `failure` once `deadline` (monotonic)
    has passed without it."""
    while not task.done():
        now = time.monotonic()
        if now >= deadline:
            raise failure
        await asyncio.wait({task}, timeout=min(out.ping_due, deadline) - now)
        if not task.done() and time.monotonic() >= out.ping_due:
            await out.ping()
    return task.result()


async def whole_body(response: aiohttp.ClientResponse, deadline: float,
                     out: Out | None = None) -> bytes:
    """A whole upstream body by `deadline` (monotonic; else TimeoutError), pinging the
    client meanwhile when there is one."""
    pieces: list[bytes] = []
    while True:
        now = time.monotonic()
        if now >= deadline:
            raise TimeoutError
        due = out.ping_due if out is not None else now + WATCH_S
        piece = await next_piece(response, min(due, deadline) - now)
        if piece is None:
            if out is not None and time.monotonic() >= out.ping_due:
                await out.ping()
        elif piece:
            pieces.append(piece)
        else:
            return b"".join(pieces)
