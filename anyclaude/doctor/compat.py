"""Does the installed Claude Code send anything anyclaude has not seen? One real `claude -p`
exchange against a stand-in Anthropic server (`recorder.py`) answering from a script, then
every request it recorded is compared with the table of what the tested versions send
(`anyclaude.claude_code.KNOWN`). A new Claude Code that adds a field, block type, role, beta
flag or tool kind is named here before it surprises a session.

Claude Code runs as the launcher would run it (same environment, model names, token), but in
a fresh HOME and an empty folder, without saving the session, so neither the user's
settings, hooks and MCP servers nor their session list are touched. A cold start on a busy
machine can take a while, hence the generous bound.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from anyclaude import launcher
from anyclaude.claude_code import INSTALL_COMMAND, describe, features, unseen
from anyclaude.doctor.recorder import Answer, Recorder
from anyclaude.doctor.result import Context, Result, fail, ok, warn
from anyclaude.processes import run_command

NAME = "claude-compat"
RUN_LIMIT_S = 120.0
"""How long the one `claude -p` exchange may take (a cold start of a 400 MB binary on a
busy two-core machine takes tens of seconds; it usually takes one or two)."""
CHECK_LIMIT_S = RUN_LIMIT_S + 15
PROMPT = "Reply with the word OK."
REPLY = "OK."
STAND_IN_KEY = "sk-anyclaude-doctor-0123456789"


def _environment(ctx: Context, home: Path, url: str) -> dict[str, str]:
    base = {"HOME": str(home), "PATH": ctx.path, "TERM": "dumb",
            "LANG": ctx.environ.get("LANG", "C.UTF-8"), "CLAUDE_CONFIG_DIR": str(home / ".claude"),
            "DISABLE_AUTOUPDATER": "1", "DISABLE_TELEMETRY": "1",
            "DISABLE_ERROR_REPORTING": "1", "ANTHROPIC_API_KEY": STAND_IN_KEY}
    return launcher.claude_env(ctx.settings, url, None, base)


def _why(text: str, code: int | None) -> str:
    """The last thing Claude Code said: the `result` of its JSON line, else its last line."""
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        return f"exit code {code}, no output"
    try:
        said = json.loads(lines[-1])
    except ValueError:
        return lines[-1][:200]
    return str(said.get("result") or said)[:200] if isinstance(said, dict) else lines[-1][:200]


async def compat_check(ctx: Context) -> Result | None:
    """Only where the proxy translates (not in claude mode) and Claude Code is installed
    (the claude-code row reports a missing one)."""
    if ctx.settings.backend.passthrough:
        return None
    try:
        claude = launcher.find_claude(ctx.settings.claude_path, ctx.environ)
    except launcher.LaunchError:
        return None
    with tempfile.TemporaryDirectory(prefix="anyclaude-doctor-") as tmp:
        home, project = Path(tmp) / "home", Path(tmp) / "project"
        home.mkdir()
        project.mkdir()
        async with Recorder(lambda body: Answer(REPLY)) as server:
            out = await run_command(
                [claude, "-p", PROMPT, "--output-format", "json", "--max-turns", "1",
                 "--no-session-persistence"],
                RUN_LIMIT_S, env=_environment(ctx, home, server.url), cwd=project)
            seen = [r for r in server.requests if r.path == "/v1/messages"]
    ran = "a scripted `claude -p` exchange"
    if out.code is None:
        return warn(NAME, f"{ran} did not finish ({out.text})",
                    "Run `anyclaude doctor` again when the machine is less busy.")
    if out.code != 0 or not seen:
        why = _why(out.text, out.code) if out.code != 0 else "it sent no request"
        return fail(NAME, f"{ran} failed: {why}",
                    f"Update Claude Code (`{INSTALL_COMMAND}`) or anyclaude; if it persists, "
                    "please report it.")
    found: dict[str, set[str]] = {}
    for request in seen:
        body = request.body if isinstance(request.body, dict) else {}
        for category, items in features(body, request.headers).items():
            found.setdefault(category, set()).update(items)
    news = unseen(found)
    if news:
        return warn(NAME, f"Claude Code sends what anyclaude has not seen yet: {describe(news)}",
                    "anyclaude drops or maps what it does not know (ANYCLAUDE_DEBUG=2 shows "
                    "it); if a session misbehaves, please report these with `claude --version`.")
    return ok(NAME, f"{ran} sent nothing anyclaude does not know ({len(seen)} request(s))")
