"""Warm start with the REAL mlx-lm server and the REAL Claude Code: the second session in a
folder gets its first answer from the server's prompt cache, whether the server was kept
running or started afresh and warmed up."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from anyclaude.keep import client
from tests.e2e.test_launch import Run, mlx_env
from tests.support.mlx_server import free_port

pytestmark = pytest.mark.e2e

REQUEST = re.compile(r"^\[anyclaude\] mlx-lm \S+ stream: prompt (\d+) \((\d+) cached\)")


def first_main_request(state: Path, before: set[Path]) -> tuple[int, int]:
    """(prompt tokens, cached tokens) of the first main request in the run's debug log."""
    [log] = set((state / "logs").glob("debug-*.log")) - before
    for line in log.read_text().splitlines():
        if match := REQUEST.match(line):
            return int(match.group(1)), int(match.group(2))
    raise AssertionError(f"no main request in {log}:\n{log.read_text()}")


@pytest.mark.parametrize("keep_alive", ["0", "10m"])
def test_the_second_session_s_first_answer_comes_from_the_cache(
        tmp_path: Path, tiny_model: Path, launch: Callable[..., Run], keep_alive: str) -> None:
    port = free_port()
    state = tmp_path / "state"
    env = mlx_env(tmp_path, tiny_model, port, ANYCLAUDE_KEEP_ALIVE=keep_alive,
                  ANYCLAUDE_DEBUG="1")
    try:
        sessions = []
        for words in ("create the marker file", "please create the marker file again"):
            logs = set((state / "logs").glob("debug-*.log"))
            run = launch(["-p", words, "--output-format", "json", "--tools", "Bash",
                          "--allowedTools", "Bash"], env)
            assert run.finish() == 0, run.stderr
            sessions.append((run, first_main_request(state, logs)))
        (first, (prompt1, cached1)), (second, (prompt2, cached2)) = sessions
        assert "Warming the prompt cache" not in first.stderr, "nothing recorded yet"
        assert cached1 < 0.5 * prompt1, "a cold start"
        assert "Warming the prompt cache" in second.stderr
        assert "Cache warm-up:" in second.stderr
        assert cached2 >= 0.95 * prompt2, (prompt2, cached2, second.stderr)
        if keep_alive == "0":
            assert "Starting the mlx-lm server" in second.stderr
            second.assert_nothing_left(port)
        else:
            assert "anyclaude kept running" in second.stderr
    finally:
        client.stop_all(state)
