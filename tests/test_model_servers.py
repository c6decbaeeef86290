"""Where the small model's own server listens, and what Claude Code is told about the models
to choose from."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from anyclaude import settings
from anyclaude.launcher import DISCOVERY_VAR, claude_env
from anyclaude.model_servers import small_url
from tests.support.mlx_server import free_port


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.delenv("ANYCLAUDE_CONFIG", raising=False)
    yield


def load(tmp_path: Path, **env: str) -> settings.Settings:
    return settings.load({}, {"ANYCLAUDE_STATE_DIR": str(tmp_path / "state"), **env}, tmp_path)


def test_only_servers_with_one_model_each_give_the_small_model_a_server(tmp_path: Path) -> None:
    assert small_url(load(tmp_path)) is None, "no small model"
    assert small_url(load(tmp_path, ANYCLAUDE_MODE="lmstudio",
                          ANYCLAUDE_SMALL_MODEL="qwen/small")) is None, "a name on LM Studio"
    assert small_url(load(tmp_path, ANYCLAUDE_MODE="mlx-lm", ANYCLAUDE_SMALL_MODEL="org/s",
                          MLX_LM_URL="http://127.0.0.1:9000/v1",
                          ANYCLAUDE_SMALL_PORT="9100")) == "http://127.0.0.1:9100/v1"
    assert small_url(load(tmp_path, ANYCLAUDE_MODE="mlx-textgen", ANYCLAUDE_SMALL_MODEL="org/s",
                          MLX_TEXTGEN_URL="http://127.0.0.1:9000/v1",
                          ANYCLAUDE_SMALL_PORT="9100")) == "http://127.0.0.1:9100/v1", \
        "one model per mlx-textgen server: a second one"


def test_without_a_port_it_takes_the_first_free_one_after_the_main_servers(
        tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        main = busy - 1
        found = small_url(load(tmp_path, ANYCLAUDE_SMALL_MODEL="org/s",
                               MLX_LM_URL=f"http://localhost:{main}/v1"))
    assert found is not None and found.startswith("http://localhost:")
    assert int(found.rsplit(":", 1)[1].removesuffix("/v1")) > busy


def test_claude_code_asks_for_the_models_only_when_there_are_some(tmp_path: Path) -> None:
    port = free_port()
    plain = claude_env(load(tmp_path), f"http://127.0.0.1:{port}", None, {})
    assert DISCOVERY_VAR not in plain
    offered = claude_env(load(tmp_path, ANYCLAUDE_MODELS="org/a,org/b"),
                         f"http://127.0.0.1:{port}", None, {})
    assert offered[DISCOVERY_VAR] == "1"
    own = claude_env(load(tmp_path, ANYCLAUDE_MODELS="org/a"), f"http://127.0.0.1:{port}",
                     None, {DISCOVERY_VAR: "0"})
    assert own[DISCOVERY_VAR] == "0", "the user's own setting is kept"


def test_the_pickers_own_entries_are_labelled_when_there_is_more_than_one_model(
        tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    plain = claude_env(load(tmp_path, MLX_LM_MODEL="org/big"), url, None, {})
    assert not any(var.endswith(("_NAME", "_DESCRIPTION")) for var in plain)
    env = claude_env(load(tmp_path, MLX_LM_MODEL="org/big", ANYCLAUDE_SMALL_MODEL="org/little"),
                     url, None, {"ANTHROPIC_DEFAULT_OPUS_MODEL": "my-own"})
    assert env["ANTHROPIC_DEFAULT_SONNET_MODEL_NAME"] == "big"
    assert env["ANTHROPIC_DEFAULT_SONNET_MODEL_DESCRIPTION"] == "org/big (mlx-lm, main model)"
    assert env["ANTHROPIC_DEFAULT_HAIKU_MODEL_NAME"] == "little"
    assert "ANTHROPIC_DEFAULT_OPUS_MODEL_NAME" not in env, "the user's own model keeps its name"
