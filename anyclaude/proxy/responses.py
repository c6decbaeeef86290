"""What the client is sent when things go wrong: an error in Anthropic's shape while no
response has started, and the end of one that has.

Once a status line is out, a second response would be written into the first one's body
(the client would read `HTTP/1.1 529` inside a chunked stream). So the app notes each
response as it is prepared (`note_prepared`, on aiohttp's `on_response_prepare`), handlers
end their own streams (an `error` event), and whatever still escapes a started response
closes the connection (`abandon`): the client sees a cut response, never a doubled or a
complete-looking one.
"""

from __future__ import annotations

import orjson
from aiohttp import web

from anyclaude.proxy.keys import PREPARED
from anyclaude.translate.errors import AnthropicError


def _dumps(obj: object) -> str:
    return orjson.dumps(obj).decode()


def error_response(error: AnthropicError, request_id: str) -> web.Response:
    headers = {"request-id": request_id}
    if error.retry is not None:
        headers["x-should-retry"] = "true" if error.retry else "false"
    return web.json_response(error.body(request_id), status=error.status, headers=headers,
                             dumps=_dumps)


async def note_prepared(request: web.Request, response: web.StreamResponse) -> None:
    request[PREPARED] = response


def started(request: web.Request) -> web.StreamResponse | None:
    """The response already under way for this request, if any."""
    return request.get(PREPARED)


def abandon(request: web.Request) -> None:
    """End a started response by closing the connection (what is already written is
    flushed first): nothing may follow it on this connection."""
    transport = request.transport
    if transport is not None:
        transport.close()
