"""HTTP/1.x framing by hand, so that every byte the double sends is ours.

A connection is an asyncio protocol with a byte buffer and events, so a handler that sleeps
or hangs notices at once when the peer goes away (`PeerGone`).
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import http
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, Literal, Protocol

Closer = Literal["peer", "server"]
LAST_CHUNK = b"0\r\n\r\n"


class PeerGone(Exception):
    """The client closed the connection; unwinds the response being written."""


class BadRequestLine(Exception):
    """The request line is not `METHOD TARGET VERSION`."""


def reason(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def now_http() -> str:
    return email.utils.formatdate(usegmt=True)


def head_bytes(version: str, status: int, headers: list[tuple[str, str]]) -> bytes:
    lines = [f"{version} {status} {reason(status)}", *(f"{k}: {v}" for k, v in headers)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def chunk_frame(payload: bytes) -> bytes:
    """One chunk of a `Transfer-Encoding: chunked` body."""
    return f"{len(payload):x}\r\n".encode() + payload + b"\r\n"


class Owner(Protocol):
    """What a connection reports to the server that accepted it."""

    def open_connection(self, conn: Conn) -> int: ...
    def close_connection(self, index: int, by: Closer, early: bool) -> None: ...
    def serve(self, conn: Conn) -> Coroutine[Any, Any, None]: ...


class Conn(asyncio.Protocol):
    """One client connection: a byte buffer plus events, so the handler can notice at once
    when the peer goes away, even while it sleeps or hangs."""

    def __init__(self, owner: Owner) -> None:
        self.owner = owner
        self.buf = bytearray()
        self.wakeup = asyncio.Event()
        self.gone = asyncio.Event()
        self.writable = asyncio.Event()
        self.writable.set()
        self.transport: asyncio.Transport | None = None
        self.index = -1
        self.in_request = False
        self.task: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.index = self.owner.open_connection(self)
        self.task = asyncio.get_running_loop().create_task(self.owner.serve(self))

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

    def _mark_gone(self, by: Closer) -> None:
        if self.gone.is_set():
            return
        self.gone.set()
        self.wakeup.set()
        self.owner.close_connection(self.index, by, early=by == "peer" and self.in_request)

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
            raise PeerGone
        if seconds <= 0:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.gone.wait(), seconds)
            raise PeerGone

    async def hang(self) -> None:
        """Send nothing until the peer gives up."""
        await self.gone.wait()
        raise PeerGone

    async def send(self, data: bytes) -> None:
        if self.gone.is_set() or self.transport is None or self.transport.is_closing():
            raise PeerGone
        self.transport.write(data)
        await self.writable.wait()
        if self.gone.is_set():
            raise PeerGone


@dataclass(frozen=True)
class Incoming:
    """A request as read off the wire, before routing."""

    method: str
    target: str
    version: str
    headers: dict[str, str]
    head: bytes
    body: bytes
    length_required: bool
    """A POST without Content-Length, to a server that refuses those (mlx-lm's 411)."""


async def read_request(conn: Conn, *, interim_continue: bool,
                       needs_length: bool) -> Incoming | None:
    """The next request on `conn`, or None when the connection ended first.

    Raises `BadRequestLine` (after the head was read) for a malformed request line.
    """
    head = await conn.read_until(b"\r\n\r\n")
    if head is None:
        return None
    conn.in_request = True
    lines = head.decode("latin-1").split("\r\n")
    try:
        method, target, version = lines[0].split(" ", 2)
    except ValueError:
        raise BadRequestLine from None
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    if interim_continue and headers.get("expect", "").lower() == "100-continue":
        await conn.send(b"HTTP/1.1 100 Continue\r\n\r\n")
    body = b""
    length_required = False
    if "content-length" in headers:
        got = await conn.read_exactly(int(headers["content-length"] or 0))
        if got is None:
            return None
        body = got
    elif needs_length and method == "POST":
        length_required = True  # answered before reading any body (fixture 22)
    elif "chunked" in headers.get("transfer-encoding", "").lower():
        got = await _read_chunked(conn)
        if got is None:
            return None
        body = got
    return Incoming(method, target, version, headers, head, body, length_required)


async def _read_chunked(conn: Conn) -> bytes | None:
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
