"""The command line: anyclaude's own options, everything else passed to Claude Code unchanged,
exit codes, and user errors as one sentence without a traceback.

Runs `python -m anyclaude` in claude mode (nothing to start) with a stand-in `claude` that
records its arguments and environment."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import types
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest

from anyclaude import __version__, cli, settings
from anyclaude.settings import Settings, SettingsError
from tests.support.claude_code import no_new_children, write_fake_claude
from tests.support.mlx_server import free_port, port_open


@pytest.fixture(autouse=True)
def _no_leftovers() -> Iterator[None]:
    with no_new_children():
        yield


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    fake = write_fake_claude(tmp_path / "claude")
    return {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "LANG": "C.UTF-8",
            "XDG_CONFIG_HOME": str(tmp_path / "config"),
            "ANYCLAUDE_STATE_DIR": str(tmp_path / "state"),
            "ANYCLAUDE_KEEP_ALIVE": "0", "ANYCLAUDE_MODE": "claude",
            "ANTHROPIC_UPSTREAM_URL": "http://127.0.0.1:9", "ANYCLAUDE_CLAUDE_PATH": str(fake),
            "FAKE_CLAUDE_RECORD": str(tmp_path / "record.json")}


def anyclaude(args: Sequence[str], env: Mapping[str, str],
              cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "anyclaude", *args], env=dict(env), cwd=cwd,
                          capture_output=True, text=True, timeout=60)


def recorded(tmp_path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((tmp_path / "record.json").read_text())
    return data


def test_claude_code_s_arguments_pass_through_unchanged_and_in_order(
        tmp_path: Path, env: dict[str, str]) -> None:
    args = ["-p", "say hi", "--model", "x", "--output-format", "json", "-c", "--debug",
            "--verbose", "--allowedTools", "Bash", "--tools", "", "--max-turns=3", "-pc",
            "--settings", '{"a": 1}', "-r", "s-1", "--bare", "-h"]
    result = anyclaude(args, env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert recorded(tmp_path)["argv"] == args


def test_anyclaude_s_own_options_are_taken_out_wherever_they_are(
        tmp_path: Path, env: dict[str, str]) -> None:
    result = anyclaude(["-p", "--mode", "claude", "hi", "--port", "0", "--model", "m",
                        "--startup-timeout=5"], env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert recorded(tmp_path)["argv"] == ["-p", "hi", "--model", "m"]


def test_everything_after_double_dash_reaches_claude_code(tmp_path: Path,
                                                          env: dict[str, str]) -> None:
    result = anyclaude(["--port", "0", "--", "--help", "--mode", "x", "--version", "--"], env,
                       tmp_path)
    assert result.returncode == 0, result.stderr
    assert recorded(tmp_path)["argv"] == ["--help", "--mode", "x", "--version", "--"]


def test_claude_code_s_exit_code_is_anyclaude_s(tmp_path: Path, env: dict[str, str]) -> None:
    result = anyclaude(["-p", "hi"], {**env, "FAKE_CLAUDE_EXIT": "3"}, tmp_path)
    assert result.returncode == 3
    assert recorded(tmp_path)["env"]["ANTHROPIC_BASE_URL"].startswith("http://127.0.0.1:")


def test_version_and_help_are_anyclaude_s(tmp_path: Path, env: dict[str, str]) -> None:
    result = anyclaude(["--version"], env, tmp_path)
    assert (result.returncode, result.stdout) == (0, f"anyclaude {__version__}\n")
    result = anyclaude(["--help"], env, tmp_path)
    assert result.returncode == 0
    for text in ("--mode", "--proxy-only", "--port", "--backend-url", "--backend-model",
                 "--context-window", "--startup-timeout", "Examples", "anyclaude -- --help",
                 "anyclaude doctor", "--output-format json"):
        assert text in result.stdout, text
    assert not (tmp_path / "record.json").exists(), "Claude Code was not run"
    console_script = Path(sys.executable).parent / "anyclaude"
    assert subprocess.run([console_script, "--version"], capture_output=True, text=True,
                          check=True).stdout == f"anyclaude {__version__}\n"


@pytest.mark.parametrize(("args", "extra", "names"), [
    ([], {"ANYCLAUDE_PORT": "abc"}, "ANYCLAUDE_PORT (port) from the environment is 'abc'"),
    (["--port", "99999"], {}, "ANYCLAUDE_PORT (port) from the command line is '99999'"),
    (["--mode", "ollama"], {}, "ANYCLAUDE_MODE (mode) from the command line is 'ollama', but "
     "expected one of mlx-lm, mlx-textgen, mlx-openai-server, mlx-omni-server, fastmlx, lmstudio, openai, claude"),
    (["--startup-timeout", "-1"], {}, "ANYCLAUDE_STARTUP_TIMEOUT (startup_timeout)"),
    (["--backend-model", "m"], {}, "--backend-model does not apply to claude mode"),
    (["--backend-url", "nope"], {}, "ANTHROPIC_UPSTREAM_URL (claude.url) from the command line"),
])
def test_invalid_settings_exit_2_with_one_sentence(tmp_path: Path, env: dict[str, str],
                                                   args: list[str], extra: dict[str, str],
                                                   names: str) -> None:
    result = anyclaude(args, {**env, **extra}, tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("anyclaude: ") and names in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert not (tmp_path / "record.json").exists()


def test_a_broken_project_file_exits_2(tmp_path: Path, env: dict[str, str]) -> None:
    (tmp_path / ".anyclaude.toml").write_text("mode = \n")
    result = anyclaude([], env, tmp_path)
    assert result.returncode == 2 and "is not valid TOML" in result.stderr
    assert "Traceback" not in result.stderr


def test_unknown_keys_in_a_config_file_are_named(tmp_path: Path, env: dict[str, str]) -> None:
    (tmp_path / ".anyclaude.toml").write_text('moed = "claude"\n')
    result = anyclaude(["-p", "hi"], env, tmp_path)
    assert result.returncode == 0
    assert "Ignoring unknown setting(s) moed in " in result.stderr


def test_backend_flags_apply_to_the_mode_that_wins(tmp_path: Path) -> None:
    environ = {"ANYCLAUDE_MODE": "lmstudio", "LMSTUDIO_URL": "http://127.0.0.1:1/v1"}
    s = settings.load({"backend_url": "http://127.0.0.1:2/v1", "backend_model": "q"},
                          environ, tmp_path)
    assert (s.mode, s.endpoint.url, s.endpoint.model) == ("lmstudio", "http://127.0.0.1:2/v1",
                                                         "q")
    s = settings.load({"mode": "openai", "backend_url": "http://h:3/v1",
                           "context_window": "4096", "proxy_only": True}, environ, tmp_path)
    assert (s.mode, s.endpoint.url, s.context_window, s.proxy_only) == \
        ("openai", "http://h:3/v1", 4096, True)
    assert s.sources["openai.url"] == "the command line"
    with pytest.raises(SettingsError, match="--backend-model does not apply to claude mode"):
        settings.load({"mode": "claude", "backend_model": "x"}, {}, tmp_path)


def run_main(args: list[str]) -> int:
    with pytest.raises(SystemExit) as caught:
        cli.main(args)
    return int(caught.value.code or 0)


def test_doctor_runs_the_doctor_module_with_the_settings(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    calls: list[tuple[Settings, bool]] = []

    def run(resolved: Settings, as_json: bool, problems: Sequence[str] = ()) -> int:
        calls.append((resolved, as_json))
        return 4

    doctor = types.ModuleType("anyclaude.doctor")
    doctor.run = run  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "anyclaude.doctor", doctor)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    assert run_main(["doctor", "--json", "--mode", "openai"]) == 4
    assert [(s.mode, as_json) for s, as_json in calls] == [("openai", True)]
    assert run_main(["doctor"]) == 4 and calls[-1][1] is False


def test_doctor_says_so_when_it_is_not_installed(monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str],
                                                 tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "anyclaude.doctor", None)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    assert run_main(["doctor"]) == 1
    assert "anyclaude doctor is not available" in capsys.readouterr().err


def boom() -> int:
    raise RuntimeError("disk on fire")


def test_an_internal_error_is_one_sentence_unless_debugging(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("ANYCLAUDE_DEBUG", raising=False)
    assert cli.guarded(boom) == 1
    err = capsys.readouterr().err
    assert err.startswith("anyclaude: anyclaude failed unexpectedly (RuntimeError: disk on "
                          "fire); run it again with ANYCLAUDE_DEBUG=1")
    assert "Traceback" not in err
    monkeypatch.setenv("ANYCLAUDE_DEBUG", "1")
    with pytest.raises(RuntimeError, match="disk on fire"):
        cli.guarded(boom)


@pytest.mark.parametrize("how", ["--proxy-only", "PROXY_ONLY=true"])
def test_proxy_only_serves_on_the_chosen_port_until_interrupted(
        tmp_path: Path, env: dict[str, str], how: str) -> None:
    port = free_port()
    args, extra = (["--proxy-only"], {}) if how.startswith("--") else ([], {"PROXY_ONLY": "true"})
    proc = subprocess.Popen([sys.executable, "-m", "anyclaude", "--port", str(port), *args],
                            env={**env, **extra}, cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    first = proc.stdout.readline()
    assert first == f"[anyclaude] Proxy URL: http://127.0.0.1:{port}\n"
    assert proc.stdout.readline().startswith("[anyclaude] Token: anyclaude-")
    assert proc.stdout.readline().startswith(f"export ANTHROPIC_BASE_URL=http://127.0.0.1:{port} ")
    assert httpx.get(f"http://127.0.0.1:{port}/health").json()["mode"] == "claude"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert not (tmp_path / "record.json").exists(), "Claude Code is not run"
    assert not port_open("127.0.0.1", port)


def test_a_busy_proxy_port_is_one_sentence(tmp_path: Path, env: dict[str, str]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = anyclaude(["--port", str(port), "-p", "hi"], env, tmp_path)
    assert result.returncode == 1
    assert result.stderr.startswith(f"anyclaude: The proxy could not listen on 127.0.0.1:{port}")
    assert "--port" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "record.json").exists()


def test_debug_output_goes_to_a_file_while_claude_code_owns_the_terminal(
        tmp_path: Path, env: dict[str, str]) -> None:
    result = anyclaude(["-p", "hi"], {**env, "ANYCLAUDE_DEBUG": "3"}, tmp_path)
    assert result.returncode == 0, result.stderr
    logs = tmp_path / "state" / "logs"
    debug = next(logs.glob("debug-*.log"))
    assert f"[anyclaude] Debug output: {debug}" in result.stderr.splitlines()
    assert f"[anyclaude] Traces: {next(logs.glob('trace-*.jsonl'), 'none')}" in result.stderr
    assert result.stdout == "", "nothing on Claude Code's screen"
