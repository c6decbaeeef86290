"""The network seam for in-process tests: an aiohttp connector whose connections go to a
server in this process over a socket pair, so no port is bound, nothing is resolved and no
thread is needed (what httpx calls a transport). `Upstream` takes it as its connector.

The bytes still cross a real socket pair, so framing, closes and back-pressure behave as on
TCP: a test of what the proxy does when the backend cuts a stream stays honest.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.client_proto import ResponseHandler

from anyclaude.proxy.upstream import KEEPALIVE_S

Accept = Callable[[socket.socket], Awaitable[None]]
"""Takes the server end of a new connection and starts serving it."""


class PipeConnector(aiohttp.BaseConnector):
    """Connections to `accept` instead of to the URL's host (keep-alive pooling as usual)."""

    def __init__(self, accept: Accept, **options: Any) -> None:
        super().__init__(**{"limit": 0, "keepalive_timeout": KEEPALIVE_S, **options})
        self._accept = accept

    async def _create_connection(self, req: aiohttp.ClientRequest, traces: list[Any],
                                 timeout: aiohttp.ClientTimeout) -> ResponseHandler:
        client, server = socket.socketpair()
        try:
            await self._accept(server)
            _, protocol = await self._loop.create_connection(self._factory, sock=client)
        except BaseException:
            client.close()
            server.close()
            raise
        return protocol


def accept_into(factory: Callable[[], asyncio.BaseProtocol]) -> Accept:
    """`Accept` for any asyncio server protocol on the running loop, e.g. an aiohttp
    `web.Server` (`AppRunner.server`)."""

    async def accept(sock: socket.socket) -> None:
        await asyncio.get_running_loop().connect_accepted_socket(factory, sock)

    return accept


async def app_connector(app: web.Application) -> tuple[Callable[[], aiohttp.BaseConnector],
                                                         web.AppRunner]:
    """A connector factory reaching `app` in-process, and its runner (clean it up)."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    server = runner.server
    assert server is not None
    accept = accept_into(server)
    return (lambda: PipeConnector(accept)), runner
