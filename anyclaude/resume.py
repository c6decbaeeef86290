"""After an interactive session, the command that resumes it through anyclaude.

When it exits, Claude Code prints `Resume this session with:` and `claude --resume <id>`
(2.1.197 and 2.1.332 alike); run as printed, that resumes without the proxy, so anyclaude
prints its own equivalent right after, with the backend flags of the run when they did not
come from a config file (so the command works in another shell too).

Claude Code's output goes straight to the terminal, so the id is found where Claude Code saves
sessions instead: the newest `<config dir>/projects/<project slug>/<id>.jsonl` written during
the run (fresh sessions, `--continue` and `--resume` alike; none for `--help` or
`--no-session-persistence`). Print mode (`-p`) gets no line, as from Claude Code.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path

from anyclaude.settings import Settings

PRINT_FLAGS = ("-p", "--print")
FLAGS = (("mode", "--mode"), ("{mode}.url", "--backend-url"),
         ("{mode}.model", "--backend-model"), ("context_window", "--context-window"))
"""Settings that pick the backend, and the anyclaude flag for each."""
EXPLICIT_SOURCES = ("the command line", "the environment")
SESSION_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def config_dir(environ: Mapping[str, str]) -> Path:
    """Where Claude Code keeps its state: CLAUDE_CONFIG_DIR, else ~/.claude."""
    configured = environ.get("CLAUDE_CONFIG_DIR")
    if configured:
        return Path(configured).expanduser()
    home = environ.get("HOME")
    return (Path(home) if home else Path.home()) / ".claude"


def project_folder(cwd: Path, environ: Mapping[str, str]) -> Path:
    """Claude Code's folder for a project: its path with every other character than a
    letter or digit replaced by `-`."""
    return config_dir(environ) / "projects" / re.sub(r"[^A-Za-z0-9]", "-", str(cwd))


def session_written(cwd: Path, environ: Mapping[str, str], since: float) -> str | None:
    """The id of the session Claude Code saved for `cwd` at or after `since` (a time.time())."""
    folder = project_folder(cwd, environ)
    written: list[tuple[float, str]] = []
    for path in folder.glob("*.jsonl") if folder.is_dir() else ():
        try:
            modified = path.stat().st_mtime
        except OSError:
            continue
        if modified >= since and SESSION_ID.match(path.stem):
            written.append((modified, path.stem))
    return max(written)[1] if written else None


def is_print_mode(claude_args: Sequence[str]) -> bool:
    return any(arg in PRINT_FLAGS or arg.startswith("--print=") for arg in claude_args)


def backend_flags(settings: Settings) -> list[str]:
    """The flags that give another shell this run's backend, for the settings that came
    from the command line or the environment."""
    flags: list[str] = []
    for key, flag in FLAGS:
        key = key.format(mode=settings.mode)
        value = settings.value(key)
        if value is not None and settings.sources.get(key) in EXPLICIT_SOURCES:
            flags += [flag, str(value)]
    return flags


def resume_command(session: str, settings: Settings) -> str:
    return shlex.join(["anyclaude", *backend_flags(settings), "--resume", session])


def resume_lines(settings: Settings, claude_args: Sequence[str], cwd: Path | None,
                 environ: Mapping[str, str], since: float) -> list[str]:
    """What to print after Claude Code exits: nothing, or the two resume lines."""
    if is_print_mode(claude_args):
        return []
    session = session_written(cwd or Path(os.getcwd()), environ, since)
    if session is None:
        return []
    return ["[anyclaude] Resume this session through anyclaude with:",
            resume_command(session, settings)]
