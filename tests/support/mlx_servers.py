"""Real third-party MLX servers for end-to-end tests, each in its own venv in the test cache.

mlx-openai-server, MLX-Omni-Server, FastMLX and mlx-textgen all run on Linux with mlx's CPU
build, but none installs cleanly there with plain `pip install`: their dependency trees pull
CUDA builds of mlx and torch (7 GB), or resolve to versions that fail at import. So each
server is installed from a pinned list (a lock, installed with `--no-deps`, so nothing is
resolved and nothing unplanned is pulled in): the server, the parts its chat routes import,
mlx's CPU build and, where an import needs torch, the CPU build that lies on this machine's
disk (`torch==2.13.0`). A server that needs a Linux workaround gets a small shim
(`tests/support/server_shims/`), applied by the tests only, never by anyclaude.

The installs live in `$ANYCLAUDE_TEST_CACHE/mlx-servers/<name>/` (outside the checkout),
are made in a temporary folder, verified, and moved into place whole; an install whose
stamp matches its lock and whose command still runs is reused.

Script use (`./scripts/test` runs the first)::

    python -m tests.support.mlx_servers install [NAME ...]
    python -m tests.support.mlx_servers command NAME
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.claude_code import test_cache

SHIMS = Path(__file__).resolve().parent / "server_shims"
LOCKS = Path(__file__).resolve().parent / "server_locks"
STAMP = ".anyclaude-install.json"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class ServerInstall:
    """One server: its lock, how its command is spelled, and an optional shim."""

    name: str
    """Also the anyclaude mode name and the lock's file name."""
    console_script: str
    """The server's own command in the venv's bin folder (used when there is no shim)."""
    shim: str | None = None
    """A file in `server_shims/` run by the venv's Python instead of the command."""
    why: str = ""

    @property
    def lock(self) -> Path:
        return LOCKS / f"{self.name}.txt"

    def pins(self) -> list[str]:
        lines = self.lock.read_text(encoding="utf-8").splitlines()
        return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


SERVERS: dict[str, ServerInstall] = {s.name: s for s in (
    ServerInstall("mlx-openai-server", "mlx-openai-server",
                  why="its chat route imports torch, librosa, mlx-whisper and outlines at start"),
    ServerInstall("mlx-omni-server", "mlx-omni-server", shim="omni.py",
                  why="its TTS import downloads a spaCy model and builds a Metal kernel"),
    ServerInstall("fastmlx", "fastmlx",
                  why="0.2.1 imports mlx-lm's generate_step, gone after mlx-lm 0.19"),
    ServerInstall("mlx-textgen", "mlx_textgen", shim="textgen.py",
                  why="it reads a Metal-only device key and runs MLX in a worker thread"),
)}


def root() -> Path:
    return test_cache() / "mlx-servers"


def lock_digest(server: ServerInstall) -> str:
    data = {"format": FORMAT_VERSION, "pins": server.pins(),
            "shim": (SHIMS / server.shim).read_text(encoding="utf-8") if server.shim else None}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def command_path(name: str, base: Path | None = None) -> Path:
    """The executable that starts server `name` (the command anyclaude's `executable`
    option names): the server's own script, or a wrapper that runs its shim."""
    server = SERVERS[name]
    folder = (base or root() / name) / "bin"
    return folder / ("anyclaude-test-server" if server.shim else server.console_script)


def _runs(command: Path) -> bool:
    try:
        done = subprocess.run([str(command), "--help"], capture_output=True, timeout=300,
                              env={**os.environ, "HF_HUB_OFFLINE": "1"})
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def installed(name: str) -> Path | None:
    """The venv of `name` when it is installed from the current lock, else None."""
    venv = root() / name
    try:
        stamp = json.loads((venv / STAMP).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if stamp.get("digest") != lock_digest(SERVERS[name]):
        return None
    return venv if command_path(name).is_file() else None


def install(name: str, *, log: bool = True) -> Path:
    """Install `name` unless an intact install from the same lock is there; returns the venv."""
    server = SERVERS[name]
    found = installed(name)
    if found is not None:
        return found
    root().mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix=f".install-{name}.", dir=root()))
    try:
        venv = tmp / "venv"
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps",
               "--disable-pip-version-check"]
        done = subprocess.run([*pip, *server.pins()], stdin=subprocess.DEVNULL,
                              capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"pip could not install {name}:\n{done.stderr[-3000:]}")
        if server.shim:
            shim = venv / "anyclaude_test_shim.py"
            shutil.copyfile(SHIMS / server.shim, shim)
            wrapper = command_path(name, venv)
            wrapper.write_text(f'#!/bin/sh\nexec "{venv / "bin" / "python"}" "{shim}" "$@"\n',
                               encoding="utf-8")
            wrapper.chmod(0o755)
        # Paths inside a venv are absolute: build where it will live, then verify there.
        target = root() / name
        if target.exists():
            shutil.rmtree(target)
        venv.rename(target)
        _fix_paths(target, venv)
        if not _runs(command_path(name)):
            shutil.rmtree(target, ignore_errors=True)
            raise RuntimeError(f"{name} installed but `{command_path(name)} --help` fails")
        elapsed = time.monotonic() - started
        size = sum(p.stat().st_size for p in target.rglob("*") if p.is_file()
                   and not p.is_symlink())
        (target / STAMP).write_text(json.dumps({
            "digest": lock_digest(server), "seconds": round(elapsed, 1),
            "bytes": size}), encoding="utf-8")
        if log:
            print(f"[test setup] {name}: installed in {elapsed:.0f} s, "
                  f"{size / 2**20:.0f} MiB", file=sys.stderr)
        return target
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _fix_paths(venv: Path, old: Path) -> None:
    """Rewrite the absolute paths a venv records (scripts' shebangs, pyvenv.cfg, the shim
    wrapper) after moving it from its temporary folder into place."""
    for path in [*sorted((venv / "bin").iterdir()), venv / "pyvenv.cfg"]:
        if path.is_symlink() or not path.is_file():
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        if str(old) in text:
            path.write_text(text.replace(str(old), str(venv)), encoding="utf-8")


def require(name: str) -> Path:
    """The start command of server `name` for a test; fails the test (never skips) when it
    is not installed."""
    if installed(name) is None:
        pytest.fail(f"{name} is not installed for the tests under {root()}: run the test "
                    f"set-up script ./scripts/test, which installs it.", pytrace=False)
    return command_path(name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="action", required=True)
    inst = sub.add_parser("install")
    inst.add_argument("names", nargs="*", metavar="NAME", help=", ".join(SERVERS))
    cmd = sub.add_parser("command")
    cmd.add_argument("name", choices=list(SERVERS))
    args = parser.parse_args(argv)
    if args.action == "command":
        print(command_path(args.name))
        return 0
    unknown = [n for n in args.names if n not in SERVERS]
    if unknown:
        parser.error(f"unknown server {unknown[0]!r}; choose from {', '.join(SERVERS)}")
    for name in args.names or list(SERVERS):
        if installed(name) is None:
            print(f"[test setup] installing {name} into {root() / name}", file=sys.stderr)
        install(name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
