"""The machine: Python, the platform MLX needs, Claude Code and Node."""

from __future__ import annotations

import platform
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from anyclaude import backends, timeouts
from anyclaude.backends.mlx_lm import openblas_path
from anyclaude.claude_code import INSTALL_COMMAND, NEWEST_TESTED, OLDEST_TESTED
from anyclaude.doctor.result import (
    Context,
    Result,
    dotted,
    fail,
    from_sentence,
    ok,
    parse_version,
    warn,
)
from anyclaude.launcher import LaunchError, find_claude
from anyclaude.processes import run_command

MIN_PYTHON = (3, 11)
MIN_CLAUDE_CODE = (2, 0, 0)
"""Older Claude Code lacks settings anyclaude relies on (ANTHROPIC_AUTH_TOKEN handling,
CLAUDE_CODE_AUTO_COMPACT_WINDOW); anyclaude is tested with 2.1."""
MIN_NODE = (18, 0, 0)
"""The `engines` of Claude Code's npm package."""
UPDATE_CLAUDE = INSTALL_COMMAND
OPENBLAS_APT = "sudo apt install libopenblas0-pthread"


def python_check(version: Sequence[int] = tuple(sys.version_info[:3]),
                 executable: str = sys.executable) -> Result:
    if tuple(version[:2]) >= MIN_PYTHON:
        return ok("python", f"Python {dotted(version)} ({executable})")
    return fail("python", f"Python {dotted(version)} is older than {dotted(MIN_PYTHON)}",
                f"Install Python {dotted(MIN_PYTHON)} or newer and reinstall anyclaude with it.")


def platform_check(mode: str, system: str = platform.system(),
                   machine: str = platform.machine(),
                   lib_root: Path = Path("/usr/lib")) -> Result:
    """MLX runs on Apple Silicon, and (slowly, on the CPU) on Linux, where Debian's OpenBLAS
    makes it ~50x faster."""
    here = f"{'macOS' if system == 'Darwin' else system} {machine}"
    backend = backends.get(mode)
    if backend is None or not backend.needs_mlx:
        return ok("platform", here)
    if system == "Darwin":
        if machine == "arm64":
            return ok("platform", f"{here} (Apple Silicon)")
        return fail("platform", f"{here}: MLX needs Apple Silicon",
                    "Use --mode lmstudio, or --mode openai with any OpenAI-compatible server.")
    if system == "Linux":
        blas = openblas_path(machine, lib_root)
        if blas.exists():
            return ok("platform", f"{here}, mlx's CPU build with OpenBLAS ({blas})")
        return warn("platform", f"{here}: OpenBLAS ({blas}) is missing, so mlx's CPU build "
                    "runs about 50x slower", f"Install it: `{OPENBLAS_APT}`.")
    return fail("platform", f"{here}: MLX runs only on macOS (Apple Silicon) and Linux",
                "Use --mode lmstudio, or --mode openai with any OpenAI-compatible server.")


async def claude_check(ctx: Context) -> Result:
    """Claude Code as the launcher will find it, and its version. Only needed to launch it:
    in proxy-only mode its absence is a warning."""
    proxy_only = ctx.settings.proxy_only
    try:
        path = find_claude(ctx.settings.claude_path, ctx.environ)
    except LaunchError as exc:
        return from_sentence("claude-code", "warn" if proxy_only else "fail", str(exc))
    out = await run_command([path, "--version"], timeouts.VERSION_S, env=dict(ctx.environ))
    version = parse_version(out.text) if out.code == 0 else None
    if version is None:
        said = out.text.splitlines()[-1][:100] if out.text else f"exit code {out.code}"
        return warn("claude-code", f"{path} --version did not say a version ({said})",
                    f"Check that `{path} --version` works; reinstall with `{UPDATE_CLAUDE}`.")
    if version < MIN_CLAUDE_CODE:
        return fail("claude-code", f"Claude Code {dotted(version)} ({path}) is older than "
                    f"{dotted(MIN_CLAUDE_CODE)}", f"Update it: `{UPDATE_CLAUDE}`.")
    if version < OLDEST_TESTED:
        return warn("claude-code", f"Claude Code {dotted(version)} ({path}) is older than "
                    f"{dotted(OLDEST_TESTED)}, the oldest version anyclaude is tested with",
                    f"Update it: `{UPDATE_CLAUDE}`.")
    newer = f", newer than the newest tested ({dotted(NEWEST_TESTED)})" \
        if version > NEWEST_TESTED else ""
    return ok("claude-code", f"Claude Code {dotted(version)} ({path}){newer}")


async def node_check(ctx: Context) -> Result:
    """Node.js runs npm, which installs and updates Claude Code (since 2.1.113 Claude Code
    itself is a native binary, so a missing Node is only a warning)."""
    node = shutil.which("node", path=ctx.path)
    need = f"Install Node.js {MIN_NODE[0]} or newer (https://nodejs.org) to install and " \
        "update Claude Code with npm."
    if node is None:
        return warn("node", "Node.js (`node`) is not on PATH", need)
    out = await run_command([node, "--version"], timeouts.VERSION_S, env=dict(ctx.environ))
    version = parse_version(out.text) if out.code == 0 else None
    if version is None:
        return warn("node", f"{node} --version did not say a version ({out.text[:100]})", need)
    if version < MIN_NODE:
        return warn("node", f"Node.js {dotted(version)} is older than {dotted(MIN_NODE)}, "
                    "which Claude Code's npm package needs", need)
    return ok("node", f"Node.js {dotted(version)} ({node})")
