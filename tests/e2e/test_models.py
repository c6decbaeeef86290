"""Several models in one session, with the real parts: `python -m anyclaude` starts two real
mlx-lm servers (the main tiny scripted model, and a small one for side work, each on its
own port, with its own log), the real Claude Code delegates to a subagent, the subagent's
requests are answered by the small server, and the main conversation's follow-up still
comes from the main server's prompt cache. Afterwards nothing anyclaude started is left.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.test_launch import Run, mlx_env
from tests.support.claude_code import CLAUDE_VERSIONS, claude_path
from tests.support.mlx_server import free_port
from tests.support.tiny_model import (
    DEFAULT_SENTENCE,
    build_scripted_model,
    default_models_dir,
)

pytestmark = pytest.mark.e2e

SMALL_SENTENCE = "The small model answers."
AGENT_CALL = {"description": "Make the marker", "prompt": "Create the marker file.",
              "subagent_type": "general-purpose", "run_in_background": False}
LINE = re.compile(r"^\[anyclaude\] mlx-lm (?P<model>\S+) (?:stream|once)(?P<side> background)?"
                  r"(?: → (?P<served>\S+) \((?P<role>\w+)\))?: "
                  r"prompt (?P<prompt>\d+) \((?P<cached>\d+) cached\)")


@pytest.fixture(scope="module")
def delegating() -> Path:
    """The main model: calls the Agent tool first, then says its sentence."""
    return build_scripted_model(default_models_dir() / "scripted-agent", tool_name="Agent",
                                tool_arguments=AGENT_CALL)


@pytest.fixture(scope="module")
def small() -> Path:
    """The small model: runs the Bash marker command, then says its own sentence."""
    return build_scripted_model(default_models_dir() / "scripted-small", sentence=SMALL_SENTENCE)


def requests(run: Run) -> list[dict[str, str]]:
    """The proxy's per-request debug lines, parsed."""
    debug = next(line.split("Debug output: ", 1)[1] for line in run.err
                 if "Debug output: " in line)
    lines = Path(debug).read_text(encoding="utf-8").splitlines()
    return [m.groupdict() for line in lines if (m := LINE.match(line))]


@pytest.mark.parametrize("version", CLAUDE_VERSIONS)
def test_a_subagent_runs_on_the_small_server_and_the_main_cache_stays_warm(
        tmp_path: Path, delegating: Path, small: Path, launch: Callable[..., Run],
        version: str) -> None:
    port, small_port = free_port(), free_port()
    run = launch(["-p", "delegate the marker file", "--output-format", "json",
                  "--allowedTools", "Bash"],
                 mlx_env(tmp_path, delegating, port, claude_path(version),
                         ANYCLAUDE_SMALL_MODEL=str(small), ANYCLAUDE_SMALL_PORT=str(small_port),
                         ANYCLAUDE_DEBUG="1"))
    assert run.finish() == 0, run.stderr
    result = json.loads(run.out[-1])
    assert (result["is_error"], result["result"]) == (False, DEFAULT_SENTENCE), result
    assert (tmp_path / "project" / "anyclaude-e2e.txt").is_file(), "the subagent ran Bash"
    seen = requests(run)
    main = [r for r in seen if r["role"] is None]
    side = [r for r in seen if r["role"] == "small"]
    assert len(main) == 2 and len(side) >= 2, seen
    follow_up = main[1]
    assert int(follow_up["cached"]) >= 0.95 * int(follow_up["prompt"]), main
    assert all(r["served"] == "scripted-small" and r["side"] for r in side), side
    logs = tmp_path / "state" / "logs"
    assert f"[anyclaude] Starting the mlx-lm server for the small model (log: " \
           f"{logs / f'mlx-lm-{small_port}.log'})." in run.err
    assert (logs / f"mlx-lm-{port}.log").read_text().count("POST /v1/chat/completions") \
        == len(main) + 1, "the main server answered the main turns only (and its readiness)"
    assert "scripted-small (small model)" in run.stderr, "the exit summary names both models"
    run.assert_nothing_left(port, small_port)
