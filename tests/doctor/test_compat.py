"""doctor's compatibility check: one real `claude -p` exchange against a scripted server,
compared with what the tested versions send. Stand-in `claude` programs play a newer
version that sends something new, one that fails and one that hangs."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from anyclaude.doctor import compat
from anyclaude.doctor.compat import compat_check
from tests.doctor.helpers import context, one, run
from tests.support.claude_code import CLAUDE_VERSIONS, claude_path

STAND_IN = '''#!{python}
import json, os, sys, urllib.request
body = {body}
request = urllib.request.Request(
    os.environ["ANTHROPIC_BASE_URL"] + "/v1/messages?beta=true", data=json.dumps(body).encode(),
    headers={{"content-type": "application/json", "anthropic-beta": {beta!r},
              "authorization": "Bearer " + os.environ["ANTHROPIC_AUTH_TOKEN"]}})
with urllib.request.urlopen(request, timeout=60) as response:
    answer = json.load(response)
print(json.dumps({{"type": "result", "is_error": False, "result": answer["content"][0]["text"],
                  "cwd": os.getcwd(), "home": os.environ["HOME"]}}))
'''


def stand_in(tmp_path: Path, body: dict[str, Any], beta: str = "") -> Path:
    path = tmp_path / "bin" / "claude"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(STAND_IN.format(python=sys.executable, body=repr(body), beta=beta))
    path.chmod(0o755)
    return path


@pytest.mark.parametrize("version", CLAUDE_VERSIONS)
def test_the_tested_versions_send_nothing_new(environ: dict[str, str], version: str) -> None:
    result = one(compat_check, context(environ, claude_path=str(claude_path(version))))
    assert (result.status, result.check) == ("ok", "claude-compat"), result
    assert result.found.startswith("a scripted `claude -p` exchange sent nothing anyclaude "
                                   "does not know (1 request(s))")


def test_what_a_newer_version_sends_is_named(environ: dict[str, str], tmp_path: Path) -> None:
    body = {"model": "m", "max_tokens": 10, "crystal_ball": True,
            "messages": [{"role": "user", "content": [{"type": "hologram"}]}],
            "tools": [{"name": "x", "type": "web_fetch_20990101"}]}
    fake = stand_in(tmp_path, body, beta="claude-code-20250219,warp-2099-01-01")
    result = one(compat_check, context(environ, claude_path=str(fake)))
    assert result.status == "warn"
    assert result.found == ("Claude Code sends what anyclaude has not seen yet: block hologram, "
                            "field crystal_ball, beta warp-2099-01-01 and tool kind "
                            "web_fetch_20990101")
    assert "ANYCLAUDE_DEBUG=2" in result.fix


def test_claude_code_runs_in_an_empty_home_and_folder(
        environ: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = stand_in(tmp_path, {"model": "m", "max_tokens": 10,
                               "messages": [{"role": "user", "content": "hi"}]})
    environ["PATH"] = f"{fake.parent}:{environ['PATH']}"
    seen: list[str] = []
    original = compat.run_command

    async def spy(*args: Any, **kw: Any) -> Any:
        out = await original(*args, **kw)
        seen.append(out.text)
        return out

    monkeypatch.setattr(compat, "run_command", spy)
    result = one(compat_check, context(environ))
    said = json.loads(seen[0])
    assert result.status == "ok" and said["result"] == compat.REPLY
    assert said["cwd"] != str(Path.cwd()) and said["home"] != environ["HOME"]
    assert not Path(said["cwd"]).exists(), "the temporary folders are removed"


def test_a_failing_exchange_says_why(environ: dict[str, str], tmp_path: Path) -> None:
    fake = tmp_path / "claude"
    fake.write_text('#!/bin/sh\necho \'{"type":"result","is_error":true,"result":"API Error: '
                    '400 something changed"}\'\nexit 1\n')
    fake.chmod(0o755)
    result = one(compat_check, context(environ, claude_path=str(fake)))
    assert result.status == "fail"
    assert result.found == ("a scripted `claude -p` exchange failed: API Error: 400 something "
                            "changed")
    assert "@anthropic-ai/claude-code@latest" in result.fix


def test_a_hanging_claude_code_is_a_warning(environ: dict[str, str], tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(compat, "RUN_LIMIT_S", 1.0)
    fake = tmp_path / "claude"
    fake.write_text("#!/bin/sh\nsleep 600\n")
    fake.chmod(0o755)
    result = one(compat_check, context(environ, claude_path=str(fake)))
    assert result.status == "warn" and "did not finish (no answer within 1 s)" in result.found


def test_no_row_without_claude_code_or_in_claude_mode(environ: dict[str, str]) -> None:
    assert run(compat_check, context(environ)) == []
    assert run(compat_check, context(environ, mode="claude",
                                     claude_path=str(claude_path()))) == []
