"""Context-window discovery against small aiohttp servers answering in each server's shape,
the scripted backend doubles, and model folders on disk."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from anyclaude import backends
from anyclaude.backends.base import Backend, Endpoint
from anyclaude.discovery import context_window
from tests.support.mlx_server import free_port
from tests.support.scripted import ScriptedBackend

HANG = object()
"""A route answer: never respond (until the test ends)."""


def backend(name: str) -> Backend:
    found = backends.get(name)
    assert found is not None
    return found


@dataclass
class Seen:
    paths: list[str] = field(default_factory=list)
    auth: list[str | None] = field(default_factory=list)


@contextlib.asynccontextmanager
async def server(routes: Mapping[str, Any]) -> AsyncIterator[tuple[str, Seen]]:
    """An aiohttp server answering `routes` (path -> JSON, or HANG); 404 elsewhere."""
    seen, release = Seen(), asyncio.Event()

    async def handle(request: web.Request) -> web.StreamResponse:
        seen.paths.append(request.path)
        seen.auth.append(request.headers.get("Authorization"))
        answer = routes.get(request.path)
        if answer is HANG:
            await release.wait()
        if answer is None or answer is HANG:
            return web.json_response({"error": "not found"}, status=404)
        return web.json_response(answer)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}", seen
    finally:
        release.set()
        await runner.cleanup()


def discover(mode: str, routes: Mapping[str, Any], *, model: str | None = None,
             configured: int | None = None, key: str | None = None) -> tuple[int | None, Seen]:
    async def go() -> tuple[int | None, Seen]:
        async with server(routes) as (root, seen):
            found = await context_window(backend(mode), Endpoint(root + "/v1", model, key),
                                         configured)
            return found, seen

    return asyncio.run(go())


LMSTUDIO_MODELS = {"object": "list", "data": [
    {"id": "other", "type": "llm", "state": "not-loaded", "max_context_length": 1000},
    {"id": "qwen/qwen3-4b", "type": "llm", "state": "loaded", "max_context_length": 32768,
     "loaded_context_length": 8192},
]}


def test_the_setting_wins_and_nothing_is_asked() -> None:
    found, seen = discover("lmstudio", {"/api/v0/models": LMSTUDIO_MODELS}, configured=4096)
    assert found == 4096 and seen.paths == []


def test_lm_studio_reports_the_loaded_context_length_of_the_configured_model() -> None:
    found, seen = discover("lmstudio", {"/api/v0/models": LMSTUDIO_MODELS},
                           model="qwen/qwen3-4b")
    assert found == 8192 and "/api/v0/models" in seen.paths


def test_lm_studio_without_a_model_setting_uses_the_loaded_model() -> None:
    assert discover("lmstudio", {"/api/v0/models": LMSTUDIO_MODELS})[0] == 8192


def test_lm_studio_falls_back_to_the_maximum_context_length() -> None:
    models = {"data": [{"id": "m", "state": "not-loaded", "max_context_length": 32768}]}
    assert discover("lmstudio", {"/api/v0/models": models}, model="m")[0] == 32768


def test_vllm_reports_max_model_len_with_the_api_key() -> None:
    models = {"object": "list", "data": [{"id": "a", "max_model_len": 2048},
                                         {"id": "Qwen/Qwen3-8B", "max_model_len": 40960}]}
    found, seen = discover("openai", {"/v1/models": models}, model="Qwen/Qwen3-8B", key="sk-1")
    assert found == 40960
    assert set(seen.auth) == {"Bearer sk-1"}


def test_llama_cpp_reports_n_ctx_from_props() -> None:
    props = {"default_generation_settings": {"n_ctx": 16384}, "total_slots": 1}
    assert discover("openai", {"/props": props})[0] == 16384
    assert discover("openai", {"/props": {"n_ctx": 12288}})[0] == 12288


def test_garbage_answers_are_ignored() -> None:
    routes = {"/props": {"n_ctx": "big"}, "/v1/models": {"data": "x"},
              "/api/v0/models": {"data": [{"id": "m", "max_context_length": True}]}}
    assert discover("openai", routes)[0] is None


def write_config(folder: Path, config: dict[str, Any]) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    return str(folder)


def test_a_local_model_folder_gives_max_position_embeddings(tmp_path: Path) -> None:
    model = write_config(tmp_path / "m", {"max_position_embeddings": 40960})
    assert discover("mlx-lm", {"/health": {"status": "ok"}}, model=model)[0] == 40960
    nested = write_config(tmp_path / "vl", {"text_config": {"max_position_embeddings": 32768}})
    assert discover("mlx-lm", {}, model=nested)[0] == 32768


def test_a_local_model_folder_counts_in_every_mode(tmp_path: Path) -> None:
    """Servers that load a model by path (Omni, FastMLX, mlx-openai-server) report no
    window, in their own modes or through the openai mode: the folder's config says."""
    model = write_config(tmp_path / "m", {"max_position_embeddings": 2048})
    for mode in ("openai", "mlx-omni-server", "fastmlx", "mlx-openai-server"):
        assert discover(mode, {"/v1/models": {"object": "list", "data": []}},
                        model=model)[0] == 2048, mode
    assert discover("openai", {}, model="some-served-name")[0] is None


def test_a_server_that_never_answers_does_not_hold_up_the_launch(tmp_path: Path) -> None:
    model = write_config(tmp_path / "m", {"max_position_embeddings": 2048})
    routes = {"/api/v0/models": HANG, "/v1/models": HANG, "/props": HANG}
    found, seen = discover("mlx-textgen", routes, model=model)
    assert found == 2048 and len(seen.paths) == 3


def test_anthropic_upstreams_are_not_asked() -> None:
    found, seen = discover("claude", {"/v1/models": {"data": [{"max_model_len": 5}]}})
    assert found is None and seen.paths == []


def test_nothing_known_means_none() -> None:
    endpoint = Endpoint(f"http://127.0.0.1:{free_port()}/v1", "org/not-cached-model")
    assert asyncio.run(context_window(backend("mlx-lm"), endpoint, None)) is None


def test_the_scripted_doubles_of_lm_studio_and_vllm_are_understood() -> None:
    for dialect, mode in (("lmstudio", "lmstudio"), ("vllm", "openai")):
        with ScriptedBackend(dialect, context_length=12345) as double:  # type: ignore[arg-type]
            endpoint = Endpoint(double.url, "scripted")
            assert asyncio.run(context_window(backend(mode), endpoint, None)) == 12345
