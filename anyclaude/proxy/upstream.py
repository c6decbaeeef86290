"""The HTTP client side: one aiohttp session to the backend, requests with exact bodies.

Bodies are serialised once with orjson and sent with a Content-Length (mlx-lm answers 411
to chunked bodies). Responses are returned open, so the caller streams them and closing
them closes the connection: mlx-lm stops generating only when its socket closes.

Nothing leaves for another host: no redirect is followed (a 3xx is the backend's error,
naming where it pointed). What can go wrong on the wire is said here in words (`trouble`),
so every caller turns an aiohttp failure into an Anthropic error, never a traceback.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp
import orjson
from aiohttp import http_exceptions
from multidict import CIMultiDict

from anyclaude import timeouts
from anyclaude.backends.base import Backend, Endpoint
from anyclaude.backends.net import auth_headers, server_root
from anyclaude.translate import errors, models

KEEPALIVE_S = 10.0
"""Idle pooled connections to the backend are closed after this long."""

ConnectorFactory = Callable[[], aiohttp.BaseConnector]
"""Where connections come from: TCP by default; tests pass one that reaches a server in the
same process (the network seam), so nothing above the connector changes."""


def tcp_connector() -> aiohttp.BaseConnector:
    return aiohttp.TCPConnector(limit=0, keepalive_timeout=KEEPALIVE_S)


REDIRECTS = frozenset({300, 301, 302, 303, 307, 308})
FAILURES = (aiohttp.ClientError, OSError)
"""What aiohttp raises when the backend's connection or answer fails."""

_MALFORMED: tuple[tuple[type[Exception], str], ...] = (
    (http_exceptions.LineTooLong, "a header or line over 8 KB"),
    (http_exceptions.BadStatusLine, "a malformed status line"),
    (http_exceptions.InvalidHeader, "a malformed header"),
    (http_exceptions.TransferEncodingError, "broken chunk framing"),
    (http_exceptions.ContentLengthError, "less body than its Content-Length"),
    (http_exceptions.ContentEncodingError, "a body that does not decompress"),
    (http_exceptions.BadHttpMessage, "a malformed HTTP message"),
)
"""aiohttp's parser errors (the cause of its client errors), most specific first."""


def _malformed(exc: BaseException) -> str | None:
    seen: BaseException | None = exc
    while seen is not None:
        for kind, words in _MALFORMED:
            if isinstance(seen, kind):
                return words
        if isinstance(seen, http_exceptions.HttpProcessingError):  # as aiohttp re-raises them
            first = seen.message.strip().splitlines()[:1] or [""]
            return f"malformed HTTP ({first[0].rstrip(':. ')})"
        seen = seen.__cause__ or seen.__context__
    return None


WATCH_S = 1.0
"""How often a wait on a body looks for a break aiohttp 3.14 does not report (`_stuck`)."""


def _stuck(response: aiohttp.ClientResponse) -> http_exceptions.HttpProcessingError | None:
    """When a body's framing breaks after the body started, aiohttp 3.14 records the parse
    error on the connection, not on the body, and closes the connection: a reader then
    waits for ever (and a read after that gets a bare RuntimeError). That error, if so."""
    connection = response.connection
    protocol = connection.protocol if connection is not None else None
    if protocol is None or response.content.exception() is not None:
        return None
    failed = protocol.exception()
    return failed if isinstance(failed, http_exceptions.HttpProcessingError) else None


async def next_piece(response: aiohttp.ClientResponse, wait: float) -> bytes | None:
    """The next piece of `response`'s body (b"" at its end), or None when `wait` seconds pass
    without one; a broken body raises one of `FAILURES` (also where aiohttp does not)."""
    try:
        async with asyncio.timeout(max(0.0, wait)):
            return await response.content.readany()
    except TimeoutError:
        broken = _stuck(response)
        if broken is None:
            return None
        raise aiohttp.ClientPayloadError(broken.message) from broken
    except RuntimeError as exc:  # aiohttp's "Connection closed." on a read after such a break
        raise aiohttp.ClientPayloadError(str(exc)) from (_stuck(response) or exc)


def trouble(exc: BaseException) -> str:
    """What a failure in `FAILURES` says about the backend, as a clause ("it sent broken
    chunk framing"), for one-sentence errors."""
    malformed = _malformed(exc)
    if malformed is not None:
        return f"it sent {malformed}"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "it closed the connection"
    return f"the connection broke ({type(exc).__name__})"


class Upstream:
    def __init__(self, backend: Backend, endpoint: Endpoint, *,
                 connect_timeout: float = timeouts.CONNECT_S,
                 auto_decompress: bool = True, connector: ConnectorFactory | None = None) -> None:
        self.backend = backend
        self.endpoint = endpoint
        self._connector = connector or tcp_connector
        self._connect_timeout = connect_timeout
        self._auto_decompress = auto_decompress
        self._session: aiohttp.ClientSession | None = None
        self._model: str | None = endpoint.model
        self._model_lock = asyncio.Lock()

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=self._connector(),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=self._connect_timeout),
                auto_decompress=self._auto_decompress,
                skip_auto_headers=("User-Agent",),
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def url(self, path: str) -> str:
        return self.endpoint.url.rstrip("/") + path

    def headers(self) -> dict[str, str]:
        return {"Content-Type": "application/json", **auth_headers(self.endpoint.api_key)}

    async def send(self, method: str, url: str, *, data: bytes | None,
                   headers: Mapping[str, str] | CIMultiDict[str]) -> aiohttp.ClientResponse:
        """One request; the open response once its headers arrive. A failure before then,
        or a redirect (never followed), is an AnthropicError."""
        base, setting = self.endpoint.url, self.backend.url_setting
        try:
            response = await self.session.request(method, url, data=data, headers=headers,
                                                  allow_redirects=False)
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
            raise errors.unreachable(base, setting) from exc
        except FAILURES as exc:
            if _malformed(exc) is not None:
                raise errors.not_http(base, trouble(exc), setting) from exc
            raise errors.of_status(529, f"The backend at {base} closed the connection without "
                                   "answering; check its log.") from exc
        if response.status in REDIRECTS:
            response.close()
            raise errors.redirected(base, response.status, response.headers.get("Location"),
                                    setting)
        return response

    async def post_json(self, path: str, body: Mapping[str, Any]) -> aiohttp.ClientResponse:
        """POST `body` as JSON to the backend (see `send`)."""
        return await self.send("POST", self.url(path), data=orjson.dumps(body),
                               headers=self.headers())

    async def model(self) -> str | None:
        """The model name to send: the configured one, else one the server has loaded."""
        if self._model or self.backend.dialect.model_field != "configured":
            return self._model
        async with self._model_lock:
            if self._model is None:
                self._model = await self._discover_model()
        return self._model

    async def _listing(self, url: str) -> list[dict[str, object]]:
        try:
            async with self.session.get(url, headers=self.headers(), allow_redirects=False,
                                        timeout=aiohttp.ClientTimeout(total=5)) as resp:
                data = await resp.json(content_type=None) if resp.status == 200 else None
        except (TimeoutError, aiohttp.ClientError, ValueError):
            return []
        return models.listed(data)

    async def _discover_model(self) -> str | None:
        """A model the server has loaded (LM Studio's native API says which), else the
        first one it lists."""
        native = await self._listing(server_root(self.endpoint.url) + "/api/v0/models")
        return models.first_id(models.loaded(native) or await self._listing(self.url("/models")))
