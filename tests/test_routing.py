"""Routes: which server and model answer each request, and the ids the /model picker gets."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from anyclaude import backends
from anyclaude.backends.base import Backend, Endpoint
from anyclaude.compaction import claude_would_take
from anyclaude.routing import PICKER_PREFIX, Route, Routes, build, picker_ids, short_name

PICKER_FILTERS = {"2.1.197": re.compile(r"^(claude|anthropic)", re.I),
                  "2.1.332": re.compile(r"(claude|anthropic)", re.I)}
"""What Claude Code keeps of `/v1/models` for its picker, read from the two binaries."""
MAIN, SMALL = "http://127.0.0.1:8081/v1", "http://127.0.0.1:8082/v1"


def backend(name: str) -> Backend:
    found = backends.get(name)
    assert found is not None
    return found


@given(st.lists(st.text(min_size=0, max_size=40), min_size=1, max_size=6))
def test_picker_ids_pass_both_filters_are_unique_and_never_taken_for_claude(
        names: list[str]) -> None:
    ids = picker_ids(names)
    assert len(set(ids)) == len(ids) == len(names)
    for model_id in ids:
        assert all(f.search(model_id) for f in PICKER_FILTERS.values()), model_id
        assert not claude_would_take(model_id), model_id


@pytest.mark.parametrize(("name", "expected"), [
    ("Qwen3-Coder-30B-A3B-Instruct-4bit", "anthropic/Qwen3-Coder-30B-A3B-Instruct-4bit"),
    ("qwen3 coder@q4_k_m", "anthropic/qwen3-coder-q4_k_m"),
    ("claude-3-distill", "anthropic/model-1"),
    ("my-claude-sonnet-4-5", "anthropic/model-1"),
])
def test_picker_ids_keep_the_name_readable(name: str, expected: str) -> None:
    assert picker_ids([name]) == [expected]


def test_short_names_are_the_last_part_of_a_folder_or_hub_id() -> None:
    assert short_name("mlx-community/Qwen3-0.6B-4bit") == "Qwen3-0.6B-4bit"
    assert short_name("/models/big/") == "big"
    assert short_name("qwen3") == "qwen3"


def test_mlx_lm_small_model_on_its_own_server_and_chosen_models_loaded_in_place(
        tmp_path: Path) -> None:
    folder = tmp_path / "other"
    folder.mkdir()
    routes = build(backend("mlx-lm"), Endpoint(MAIN, "org/main-model"), small_model="org/small",
                   small_url=SMALL, models=["org/main-model", str(folder), "org/small"])
    assert routes.small is not None and routes.small.url == SMALL
    assert not routes.small.send_model, "its own server has only that model"
    assert [r.id for r in routes.listing()] == ["anthropic/other", "anthropic/small"]
    choice = routes.choices[0]
    assert (choice.url, choice.model, choice.send_model) == (MAIN, str(folder.resolve()), True)
    assert choice.dialect(backend("mlx-lm").dialect).model_field == "configured"
    assert routes.switching and routes.refused == ()


def test_lmstudio_small_model_and_choices_are_names_on_the_same_server() -> None:
    routes = build(backend("lmstudio"), Endpoint("http://localhost:1234/v1", "qwen/big"),
                   small_model="qwen/small", models=["qwen/other"])
    assert routes.small is not None and routes.small.url == "http://localhost:1234/v1"
    assert routes.small.model == "qwen/small"
    assert [(r.id, r.model) for r in routes.choices] == [("anthropic/other", "qwen/other")]
    assert not routes.switching


def test_a_server_with_one_model_refuses_choices_and_has_no_small_model_without_its_own_server(
        ) -> None:
    routes = build(backend("mlx-textgen"), Endpoint(MAIN, "main"), small_model="small",
                   models=["other"])
    assert routes.choices == () and routes.refused == ("other",)
    assert routes.small is None


def test_without_settings_only_the_main_model_is_routed() -> None:
    routes = build(backend("mlx-lm"), Endpoint(MAIN, None))
    assert [r.id for r in routes.listing()] == ["anyclaude-mlx-lm"], "as it is served"
    assert routes.pick("claude-sonnet-4-5", side=True) is routes.main


def test_picks() -> None:
    routes = build(backend("mlx-lm"), Endpoint(MAIN, "org/main"), small_model="org/small",
                   small_url=SMALL, models=["org/other"])
    choice = routes.choices[0]
    for name in ("anthropic/other", "org/other", "other"):
        assert routes.pick(name, side=False) is choice
    for name in ("org/main", "anthropic/main", "main-model-of-claude", "claude-opus-4-1",
                 "anyclaude-background"):
        assert routes.pick(name, side=False) is routes.main
    assert routes.pick("org/other", side=True) is routes.small, "side work: the small model"
    assert routes.pick("org/small", side=False) is routes.small, "named by --model"


def test_side_work_without_a_small_model_follows_the_loaded_model() -> None:
    routes = build(backend("mlx-lm"), Endpoint(MAIN, "org/main"), models=["org/other"])
    choice = routes.choices[0]
    assert routes.pick("anyclaude-background", side=True) is routes.main
    routes.slot(MAIN).route = choice
    assert routes.pick("anyclaude-background", side=True) is choice, "no reload for side work"


async def test_a_model_switch_waits_for_the_loaded_models_requests_and_is_announced() -> None:
    routes = build(backend("mlx-lm"), Endpoint(MAIN, "org/main"), models=["org/other"])
    said: list[str] = []
    order: list[str] = []
    release = asyncio.Event()

    async def request(route: Route, name: str, hold: bool = False) -> None:
        async with routes.use(route, said.append):
            order.append(f"{name} starts")
            if hold:
                await release.wait()
            order.append(f"{name} ends")

    first = asyncio.create_task(request(routes.main, "main-1", hold=True))
    while not order:
        await asyncio.sleep(0)
    second = asyncio.create_task(request(routes.main, "main-2"))
    switch = asyncio.create_task(request(routes.choices[0], "other"))
    await second
    assert order == ["main-1 starts", "main-2 starts", "main-2 ends"], "same model: at once"
    release.set()
    await asyncio.gather(first, switch)
    assert order[3:] == ["main-1 ends", "other starts", "other ends"]
    assert said == ["Loading other on the mlx-lm server in place of main; its answers start "
                    "once it is loaded."]


async def test_servers_that_do_not_reload_never_wait() -> None:
    routes: Routes = build(backend("lmstudio"), Endpoint("http://x/v1", "a"), models=["b"])
    said: list[str] = []
    async with routes.use(routes.main, said.append), routes.use(routes.choices[0], said.append):
        pass
    assert said == []
    assert PICKER_PREFIX == "anthropic/"
