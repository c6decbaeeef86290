"""claude mode: requests go to Anthropic (or `ANTHROPIC_UPSTREAM_URL`) unchanged, and the
answer comes back byte for byte, streaming included. The user's credentials go to the
configured upstream only.

What is forwarded is what is sent: hop-by-hop headers stay here, every header that presents
the run's token (in any spelling the door accepts) is removed, a body aiohttp decoded goes
without its `Content-Encoding`, and `Expect: 100-continue` is not passed on once the body has
been read (an upstream that never sends 100 would hang the request). A redirect is not
followed, and not passed through either (Claude Code would follow it, with the user's key,
to wherever it points): it is an error naming the location. Once the answer has started,
a failure closes the connection, so the client sees a cut answer, never a second one.
"""

from __future__ import annotations

import asyncio
import logging
import time

import aiohttp
from aiohttp import web
from multidict import CIMultiDict, MultiMapping

from anyclaude import timeouts
from anyclaude.proxy import door
from anyclaude.proxy.config import ProxyConfig
from anyclaude.proxy.incoming import DECODED, read_body
from anyclaude.proxy.keys import CONFIG
from anyclaude.proxy.responses import abandon
from anyclaude.proxy.upstream import FAILURES, WATCH_S, next_piece, trouble
from anyclaude.translate import errors

log = logging.getLogger("anyclaude.proxy")
HOP_BY_HOP = frozenset({"host", "connection", "keep-alive", "transfer-encoding", "te",
                        "trailer", "upgrade", "proxy-authorization", "proxy-authenticate",
                        "content-length", "expect", door.TOKEN_HEADER})


def forward_headers(headers: MultiMapping[str], token: str) -> CIMultiDict[str]:
    """The request headers to send upstream (see the module docstring)."""
    named = {token.strip().lower() for value in headers.getall("Connection", [])
             for token in value.split(",")}
    forwarded: CIMultiDict[str] = CIMultiDict()
    for name, value in headers.items():
        lowered = name.lower()
        if lowered in HOP_BY_HOP or lowered in named or door.carries(name, value, token):
            continue
        if lowered == "content-encoding" and value.lower() in DECODED:
            continue  # aiohttp decoded the body: it goes as it is now
        if not _is_text(value):
            raise errors.invalid_request(f"The {name} header is not valid UTF-8; anyclaude "
                                         "forwards text headers only.")
        forwarded.add(name, value)
    return forwarded


def _is_text(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


async def forward(request: web.Request) -> web.StreamResponse:
    config = request.app[CONFIG]
    url = config.endpoint.url.rstrip("/") + request.path_qs
    body = await read_body(request)
    headers = forward_headers(request.headers, config.token)
    try:
        async with asyncio.timeout(config.answer_timeout):
            upstream = await config.upstream.send(request.method, url, data=body or None,
                                                  headers=headers)
    except TimeoutError:
        raise _silent(config) from None
    try:
        response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
        for name, value in upstream.headers.items():
            if name.lower() not in HOP_BY_HOP:
                response.headers.add(name, value)
        await response.prepare(request)
        while chunk := await _read(config, upstream):
            await response.write(chunk)
        await response.write_eof()
    except errors.AnthropicError as exc:  # only the upstream's reads raise these
        log.info("claude mode: %s; closing the connection to the client", exc.message)
        abandon(request)
    finally:
        upstream.close()
    return response


async def _read(config: ProxyConfig, upstream: aiohttp.ClientResponse) -> bytes:
    """The next piece of the upstream's answer (b"" at its end), within `answer_timeout`."""
    deadline = time.monotonic() + config.answer_timeout
    try:
        while (piece := await next_piece(upstream, min(WATCH_S, deadline - time.monotonic()))) \
                is None:
            if time.monotonic() >= deadline:
                raise _silent(config)
    except FAILURES as exc:
        raise errors.broken_answer(config.endpoint.url, trouble(exc)) from exc
    return piece


def _silent(config: ProxyConfig) -> errors.AnthropicError:
    return errors.timed_out(config.endpoint.url, config.answer_timeout, timeouts.ANSWER_ENV)


def add_routes(app: web.Application) -> None:
    app.router.add_route("*", "/v1/{tail:.*}", forward)
