"""The proxy in front of a backend, for tests.

Two ways, as with the scripted backend. `serving(...)` runs the proxy on the test's own loop
(aiohttp's TestServer/TestClient) and, given an in-process `ScriptedBackend`, reaches it
through the upstream connector seam: no thread, no backend port. `running_proxy(...)` runs
it in a thread on a port, for sync clients that are the point of the test (Claude Code, the
real mlx-lm server, benchmarks).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ssl
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import anthropic
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from anyclaude import backends
from anyclaude.backends.base import Endpoint
from anyclaude.proxy.app import create_app
from anyclaude.proxy.config import ProxyConfig
from anyclaude.proxy.server import HTTP_LOG, SHUTDOWN_TIMEOUT, ProxyServer
from tests.support.scripted import ScriptedBackend

TOKEN = "test-token-0123456789"
AUTH = {"x-api-key": TOKEN}

MODE_FOR_DIALECT = {"mlx-lm": "mlx-lm", "lmstudio": "lmstudio", "mlx-textgen": "mlx-textgen",
                    "vllm": "openai", "llamacpp": "openai"}


@functools.cache
def tls() -> ssl.SSLContext:
    """One TLS context for every SDK client: building one loads the CA bundle, ~70 ms each,
    which dominated these tests (the proxy is plain HTTP, so it is never even used)."""
    return ssl.create_default_context()


def make_config(mode: str, url: str, model: str | None = None, *, api_key: str | None = None,
                **options: Any) -> ProxyConfig:
    backend = backends.get(mode)
    assert backend is not None
    return ProxyConfig(backend=backend, endpoint=Endpoint(url, model, api_key), token=TOKEN,
                       **options)


# --------------------------------------------------------------------------- in-process


@dataclass
class Proxied:
    """The proxy on the test's loop: `client` for raw requests (paths relative to the proxy),
    `sdk` for the official SDK as a strict client."""

    config: ProxyConfig
    client: TestClient[web.Request, web.Application]
    _sdk: anthropic.AsyncAnthropic | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return str(self.client.make_url("/")).rstrip("/")

    @property
    def sdk(self) -> anthropic.AsyncAnthropic:
        if self._sdk is None:
            self._sdk = anthropic.AsyncAnthropic(
                base_url=self.url, api_key=TOKEN, max_retries=0,
                http_client=anthropic.DefaultAsyncHttpxClient(verify=tls()))
        return self._sdk


@contextlib.asynccontextmanager
async def serving(mode: str, backend: ScriptedBackend | None = None, *, url: str | None = None,
                  model: str | None = None, **options: Any) -> AsyncIterator[Proxied]:
    """The proxy for `mode` in front of `backend` (in-process) or of `url` (over TCP)."""
    if backend is not None:
        options.setdefault("connector", backend.connector)
    config = make_config(mode, url or (backend.url if backend else ""), model, **options)
    server = TestServer(create_app(config))
    await server.start_server(shutdown_timeout=SHUTDOWN_TIMEOUT, access_log=None, logger=HTTP_LOG)
    async with TestClient(server) as client:
        proxied = Proxied(config, client)
        try:
            yield proxied
        finally:
            if proxied._sdk is not None:
                await proxied._sdk.close()


# --------------------------------------------------------------------------- in a thread


class ThreadedProxy:
    """The proxy in a background thread with its own loop, on a port."""

    def __init__(self, config: ProxyConfig, port: int = 0) -> None:
        self.server = ProxyServer(config, port)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                        name="anyclaude-proxy")

    def __enter__(self) -> ThreadedProxy:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.server.start(), self._loop).result(30)
        return self

    @property
    def url(self) -> str:
        return self.server.url

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(), self._loop).result(30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


@contextlib.contextmanager
def running_proxy(mode: str, url: str, model: str | None = None,
                  **options: Any) -> Iterator[ThreadedProxy]:
    with ThreadedProxy(make_config(mode, url, model, **options)) as proxy:
        yield proxy


def client(proxy: ThreadedProxy, **kw: Any) -> anthropic.Anthropic:
    kw.setdefault("http_client", anthropic.DefaultHttpxClient(verify=tls()))
    return anthropic.Anthropic(base_url=proxy.url, api_key=TOKEN, max_retries=0, **kw)
