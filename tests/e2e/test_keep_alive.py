"""Keep-alive with the REAL mlx-lm server and the REAL Claude Code: a server anyclaude started
outlives the run for `keep_alive`, the next run reuses it, `anyclaude status` lists it,
`anyclaude stop` stops it, and nothing is left once the keep-alive time has passed, even
when anyclaude was SIGKILLed."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import psutil
import pytest

from anyclaude.keep import state
from tests.e2e.test_launch import Run, mlx_env
from tests.support.mlx_server import free_port, port_open
from tests.support.tiny_model import DEFAULT_SENTENCE

pytestmark = pytest.mark.e2e

SAY_HI = ["-p", "say hi", "--output-format", "json", "--tools", ""]


def cli(args: list[str], env: Mapping[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "anyclaude", *args], env=dict(env), cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def ended(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def gone(pid: int, port: int | None = None, within: float = 90.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if ended(pid) and (port is None or not port_open("127.0.0.1", port)):
            return True
        time.sleep(0.2)
    return False


@pytest.fixture
def kept(tmp_path: Path) -> Iterator[Callable[[], list[state.Record]]]:
    """The kept servers of this test's state folder; whatever is left is stopped at the end."""
    folder = tmp_path / "state"
    yield lambda: state.load_all(folder)
    from anyclaude.keep import client
    client.stop_all(folder)


def test_a_kept_server_is_reused_listed_and_stopped(
        tmp_path: Path, tiny_model: Path, launch: Callable[..., Run],
        kept: Callable[[], list[state.Record]]) -> None:
    port = free_port()
    env = mlx_env(tmp_path, tiny_model, port, ANYCLAUDE_KEEP_ALIVE="10m")
    first = launch(SAY_HI, env)
    assert first.finish() == 0, first.stderr
    assert json.loads(first.out[-1])["result"] == DEFAULT_SENTENCE
    assert "Starting the mlx-lm server" in first.stderr
    assert "Keeping the mlx-lm server running for 10m" in first.stderr
    [record] = kept()
    assert psutil.pid_exists(record.server_pid) and port_open("127.0.0.1", port)

    second = launch(SAY_HI, env)
    assert second.finish() == 0, second.stderr
    assert json.loads(second.out[-1])["result"] == DEFAULT_SENTENCE
    assert "Using the mlx-lm server anyclaude kept running" in second.stderr
    assert "Starting" not in second.stderr
    assert [r.server_pid for r in kept()] == [record.server_pid]

    project = tmp_path / "project"
    listed = cli(["status"], env, project)
    assert listed.returncode == 0, listed.stderr
    [line] = listed.stdout.splitlines()
    assert f"mlx-lm  {tiny_model}  http://127.0.0.1:{port}/v1  pid {record.server_pid}" in line
    assert "stops in" in line

    stopped = cli(["stop"], env, project)
    assert stopped.returncode == 0, stopped.stderr
    assert f"Stopped the mlx-lm server at http://127.0.0.1:{port}/v1" in stopped.stderr
    assert gone(record.server_pid, port)
    assert cli(["status"], env, project).stdout == ""
    assert cli(["stop"], env, project).returncode == 0


def test_a_kept_server_stops_after_the_keep_alive_time_even_when_anyclaude_was_sigkilled(
        tmp_path: Path, tiny_model: Path, launch: Callable[..., Run],
        kept: Callable[[], list[state.Record]]) -> None:
    port = free_port()
    run = launch(["--proxy-only"],
                 mlx_env(tmp_path, tiny_model, port, ANYCLAUDE_KEEP_ALIVE="3s"))
    run.proxy_url()
    [record] = kept()
    run.proc.kill()  # no clean-up code runs: the keeper notices the lease closing
    run.finish()
    assert gone(record.server_pid, port)
    assert gone(record.keeper_pid)
    assert kept() == []
