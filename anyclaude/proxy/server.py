"""Running the proxy: an aiohttp runner on 127.0.0.1, in the caller's loop."""

from __future__ import annotations

import logging

from aiohttp import http_exceptions, web

from anyclaude.proxy.app import create_app
from anyclaude.proxy.config import ProxyConfig

HOST = "127.0.0.1"
SHUTDOWN_TIMEOUT = 2.0


class _ClientFaults(logging.Filter):
    """A request that is not valid HTTP, or whose body does not decode, is the client's
    fault and was answered with a 400: one debug line, not an error with a traceback that
    any local process could repeat to fill the log."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, (http_exceptions.HttpProcessingError, web.RequestPayloadError)):
            reason = str(exc).strip().splitlines()[-1:] or [type(exc).__name__]
            record.msg, record.args = f"{record.getMessage()}: {reason[0].strip()}", None
            record.exc_info = record.exc_text = None
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return True


HTTP_LOG = logging.getLogger("anyclaude.proxy.http")
"""aiohttp's own server log, under anyclaude's (so it goes where anyclaude's log goes, and
nowhere while Claude Code owns the terminal), client faults demoted."""
HTTP_LOG.addFilter(_ClientFaults())


class ProxyServer:
    """Start with `await start()`; `url` is then the base URL for ANTHROPIC_BASE_URL."""

    def __init__(self, config: ProxyConfig, port: int = 0) -> None:
        self.config = config
        self.port = port
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    async def start(self) -> str:
        # handler_cancellation: a client that goes away cancels its handler at once, which
        # closes the upstream request (mlx-lm keeps generating until its socket closes).
        # shutdown_timeout: on Ctrl-C a request still streaming gets this long, not aiohttp's
        # default 60 s (measured: anyclaude otherwise waited for a whole 80 s answer).
        self._runner = web.AppRunner(create_app(self.config), handler_cancellation=True,
                                     access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT,
                                     logger=HTTP_LOG)
        await self._runner.setup()
        site = web.TCPSite(self._runner, HOST, self.port, reuse_address=True)
        await site.start()
        server = site._server
        assert server is not None
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1]
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

