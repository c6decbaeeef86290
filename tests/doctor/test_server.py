"""The backend server: up or down (and whether anyclaude would start it), the URL's `/v1`,
the model it serves, and never hanging on a server that does not answer."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from anyclaude.doctor.server import corrections, server_check
from anyclaude.timeouts import ONE_TOKEN_S
from tests.doctor.helpers import closed_port, context, one, run, silent_server
from tests.support.mlx_server import running_mlx_server
from tests.support.scripted import Reply, ScriptedBackend, mlx_lm_error
from tests.support.tiny_model import build_scripted_model, default_models_dir


def test_a_closed_port_warns_when_anyclaude_can_start_the_server(
        environ: dict[str, str]) -> None:
    url = f"http://127.0.0.1:{closed_port()}/v1"
    result = one(server_check, context(environ, **{"mlx-lm.url": url, "mlx-lm.model": "o/m"}))
    assert result.status == "warn"
    assert result.found == f"Nothing answers at {url} yet; anyclaude will start mlx-lm when " \
        "you run it"


def test_a_closed_port_fails_when_anyclaude_cannot_start_the_server(
        environ: dict[str, str]) -> None:
    url = f"http://127.0.0.1:{closed_port()}/v1"
    no_model = one(server_check, context(environ, **{"mlx-lm.url": url}))
    assert no_model.status == "fail"
    assert no_model.found == f"Nothing answers at {url} (connection refused)"
    assert no_model.fix.startswith("Start it with `python -m mlx_lm server")
    never_started = one(server_check, context(environ, mode="openai", **{"openai.url": url}))
    assert never_started.status == "fail" and "ANYCLAUDE_OPENAI_URL" in never_started.fix


def test_an_mlx_lm_server_whose_model_answers_passes(environ: dict[str, str]) -> None:
    with ScriptedBackend("mlx-lm") as be:
        result = one(server_check, context(environ, **{"mlx-lm.url": be.url}))
        [request] = [r for r in be.requests if r.method == "POST"]
    assert result.status == "ok" and "its model answered a 1-token request" in result.found
    assert request.json["max_tokens"] == 2 and "model" not in request.json  # never unloads it
    assert be.dropped_models == []


def test_an_mlx_lm_server_whose_model_fails_to_answer_fails(environ: dict[str, str]) -> None:
    with ScriptedBackend("mlx-lm") as be:
        be.reply(mlx_lm_error("Model not found"))
        result = one(server_check, context(environ, **{"mlx-lm.url": be.url}))
    assert result.status == "fail" and "failed a 1-token request (HTTP 404" in result.found
    assert result.fix == "Check MLX_LM_MODEL and the server's log."


def test_an_mlx_lm_model_still_loading_is_a_warning_within_seconds(
        environ: dict[str, str]) -> None:
    with ScriptedBackend("mlx-lm") as be:
        be.reply(Reply(delay=30))  # /health answers, the 1-token request waits (loading)
        started = time.monotonic()
        result = one(server_check, context(environ, **{"mlx-lm.url": be.url}))
    assert time.monotonic() - started < ONE_TOKEN_S + 2
    assert result.status == "warn" and "(still loading?)" in result.found


@pytest.mark.parametrize("suffix", ["", "/", "/v1/chat/completions"])
def test_a_wrong_v1_suffix_fails_with_the_corrected_url(environ: dict[str, str],
                                                        suffix: str) -> None:
    with ScriptedBackend("mlx-lm") as be:
        result = one(server_check, context(environ, **{"mlx-lm.url": be.root_url + suffix}))
        assert result.status == "fail" and "is not the API's base URL" in result.found
        assert result.fix == f"Set MLX_LM_URL={be.url}."
    with ScriptedBackend("lmstudio") as be:
        result = one(server_check, context(environ, mode="lmstudio",
                                           **{"lmstudio.url": be.root_url + suffix,
                                              "lmstudio.model": "scripted"}))
        assert result.fix == f"Set LMSTUDIO_URL={be.url}."


def test_the_right_v1_suffix_passes(environ: dict[str, str]) -> None:
    with ScriptedBackend("lmstudio", model="qwen/qwen3-coder-30b") as be:
        result = one(server_check, context(environ, mode="lmstudio", **{
            "lmstudio.url": be.url, "lmstudio.model": "qwen/qwen3-coder-30b"}))
    assert result.status == "ok"
    assert result.found == f"lmstudio answers at {be.url} and serves qwen/qwen3-coder-30b"


def test_likely_corrections_of_a_base_url() -> None:
    assert corrections("http://h:8081") == ["http://h:8081/v1"]
    assert corrections("http://h:8081/v1") == ["http://h:8081"]
    assert corrections("http://h:1/v1/chat/completions") == ["http://h:1/v1", "http://h:1"]
    assert corrections("http://h:1/api/v1/models") == ["http://h:1/api/v1", "http://h:1/api"]


def test_a_model_the_server_does_not_serve_fails_and_names_the_ones_it_does(
        environ: dict[str, str]) -> None:
    with ScriptedBackend("vllm", model="Qwen/Qwen3-Coder-30B") as be:
        wrong = one(server_check, context(environ, mode="openai", **{
            "openai.url": be.url, "openai.model": "qwen3"}))
        unset = one(server_check, context(environ, mode="openai", **{"openai.url": be.url}))
    assert wrong.status == "fail"
    assert wrong.found == f"{be.url} does not serve qwen3 (it lists Qwen/Qwen3-Coder-30B)"
    assert wrong.fix.startswith("Set ANYCLAUDE_OPENAI_MODEL to one of those")
    assert unset.status == "warn" and unset.fix == "Set ANYCLAUDE_OPENAI_MODEL to one of them."


def test_a_server_that_accepts_but_never_answers_fails_within_seconds(
        environ: dict[str, str]) -> None:
    with silent_server() as port:
        url = f"http://127.0.0.1:{port}/v1"
        started = time.monotonic()
        results = run(server_check, context(environ, **{"mlx-lm.url": url, "mlx-lm.model": "o/m"}))
        elapsed = time.monotonic() - started
    assert elapsed < 5, elapsed
    assert results[0].status == "fail"
    assert results[0].found == f"{url} accepts connections but sends no answer within 2 s"


def test_claude_mode_has_no_local_server_to_check(environ: dict[str, str]) -> None:
    assert run(server_check, context(environ, mode="claude")) == []


@pytest.mark.e2e
def test_the_real_mlx_lm_server_with_a_loaded_model_passes(environ: dict[str, str]) -> None:
    model: Path = build_scripted_model(default_models_dir() / "scripted")
    with running_mlx_server(model) as server:
        result = one(server_check, context(environ, **{"mlx-lm.url": server.base_url,
                                                       "mlx-lm.model": str(model)}))
    assert result.status == "ok" and "its model answered a 1-token request" in result.found
