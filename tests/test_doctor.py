"""`anyclaude doctor` as users run it: `python -m anyclaude doctor [--json]`, its exit status
(0 when the configured mode can work, 1 when a check failed), its output, and that it answers
within seconds whatever the backend does. The checks one by one: tests/doctor/."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from anyclaude.doctor import CHECKS
from tests.doctor.helpers import SYSTEM_PATH, closed_port, silent_server
from tests.support.claude_code import claude_path, no_new_children
from tests.support.scripted import ScriptedBackend

KEYS = {"check", "status", "symbol", "found", "fix"}
SYMBOLS = {"ok": "✓", "warn": "!", "fail": "✗"}


@pytest.fixture(autouse=True)
def _no_leftovers() -> Iterator[None]:
    with no_new_children():
        yield


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """An empty HOME, the real Claude Code, and an OpenAI-compatible mode (no MLX needed)."""
    return {"PATH": SYSTEM_PATH, "HOME": str(tmp_path), "LANG": "C.UTF-8",
            "XDG_CONFIG_HOME": str(tmp_path / "config"), "ANYCLAUDE_MODE": "openai",
            "ANYCLAUDE_CLAUDE_PATH": str(claude_path()), "COLUMNS": "120"}


def doctor(args: Sequence[str], env: Mapping[str, str],
           cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "anyclaude", "doctor", *args], env=dict(env),
                          cwd=cwd, capture_output=True, text=True, timeout=60)


def checks(result: subprocess.CompletedProcess[str]) -> dict[str, dict[str, Any]]:
    rows = json.loads(result.stdout)
    return {row["check"]: row for row in rows}


def test_doctor_exits_0_when_the_configured_mode_can_work(tmp_path: Path,
                                                          env: dict[str, str]) -> None:
    with ScriptedBackend("vllm", model="coder", context_length=65536) as be:
        result = doctor([], {**env, "ANYCLAUDE_OPENAI_URL": be.url,
                             "ANYCLAUDE_OPENAI_MODEL": "coder"}, tmp_path)
    assert result.returncode == 0, result.stdout
    assert result.stderr == ""
    assert "✗" not in result.stdout
    assert f"✓   backend-server   openai answers at {be.url} and serves coder" in result.stdout
    assert "Settings (mode openai)" in result.stdout


def test_doctor_exits_1_and_says_the_fix_when_a_check_fails(tmp_path: Path,
                                                            env: dict[str, str]) -> None:
    url = f"http://127.0.0.1:{closed_port()}/v1"
    result = doctor([], {**env, "ANYCLAUDE_OPENAI_URL": url, "ANYCLAUDE_CLAUDE_PATH": ""},
                    tmp_path)
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert any(line.startswith("✗   claude-code ") for line in lines), result.stdout
    assert "→ Install it with `npm install -g @anthropic-ai/claude-code@latest`" in result.stdout
    assert f"Nothing answers at {url} (connection refused)" in result.stdout
    assert "problems to fix before anyclaude can run" in result.stdout


def test_warnings_alone_keep_exit_status_0(tmp_path: Path, env: dict[str, str]) -> None:
    with ScriptedBackend("vllm", model="coder", context_length=24576) as be:
        result = doctor(["--json"], {**env, "ANYCLAUDE_OPENAI_URL": be.url}, tmp_path)
    found = checks(result)
    assert found["context-window"]["status"] == "warn"
    assert found["backend-server"]["status"] == "warn"  # ANYCLAUDE_OPENAI_MODEL not set
    assert result.returncode == 0


def test_json_is_a_list_of_checks_with_status_symbol_found_and_fix(
        tmp_path: Path, env: dict[str, str]) -> None:
    result = doctor(["--json", "--mode", "mlx-lm", "--backend-url",
                     f"http://127.0.0.1:{closed_port()}/v1"], env, tmp_path)
    rows = json.loads(result.stdout)
    assert isinstance(rows, list) and rows
    for row in rows:
        assert set(row) == KEYS, row
        assert row["symbol"] == SYMBOLS[row["status"]]
        assert isinstance(row["found"], str) and row["found"]
        assert (row["fix"] is None) == (row["status"] == "ok"), row
    order = [name for name, _ in CHECKS]
    names = [row["check"] for row in rows]
    assert names == sorted(names, key=order.index)
    assert {"settings", "config", "python", "platform", "claude-code", "node", "backend-package",
            "model", "backend-server", "context-window", "proxy-port"} <= set(names)
    assert result.returncode == 1  # MLX_LM_MODEL is not set
    assert result.stderr == ""


def test_doctor_answers_within_seconds_against_a_server_that_never_answers(
        tmp_path: Path, env: dict[str, str]) -> None:
    with silent_server() as port:
        url = f"http://127.0.0.1:{port}/v1"
        started = time.monotonic()
        result = doctor(["--json"], {**env, "ANYCLAUDE_OPENAI_URL": url,
                                     "ANYCLAUDE_OPENAI_MODEL": "m"}, tmp_path)
        elapsed = time.monotonic() - started
    assert elapsed < 15, elapsed
    server = checks(result)["backend-server"]
    assert (server["status"], server["found"]) == \
        ("fail", f"{url} accepts connections but sends no answer within 2 s")
    assert result.returncode == 1


def test_invalid_settings_are_a_failed_check_and_the_others_still_run(
        tmp_path: Path, env: dict[str, str]) -> None:
    (tmp_path / ".anyclaude.toml").write_text('modle = "x"\n')
    result = doctor(["--json", "--port", "99999"], {**env, "ANYCLAUDE_CONTEXT_WINDOW": "lots"},
                    tmp_path)
    assert result.returncode == 1 and result.stderr == ""
    rows = json.loads(result.stdout)
    settings = [row for row in rows if row["check"] == "settings"]
    assert [row["found"] for row in settings] == [
        "ANYCLAUDE_PORT (port) from the command line is '99999', but expected a port number "
        "between 0 and 65535",
        "ANYCLAUDE_CONTEXT_WINDOW (context_window) from the environment is 'lots', but "
        "expected a number"]
    config = checks(result)["config"]
    assert config["status"] == "warn" and config["fix"] == "Did you mean `mode`? Rename it."
    assert {"python", "claude-code", "backend-server", "proxy-port"} <= \
        {row["check"] for row in rows}


def test_a_broken_config_file_is_a_failed_check_not_a_crash(tmp_path: Path,
                                                            env: dict[str, str]) -> None:
    (tmp_path / ".anyclaude.toml").write_text("mode = \n")
    result = doctor([], env, tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stdout + result.stderr
    assert "✗   config " in result.stdout and "→ Fix or remove it." in result.stdout
    config = checks(doctor(["--json"], env, tmp_path))["config"]
    assert config["found"].startswith(f"The config file {tmp_path / '.anyclaude.toml'} is not "
                                      "valid TOML")


def test_doctor_help_has_examples_and_the_exit_status(tmp_path: Path,
                                                      env: dict[str, str]) -> None:
    result = doctor(["--help"], env, tmp_path)
    assert result.returncode == 0
    for text in ("--json", "--mode", "Examples", "anyclaude doctor --mode lmstudio",
                 "Exit status: 0 when the configured mode can work"):
        assert text in result.stdout, text
