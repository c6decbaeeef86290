"""`anyclaude doctor`: check the set-up for the configured mode and say how to fix each problem.

Every check is a small function returning ✓ / ! / ✗ with what it found and a one-line fix.
They all run at once, each bounded (network probes 2 s, commands a few seconds, any check
`CHECK_LIMIT_S`), so doctor answers in a few seconds even when a server hangs. Exit status:
0 when the configured mode can work (warnings allowed), 1 when any check failed.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console

from anyclaude.doctor.backend import context_check, model_check, package_check, proxy_port_check
from anyclaude.doctor.config import (
    config_check,
    credentials_check,
    lenient_load,
    settings_check,
    upstream_check,
)
from anyclaude.doctor.render import render, to_json
from anyclaude.doctor.result import Context, Result, fail, warn
from anyclaude.doctor.server import server_check
from anyclaude.doctor.system import claude_check, node_check, platform_check, python_check
from anyclaude.doctor.tools import tool_check
from anyclaude.settings import Settings, SettingsError

__all__ = ["CHECKS", "Context", "Result", "collect", "run", "run_despite"]

CHECK_LIMIT_S = 12.0
"""Above every inner timeout (the longest: the 10 s mlx-lm import; a 2 s probe, then a 5 s
1-token request)."""

Check = Callable[[Context], Awaitable[Result | list[Result] | None]]


async def _python(ctx: Context) -> Result:
    return python_check()


async def _platform(ctx: Context) -> Result:
    return platform_check(ctx.settings.mode)


async def _proxy_port(ctx: Context) -> Result:
    return proxy_port_check(int(ctx.settings["port"] or 0))


CHECKS: list[tuple[str, Check]] = [
    ("settings", settings_check),
    ("config", config_check),
    ("python", _python),
    ("platform", _platform),
    ("claude-code", claude_check),
    ("node", node_check),
    ("backend-package", package_check),
    ("model", model_check),
    ("backend-server", server_check),
    ("tool-calls", tool_check),
    ("context-window", context_check),
    ("proxy-port", _proxy_port),
    ("credentials", credentials_check),
    ("upstream", upstream_check),
]
"""In display order; they run concurrently."""


async def _guarded(name: str, check: Check, ctx: Context) -> list[Result]:
    """A check that hangs or breaks becomes a row of its own instead of stopping doctor."""
    try:
        found = await asyncio.wait_for(check(ctx), CHECK_LIMIT_S)
    except TimeoutError:
        return [warn(name, f"the check did not finish within {CHECK_LIMIT_S:g} s",
                     "Run `anyclaude doctor` again; if it persists, please report it.")]
    except Exception as exc:
        if ctx.settings["debug"]:
            raise
        return [fail(name, f"the check failed unexpectedly ({type(exc).__name__}: {exc})",
                     "Run it again with ANYCLAUDE_DEBUG=1 and please report the traceback.")]
    if found is None:
        return []
    return found if isinstance(found, list) else [found]


async def collect(ctx: Context, checks: Sequence[tuple[str, Check]] = CHECKS) -> list[Result]:
    """Run every check at once; results in display order."""
    try:
        rows = await asyncio.gather(*(_guarded(name, check, ctx) for name, check in checks))
    finally:
        ctx.cancel_shared()
    return [result for row in rows for result in row]


def run(settings: Settings, as_json: bool, *, problems: Sequence[str] = (),
        environ: Mapping[str, str] | None = None, cwd: Path | None = None,
        console: Console | None = None) -> int:
    """Check, print (a table, or JSON on request) and return the exit status."""
    ctx = Context(settings, dict(os.environ if environ is None else environ),
                  cwd or Path.cwd(), problems)
    results = asyncio.run(collect(ctx))
    if as_json:
        print(to_json(results), flush=True)
    else:
        render(results, settings, console or Console(highlight=False))
    return 1 if any(r.status == "fail" for r in results) else 0


def run_despite(error: SettingsError, options: Mapping[str, Any], as_json: bool) -> int:
    """doctor when the settings do not load: every other check still runs, on the settings
    that are valid, and each invalid one is a failed row (`error` is the first of them)."""
    settings, problems = lenient_load(options, os.environ, Path.cwd())
    if not problems and "config file" not in str(error):  # else the config check shows it
        problems = [str(error)]
    return run(settings, as_json, problems=problems)
