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

from anyclaude import backends
from anyclaude.backends.base import Endpoint
from anyclaude.keep import state
from anyclaude.keep.client import stop_all
from anyclaude.proxy.background import BACKGROUND_MODEL
from anyclaude.proxy.config import ProxyConfig
from anyclaude.routing import build
from tests.e2e.test_keep_alive import cli, gone
from tests.e2e.test_launch import Run, mlx_env
from tests.support.claude_code import CLAUDE_VERSIONS, claude_path
from tests.support.mlx_server import free_port, port_open, running_mlx_server
from tests.support.proxy import TOKEN, ThreadedProxy, client
from tests.support.tiny_model import (
    DEFAULT_SENTENCE,
    build_random_model,
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


def test_the_small_models_server_is_kept_found_again_by_port_listed_and_stopped(
        tmp_path: Path, tiny_model: Path, small: Path, launch: Callable[..., Run]) -> None:
    """Without `small_port` the small model's server takes the first free port after the
    main one's; the next run finds the kept one there again (not a second server)."""
    port = free_port()
    env = mlx_env(tmp_path, tiny_model, port, ANYCLAUDE_SMALL_MODEL=str(small),
                  ANYCLAUDE_KEEP_ALIVE="10m")
    say_hi = ["-p", "say hi", "--output-format", "json", "--tools", ""]
    try:
        first = launch(say_hi, env)
        assert first.finish() == 0, first.stderr
        assert "Keeping the mlx-lm server for the small model running for 10m" in first.stderr
        records = {r.model: r for r in state.load_all(tmp_path / "state")}
        small_record = records[str(small)]
        small_port = int(small_record.url.rsplit(":", 1)[1].split("/")[0])
        assert small_port > port and port_open("127.0.0.1", small_port)

        second = launch(say_hi, env)
        assert second.finish() == 0, second.stderr
        assert "Using the mlx-lm server for the small model anyclaude kept running at " \
               f"{small_record.url}" in second.stderr
        assert [r.server_pid for r in state.load_all(tmp_path / "state")
                if r.model == str(small)] == [small_record.server_pid]
        listed = cli(["status"], env, tmp_path / "project")
        assert str(small) in listed.stdout and small_record.url in listed.stdout
        stopped = cli(["stop"], env, tmp_path / "project")
        assert small_record.url in stopped.stderr
        assert gone(small_record.server_pid, small_port)
    finally:
        stop_all(tmp_path / "state")


def test_a_small_model_that_cannot_start_is_a_warning_and_the_main_model_answers(
        tmp_path: Path, tiny_model: Path, launch: Callable[..., Run]) -> None:
    port, small_port = free_port(), free_port()
    missing = tmp_path / "no-such-model"
    run = launch(["-p", "say hi", "--output-format", "json", "--tools", ""],
                 mlx_env(tmp_path, tiny_model, port, ANYCLAUDE_SMALL_MODEL=str(missing),
                         ANYCLAUDE_SMALL_PORT=str(small_port)))
    assert run.finish() == 0, run.stderr
    assert json.loads(run.out[-1])["result"] == DEFAULT_SENTENCE
    assert f"[anyclaude] Warning: ANYCLAUDE_SMALL_MODEL names the folder {missing}" in run.stderr
    assert "Side work goes to the main model instead." in run.stderr
    run.assert_nothing_left(port, small_port)


def test_side_work_is_answered_by_the_small_server_while_the_main_one_generates(
        small: Path) -> None:
    """Two real mlx-lm servers behind the proxy: a side request (the Haiku alias) is answered
    while the main answer is still streaming, and the main server never sees it."""
    big = build_random_model(default_models_dir() / "random")
    backend = backends.get("mlx-lm")
    assert backend is not None
    with running_mlx_server(big) as main, running_mlx_server(small) as side:
        endpoint = Endpoint(main.base_url, main.model)
        routes = build(backend, endpoint, small_model=side.model, small_url=side.base_url)
        config = ProxyConfig(backend=backend, endpoint=endpoint, token=TOKEN, routes=routes)
        with ThreadedProxy(config) as proxy, client(proxy) as sdk, sdk.messages.stream(
                model=main.model, max_tokens=4000,
                messages=[{"role": "user", "content": "write a long story"}]) as story:
            next(iter(story))  # the main answer is streaming
            answer = sdk.messages.create(model=BACKGROUND_MODEL, max_tokens=20,
                                         messages=[{"role": "user", "content": "a title?"}])
            assert answer.content[0].text == SMALL_SENTENCE  # type: ignore[union-attr]
            assert [r.role for r in config.stats.records] == ["small"], "main still streaming"
        assert main.log_text().count("POST /v1/chat/completions") == 2, "readiness + main"


@pytest.mark.parametrize("name", ["scripted-small", "anthropic/scripted-small"])
def test_model_naming_a_configured_model_routes_the_conversation_there(
        tmp_path: Path, tiny_model: Path, small: Path, launch: Callable[..., Run],
        name: str) -> None:
    """`--model` works with Claude Code versions whose picker does not ask the proxy (2.1.197
    under anyclaude): the chosen model answers, loaded in place of the main one."""
    port = free_port()
    run = launch(["-p", "say hi", "--output-format", "json", "--tools", "", "--model", name],
                 mlx_env(tmp_path, tiny_model, port, ANYCLAUDE_MODELS=str(small)))
    assert run.finish() == 0, run.stderr
    assert json.loads(run.out[-1])["result"] == SMALL_SENTENCE
    assert "Loading scripted-small on the mlx-lm server in place of scripted" in run.stderr
    run.assert_nothing_left(port)
