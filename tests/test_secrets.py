"""Secrets of a run stay out of what anyclaude prints and writes (issue 11, class 7): a backend
URL's password is not on the console, debug logs and traces are private files, and the
redaction rules themselves (names and values)."""

from __future__ import annotations

import stat
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from anyclaude import cli
from anyclaude.redact import Redactor, scrub, secret_header, secret_key, url_secrets
from tests.support.claude_code import write_fake_claude
from tests.support.mlx_server import free_port
from tests.support.scripted import ScriptedBackend

PASSWORD = "pw-S3CRET-7781"


def anyclaude(args: Sequence[str], env: Mapping[str, str],
              cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "anyclaude", *args], env=dict(env), cwd=cwd,
                          capture_output=True, text=True, timeout=60)


def mode_bits(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_run_with_a_password_in_the_backend_url_never_shows_it(tmp_path: Path) -> None:
    with ScriptedBackend("mlx-lm", strict_model=False) as backend:
        url = backend.url.replace("http://", f"http://anyclaude:{PASSWORD}@")
        env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "LANG": "C.UTF-8",
               "XDG_CONFIG_HOME": str(tmp_path / "config"),
               "ANYCLAUDE_STATE_DIR": str(tmp_path / "state"), "ANYCLAUDE_KEEP_ALIVE": "0",
               "ANYCLAUDE_MODE": "mlx-lm", "MLX_LM_URL": url, "MLX_LM_MODEL": "scripted",
               "ANYCLAUDE_DEBUG": "3",
               "ANYCLAUDE_CLAUDE_PATH": str(write_fake_claude(tmp_path / "claude"))}
        result = anyclaude(["-p", "hi"], env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert PASSWORD not in result.stderr + result.stdout
    assert "already running at http://anyclaude:[redacted]@127.0.0.1:" in result.stderr
    logs = tmp_path / "state" / "logs"
    assert mode_bits(logs) == 0o700
    files = list(logs.iterdir())
    assert {f.name.split("-")[0] for f in files} >= {"debug", "trace"}
    for file in files:
        assert mode_bits(file) == 0o600, file
        assert PASSWORD not in file.read_text(), file


def test_startup_errors_naming_the_url_hide_its_password(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "LANG": "C.UTF-8",
           "ANYCLAUDE_STATE_DIR": str(tmp_path / "state"), "ANYCLAUDE_KEEP_ALIVE": "0",
           "ANYCLAUDE_MODE": "openai",
           "ANYCLAUDE_OPENAI_URL": f"http://me:{PASSWORD}@127.0.0.1:{free_port()}/v1",
           "ANYCLAUDE_CLAUDE_PATH": str(write_fake_claude(tmp_path / "claude"))}
    result = anyclaude([], env, tmp_path)
    assert result.returncode == 1
    assert "is not running at http://me:[redacted]@127.0.0.1:" in result.stderr
    assert PASSWORD not in result.stderr


@pytest.mark.parametrize("json_output", [False, True])
def test_doctor_shows_the_url_without_its_password(tmp_path: Path, json_output: bool) -> None:
    with ScriptedBackend("vllm", model="coder") as backend:
        url = backend.url.replace("http://", f"http://me:{PASSWORD}@")
        env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "LANG": "C.UTF-8",
               "XDG_CONFIG_HOME": str(tmp_path / "config"), "ANYCLAUDE_MODE": "openai",
               "ANYCLAUDE_OPENAI_URL": url, "ANYCLAUDE_OPENAI_MODEL": "coder", "COLUMNS": "60",
               "ANYCLAUDE_CLAUDE_PATH": str(write_fake_claude(tmp_path / "claude"))}
        result = anyclaude(["doctor", *(["--json"] if json_output else [])], env, tmp_path)
    assert "me:[redacted]@127.0.0.1" in result.stdout.replace("\n", "")
    assert PASSWORD not in result.stdout + result.stderr


def test_cli_errors_and_warnings_are_scrubbed(capsys: pytest.CaptureFixture[str]) -> None:
    cli.error(f"cannot reach https://u:{PASSWORD}@host/v1", f"detail https://{PASSWORD}@h/")
    cli.warning(f"see http://x:{PASSWORD}@h")
    err = capsys.readouterr().err
    assert PASSWORD not in err and err.count("[redacted]") == 3


# -- the rules ----------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["x-api-key", "Authorization", "Proxy-Authorization", "Cookie",
                                  "Set-Cookie", "x-anyclaude-token", "x-goog-api-key",
                                  "X-Auth-Token", "x-custom-secret", "X-Session-Id",
                                  "x-amz-security-token", "api-key", "x-password"])
def test_credential_headers_are_recognised_by_name(name: str) -> None:
    assert secret_header(name)


@pytest.mark.parametrize("name", ["anthropic-version", "anthropic-beta", "content-type",
                                  "user-agent", "x-stainless-retry-count", "accept"])
def test_ordinary_headers_are_kept(name: str) -> None:
    assert not secret_header(name)


@pytest.mark.parametrize("name", ["api_key", "apiKey", "API_KEY", "x-api-key", "password",
                                  "client_secret", "accessToken", "refresh_token", "token",
                                  "authorization", "cookie", "secretKey", "private_key",
                                  "credentials", "OPENAI_API_KEY"])
def test_secret_json_keys_are_recognised(name: str) -> None:
    assert secret_key(name)


@pytest.mark.parametrize("name", ["max_tokens", "input_tokens", "budget_tokens", "cached_tokens",
                                  "max_completion_tokens", "prompt_cache_key", "key", "keys",
                                  "user_id", "content", "tool_use_id", "stop_sequences"])
def test_ordinary_json_keys_are_kept(name: str) -> None:
    assert not secret_key(name)


@pytest.mark.parametrize("text, expected", [
    ("http://u:p4ssword@h:8/v1", "http://u:[redacted]@h:8/v1"),
    ("at HTTPS://user:pa%40ss@host/x and http://ok/", "at HTTPS://user:[redacted]@host/x and http://ok/"),
    ("token-only https://tok123@host/", "token-only https://[redacted]@host/"),
    ("mail me@example.com", "mail me@example.com"),
    ("http://host/v1?next=a@b", "http://host/v1?next=a@b"),
])
def test_url_credentials_are_scrubbed_by_name(text: str, expected: str) -> None:
    assert scrub(text) == expected


def test_known_secrets_are_scrubbed_by_value_longest_first() -> None:
    redactor = Redactor(["abcd", "abcdefgh", None, "", "xy", "http://u:urlpass@h/v1"])
    assert redactor.text("abcdefgh abcd xy urlpass") == "[redacted] [redacted] xy [redacted]"
    assert url_secrets("http://u:urlpass@h/v1") == ("urlpass",)
    assert url_secrets("http://h/v1") == ()


def test_values_are_redacted_by_key_and_by_value_at_any_depth() -> None:
    redactor = Redactor(["s3cr3t-value"])
    value = {"a": [{"api_key": "k1", "max_tokens": 5, "n": {"text": "has s3cr3t-value"}}],
             "password": None}
    assert redactor.value(value) == {"a": [{"api_key": "[redacted]", "max_tokens": 5,
                                            "n": {"text": "has [redacted]"}}], "password": None}
