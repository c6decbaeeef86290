"""`anyclaude doctor`: check the set-up for the configured mode and say how to fix each problem.

Every check is a small function returning ✓ / ! / ✗ with what it found and a one-line fix.
They all run at once, each bounded (network probes 2 s, commands a few seconds, any check
`timeouts.DOCTOR_CHECK_S`), so doctor answers in a few seconds even when a server hangs (the
one real Claude Code exchange of the compatibility check may take longer on a busy machine).
Exit status: 0 when the configured mode can work (warnings allowed), 1 when any check failed.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path

from rich.console import Console

from anyclaude import timeouts
from anyclaude.doctor.backend import context_check, model_check, package_check, proxy_port_check
from anyclaude.doctor.cluster import cluster_check
from anyclaude.doctor.compat import CHECK_LIMIT_S as COMPAT_LIMIT_S
from anyclaude.doctor.compat import compat_check
from anyclaude.doctor.config import (
    config_check,
    credentials_check,
    settings_check,
    upstream_check,
)
from anyclaude.doctor.models import models_check
from anyclaude.doctor.render import render, to_json
from anyclaude.doctor.result import Context, Result, fail, warn
from anyclaude.doctor.server import server_check
from anyclaude.doctor.system import claude_check, node_check, platform_check, python_check
from anyclaude.doctor.tools import tool_check
from anyclaude.settings import Settings

__all__ = ["CHECKS", "Context", "Result", "collect", "run"]

Check = Callable[[Context], Awaitable[Result | list[Result] | None]]


async def _python(ctx: Context) -> Result:
    return python_check()


async def _platform(ctx: Context) -> Result:
    return platform_check(ctx.settings.mode)


async def _proxy_port(ctx: Context) -> Result:
    return proxy_port_check(ctx.settings.port)


CHECKS: list[tuple[str, Check]] = [
    ("settings", settings_check),
    ("config", config_check),
    ("python", _python),
    ("platform", _platform),
    ("claude-code", claude_check),
    ("node", node_check),
    ("claude-compat", compat_check),
    ("backend-package", package_check),
    ("model", model_check),
    ("models", models_check),
    ("cluster", cluster_check),
    ("backend-server", server_check),
    ("tool-calls", tool_check),
    ("context-window", context_check),
    ("proxy-port", _proxy_port),
    ("credentials", credentials_check),
    ("upstream", upstream_check),
]
"""In display order; they run concurrently."""
LIMITS = {"claude-compat": COMPAT_LIMIT_S}
"""Checks allowed longer than `timeouts.DOCTOR_CHECK_S`: a real Claude Code exchange."""


async def _guarded(name: str, check: Check, ctx: Context) -> list[Result]:
    """A check that hangs or breaks becomes a row of its own instead of stopping doctor."""
    limit = LIMITS.get(name, timeouts.DOCTOR_CHECK_S)
    try:
        found = await asyncio.wait_for(check(ctx), limit)
    except TimeoutError:
        return [warn(name, f"the check did not finish within {limit:g} s",
                     "Run `anyclaude doctor` again; if it persists, please report it.")]
    except Exception as exc:
        if ctx.settings.debug:
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
    """Check, print (a table, or JSON on request) and return the exit status. `problems`:
    the invalid settings `settings.load_lenient` set aside, each shown as a failed check."""
    ctx = Context(settings, dict(os.environ if environ is None else environ),
                  cwd or Path.cwd(), problems)
    results = asyncio.run(collect(ctx))
    if as_json:
        print(to_json(results), flush=True)
    else:
        render(results, settings, console or Console(highlight=False))
    return 1 if any(r.status == "fail" for r in results) else 0
