"""claude mode passes requests through faithfully (issue 11, class 8): the run's token never
reaches the upstream in any spelling the door accepts, the body goes with the headers that
describe it as sent, and nothing makes the upstream wait for what already came.

The upstream is a raw double that records every byte it receives.
"""

from __future__ import annotations

import gzip
import json
import zlib
from typing import Any

import pytest

from tests.support.proxy import TOKEN, serving
from tests.support.raw import RawBackend, exchange, parse, request_bytes, sends

BODY = json.dumps({"model": "claude-x", "max_tokens": 10,
                   "messages": [{"role": "user", "content": "hi"}]}).encode()
OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
USER_KEY = "sk-ant-user-own-key"


def received(backend: RawBackend) -> tuple[dict[str, list[str]], bytes]:
    """The one request the upstream got: headers (lower-cased names) and body."""
    assert len(backend.requests) == 1
    head, _, body = backend.requests[0].partition(b"\r\n\r\n")
    headers: dict[str, list[str]] = {}
    for line in head.decode("latin-1").split("\r\n")[1:]:
        name, _, value = line.partition(":")
        headers.setdefault(name.strip().lower(), []).append(value.strip())
    return headers, body


async def passed(headers: dict[str, str], body: bytes = BODY) -> tuple[int, RawBackend]:
    async with RawBackend(sends(OK)) as backend, \
            serving("claude", url="http://upstream.test", connector=backend.connector) as proxy:
        raw = request_bytes("POST", "/v1/messages", body,
                            {"Content-Type": "application/json", **headers}, token=False)
        return parse(await exchange(proxy, raw)).status, backend


# Every spelling of the run's token the door accepts, in the header it arrives in.
SPELLINGS: list[tuple[str, str]] = [
    ("x-anyclaude-token", TOKEN),
    ("X-Anyclaude-Token", TOKEN),
    ("x-api-key", TOKEN),
    ("Authorization", f"Bearer {TOKEN}"),
    ("Authorization", f"bearer {TOKEN}"),
    ("Authorization", f"BEARER {TOKEN}"),
    ("Authorization", f"Bearer  {TOKEN}"),
    ("Authorization", f"Bearer \t{TOKEN}"),
    ("authorization", f"bEaReR {TOKEN}   "),
]


@pytest.mark.parametrize(("name", "value"), SPELLINGS, ids=[f"{n}: {v!r}" for n, v in SPELLINGS])
async def test_the_token_never_reaches_the_upstream_in_any_accepted_spelling(
        name: str, value: str) -> None:
    status, backend = await passed({name: value, "anthropic-beta": "x"})
    assert status == 200, "the door accepts this spelling"
    assert TOKEN.encode() not in backend.requests[0]
    headers, _ = received(backend)
    assert headers["anthropic-beta"] == ["x"]


async def test_the_users_own_credentials_go_through() -> None:
    status, backend = await passed({"x-anyclaude-token": TOKEN, "x-api-key": USER_KEY,
                                    "Authorization": "Bearer sk-ant-oauth"})
    headers, _ = received(backend)
    assert status == 200
    assert headers["x-api-key"] == [USER_KEY]
    assert headers["authorization"] == ["Bearer sk-ant-oauth"]


@pytest.mark.parametrize(("encoding", "compress"), [
    ("gzip", gzip.compress), ("GZIP", gzip.compress), ("deflate", zlib.compress)])
async def test_a_decoded_body_goes_without_its_content_encoding(encoding: str,
                                                                compress: Any) -> None:
    status, backend = await passed({"x-anyclaude-token": TOKEN, "Content-Encoding": encoding},
                                   compress(BODY))
    headers, body = received(backend)
    assert status == 200 and body == BODY
    assert "content-encoding" not in headers
    assert headers["content-length"] == [str(len(BODY))]


async def test_a_body_aiohttp_does_not_decode_goes_as_it_came() -> None:
    status, backend = await passed({"x-anyclaude-token": TOKEN,
                                    "Content-Encoding": "x-custom"}, b"opaque bytes")
    headers, body = received(backend)
    assert status == 200 and body == b"opaque bytes"
    assert headers["content-encoding"] == ["x-custom"]


async def test_expect_100_continue_is_not_passed_on_after_the_body_was_read() -> None:
    """The upstream never sends `100 Continue`: forwarded, the header would hang the
    request (aiohttp's client waits for the 100 before it sends the body)."""
    status, backend = await passed({"x-anyclaude-token": TOKEN, "Expect": "100-continue"})
    headers, body = received(backend)
    assert status == 200 and body == BODY and "expect" not in headers


async def test_headers_the_connection_header_names_stay_here() -> None:
    status, backend = await passed({"x-anyclaude-token": TOKEN,
                                    "Connection": "close, X-Hop", "X-Hop": "1"})
    headers, _ = received(backend)
    assert status == 200 and "x-hop" not in headers


async def test_a_header_that_is_not_utf8_is_refused_not_a_traceback() -> None:
    async with RawBackend(sends(OK)) as backend, \
            serving("claude", url="http://upstream.test", connector=backend.connector) as proxy:
        raw = request_bytes("POST", "/v1/messages", BODY, {"x-anyclaude-token": TOKEN},
                            token=False).replace(b"\r\n\r\n", b"\r\nx-api-key: \xff\xfe\r\n\r\n", 1)
        response = parse(await exchange(proxy, raw))
        assert response.status == 400
        assert "x-api-key" in json.loads(response.body)["error"]["message"]
        assert backend.requests == []
