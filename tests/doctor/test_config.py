"""Settings and config files (loaded leniently, so one bad value hides nothing else), and in
claude mode the user's own credentials and upstream."""

from __future__ import annotations

import json
from pathlib import Path

from anyclaude.doctor.config import (
    config_check,
    credentials_check,
    settings_check,
    upstream_check,
)
from anyclaude.doctor.result import Context
from anyclaude.settings import load_lenient
from tests.doctor.helpers import closed_port, context, one, run


def test_a_clean_config_file_passes(environ: dict[str, str], tmp_path: Path) -> None:
    project = tmp_path / ".anyclaude.toml"
    project.write_text('mode = "lmstudio"\n[lmstudio]\nmodel = "q"\n')
    result = one(config_check, context(environ))
    assert result.status == "ok" and result.found == f"{project} (2 settings)"


def test_no_config_file_passes_and_names_where_the_user_file_would_be(
        environ: dict[str, str]) -> None:
    result = one(config_check, context(environ))
    expected = Path(environ["XDG_CONFIG_HOME"]) / "anyclaude" / "config.toml"
    assert result.status == "ok" and str(expected) in result.found


def test_an_unknown_key_warns_with_the_file_the_key_and_the_closest_known_key(
        environ: dict[str, str], tmp_path: Path) -> None:
    user = Path(environ["XDG_CONFIG_HOME"]) / "anyclaude" / "config.toml"
    user.parent.mkdir(parents=True)
    user.write_text('moed = "claude"\n[mlx-lm]\nmodle = "x"\nurl = "http://h:1/v1"\n')
    results = run(config_check, context(environ))
    assert [(r.status, r.found, r.fix) for r in results] == [
        ("warn", f"{user}: unknown key `mlx-lm.modle` (ignored)",
         "Did you mean `mlx-lm.model`? Rename it."),
        ("warn", f"{user}: unknown key `moed` (ignored)", "Did you mean `mode`? Rename it."),
    ]


def test_an_unknown_key_without_a_close_match_is_to_be_removed(environ: dict[str, str],
                                                                tmp_path: Path) -> None:
    (tmp_path / ".anyclaude.toml").write_text("zzzz = 1\n")
    result = one(config_check, context(environ))
    assert result.status == "warn" and result.fix.startswith("Remove it")


def test_a_config_file_that_is_not_toml_fails(environ: dict[str, str], tmp_path: Path) -> None:
    broken = tmp_path / ".anyclaude.toml"
    broken.write_text("mode = \n")
    ctx = Context(*load_lenient({}, environ, tmp_path)[:1], environ, tmp_path)
    result = one(config_check, ctx)
    assert result.status == "fail"
    assert result.found.startswith(f"The config file {broken} is not valid TOML")
    assert result.fix == "Fix or remove it."


def test_valid_settings_pass_and_say_the_mode_url_and_model(environ: dict[str, str]) -> None:
    environ["ANYCLAUDE_MODE"] = "openai"
    result = one(settings_check, context(environ))
    assert result.status == "ok"
    assert result.found == "mode openai (from the environment); ANYCLAUDE_OPENAI_URL " \
        "http://localhost:8000/v1; ANYCLAUDE_OPENAI_MODEL not set"


def test_invalid_settings_each_fail_while_the_valid_ones_still_apply(
        environ: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / ".anyclaude.toml").write_text('mode = "lmstudio"\ncontext_window = "big"\n')
    environ.update(ANYCLAUDE_PORT="abc", LMSTUDIO_URL="http://127.0.0.1:1/v1")
    settings, problems = load_lenient({"startup_timeout": "-1"}, environ, tmp_path)
    assert problems == [
        "ANYCLAUDE_PORT (port) from the environment is 'abc', but expected a number; fix or "
        "remove it.",
        "ANYCLAUDE_STARTUP_TIMEOUT (startup_timeout) from the command line is '-1', but expected "
        "a positive number of seconds; fix or remove it.",
        f"ANYCLAUDE_CONTEXT_WINDOW (context_window) from the config file {tmp_path}/"
        ".anyclaude.toml is 'big', but expected a number; fix or remove it.",
    ]
    assert (settings.mode, settings.port, settings.endpoint.url) == \
        ("lmstudio", 0, "http://127.0.0.1:1/v1")
    results = run(settings_check, Context(settings, environ, tmp_path, problems))
    assert [r.status for r in results] == ["fail"] * 3
    assert results[0].found == "ANYCLAUDE_PORT (port) from the environment is 'abc', but " \
        "expected a number" and results[0].fix == "Fix or remove it."


def test_a_backend_flag_the_mode_does_not_have_is_a_problem(environ: dict[str, str],
                                                            tmp_path: Path) -> None:
    settings, problems = load_lenient({"mode": "claude", "backend_model": "m",
                                       "backend_url": "http://127.0.0.1:9"}, environ, tmp_path)
    assert problems == ["--backend-model does not apply to claude mode, which has no model "
                        "setting; remove it."]
    assert settings.endpoint.url == "http://127.0.0.1:9"


def test_claude_mode_needs_an_api_key_or_a_login(environ: dict[str, str]) -> None:
    none = one(credentials_check, context(environ, mode="claude"))
    assert none.status == "warn" and none.fix == "Run `claude` and log in with /login, or " \
        "export ANTHROPIC_API_KEY."
    key = one(credentials_check, context({**environ, "ANTHROPIC_API_KEY": "sk-x"}, mode="claude"))
    assert key.status == "ok" and key.found == "ANTHROPIC_API_KEY is set" and "sk-x" not in key.found
    login = Path(environ["HOME"]) / ".claude" / ".credentials.json"
    login.parent.mkdir()
    login.write_text("{}")
    assert one(credentials_check, context(environ, mode="claude")).status == "ok"


def test_a_keychain_login_is_seen_in_claude_code_s_state_file(environ: dict[str, str]) -> None:
    state = Path(environ["HOME"]) / ".claude.json"
    state.write_text(json.dumps({"oauthAccount": {"emailAddress": "a@b.c"}}))
    assert one(credentials_check, context(environ, mode="claude")).status == "ok"


def test_credentials_are_not_checked_in_local_modes(environ: dict[str, str]) -> None:
    assert run(credentials_check, context(environ)) == []


def test_a_local_upstream_must_listen_and_anthropic_is_not_contacted(
        environ: dict[str, str]) -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    down = one(upstream_check, context(environ, mode="claude", **{"claude.url": url}))
    assert down.status == "fail" and down.found.startswith(f"Nothing listens at {url}")
    assert down.fix == "Start the server, or point ANTHROPIC_UPSTREAM_URL at it."
    remote = one(upstream_check, context(environ, mode="claude"))
    assert remote.status == "ok" and remote.found == "https://api.anthropic.com (not contacted)"
