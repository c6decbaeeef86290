"""The scripted backend itself: scripting, lifecycle, and one HTTP exchange at a time.

Two ways to run it. `with ScriptedBackend(...)`: a server on 127.0.0.1 (ephemeral port) in a
thread with its own loop, so sync tests, tests with their own loop and subprocess proxies can
all reach `url`. `async with ScriptedBackend(...)`: on the test's own loop, no thread and no
port; clients reach it through `connector()` (the proxy's upstream seam).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any, Final

import aiohttp

from tests.support.scripted.data import (
    DEFAULT_PIECES,
    DIALECTS,
    INVALID,
    Dialect,
    Reply,
    Request,
    Responder,
    error_reply,
)
from tests.support.scripted.dialect import DialectBase
from tests.support.scripted.faults import send_fixed, send_reply
from tests.support.scripted.llamacpp import LlamaCpp
from tests.support.scripted.lmstudio import LmStudio
from tests.support.scripted.mlx_lm import MlxLm, mlx_lm_error
from tests.support.scripted.mlx_textgen import MlxTextgen
from tests.support.scripted.record import Recorder
from tests.support.scripted.vllm import Vllm
from tests.support.scripted.wire import BadRequestLine, Closer, Conn, PeerGone, read_request
from tests.support.seam import PipeConnector

DIALECT_CLASSES: Final[Mapping[str, type[DialectBase]]] = {
    cls.name: cls for cls in (MlxLm, MlxTextgen, LmStudio, Vllm, LlamaCpp)}


class ScriptedBackend(Recorder):
    """A scripted OpenAI-compatible server speaking one dialect.

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
    on the server's loop, so it must not block.
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
        if dialect not in DIALECT_CLASSES:
            raise ValueError(f"unknown dialect {dialect!r}; one of {', '.join(DIALECTS)}")
        super().__init__()
        self.dialect: Dialect = dialect
        self.model = model
        self.context_length = context_length
        self.strict_model = strict_model
        self.validate = validate
        self.textgen_stream_tool_bug = textgen_stream_tool_bug
        self.default_reply = default_reply or Reply(text=DEFAULT_PIECES)
        self.responder: Responder | None = responder
        self.token_counter: Callable[[Request], int] = token_counter or (lambda r: len(r.body) // 4)
        self._d = DIALECT_CLASSES[dialect](self)
        if reasoning_field != "default":
            self._d.reasoning_field = reasoning_field
        self._replies: deque[Reply] = deque()
        self._conns: dict[int, Conn] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self.port = 0

    # lifecycle: in a thread, on a port -------------------------------------------------
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
                    loop.create_server(lambda: Conn(self), "127.0.0.1", 0))
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

    def __enter__(self) -> ScriptedBackend:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # lifecycle: on the caller's loop, no port ------------------------------------------
    async def __aenter__(self) -> ScriptedBackend:
        self._loop = asyncio.get_running_loop()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._shutdown()
        self._loop = None

    def connector(self) -> aiohttp.BaseConnector:
        """An aiohttp connector whose connections reach this backend over a socket pair."""
        return PipeConnector(self.accept)

    async def accept(self, sock: socket.socket) -> None:
        """Serve one connection on `sock`, on the backend's loop whichever loop asks."""
        loop = self._loop
        if loop is None:
            raise ConnectionRefusedError("the scripted backend is not running")
        attach = loop.connect_accepted_socket(lambda: Conn(self), sock)
        if loop is asyncio.get_running_loop():
            await attach
        else:
            await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(attach, loop))

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

    @property
    def root_url(self) -> str:
        if self._thread is None and self._loop is not None:
            return f"http://{self.dialect}.scripted.test"  # reached only through connector()
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

    # called on the server's loop -----------------------------------------------------
    def open_connection(self, conn: Conn) -> int:
        index = self.note_opened()
        self._conns[index] = conn
        return index

    def close_connection(self, index: int, by: Closer, early: bool) -> None:
        self._conns.pop(index, None)
        self.note_closed(index, by, early)

    def drop_model(self, name: str) -> None:
        self.note_dropped(name)

    async def serve(self, conn: Conn) -> None:
        try:
            while not conn.gone.is_set():
                if not await self._exchange(conn):
                    break
        except PeerGone:
            pass
        except asyncio.CancelledError:
            raise
        except Exception as e:  # a bug in the double: record it, drop the connection
            self.note_error(f"{type(e).__name__}: {e}")
        finally:
            conn.in_request = False
            if not conn.gone.is_set():
                conn.close()

    async def _exchange(self, conn: Conn) -> bool:
        d = self._d
        try:
            incoming = await read_request(conn, interim_continue=d.keep_alive,
                                          needs_length=d.needs_length)
        except BadRequestLine:
            await send_fixed(conn, d, error_reply(400, b"Bad Request", "text/plain"), True)
            return False
        if incoming is None:
            return False
        body = incoming.body
        parsed: Any = INVALID if incoming.method == "POST" and not body else None
        if body:
            try:
                parsed = json.loads(body)
            except (ValueError, UnicodeDecodeError):
                parsed = INVALID
        req = Request(
            index=self.next_index(), connection=conn.index, method=incoming.method,
            path=incoming.target, version=incoming.version, headers=incoming.headers, body=body,
            raw=incoming.head + body, json=None if parsed is INVALID else parsed,
            received_at=time.monotonic())
        self.note_request(req)
        keep = (d.keep_alive and incoming.version == "HTTP/1.1"
                and incoming.headers.get("connection", "").lower() != "close")
        keep = await self._route(conn, replace(req, json=parsed), incoming.length_required, keep)
        conn.in_request = False
        self.note_response_done(conn.index)
        if not keep:
            conn.close()
        return keep

    async def _route(self, conn: Conn, req: Request, length_required: bool, keep: bool) -> bool:
        d = self._d
        path = req.path if d.keeps_query else req.path.split("?", 1)[0]
        if req.method == "POST" and path in d.chat_paths:
            if length_required:
                refusal = mlx_lm_error("Content-Length header is required", 411)
                return await send_fixed(conn, d, refusal, keep)
            problem = d.check(req) if self.validate else None
            if problem is None and not isinstance(req.json, dict):
                problem = error_reply(400, d.error_json(400, "Invalid JSON in request body"))
            reply = problem if problem is not None else self._next_reply(req)
            return await send_reply(conn, d, req, reply, keep)
        if req.method == "OPTIONS":
            return await send_fixed(conn, d, Reply(status=204, error_body=b""), keep)
        if req.method == "GET" and path.startswith(d.model_paths):
            return await send_fixed(conn, d, d.models(path), keep)
        if req.method == "GET" and path == "/health" and d.health is not None:
            return await send_fixed(conn, d, Reply(error_body=d.health), keep)
        return await send_fixed(conn, d, d.not_found(req.method, path), keep)
