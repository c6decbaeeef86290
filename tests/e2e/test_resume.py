"""Resuming through anyclaude, with every tested Claude Code version: an interactive session
in a real terminal (tmux) ends with Claude Code's own resume line and anyclaude's
equivalent right after it; running that command resumes the session through the proxy (the
backend sees the earlier turn)."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.claude_code import CLAUDE_VERSIONS, claude_path, headless_env
from tests.support.scripted import ScriptedBackend

pytestmark = pytest.mark.e2e

SCRIPTED_TEXT = "Hello! I am the tiny scripted test model."
READY = ("? for shortcuts", "shift+tab to cycle")
"""What each version's prompt line shows once it takes input."""
CLAUDE_LINE = re.compile(r"^claude --resume ([0-9a-f-]{36})\s*$", re.M)


class Terminal:
    """A detached tmux server of its own, with one window running `command`."""

    def __init__(self, command: str, cwd: Path, env: dict[str, str]) -> None:
        tmux = shutil.which("tmux")
        assert tmux, "tmux is needed for the interactive test; install it (apt-get install tmux)"
        self.server = [tmux, "-L", f"anyclaude-resume-{os.getpid()}"]
        subprocess.run([*self.server, "new-session", "-d", "-x", "160", "-y", "50", "-c",
                        str(cwd), command], env=env, check=True)

    def screen(self) -> str:
        return subprocess.run([*self.server, "capture-pane", "-p", "-S", "-100"],
                              capture_output=True, text=True).stdout

    def wait(self, what: str, found: object, timeout: float = 120) -> str:
        deadline = time.monotonic() + timeout
        while not (callable(found) and found(shown := self.screen())):
            assert time.monotonic() < deadline, f"no {what} on screen:\n{shown}"
            time.sleep(0.2)
        return shown

    def keys(self, *keys: str) -> None:
        subprocess.run([*self.server, "send-keys", *keys], check=True)

    def close(self) -> None:
        subprocess.run([*self.server, "kill-server"], check=False, capture_output=True)


@pytest.mark.parametrize("version", CLAUDE_VERSIONS)
def test_the_printed_anyclaude_resume_command_resumes_through_the_proxy(
        tmp_path: Path, version: str) -> None:
    project = tmp_path / "project"
    project.mkdir()
    env = headless_env(tmp_path / "home", project, extra={
        "ANYCLAUDE_CLAUDE_PATH": str(claude_path(version)),
        "ANYCLAUDE_STATE_DIR": str(tmp_path / "state")})
    done = tmp_path / "exit-code"
    with ScriptedBackend("vllm", model="scripted") as double:
        flags = ["--mode", "openai", "--backend-url", double.url]
        command = shlex.join([sys.executable, "-m", "anyclaude", *flags, "--tools", ""])
        terminal = Terminal(f"{command}; echo $? > {done}; sleep 600", project, env)
        try:
            terminal.wait("prompt", lambda s: any(r in s for r in READY))
            terminal.keys("say hi", "Enter")
            terminal.wait("answer", lambda s: SCRIPTED_TEXT in s)
            for _ in range(2):
                terminal.keys("C-c")
                time.sleep(0.5)
            screen = terminal.wait("exit", lambda s: done.exists())
        finally:
            terminal.close()
        assert done.read_text().strip() == "0"
        lines = screen.splitlines()
        ours = lines.index("[anyclaude] Resume this session through anyclaude with:")
        match = CLAUDE_LINE.search("\n".join(lines[:ours]))
        assert match, f"Claude Code's own resume line:\n{screen}"
        session = match.group(1)
        assert shlex.split(lines[ours + 1]) == ["anyclaude", *flags, "--resume", session]

        before = len(double.requests)
        resumed = subprocess.run(
            [sys.executable, "-m", "anyclaude", *shlex.split(lines[ours + 1])[1:], "-p",
             "and now?", "--output-format", "json", "--tools", ""],
            cwd=project, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
            timeout=300)
        assert resumed.returncode == 0, resumed.stderr
        assert json.loads(resumed.stdout.splitlines()[-1])["result"] == SCRIPTED_TEXT
        chat = [r for r in double.requests[before:] if r.path.endswith("/chat/completions")
                and "and now?" in json.dumps(r.json)]
        assert chat, "the resumed turn went through the proxy"
        history = json.dumps(chat[-1].json["messages"])
        assert "say hi" in history and SCRIPTED_TEXT in history, "with the earlier turn"
        assert "Resume this session" not in resumed.stderr, "print mode gets no resume line"
