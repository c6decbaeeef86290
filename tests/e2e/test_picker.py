"""Claude Code's /model picker in a real terminal (tmux) lists the models anyclaude was told
about (`models`), and choosing one makes the next answer come from it: the newest Claude
Code, `python -m anyclaude` with the real mlx-lm server, which loads the chosen tiny model in
place of the main one."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.e2e.test_launch import mlx_env
from tests.support.claude_code import NEWEST_VERSION, claude_path
from tests.support.mlx_server import free_port, port_open
from tests.support.tiny_model import build_scripted_model, default_models_dir

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SMALL_SENTENCE = "The small model answers."
WAIT_S = 180.0


class Pane:
    """One tmux pane on a private server, running a command; gone at the end."""

    def __init__(self, name: str, command: list[str], cwd: Path) -> None:
        self.tmux = ["tmux", "-L", f"anyclaude-{name}-{os.getpid()}"]
        self.call("new-session", "-d", "-x", "160", "-y", "50", "-c", str(cwd),
                  shlex.join(command))
        self.call("set-option", "-g", "remain-on-exit", "on")

    def call(self, *args: str) -> str:
        done = subprocess.run([*self.tmux, *args], capture_output=True, text=True, timeout=30)
        return done.stdout

    def screen(self, history: int = 0) -> str:
        return self.call("capture-pane", "-p", *(["-S", str(-history)] if history else []))

    def keys(self, *keys: str) -> None:
        self.call("send-keys", *keys)

    def wait_for(self, what: str, found: Callable[[str], bool], timeout: float = WAIT_S) -> str:
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen(history=200)
            if found(screen):
                return screen
            if time.monotonic() > deadline:
                pytest.fail(f"gave up waiting for {what}; the screen:\n{screen}")
            time.sleep(0.3)

    def dead(self) -> bool:
        return self.call("display-message", "-p", "#{pane_dead}").strip() == "1"

    def close(self) -> None:
        self.call("kill-server")


@pytest.fixture
def pane_factory() -> Iterator[Callable[..., Pane]]:
    panes: list[Pane] = []

    def make(*args: object) -> Pane:
        pane = Pane(*args)  # type: ignore[arg-type]
        panes.append(pane)
        return pane

    yield make
    for pane in panes:
        pane.close()


def test_the_picker_lists_the_configured_models_and_the_choice_answers(
        tmp_path: Path, tiny_model: Path, pane_factory: Callable[..., Pane]) -> None:
    other = build_scripted_model(default_models_dir() / "scripted-small", sentence=SMALL_SENTENCE)
    port = free_port()
    env = mlx_env(tmp_path, tiny_model, port, claude_path(NEWEST_VERSION),
                  ANYCLAUDE_MODELS=str(other), ANYCLAUDE_DEBUG="1")
    command = ["env", "-i", *(f"{k}={v}" for k, v in env.items()),
               sys.executable, "-m", "anyclaude"]
    pane = pane_factory("picker", command, tmp_path / "project")
    pane.wait_for("Claude Code's prompt", lambda s: "? for shortcuts" in s or "shift+tab" in s)
    pane.keys("/model")
    time.sleep(0.5)
    pane.keys("Enter")
    listed = pane.wait_for("the picker", lambda s: "Select model" in s and "scripted-small" in s)
    assert re.search(r"scripted-small\s+.*(mlx-lm, loads on first use)", listed), listed
    assert re.search(r"\bscripted ✔\s+.*\(mlx-lm, main model\)", listed), "labelled entries"
    assert re.search(r"side work\s+side work on the main model", listed)
    for _ in range(12):  # move the cursor onto the chosen model
        if any("❯" in line and "scripted-small" in line for line in pane.screen().splitlines()):
            break
        pane.keys("Down")
        time.sleep(0.3)
    pane.keys("s")  # this session only
    pane.wait_for("the choice", lambda s: "Set model to scripted-small" in s)
    pane.keys("say hi")
    time.sleep(0.5)
    pane.keys("Enter")
    pane.wait_for("the chosen model's answer", lambda s: SMALL_SENTENCE in s)
    for _ in range(2):
        pane.keys("C-c")
        time.sleep(0.5)
    pane.wait_for("anyclaude to exit", lambda s: pane.dead())
    final = pane.screen(history=400)
    assert re.search(r"Models\s+scripted-small \d", final), final
    debug = next((tmp_path / "state" / "logs").glob("debug-*.log")).read_text()
    assert "Loading scripted-small on the mlx-lm server in place of scripted" in debug
    deadline = time.monotonic() + 10
    while port_open("127.0.0.1", port) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not port_open("127.0.0.1", port), "the mlx-lm server was stopped"
