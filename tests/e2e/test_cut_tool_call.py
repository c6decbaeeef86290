"""The real Claude Code meets a Bash call cut by max_tokens (issue 11, class 4): it must never
run the partial command. The backend is the scripted double, sending the call's arguments
up to the cut and `finish_reason: "length"`; what Claude Code does next is recorded from
the requests it sends."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.support.claude_code import CLAUDE_VERSIONS, claude_path, headless_env
from tests.support.proxy import TOKEN, running_proxy
from tests.support.scripted import Reply, Request, ScriptedBackend

pytestmark = pytest.mark.e2e

MODEL = "anyclaude-mlx-lm"
CUT = {
    "Bash": '{"command": "touch partial-',
    "Write": '{"file_path": "FILE", "content": "the first half of the fi',
}
"""Run as repaired, Bash would create `partial-` and Write would write a truncated file."""


def is_main(request: Request) -> bool:
    return isinstance(request.json, dict) and bool(request.json.get("tools"))


@pytest.mark.parametrize("tool", sorted(CUT))
@pytest.mark.parametrize("version", CLAUDE_VERSIONS)
def test_a_call_cut_at_max_tokens_is_never_run(version: str, tool: str, tmp_path: Path) -> None:
    cwd = tmp_path / "project"
    cwd.mkdir()
    target = cwd / "notes.txt"
    arguments = CUT[tool].replace("FILE", str(target))
    answered: list[int] = []

    def respond(request: Request) -> Reply | None:
        if not is_main(request) or answered:
            return None  # background requests and every later turn: plain text
        answered.append(request.index)
        return Reply(text="Let me do that.", tool_calls=[(tool, arguments)],
                     finish_reason="length")

    with ScriptedBackend("mlx-lm", strict_model=False, responder=respond) as backend, \
            running_proxy("mlx-lm", backend.url) as proxy:
        extra = {"ANTHROPIC_BASE_URL": proxy.url, "ANTHROPIC_AUTH_TOKEN": TOKEN,
                 "ANTHROPIC_MODEL": MODEL, "ANTHROPIC_DEFAULT_OPUS_MODEL": MODEL,
                 "ANTHROPIC_DEFAULT_SONNET_MODEL": MODEL,
                 "ANTHROPIC_DEFAULT_HAIKU_MODEL": "anyclaude-background",
                 "CLAUDE_CODE_ATTRIBUTION_HEADER": "0"}
        env = headless_env(cwd.parent / "home", cwd, extra=extra)
        done = subprocess.run([str(claude_path(version)), "-p", "clean up the build folder",
                               "--output-format", "json", "--allowedTools", tool],
                              cwd=cwd, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, timeout=180)
        main = [r for r in backend.requests if is_main(r)]
    assert done.stdout.strip(), done.stderr[-2000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    # The partial call never ran: no file from the cut command, no truncated file.
    assert sorted(p.name for p in cwd.iterdir()) == []
    # Claude Code got the note instead of a tool_use and carried on (both tested versions
    # ask the model to resume after max_tokens): the note is in the history it sent next,
    # and no tool result for the cut call ever was.
    later = [json.dumps(r.json["messages"]) for r in main[1:]]
    assert later and "the incomplete call was dropped, not run" in later[0]
    assert all("tool_calls" not in m and '"role": "tool"' not in m for m in later), later
    assert result["is_error"] is False, result
