"""The HTTP client side: one aiohttp session to the backend, requests with exact bodies.

Bodies are serialised once with orjson and sent with a Content-Length (mlx-lm answers 411
to chunked bodies). Responses are returned open, so the caller streams them and closing
them closes the connection: mlx-lm stops generating only when its socket closes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp
import orjson

from anyclaude.backends.base import Backend, Endpoint
from anyclaude.backends.net import auth_headers, server_root
from anyclaude.translate import models
from anyclaude.translate.errors import of_status, unreachable

KEEPALIVE_S = 10.0
"""Idle pooled connections to the backend are closed after this long."""

ConnectorFactory = Callable[[], aiohttp.BaseConnector]
"""Where connections come from: TCP by default; tests pass one that reaches a server in the
same process (the network seam), so nothing above the connector changes."""


def tcp_connector() -> aiohttp.BaseConnector:
    return aiohttp.TCPConnector(limit=0, keepalive_timeout=KEEPALIVE_S)


class Upstream:
    def __init__(self, backend: Backend, endpoint: Endpoint, *, connect_timeout: float = 10.0,
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

    async def post_json(self, path: str, body: Mapping[str, Any]) -> aiohttp.ClientResponse:
        """POST and return the open response once its headers arrive."""
        try:
            return await self.session.post(self.url(path), data=orjson.dumps(body),
                                           headers=self.headers())
        except (aiohttp.ClientConnectionError, OSError) as exc:
            if isinstance(exc, aiohttp.ServerDisconnectedError):
                raise of_status(529, f"The backend at {self.endpoint.url} closed the connection "
                                     "without answering; check its log.") from exc
            raise unreachable(self.endpoint.url, self.backend.url_setting) from exc

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
            async with self.session.get(url, headers=self.headers(),
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
