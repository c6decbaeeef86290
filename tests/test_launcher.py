"""What the launcher hands Claude Code and the proxy: the environment in each mode, the proxy
config built from settings, finding `claude`, and the proxy-only connection lines."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator, Mapping
from pathlib import Path

import anthropic
import pytest

from anyclaude import backends, settings
from anyclaude.compaction import model_name
from anyclaude.launcher import (
    BACKGROUND_MODEL,
    LaunchError,
    claude_env,
    connection_lines,
    find_claude,
    max_output_tokens,
    proxy_config,
)
from anyclaude.settings import Settings
from tests.support.claude_code import no_new_children
from tests.support.proxy import ThreadedProxy
from tests.support.scripted import ScriptedBackend
from tests.support.tiny_model import build_scripted_model, default_models_dir

URL = "http://127.0.0.1:4567"
MODEL_VARS = ("ANTHROPIC_MODEL", "ANTHROPIC_DEFAULT_OPUS_MODEL",
              "ANTHROPIC_DEFAULT_SONNET_MODEL")


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.delenv("ANYCLAUDE_CONFIG", raising=False)
    with no_new_children():
        yield


def load(env: Mapping[str, str], tmp_path: Path, **flags: object) -> Settings:
    return settings.load(flags, env, tmp_path)


def test_local_modes_get_the_proxy_token_and_the_configured_model(tmp_path: Path) -> None:
    s = load({"MLX_LM_MODEL": "/models/qwen3", "ANYCLAUDE_PROXY_TOKEN": "tok-1"}, tmp_path)
    user = {"ANTHROPIC_AUTH_TOKEN": "user-oauth", "ANTHROPIC_API_KEY": "sk-user",
            "HOME": "/home/u", "ANTHROPIC_BASE_URL": "https://api.anthropic.com"}
    env = claude_env(s, URL, 40960, user)
    assert env["ANTHROPIC_BASE_URL"] == URL and env["ANTHROPIC_AUTH_TOKEN"] == "tok-1"
    assert "ANTHROPIC_API_KEY" not in env, "no key-approval dialog, no key sent to the proxy"
    assert {env[v] for v in MODEL_VARS} == {"/models/qwen3"}
    assert env["ANTHROPIC_DEFAULT_HAIKU_MODEL"] == BACKGROUND_MODEL == "anyclaude-background"
    assert env["CLAUDE_CODE_ATTRIBUTION_HEADER"] == "0"
    assert env["CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"] == "1"
    assert env["API_TIMEOUT_MS"] == "3600000"
    assert env["CLAUDE_CODE_MAX_OUTPUT_TOKENS"] == "10240"
    # Claude Code compacts at 80% of the window (see anyclaude/compaction.py).
    assert env["CLAUDE_CODE_MAX_CONTEXT_TOKENS"] == env["CLAUDE_CODE_AUTO_COMPACT_WINDOW"] \
        == "56008"
    assert env["HOME"] == "/home/u"
    assert "ANTHROPIC_CUSTOM_HEADERS" not in env
    assert user["ANTHROPIC_API_KEY"] == "sk-user", "the caller's mapping is not changed"


def test_model_variables_the_user_set_are_kept(tmp_path: Path) -> None:
    s = load({"ANYCLAUDE_MODE": "openai"}, tmp_path)
    user = {"ANTHROPIC_MODEL": "mine", "ANTHROPIC_DEFAULT_HAIKU_MODEL": "small",
            "ANTHROPIC_DEFAULT_OPUS_MODEL": "", "API_TIMEOUT_MS": "5"}
    env = claude_env(s, URL, None, user)
    assert env["ANTHROPIC_MODEL"] == "mine" and env["ANTHROPIC_DEFAULT_HAIKU_MODEL"] == "small"
    assert env["ANTHROPIC_DEFAULT_OPUS_MODEL"] == "anyclaude-openai", "empty counts as unset"
    assert env["ANTHROPIC_DEFAULT_SONNET_MODEL"] == "anyclaude-openai", "no model configured"
    assert env["API_TIMEOUT_MS"] == "5"


def test_unknown_window_leaves_the_size_variables_alone(tmp_path: Path) -> None:
    env = claude_env(load({}, tmp_path), URL, None, {"CLAUDE_CODE_MAX_OUTPUT_TOKENS": "900"})
    assert env["CLAUDE_CODE_MAX_OUTPUT_TOKENS"] == "900"
    assert not {"CLAUDE_CODE_AUTO_COMPACT_WINDOW", "CLAUDE_CODE_MAX_CONTEXT_TOKENS"} & set(env)


def test_output_budget_is_the_setting_else_a_quarter_of_the_window_at_most_32000(
        tmp_path: Path) -> None:
    assert max_output_tokens(None, None) is None
    assert max_output_tokens(None, 8192) == 2048
    assert max_output_tokens(None, 262144) == 32000
    assert max_output_tokens(1000, 262144) == 1000
    s = load({"ANYCLAUDE_MAX_OUTPUT_TOKENS": "1234"}, tmp_path)
    assert claude_env(s, URL, None, {})["CLAUDE_CODE_MAX_OUTPUT_TOKENS"] == "1234"


def test_claude_mode_keeps_the_user_s_credentials_and_models(tmp_path: Path) -> None:
    s = load({"ANYCLAUDE_MODE": "claude", "ANYCLAUDE_PROXY_TOKEN": "tok-2"}, tmp_path)
    user = {"ANTHROPIC_API_KEY": "sk-user", "ANTHROPIC_AUTH_TOKEN": "oauth",
            "ANTHROPIC_CUSTOM_HEADERS": "x-team: a\nx-anyclaude-token: stale"}
    env = claude_env(s, URL, None, user)
    assert env["ANTHROPIC_API_KEY"] == "sk-user" and env["ANTHROPIC_AUTH_TOKEN"] == "oauth"
    assert env["ANTHROPIC_CUSTOM_HEADERS"] == "x-team: a\nx-anyclaude-token: tok-2"
    assert not any(v in env for v in (*MODEL_VARS, "ANTHROPIC_DEFAULT_HAIKU_MODEL"))
    assert "tok-2" not in {env.get("ANTHROPIC_API_KEY"), env.get("ANTHROPIC_AUTH_TOKEN")}
    assert claude_env(s, URL, None, {})["ANTHROPIC_CUSTOM_HEADERS"] == "x-anyclaude-token: tok-2"


@pytest.mark.parametrize("mode", [m for m in backends.names() if m != "claude"])
def test_every_local_mode_points_claude_code_at_the_proxy_with_the_token(
        tmp_path: Path, mode: str) -> None:
    s = load({"ANYCLAUDE_MODE": mode, "ANYCLAUDE_PROXY_TOKEN": "t"}, tmp_path)
    env = claude_env(s, URL, None, {})
    assert (env["ANTHROPIC_BASE_URL"], env["ANTHROPIC_AUTH_TOKEN"]) == (URL, "t")
    assert env["ANTHROPIC_MODEL"] == model_name(s.endpoint.model, mode)


def test_the_proxy_config_comes_from_settings(tmp_path: Path) -> None:
    model = build_scripted_model(default_models_dir() / "scripted")
    s = load({"MLX_LM_MODEL": str(model), "ANYCLAUDE_PROXY_TOKEN": "tok-3",
              "ANYCLAUDE_MAX_OUTPUT_TOKENS": "2000", "ANYCLAUDE_TOOL_CALLS": "text",
              "ANYCLAUDE_SMALL_MODEL": "tiny", "ANYCLAUDE_IDLE_TIMEOUT": "60",
              "ANYCLAUDE_ANSWER_TIMEOUT": "1200"}, tmp_path)
    config = proxy_config(s, 8192)
    assert (config.idle_timeout, config.answer_timeout) == (60.0, 1200.0)
    assert config.backend.name == "mlx-lm" and config.endpoint.model == str(model)
    assert (config.token, config.context_window, config.max_output_tokens) == ("tok-3", 8192, 2000)
    assert config.tool_calls == "text" and config.small_model == "tiny"
    assert config.tokens.exact, "the model folder's tokenizer.json counts tokens"
    assert not proxy_config(load({"ANYCLAUDE_MODE": "openai"}, tmp_path), None).tokens.exact


def test_the_built_proxy_serves_with_the_run_s_token_only(tmp_path: Path) -> None:
    with ScriptedBackend("vllm", model="scripted") as double:
        s = load({"ANYCLAUDE_MODE": "openai", "ANYCLAUDE_OPENAI_URL": double.url,
                  "ANYCLAUDE_OPENAI_MODEL": "scripted"}, tmp_path)
        with ThreadedProxy(proxy_config(s, None)) as proxy:
            client = anthropic.Anthropic(base_url=proxy.url, api_key=s.proxy_token,
                                         max_retries=0)
            reply = client.messages.create(model="anything", max_tokens=50,
                                           messages=[{"role": "user", "content": "hi"}])
            assert reply.content[0].type == "text"
            assert reply.content[0].text == "Hello! I am the tiny scripted test model."
            assert double.requests[-1].model == "scripted"
            with pytest.raises(anthropic.AuthenticationError):
                anthropic.Anthropic(base_url=proxy.url, api_key="wrong", max_retries=0) \
                    .messages.create(model="x", max_tokens=5,
                                     messages=[{"role": "user", "content": "hi"}])


def executable(path: Path) -> Path:
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_claude_is_found_by_setting_or_on_path(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    on_path = executable(bin_dir / "claude")
    elsewhere = executable(tmp_path / "my-claude")
    env = {"PATH": f"{bin_dir}{os.pathsep}/usr/bin"}
    assert find_claude(None, env) == str(on_path)
    assert find_claude(str(elsewhere), env) == str(elsewhere)
    assert find_claude("claude", env) == str(on_path), "a bare name is looked up on PATH"


def test_missing_claude_says_how_to_install_it(tmp_path: Path) -> None:
    with pytest.raises(LaunchError) as caught:
        find_claude(None, {"PATH": str(tmp_path)})
    assert str(caught.value) == ("Claude Code (`claude`) is not on PATH; install it with "
                                 "`npm install -g @anthropic-ai/claude-code@latest`, or set "
                                 "ANYCLAUDE_CLAUDE_PATH to its path.")
    not_executable = tmp_path / "claude"
    not_executable.write_text("")
    with pytest.raises(LaunchError, match=r"ANYCLAUDE_CLAUDE_PATH .* is not an executable"):
        find_claude(str(not_executable), {"PATH": str(tmp_path)})


def test_proxy_only_lines_start_with_the_url_then_say_how_to_connect(tmp_path: Path) -> None:
    s = load({"ANYCLAUDE_PROXY_TOKEN": "tok-4"}, tmp_path)
    assert connection_lines(s, URL) == [
        f"[anyclaude] Proxy URL: {URL}", "[anyclaude] Token: tok-4",
        f"export ANTHROPIC_BASE_URL={URL} ANTHROPIC_AUTH_TOKEN=tok-4"]
    c = load({"ANYCLAUDE_MODE": "claude", "ANYCLAUDE_PROXY_TOKEN": "tok-4"}, tmp_path)
    assert connection_lines(c, URL)[2] == (
        f"export ANTHROPIC_BASE_URL={URL} ANTHROPIC_CUSTOM_HEADERS='x-anyclaude-token: tok-4'")
