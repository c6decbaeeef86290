"""Reading a request's body: its size limit, its content encoding, its JSON, each failure
a 4xx that says what is wrong with it.

aiohttp decodes `Content-Encoding` gzip, deflate, br and zstd bodies itself (`DECODED`); a
body that does not decode is the client's error, never a traceback.
"""

from __future__ import annotations

import orjson
from aiohttp import web

from anyclaude.proxy.keys import CONFIG
from anyclaude.translate.errors import invalid_request, of_status
from anyclaude.translate.validate import check_depth, too_deep

DECODED = frozenset({"gzip", "deflate", "br", "zstd"})
"""The request `Content-Encoding`s aiohttp's server decodes (compared lower-cased): the body
the handler reads is then the decoded one."""


ORJSON_DEPTH = ("depth limit", "recursion")
"""How orjson says a document is nested past its own limit (1,024 levels)."""


async def read_body(request: web.Request) -> bytes:
    """The (decoded) body, or a 4xx."""
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge as exc:
        raise of_status(413, "The request body is larger than "
                        f"{request.app[CONFIG].max_body // (1024 * 1024)} MB.") from exc
    except web.RequestPayloadError as exc:
        encoding = request.headers.get("Content-Encoding", "")
        raise invalid_request(f"The request body could not be read as {encoding!r} "
                              "(Content-Encoding); send it uncompressed or validly compressed."
                              if encoding else "The request body could not be read.") from exc


async def read_json(request: web.Request) -> object:
    """The body as JSON, or a 4xx that says exactly what is wrong with it."""
    content_type = request.headers.get("Content-Type", "")
    if content_type and "json" not in content_type.lower():
        raise invalid_request(f"Content-Type must be application/json, got {content_type!r}.")
    raw = await read_body(request)
    if not raw.strip():
        raise invalid_request("The request body is empty; send a JSON object.")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        if any(words in str(exc).lower() for words in ORJSON_DEPTH):
            raise too_deep() from None
        raise invalid_request(f"The request body is not valid JSON ({exc}).") from None
    check_depth(body)
    return body
