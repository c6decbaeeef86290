"""Record what a real Claude Code sends: each scenario runs the installed CLI against the
recording stand-in server (`anyclaude.doctor.recorder`) and saves every request it made.

    .venv/bin/python -m tests.support.capture [--version 2.1.332 ...] [--out tests/fixtures]

writes `tests/fixtures/claude-code-<version>/<scenario>-<n>.json`, one request per file:
{"scenario", "argv", "method", "path", "headers", "body"}. Machine-specific paths become
/home/dev and /home/dev/project and the key is redacted, so a re-recording differs only
where Claude Code changed (and in dates, ids and the OS line). The environment is the one
the launcher gives Claude Code (model names, background alias, auth token), with the
billing header left on so the translator's tests see it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from anyclaude.doctor.recorder import Answer, Recorded, Recorder
from anyclaude.proxy.background import BACKGROUND_MODEL
from tests.support.claude_code import CLAUDE_VERSIONS, REPO_ROOT, claude_path, headless_env

FIXTURES = REPO_ROOT / "tests" / "fixtures"
KEY = "sk-capture-0123456789abcdefghij"
MODEL = "local-model"
HOME, PROJECT = "/home/dev", "/home/dev/project"
MARKER = "echo anyclaude-capture > capture-marker.txt"
TIMEOUT_S = 300.0
"""Per scenario; generous for a busy two-core machine."""


def tool_script(body: Mapping[str, Any]) -> Answer:
    """A Bash call while Bash is offered and no tool result has come back yet, else text."""
    offered = any(tool.get("name") == "Bash" for tool in body.get("tools") or [])
    last = (body.get("messages") or [{}])[-1].get("content")
    answered = isinstance(last, list) and any(
        isinstance(block, dict) and block.get("type") == "tool_result" for block in last)
    if offered and not answered:
        return Answer("I'll run it.", tool="Bash",
                      tool_input={"command": MARKER, "description": "Write the marker file"})
    return Answer("Done.")


def text_script(body: Mapping[str, Any]) -> Answer:
    return Answer("Hello from the capture server.")


@dataclass(frozen=True)
class Scenario:
    name: str
    runs: tuple[tuple[str, ...], ...]
    """Claude Code argument lists, run one after the other in the same HOME and project."""
    script: Callable[[Mapping[str, Any]], Answer] = text_script
    tui: str | None = None
    """Instead of `runs`: type this into the interactive TUI (in tmux), approve what it
    asks, wait for the final answer, quit with Ctrl-C twice."""
    launcher_models: bool = True
    """False: Claude Code's own default model (a Claude name turns on what Claude Code
    sends only to models it recognises, such as per-turn effort)."""


SCENARIOS = (
    Scenario("say-hi", (("-p", "say hi"),)),
    Scenario("tool", (("-p", "create the marker file", "--allowedTools", "Bash"),),
             tool_script),
    Scenario("tool-denied", (("-p", "create the marker file"),), tool_script),
    Scenario("tools-empty", (("-p", "say hi", "--tools", ""),)),
    Scenario("bare", (("-p", "say hi", "--bare"),)),
    Scenario("continue-effort", (("-p", "say hi"),
                                 ("-p", "and again", "--continue", "--effort", "low"))),
    Scenario("tui", (), tool_script, tui="create the marker file"),
    Scenario("default-model", (("-p", "create the marker file", "--allowedTools", "Bash"),
                               ("-p", "and again", "--continue", "--effort", "low")),
             tool_script, launcher_models=False),
)


def environment(home: Path, project: Path, url: str, launcher_models: bool) -> dict[str, str]:
    extra = {"ANTHROPIC_BASE_URL": url, "ANTHROPIC_AUTH_TOKEN": KEY}
    if launcher_models:
        extra.update({"ANTHROPIC_MODEL": MODEL, "ANTHROPIC_DEFAULT_OPUS_MODEL": MODEL,
                      "ANTHROPIC_DEFAULT_SONNET_MODEL": MODEL,
                      "ANTHROPIC_DEFAULT_HAIKU_MODEL": BACKGROUND_MODEL})
    return headless_env(home, project, api_key=KEY, extra=extra)


async def run_claude(claude: Path, args: Sequence[str], env: Mapping[str, str],
                     cwd: Path) -> str:
    proc = await asyncio.create_subprocess_exec(
        str(claude), *args, env=dict(env), cwd=cwd, stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), TIMEOUT_S)
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
    return out.decode("utf-8", "replace")


async def run_tui(claude: Path, prompt: str, env: Mapping[str, str], cwd: Path) -> str:
    """The interactive TUI in a detached tmux session; returns the last screen."""
    tmux = ["tmux", "-L", f"anyclaude-capture-{os.getpid()}"]

    async def call(*args: str) -> str:
        proc = await asyncio.create_subprocess_exec(*tmux, *args, stdout=subprocess.PIPE,
                                                    stderr=subprocess.DEVNULL, env=dict(env))
        out, _ = await proc.communicate()
        return out.decode("utf-8", "replace")

    await call("new-session", "-d", "-x", "160", "-y", "50", "-c", str(cwd),
               shlex.join([str(claude)]))
    screen = ""
    try:
        deadline = time.monotonic() + TIMEOUT_S
        typed = False
        while time.monotonic() < deadline:
            screen = await call("capture-pane", "-p")
            if not typed and ("? for shortcuts" in screen or "shift+tab to cycle" in screen):
                await call("send-keys", prompt, "Enter")
                typed = True
            elif typed and "Do you want to" in screen:
                await call("send-keys", "Enter")
            elif typed and "Done." in screen:
                break
            await asyncio.sleep(0.3)
        else:
            raise SystemExit(f"the TUI did not finish:\n{screen}")
        await asyncio.sleep(1)  # side requests (the session title) may still be running
        for _ in range(2):
            await call("send-keys", "C-c")
            await asyncio.sleep(0.5)
    finally:
        await call("kill-server")
    return screen


def scrub(value: Any, swaps: Sequence[tuple[str, str]]) -> Any:
    if isinstance(value, str):
        for old, new in swaps:
            value = value.replace(old, new)
        return value
    if isinstance(value, dict):
        return {k: scrub(v, swaps) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub(v, swaps) for v in value]
    return value


def saved(scenario: str, argv: Sequence[str], seen: Recorded,
          swaps: Sequence[tuple[str, str]]) -> dict[str, Any]:
    headers = {k: ("[redacted]" if k in ("authorization", "x-api-key") else v)
               for k, v in sorted(seen.headers.items()) if k not in ("host", "content-length")}
    path = seen.path + (f"?{seen.query}" if seen.query else "")
    record: dict[str, Any] = scrub({"scenario": scenario, "argv": list(argv),
                                    "method": seen.method, "path": path, "headers": headers,
                                    "body": seen.body}, swaps)
    return record


async def capture(version: str, scenario: Scenario, out: Path) -> list[Path]:
    claude = claude_path(version)
    written = []
    with tempfile.TemporaryDirectory(prefix="anyclaude-capture-") as tmp:
        home, project = Path(tmp) / "home", Path(tmp) / "project"
        project.mkdir()
        swaps = [(str(project), PROJECT), (str(home), HOME), (tmp, "/tmp/capture")]
        count = 0
        for args in scenario.runs or ((),):
            async with Recorder(scenario.script) as server:
                env = environment(home, project, server.url, scenario.launcher_models)
                if scenario.tui is None:
                    said = await run_claude(claude, args, env, project)
                else:
                    said = await run_tui(claude, scenario.tui, env, project)
                calls = [r for r in server.requests if r.path.startswith("/v1/messages")]
            if not calls:
                raise SystemExit(f"Claude Code {version} sent nothing for {scenario.name} "
                                 f"{list(args)}: {said[-500:]}")
            for seen in calls:
                count += 1
                path = out / f"{scenario.name}-{count}.json"
                data = saved(scenario.name, ["claude", *args], seen, swaps)
                path.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n",
                                encoding="utf-8")
                written.append(path)
    return written


def recorded(version: str) -> list[dict[str, Any]]:
    """The captures of `version`, each with its file `name`, in scenario and request order;
    fails when there are none."""
    folder = FIXTURES / f"claude-code-{version}"

    def order(path: Path) -> tuple[str, int]:
        scenario, _, number = path.stem.rpartition("-")
        return scenario, int(number)

    paths = sorted(folder.glob("*.json"), key=order)
    if not paths:
        raise AssertionError(f"no captures of Claude Code {version} in {folder}: record them "
                             "with .venv/bin/python -m tests.support.capture")
    return [{"name": p.stem, **json.loads(p.read_text(encoding="utf-8"))} for p in paths]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", action="append", dest="versions",
                        help=f"Claude Code version(s) to record (default: {CLAUDE_VERSIONS})")
    parser.add_argument("--out", type=Path, default=FIXTURES)
    parser.add_argument("--scenario", action="append", dest="scenarios",
                        help="only these scenarios (default: all)")
    options = parser.parse_args(argv)
    for version in options.versions or CLAUDE_VERSIONS:
        folder = options.out / f"claude-code-{version}"
        if folder.exists() and not options.scenarios:
            shutil.rmtree(folder)
        folder.mkdir(parents=True, exist_ok=True)
        for scenario in SCENARIOS:
            if options.scenarios and scenario.name not in options.scenarios:
                continue
            for old in folder.glob(f"{scenario.name}-*.json"):
                old.unlink()
            started = time.monotonic()
            files = asyncio.run(capture(version, scenario, folder))
            print(f"{version} {scenario.name}: {len(files)} request(s) in "
                  f"{time.monotonic() - started:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
