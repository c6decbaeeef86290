"""Nothing leaves for a host other than the configured backend (issue 11, class 3).

A backend (or claude mode's upstream) that answers with a redirect is never followed, for
chat requests, model discovery and the health and tool probes alike: the redirect is an
error naming where it pointed. Every request that reaches the backend here is recorded, so
a followed redirect (to `/elsewhere`, served by the same double) would show.
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest

from anyclaude import backends, probes
from anyclaude.backends.base import Endpoint
from anyclaude.proxy.upstream import Upstream
from tests.support.proxy import TOKEN, serving
from tests.support.raw import RawBackend, exchange, parse, request_bytes, sends

BODY: dict[str, Any] = {"model": "claude-x", "max_tokens": 10,
                        "messages": [{"role": "user", "content": "hi"}]}
ELSEWHERE = "http://elsewhere.test/elsewhere"
STATUSES = [301, 302, 303, 307, 308]


def redirect(status: int, location: str | None = ELSEWHERE) -> bytes:
    where = f"Location: {location}\r\n" if location else ""
    return (f"HTTP/1.1 {status} Moved\r\n{where}Content-Length: 0\r\n\r\n").encode()


def only_the_first_request(backend: RawBackend) -> None:
    assert len(backend.requests) == 1, [r.split(b"\r\n")[0] for r in backend.requests]


@pytest.mark.parametrize("stream", [True, False])
@pytest.mark.parametrize("status", STATUSES)
async def test_a_backend_redirect_is_an_error_naming_the_location(status: int,
                                                                  stream: bool) -> None:
    async with RawBackend(sends(redirect(status))) as backend, \
            serving("openai", url="http://vllm.test/v1", model="m",
                    connector=backend.connector) as proxy:
        response = await proxy.client.post("/v1/messages", json={**BODY, "stream": stream},
                                           headers={"x-api-key": TOKEN})
        assert response.status == 500
        message = (await response.json())["error"]["message"]
        assert ELSEWHERE in message and f"HTTP {status}" in message and "\n" not in message
        only_the_first_request(backend)


async def test_a_redirect_without_a_location_says_so() -> None:
    async with RawBackend(sends(redirect(307, None))) as backend, \
            serving("mlx-lm", url="http://mlx.test/v1", connector=backend.connector) as proxy:
        response = await proxy.client.post("/v1/messages", json=BODY,
                                           headers={"x-api-key": TOKEN})
        assert "without a Location" in (await response.json())["error"]["message"]
        only_the_first_request(backend)


@pytest.mark.parametrize("mode", ["lmstudio", "openai"])
async def test_model_discovery_follows_no_redirect(mode: str) -> None:
    async with RawBackend(sends(redirect(302))) as backend:
        backend_decl = backends.get(mode)
        assert backend_decl is not None
        upstream = Upstream(backend_decl, Endpoint("http://backend.test/v1", None),
                            connector=backend.connector)
        try:
            assert await upstream.model() is None
        finally:
            await upstream.close()
        assert not any(b"/elsewhere" in r for r in backend.requests)


@pytest.mark.parametrize("status", [307, 302])
async def test_claude_mode_neither_follows_nor_passes_on_a_redirect(status: int) -> None:
    async with RawBackend(sends(redirect(status))) as backend, \
            serving("claude", url="http://upstream.test", connector=backend.connector) as proxy:
        raw = request_bytes("POST", "/v1/messages", json.dumps(BODY).encode(),
                            {"x-anyclaude-token": TOKEN, "x-api-key": "sk-user-key"},
                            token=False)
        response = parse(await exchange(proxy, raw))
        assert response.status == 500 and "location" not in response.headers
        assert ELSEWHERE in json.loads(response.body)["error"]["message"]
        only_the_first_request(backend)


@pytest.mark.parametrize("body", [None, {"messages": []}])
async def test_probes_follow_no_redirect(body: dict[str, Any] | None) -> None:
    async with RawBackend(sends(redirect(307))) as backend:
        root = await backend.listen()
        async with aiohttp.ClientSession() as client:
            answer = await probes.ask(client, root + "/v1/models", body)
        assert answer.status == 307
        only_the_first_request(backend)
