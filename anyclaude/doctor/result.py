"""What a check returns, and what the checks share.

A check is a small async function of a `Context` that returns one `Result` (or a few, or
None when it does not apply to the mode). Probes that several checks need (is the backend
up?) are started once through `Context.shared`, so every check runs concurrently and the
slowest one, not their sum, bounds how long `anyclaude doctor` takes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from anyclaude.settings import Settings

Status = Literal["ok", "warn", "fail"]
SYMBOLS: dict[Status, str] = {"ok": "✓", "warn": "!", "fail": "✗"}
T = TypeVar("T")


@dataclass(frozen=True)
class Result:
    """One row: `found` says what is there; `fix` is one sentence, set for every ! and ✗."""

    check: str
    status: Status
    found: str
    fix: str = ""

    @property
    def symbol(self) -> str:
        return SYMBOLS[self.status]

    def as_json(self) -> dict[str, str | None]:
        return {"check": self.check, "status": self.status, "symbol": self.symbol,
                "found": self.found, "fix": self.fix or None}


def ok(check: str, found: str) -> Result:
    return Result(check, "ok", found)


def warn(check: str, found: str, fix: str) -> Result:
    return Result(check, "warn", found, fix)


def fail(check: str, found: str, fix: str) -> Result:
    return Result(check, "fail", found, fix)


def from_sentence(check: str, status: Status, sentence: str) -> Result:
    """A result from one of anyclaude's own error sentences ("what is wrong; the fix."), so
    doctor words a problem exactly as the launcher would."""
    found, _, fix = sentence.rpartition("; ")
    if not found:
        return Result(check, status, sentence.rstrip("."), "")
    return Result(check, status, found, fix[:1].upper() + fix[1:])


@dataclass
class Context:
    """Everything a check may look at. `problems` are invalid settings found while loading
    them leniently (the checks then see the remaining, valid values)."""

    settings: Settings
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    cwd: Path = field(default_factory=Path.cwd)
    problems: Sequence[str] = ()
    _shared: dict[str, asyncio.Task[Any]] = field(default_factory=dict)

    def shared(self, key: str, make: Callable[[], Coroutine[Any, Any, T]]) -> asyncio.Task[T]:
        """The one task computing `key`, started by whichever check asks first."""
        task = self._shared.get(key)
        if task is None:
            task = self._shared[key] = asyncio.ensure_future(make())
        return task

    def cancel_shared(self) -> None:
        for task in self._shared.values():
            task.cancel()

    @property
    def path(self) -> str:
        return self.environ.get("PATH", os.defpath)

    @property
    def home(self) -> Path:
        home = self.environ.get("HOME")
        return Path(home) if home else Path.home()


@dataclass(frozen=True)
class Output:
    """A command's exit code and output; `code` is None when it could not run or did not
    finish in time (then `text` says which)."""

    code: int | None
    text: str


async def run_command(argv: Sequence[str], timeout: float,
                      environ: Mapping[str, str] | None = None,
                      cwd: Path | None = None) -> Output:
    """Run a short command in its own process group; on timeout (or when the check is
    cancelled) the whole group is killed, so a hanging `claude --version` cannot hold
    doctor up or outlive it."""
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            env=None if environ is None else dict(environ), cwd=cwd, start_new_session=True)
    except OSError as exc:
        return Output(None, exc.strerror or type(exc).__name__)
    try:
        data, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        return Output(None, f"no answer within {timeout:g} s")
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
    return Output(proc.returncode, data.decode("utf-8", "replace").strip())


VERSION = re.compile(r"(\d+)\.(\d+)(?:\.(\d+))?")


def parse_version(text: str) -> tuple[int, int, int] | None:
    """The first `X.Y[.Z]` in a `--version` answer (`2.1.197 (Claude Code)`, `v20.20.2`)."""
    match = VERSION.search(text)
    if match is None:
        return None
    major, minor, patch = match.groups()
    return int(major), int(minor), int(patch or 0)


def dotted(version: Sequence[int]) -> str:
    return ".".join(str(part) for part in version)


def listing(names: Sequence[str], limit: int = 3) -> str:
    """`a, b, c and 4 more`: model lists can be long."""
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")
