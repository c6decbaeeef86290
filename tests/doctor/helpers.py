"""Build a doctor `Context` from settings the way the CLI loads them, and run checks."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import textwrap
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from anyclaude import settings as settings_mod
from anyclaude.doctor import Context, Result

SYSTEM_PATH = "/usr/local/bin:/usr/bin:/bin"


def context(environ: Mapping[str, str], **flags: Any) -> Context:
    """Settings resolved from `environ`, the config files of the current folder and `flags`
    (setting keys: `mode`, `lmstudio.url`...), as `anyclaude doctor` would see them."""
    here = Path.cwd()
    return Context(settings_mod.load(flags, environ, here), dict(environ), here)


def run(check: Callable[[Context], Awaitable[Result | list[Result] | None]],
        ctx: Context) -> list[Result]:
    async def go() -> list[Result]:
        try:
            found = await check(ctx)
        finally:
            ctx.cancel_shared()
        return [] if found is None else found if isinstance(found, list) else [found]

    return asyncio.run(go())


def one(check: Callable[[Context], Awaitable[Result | list[Result] | None]],
        ctx: Context) -> Result:
    results = run(check, ctx)
    assert len(results) == 1, results
    return results[0]


def script(path: Path, body: str) -> Path:
    """An executable shell script (a stand-in `claude`, `node`, `lms`...)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n" + textwrap.dedent(body), encoding="utf-8")
    path.chmod(0o755)
    return path


def closed_port() -> int:
    """A port nothing listens on (it was free a moment ago)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def silent_server() -> Iterator[int]:
    """A port that accepts connections (the kernel's backlog) but never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield int(sock.getsockname()[1])


def python_without_mlx(folder: Path) -> Path:
    """A fresh virtual environment: the same Python, none of our packages."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True,
                   capture_output=True, timeout=120)
    return folder / "bin" / "python"
