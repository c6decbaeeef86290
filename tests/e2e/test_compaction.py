"""Claude Code compacts before the model's real window overflows, with the environment the
launcher gives it: the real Claude Code (2.1.197 and the newest), the proxy as the launcher
configures it, and the real mlx-lm server on the tiny scripted model with a small window.

A session of `claude -p --continue` turns, each adding under a tenth of the window, has to
compact at least twice; no request may be refused as too long, and every turn is answered.
The prompt sizes are the tiny tokenizer's, so the base prompt is a few thousand tokens
(`--tools Bash` keeps it small) and the window is 16k. `/context` shows the window and
threshold Claude Code believes, for the model names anyclaude passes."""

from __future__ import annotations

import inspect
import io
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from anyclaude import settings
from anyclaude.compaction import claude_would_take
from anyclaude.launcher import claude_env, proxy_config
from anyclaude.proxy.trace import Tracer
from tests.support.claude_code import CLAUDE_VERSIONS, claude_path, headless_env
from tests.support.mlx_server import MlxServer, running_mlx_server
from tests.support.proxy import ThreadedProxy
from tests.support.scripted import ScriptedBackend
from tests.support.tiny_model import DEFAULT_SENTENCE, build_scripted_model, default_models_dir

pytestmark = pytest.mark.e2e

WINDOW = 16384
TURN_CHARS = 4200
"""About 1,400 tokens of the tiny tokenizer per turn (Python source: ~3 characters a token):
with Claude Code's compaction instructions (~1,200) this still fits the 20% of the window
left above the threshold."""
TURNS = 16
TOKEN = "anyclaude-compaction-token-0123456789"


@pytest.fixture(scope="module")
def mlx() -> Iterator[MlxServer]:
    with running_mlx_server(build_scripted_model(default_models_dir() / "scripted")) as server:
        yield server


def turn_text(index: int) -> str:
    """A different slice of a stdlib module for each turn (the tiny tokenizer was not trained
    on it, so it costs about as many tokens as Claude Code estimates)."""
    import fractions
    source = inspect.getsource(fractions)
    start = (index * TURN_CHARS) % (len(source) - TURN_CHARS)
    return f"Turn {index}. Read this and say hi:\n" + source[start:start + TURN_CHARS]


def compactions(home: Path) -> list[dict[str, Any]]:
    """Claude Code's own record of each compaction in the session transcripts."""
    found = []
    for transcript in (home / ".claude" / "projects").rglob("*.jsonl"):
        for line in transcript.read_text().splitlines():
            entry = json.loads(line)
            if entry.get("subtype") == "compact_boundary":
                found.append(entry.get("compactMetadata") or {})
    return found


def refused(trace: Path) -> list[str]:
    """Requests the proxy answered itself without asking the backend (the too-long refusal;
    the `max_tokens: 1` probes it also answers itself are left out)."""
    asked, sent = set(), set()
    for line in trace.read_text().splitlines():
        entry = json.loads(line)
        if entry["step"] == "client_request" and entry["data"]["body"].get("max_tokens") != 1:
            asked.add(entry["request_id"])
        elif entry["step"] == "upstream_request":
            sent.add(entry["request_id"])
    return sorted(asked - sent)


@pytest.mark.parametrize("version", CLAUDE_VERSIONS)
def test_a_long_session_compacts_before_the_window_overflows(
        version: str, mlx: MlxServer, tmp_path: Path) -> None:
    cwd, home = tmp_path / "project", tmp_path / "home"
    cwd.mkdir()
    chosen = settings.load({}, {"ANYCLAUDE_MODE": "mlx-lm", "MLX_LM_URL": mlx.base_url,
                                "MLX_LM_MODEL": mlx.model, "ANYCLAUDE_PROXY_TOKEN": TOKEN,
                                "ANYCLAUDE_CONTEXT_WINDOW": str(WINDOW)}, cwd)
    tracer = Tracer(3, io.StringIO(), tmp_path / "trace.jsonl", secrets=(TOKEN,))
    with ThreadedProxy(proxy_config(chosen, WINDOW, tracer)) as proxy:
        env = claude_env(chosen, proxy.url, WINDOW, headless_env(home, cwd))
        answers: list[tuple[int, str]] = []
        second = None  # the turn that compacted for the second time; one more turn follows
        for index in range(TURNS):
            if second is not None and index > second + 1:
                break
            done = subprocess.run(
                [str(claude_path(version)), "-p", *(["--continue"] if index else []),
                 turn_text(index), "--tools", "Bash", "--allowedTools", "Bash",
                 "--output-format", "json"],
                cwd=cwd, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                timeout=300)
            lines = done.stdout.strip().splitlines() or ["{}"]
            answers.append((done.returncode, json.loads(lines[-1]).get("result") or done.stderr))
            if second is None and len(compactions(home)) >= 2:
                second = index
        records = list(proxy.server.config.stats.records)
    tracer.close()
    assert answers == [(0, DEFAULT_SENTENCE)] * len(answers), answers
    assert not refused(tmp_path / "trace.jsonl"), "the proxy refused a prompt as too long"
    done_compactions = compactions(home)
    assert len(done_compactions) >= 2, (done_compactions, [r.prompt_tokens for r in records])
    assert all(c.get("trigger") == "auto" and 0.75 * WINDOW <= c["preTokens"] < WINDOW
               for c in done_compactions), done_compactions
    assert max(r.prompt_tokens for r in records) < WINDOW


@pytest.mark.parametrize("version", CLAUDE_VERSIONS)
def test_claude_code_believes_the_stated_window_for_the_names_anyclaude_passes(
        version: str, tmp_path: Path) -> None:
    """`claude -p /context` on a 65,536 window: Claude Code states 81.8k with a 29.4k buffer,
    i.e. it compacts at 52.4k (80%), for the launcher's own name and a Hub id; a name with a
    Claude model in it gets Claude's window instead, which is why anyclaude never passes one."""
    cwd, home = tmp_path / "project", tmp_path / "home"
    cwd.mkdir()
    seen = {}
    with ScriptedBackend("mlx-lm", strict_model=False) as backend:
        for name in ("anyclaude-mlx-lm", "mlx-community/Qwen3-Coder-30B-A3B-Instruct-4bit",
                     "my-claude-sonnet-4-5-distill"):
            chosen = settings.load({}, {"ANYCLAUDE_MODE": "mlx-lm", "MLX_LM_URL": backend.url,
                                        "ANYCLAUDE_PROXY_TOKEN": TOKEN}, cwd)
            with ThreadedProxy(proxy_config(chosen, 65536)) as proxy:
                env = claude_env(chosen, proxy.url, 65536, headless_env(home, cwd, extra={
                    var: name for var in ("ANTHROPIC_MODEL", "ANTHROPIC_DEFAULT_OPUS_MODEL",
                                          "ANTHROPIC_DEFAULT_SONNET_MODEL")}))
                done = subprocess.run([str(claude_path(version)), "-p", "/context"], cwd=cwd,
                                      env=env, stdin=subprocess.DEVNULL, capture_output=True,
                                      text=True, timeout=120)
            seen[name] = ("/ 81.8k (" in done.stdout
                          and "| Autocompact buffer | 29.4k |" in done.stdout)
    assert seen == {name: not claude_would_take(name) for name in seen}, seen
