"""Settings: flags > environment > TOML (user file, then the project's) > defaults, and one
sentence per bad value."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest

from anyclaude import backends, settings
from anyclaude.settings import SettingsError


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No real user config or project file: XDG folders and the cwd point into tmp_path."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.delenv("ANYCLAUDE_CONFIG", raising=False)
    yield


def user_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config" / "anyclaude" / "config.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def project(tmp_path: Path, text: str | None = None) -> Path:
    root = tmp_path / "project"
    (root / "src" / "deep").mkdir(parents=True, exist_ok=True)
    if text is not None:
        (root / ".anyclaude.toml").write_text(text, encoding="utf-8")
    return root / "src" / "deep"


def test_defaults_when_nothing_is_set(tmp_path: Path) -> None:
    s = settings.load({}, {}, project(tmp_path))
    assert s.mode == "mlx-lm" and s.port == 0 and s.startup_timeout == 300.0
    assert s.proxy_only is False and s.context_window is None
    assert s.endpoint.url == "http://localhost:8081/v1" and s.endpoint.model is None
    assert s.sources["mode"] == "default" and s.files == ()
    assert s.state_dir == tmp_path / "state" / "anyclaude"


def test_flags_beat_environment_beat_project_file_beat_user_file_beat_defaults(
        tmp_path: Path) -> None:
    user_config(tmp_path, 'port = 1001\nstartup_timeout = 11\ncontext_window = 111\n'
                          'debug = 1\n')
    cwd = project(tmp_path, "port = 1002\nstartup_timeout = 12\ncontext_window = 112\n")
    env = {"ANYCLAUDE_PORT": "1003", "ANYCLAUDE_STARTUP_TIMEOUT": "13"}
    s = settings.load({"port": "1004"}, env, cwd)
    assert s.port == 1004 and s.sources["port"] == "the command line"
    assert s.startup_timeout == 13.0 and s.sources["startup_timeout"] == "the environment"
    assert s.context_window == 112
    assert s.sources["context_window"].endswith(str(tmp_path / "project" / ".anyclaude.toml"))
    assert s.debug == 1 and "config.toml" in s.sources["debug"]
    assert s.max_output_tokens is None and s.sources["max_output_tokens"] == "default"
    assert [p.name for p in s.files] == ["config.toml", ".anyclaude.toml"]


def test_backend_sections_set_the_mode_s_endpoint_and_options(tmp_path: Path) -> None:
    cwd = project(tmp_path, 'mode = "lmstudio"\n[lmstudio]\nurl = "http://127.0.0.1:9/v1/"\n'
                            'model = "qwen/qwen3-4b"\nlms = "/opt/lms"\n')
    s = settings.load({}, {"LMSTUDIO_MODEL": "other"}, cwd)
    assert s.mode == "lmstudio" and s.backend is backends.get("lmstudio")
    assert s.endpoint.url == "http://127.0.0.1:9/v1", "trailing slash trimmed"
    assert s.endpoint.model == "other", "environment beats the project file"
    assert s.backend_options() == {"url": "http://127.0.0.1:9/v1", "model": "other",
                                   "lms": "/opt/lms"}


@pytest.mark.parametrize("mode", backends.names())
def test_every_mode_is_a_registered_backend_with_its_own_url_setting(tmp_path: Path,
                                                                    mode: str) -> None:
    backend = backends.get(mode)
    assert backend is not None
    s = settings.load({"mode": mode}, {backend.url_setting: "http://127.0.0.1:7"},
                      project(tmp_path))
    assert s.backend.name == mode and s.endpoint.url == "http://127.0.0.1:7"


@pytest.mark.parametrize(("env", "words"), [
    ({"PROXY_ONLY": "yes"}, {"proxy_only": True}),
    ({"PROXY_ONLY": "0"}, {"proxy_only": False}),
    ({"ANYCLAUDE_TOOL_CALLS": "text"}, {"tool_calls": "text"}),
    ({"ANYCLAUDE_MAX_OUTPUT_TOKENS": "4096"}, {"max_output_tokens": 4096}),
    ({"ANYCLAUDE_STARTUP_TIMEOUT": "2.5"}, {"startup_timeout": 2.5}),
    ({}, {"idle_timeout": 300.0, "answer_timeout": 900.0}),
    ({"ANYCLAUDE_IDLE_TIMEOUT": "30", "ANYCLAUDE_ANSWER_TIMEOUT": "1800"},
     {"idle_timeout": 30.0, "answer_timeout": 1800.0}),
])
def test_values_are_parsed_to_their_types(tmp_path: Path, env: dict[str, str],
                                          words: dict[str, object]) -> None:
    s = settings.load({}, env, project(tmp_path))
    assert {key: s.value(key) for key in words} == words


@pytest.mark.parametrize(("env", "flags", "expected"), [
    ({"ANYCLAUDE_PORT": "abc"}, {},
     "ANYCLAUDE_PORT (port) from the environment is 'abc', but expected a number; fix or "
     "remove it."),
    ({}, {"port": "70000"}, "ANYCLAUDE_PORT (port) from the command line is '70000', but "
     "expected a port number between 0 and 65535; fix or remove it."),
    ({"ANYCLAUDE_MODE": "ollama"}, {}, "ANYCLAUDE_MODE (mode) from the environment is "
     "'ollama', but expected one of mlx-lm, mlx-textgen, mlx-openai-server, mlx-omni-server, fastmlx, lmstudio, openai, claude; fix or "
     "remove it."),
    ({"MLX_LM_URL": "localhost:8081"}, {}, "MLX_LM_URL (mlx-lm.url) from the environment is "
     "'localhost:8081', but expected an http:// or https:// URL; fix or remove it."),
    ({"PROXY_ONLY": "maybe"}, {}, "PROXY_ONLY (proxy_only) from the environment is 'maybe', "
     "but expected true or false; fix or remove it."),
])
def test_a_bad_value_is_one_sentence_naming_the_setting_and_the_fix(
        tmp_path: Path, env: dict[str, str], flags: dict[str, str], expected: str) -> None:
    with pytest.raises(SettingsError) as caught:
        settings.load(flags, env, project(tmp_path))
    assert str(caught.value) == expected


def test_a_bad_value_in_a_file_names_the_file(tmp_path: Path) -> None:
    cwd = project(tmp_path, "context_window = -5\n")
    with pytest.raises(SettingsError, match=r"from the config file .*\.anyclaude\.toml is '-5', "
                                            "but expected a positive whole number"):
        settings.load({}, {}, cwd)


def test_broken_toml_names_the_file_and_the_fix(tmp_path: Path) -> None:
    cwd = project(tmp_path, "port = \n")
    with pytest.raises(SettingsError, match=r"\.anyclaude\.toml is not valid TOML .*; fix or "
                                            "remove it."):
        settings.load({}, {}, cwd)


def test_unknown_keys_are_listed(tmp_path: Path) -> None:
    cwd = project(tmp_path, 'prot = 1\n[mlx-lm]\nmodle = "x"\nmodel = "y"\n')
    config = settings.read_config(tmp_path / "project" / ".anyclaude.toml")
    assert settings.unknown_keys(config) == ["mlx-lm.modle", "prot"]
    assert settings.load({}, {}, cwd).endpoint.model == "y"


def test_anyclaude_config_replaces_the_user_file(tmp_path: Path) -> None:
    user_config(tmp_path, "port = 1001\n")
    explicit = tmp_path / "elsewhere.toml"
    explicit.write_text("port = 1005\n", encoding="utf-8")
    env = {"ANYCLAUDE_CONFIG": str(explicit)}
    assert settings.load({}, env, project(tmp_path)).port == 1005
    env = {"ANYCLAUDE_CONFIG": str(tmp_path / "missing.toml")}
    with pytest.raises(SettingsError, match="does not exist; create it or unset ANYCLAUDE_CONFIG"):
        settings.load({}, env, project(tmp_path))


def test_the_proxy_token_is_random_per_run_unless_set(tmp_path: Path) -> None:
    first = settings.load({}, {}, project(tmp_path))
    second = settings.load({}, {}, project(tmp_path))
    assert first.proxy_token == first.proxy_token != second.proxy_token
    assert len(first.proxy_token) > 30
    fixed = settings.load({}, {"ANYCLAUDE_PROXY_TOKEN": "tok-123"}, project(tmp_path))
    assert fixed.proxy_token == "tok-123"


def test_the_table_documents_every_setting_once() -> None:
    rows = settings.table()
    assert len({row.key for row in rows}) == len(rows)
    assert len({row.env for row in rows}) == len(rows)
    assert all(row.help for row in rows)
    assert {"mode", "port", "claude_path", "startup_timeout", "small_model",
            "mlx-lm.model", "lmstudio.url", "openai.key"} <= {row.key for row in rows}


def test_every_global_setting_is_a_typed_attribute_and_a_run_gets_one_token(
        tmp_path: Path) -> None:
    """Global rows and `Settings` fields are the same names, so `settings.port` is typed
    and a misspelt attribute fails mypy instead of returning None."""
    bookkeeping = {"backend_values", "sources", "files", "unknown"}
    attributes = {f.name for f in dataclasses.fields(settings.Settings)} - bookkeeping
    assert attributes == {row.key for row in settings.table() if "." not in row.key}
    s = settings.load({}, {}, project(tmp_path))
    assert s.proxy_token == s.proxy_token and s.sources["proxy_token"] == "default"


def test_lenient_loading_sets_bad_values_aside_and_uses_the_next_source(tmp_path: Path) -> None:
    cwd = project(tmp_path, "port = 1002\n")
    s, problems = settings.load_lenient({"port": "x"}, {"ANYCLAUDE_PORT": "70000"}, cwd)
    assert s.port == 1002 and s.sources["port"].startswith("the config file")
    assert [p.split(" from ")[0] for p in problems] == ["ANYCLAUDE_PORT (port)"] * 2
    with pytest.raises(SettingsError, match="from the command line is 'x'"):
        settings.load({"port": "x"}, {"ANYCLAUDE_PORT": "70000"}, cwd)
