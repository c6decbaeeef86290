"""Raw bytes on both sides of the proxy, for faults no server makes on purpose.

`RawBackend` answers each connection with a test's own coroutine (a status line after a
pause, an oversized header, broken chunk framing, one chunk and a reset), reached in-process
through the upstream connector seam. `exchange` sends the proxy a request as bytes and reads
everything until the proxy closes, and `parse` checks the HTTP framing of what came back
strictly: a second status line inside a chunked body is a framing error, not a body.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from tests.support.proxy import TOKEN, Proxied
from tests.support.seam import PipeConnector

Script = Callable[[bytes, asyncio.StreamWriter], Awaitable[None]]
"""Answers one request (given whole) on a connection; the connection is reset after it."""
LIVENESS_S = 30.0
"""How long a raw exchange may take at most: generous, a liveness bound, not a benchmark."""


async def read_request(reader: asyncio.StreamReader) -> bytes:
    """One request (head and Content-Length body) off the wire; b"" at EOF."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return b""
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    return head + (await reader.readexactly(length) if length else b"")


@dataclass
class RawBackend:
    """A backend that reads one request per connection, keeps it in `requests`, and lets
    `script(request, writer)` answer it; then it resets the connection."""

    script: Script
    requests: list[bytes] = field(default_factory=list)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _writers: list[asyncio.StreamWriter] = field(default_factory=list)
    _server: asyncio.Server | None = None

    async def __aenter__(self) -> RawBackend:
        return self

    async def listen(self) -> str:
        """Also serve on a port of 127.0.0.1 (for clients that cannot take a connector);
        its root URL."""
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def __aexit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.close()
        for writer in self._writers:
            writer.transport.abort()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def connector(self) -> PipeConnector:
        return PipeConnector(self._accept)

    async def _accept(self, sock: socket.socket) -> None:
        reader, writer = await asyncio.open_connection(sock=sock)
        task = asyncio.create_task(self._serve(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.append(writer)
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            request = await read_request(reader)
            if request:
                self.requests.append(request)
                await self.script(request, writer)
        writer.transport.abort()


def sends(first: bytes, then: bytes = b"", *, after: asyncio.Event | None = None) -> Script:
    """A script that sends `first`, then (once `after` is set, when given) `then`."""

    async def script(_request: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(first)
        await writer.drain()
        if after is not None:
            await after.wait()
        writer.write(then)
        await writer.drain()

    return script


def request_bytes(method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None,
                  *, token: bool = True) -> bytes:
    """A request to the proxy; `Connection: close`, so the proxy's close ends the read."""
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
    if token:
        lines.append(f"x-api-key: {TOKEN}")
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    if body or method == "POST":
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


async def exchange(proxy: Proxied, raw: bytes, started: asyncio.Event | None = None) -> bytes:
    """Send `raw` to the proxy and read until it closes the connection; `started` is set
    once the first bytes of the answer are in."""
    url = proxy.client.make_url("/")
    assert url.host is not None and url.port is not None
    reader, writer = await asyncio.open_connection(url.host, url.port)
    try:
        writer.write(raw)
        await writer.drain()
        first = await asyncio.wait_for(reader.read(65536), LIVENESS_S)
        if started is not None:
            started.set()
        return first + await asyncio.wait_for(reader.read(), LIVENESS_S)
    finally:
        writer.close()


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes
    complete: bool
    """The body ended as its framing says (the last chunk, or Content-Length bytes)."""


class FramingError(AssertionError):
    """What came back is not one well-framed HTTP response."""


def parse(data: bytes) -> Response:
    """Exactly one HTTP/1.1 response; anything after its end, or a chunk-size line that is
    not hex (such as a second status line), is a `FramingError`."""
    head, sep, rest = data.partition(b"\r\n\r\n")
    if not sep:
        raise FramingError(f"no complete head: {data[:200]!r}")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    if 100 <= status < 200:  # an interim response (100 Continue): the real one follows
        return parse(rest)
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding") == "chunked":
        return _chunked(status, headers, rest)
    length = int(headers.get("content-length", len(rest)))
    if len(rest) > length:
        raise FramingError(f"bytes after the body: {rest[length:][:200]!r}")
    return Response(status, headers, rest, len(rest) == length)


def _chunked(status: int, headers: dict[str, str], rest: bytes) -> Response:
    body = bytearray()
    while rest:
        line, sep, after = rest.partition(b"\r\n")
        if not sep:
            break  # cut in a size line
        try:
            size = int(line.split(b";")[0], 16)
        except ValueError:
            raise FramingError(f"not a chunk size: {line[:200]!r}") from None
        if size == 0:
            if after != b"\r\n":
                raise FramingError(f"bytes after the last chunk: {after[:200]!r}")
            return Response(status, headers, bytes(body), True)
        body += after[:size]
        if len(after) < size + 2:
            break  # cut in a chunk
        if after[size:size + 2] != b"\r\n":
            raise FramingError(f"a chunk does not end with CRLF: {after[size:size + 20]!r}")
        rest = after[size + 2:]
    return Response(status, headers, bytes(body), False)
