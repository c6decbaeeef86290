"""The proxy routes each request to its model's server: side work (Haiku tier, titles,
subagents) to the small model's own server at once, chosen models to the main server under
their names, everything else to the main model; `/v1/models` lists what the picker offers.
Two scripted mlx-lm servers on ports, the official SDK as the client."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from anyclaude import backends
from anyclaude.backends.base import Endpoint
from anyclaude.proxy.background import BACKGROUND_MODEL
from anyclaude.routing import AGENT_HEADER, Routes, build
from tests.support.proxy import AUTH, serving
from tests.support.scripted import Reply, ScriptedBackend

HI: Any = [{"role": "user", "content": "hi"}]
LONG = Reply(text=["word "] * 2000, chunk_delay=0.05)
"""A main answer that is still streaming long after any side request is done."""


@pytest.fixture
def servers() -> Iterator[tuple[ScriptedBackend, ScriptedBackend]]:
    with ScriptedBackend("mlx-lm", strict_model=False) as main, \
            ScriptedBackend("mlx-lm", model="small") as small:
        main.default_reply = Reply(text="from main")
        small.default_reply = Reply(text="from small")
        yield main, small


def routes(main: ScriptedBackend, small: ScriptedBackend | None) -> Routes:
    backend = backends.get("mlx-lm")
    assert backend is not None
    return build(backend, Endpoint(main.url, "org/main"), small_model="org/small",
                 small_url=small.url if small else None, models=["org/other"])


async def test_each_request_goes_to_its_models_server(
        servers: tuple[ScriptedBackend, ScriptedBackend]) -> None:
    main, small = servers
    async with serving("mlx-lm", url=main.url, model="org/main",
                       routes=routes(main, small)) as proxy:
        async def ask(model: str, **headers: str) -> str:
            answer = await proxy.sdk.messages.create(model=model, max_tokens=20, messages=HI,
                                                     extra_headers=headers)
            return answer.content[0].text  # type: ignore[union-attr]

        assert await ask("org/main") == "from main"
        assert await ask(BACKGROUND_MODEL) == "from small"
        assert await ask("org/main", **{AGENT_HEADER: "a0123456789abcdef"}) == "from small"
        assert await ask("anthropic/other") == "from main"
        title = await proxy.sdk.messages.create(
            model="org/main", max_tokens=20, messages=HI,
            extra_body={"output_config": {"format": {"type": "json_schema", "schema": {}}}})
        assert title.content[0].text == "from small"  # type: ignore[union-attr]
        listed = await proxy.client.get("/v1/models?limit=1000", headers=AUTH)
        data = (await listed.json())["data"]
        records = proxy.config.stats.records
    assert [m.get("model") for m in (r.json for r in main.requests)] == [None, "org/other"]
    assert len(small.requests) == 3 and all(r.model is None for r in small.requests)
    assert [(m["id"], m["display_name"]) for m in data] == [("anthropic/other", "other")]
    assert [r.role for r in records] == ["main", "small", "small", "choice", "small"]


async def test_side_work_is_answered_while_the_main_answer_streams(
        servers: tuple[ScriptedBackend, ScriptedBackend]) -> None:
    main, small = servers
    main.reply(LONG)
    async with serving("mlx-lm", url=main.url, model="org/main",
                       routes=routes(main, small)) as proxy, \
            proxy.sdk.messages.stream(model="org/main", max_tokens=3000,
                                      messages=HI) as conversation:
        await anext(aiter(conversation))  # the main answer has started
        side = await proxy.sdk.messages.create(model=BACKGROUND_MODEL, max_tokens=20,
                                               messages=HI)
        assert side.content[0].text == "from small"  # type: ignore[union-attr]
        finished = [r.role for r in proxy.config.stats.records]
        assert finished == ["small"], "answered while the main answer is still streaming"
        assert len(main.requests) == 1, "the main server saw nothing of the side work"


async def test_without_a_small_server_side_work_waits_for_the_main_answer(
        servers: tuple[ScriptedBackend, ScriptedBackend]) -> None:
    main, small = servers
    main.reply(Reply(text=["word "] * 40, chunk_delay=0.05), Reply(text="side"))
    async with serving("mlx-lm", url=main.url, model="org/main",
                       routes=routes(main, None)) as proxy:
        order: list[str] = []

        async def conversation() -> None:
            await proxy.sdk.messages.create(model="org/main", max_tokens=100, messages=HI)
            order.append("main")

        first = asyncio.create_task(conversation())
        while not main.requests:
            await asyncio.sleep(0.01)
        await proxy.sdk.messages.create(model=BACKGROUND_MODEL, max_tokens=20, messages=HI)
        order.append("side")
        await first
    assert order == ["main", "side"]
    assert small.requests == []


async def test_on_lm_studio_the_small_and_chosen_models_are_names_on_the_same_server() -> None:
    backend = backends.get("lmstudio")
    assert backend is not None
    with ScriptedBackend("lmstudio", model="qwen/main", strict_model=False) as server:
        table = build(backend, Endpoint(server.url, "qwen/main"), small_model="qwen/small",
                      models=["qwen/other"])
        async with serving("lmstudio", url=server.url, model="qwen/main",
                           routes=table) as proxy:
            for model, headers in (("qwen/main", {}), (BACKGROUND_MODEL, {}),
                                   ("qwen/main", {AGENT_HEADER: "a1"}),
                                   ("anthropic/other", {})):
                await proxy.sdk.messages.create(model=model, max_tokens=20, messages=HI,
                                                extra_headers=headers)
    assert [r.model for r in server.requests] == [
        "qwen/main", "qwen/small", "qwen/small", "qwen/other"]
