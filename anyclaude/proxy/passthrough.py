"""claude mode: requests go to Anthropic (or `ANTHROPIC_UPSTREAM_URL`) unchanged, and the
answer comes back byte for byte, streaming included. Only hop-by-hop headers and the
run's own token are removed; the user's credentials go to the configured upstream only.
"""

from __future__ import annotations

import aiohttp
from aiohttp import web

from anyclaude.proxy.keys import CONFIG
from anyclaude.translate.errors import of_status, unreachable

HOP_BY_HOP = frozenset({"host", "connection", "keep-alive", "transfer-encoding", "te",
                        "trailer", "upgrade", "proxy-authorization", "proxy-authenticate",
                        "content-length", "x-anyclaude-token"})


def _forward_headers(request: web.Request, token: str) -> dict[str, str]:
    headers = {}
    for name, value in request.headers.items():
        lowered = name.lower()
        if lowered in HOP_BY_HOP or value == token or value == f"Bearer {token}":
            continue
        headers[name] = value
    return headers


async def forward(request: web.Request) -> web.StreamResponse:
    config = request.app[CONFIG]
    url = config.endpoint.url.rstrip("/") + request.path_qs
    body = await request.read()
    try:
        upstream = await config.upstream.session.request(
            request.method, url, data=body or None,
            headers=_forward_headers(request, config.token), allow_redirects=False)
    except (aiohttp.ClientConnectionError, OSError) as exc:
        raise unreachable(config.endpoint.url, config.backend.url_setting) from exc
    try:
        response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
        for name, value in upstream.headers.items():
            if name.lower() not in HOP_BY_HOP:
                response.headers.add(name, value)
        await response.prepare(request)
        async for chunk in upstream.content.iter_any():
            await response.write(chunk)
        await response.write_eof()
        return response
    except aiohttp.ClientPayloadError as exc:
        raise of_status(529, f"The connection to {config.endpoint.url} broke: {exc}") from exc
    finally:
        upstream.close()


def add_routes(app: web.Application) -> None:
    app.router.add_route("*", "/v1/{tail:.*}", forward)
