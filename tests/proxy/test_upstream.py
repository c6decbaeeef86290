"""The upstream client: which model it names when the settings name none."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from anyclaude import backends
from anyclaude.backends.base import Endpoint
from anyclaude.proxy.upstream import Upstream
from tests.support.seam import app_connector


async def discovered(routes: dict[str, Any], mode: str = "lmstudio") -> str | None:
    def answer(payload: Any) -> Any:
        async def handler(_request: web.Request) -> web.Response:
            return web.json_response(payload)
        return handler

    app = web.Application()
    for path, payload in routes.items():
        app.router.add_get(path, answer(payload))
    connector, runner = await app_connector(app)
    backend = backends.get(mode)
    assert backend is not None
    upstream = Upstream(backend, Endpoint("http://backend.test/v1", None), connector=connector)
    try:
        return await upstream.model()
    finally:
        await upstream.close()
        await runner.cleanup()


async def test_lm_studio_names_the_loaded_model_not_the_first_downloaded_one() -> None:
    native = {"data": [
        {"id": "text-embedding-nomic", "type": "embeddings", "state": "loaded"},
        {"id": "qwen/qwen3-4b", "type": "llm", "state": "not-loaded"},
        {"id": "qwen/qwen3-coder-30b", "type": "llm", "state": "loaded"}]}
    openai = {"data": [{"id": "text-embedding-nomic"}, {"id": "qwen/qwen3-4b"},
                       {"id": "qwen/qwen3-coder-30b"}]}
    model = await discovered({"/api/v0/models": native, "/v1/models": openai})
    assert model == "qwen/qwen3-coder-30b"


async def test_other_servers_use_the_first_listed_model() -> None:
    assert await discovered({"/v1/models": {"data": [{"id": "meta/llama"}]}}, "openai") == \
        "meta/llama"


async def test_no_listing_means_no_model_field() -> None:
    assert await discovered({}, "openai") is None


async def test_mlx_lm_is_never_sent_a_model_name() -> None:
    assert await discovered({"/v1/models": {"data": [{"id": "x"}]}}, "mlx-lm") is None
