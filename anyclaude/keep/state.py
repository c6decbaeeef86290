"""The record of a kept server: one JSON file per server address in `<state_dir>/kept/`.

The folder is 0700 and the files 0600: they name models and ports, and the socket next to
each record lets whoever can open it stop the server.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlsplit

import psutil

from anyclaude import redact

KEEPER_MODULE = "anyclaude.keep.daemon"
"""How a keeper process is recognised in a process list (pids are reused)."""

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhd])")


def parse_duration(text: str) -> float:
    """`30s`, `10m`, `1h30m`, `0` or a plain number of seconds, as seconds."""
    spelled = text.strip().lower().replace(" ", "")
    with contextlib.suppress(ValueError):
        value = float(spelled)
        if value >= 0:
            return value
    parts = _DURATION.findall(spelled)
    if not spelled or "".join(n + u for n, u in parts) != spelled:
        raise ValueError("expected a duration such as 30s, 10m or 1h, or 0")
    return sum(float(number) * _UNITS[unit] for number, unit in parts)


def format_duration(seconds: float) -> str:
    """A short human spelling: `45s`, `5m`, `1h 30m`."""
    whole = max(round(seconds), 0)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        minutes, rest = divmod(whole, 60)
        return f"{minutes}m" + (f" {rest}s" if rest else "")
    hours, rest = divmod(whole, 3600)
    return f"{hours}h" + (f" {rest // 60}m" if rest >= 60 else "")


@dataclass(frozen=True)
class Record:
    """What `anyclaude status` shows and what the next run compares before reusing."""

    mode: str
    model: str | None
    url: str
    fingerprint: str
    """Hash of what was started (command line, environment, folder); equal means reusable."""
    log: str
    socket: str
    started: float
    keeper_pid: int = 0
    server_pid: int = 0
    description: str = ""
    """What the launch plan said it starts (`on 2 ranks (...)`), when it said anything."""

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Record:
        data = json.loads(text)
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


def kept_dir(state_dir: Path) -> Path:
    """`<state_dir>/kept`, created 0700 (and tightened when it already exists)."""
    return redact.private_dir(state_dir / "kept")


def key_for(url: str) -> str:
    """One server per address: the record's file name for a backend URL."""
    parts = urlsplit(url)
    host = (parts.hostname or "localhost").replace(":", "_")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{host}-{port}"


def record_path(state_dir: Path, url: str) -> Path:
    return kept_dir(state_dir) / f"{key_for(url)}.json"


def private_dir() -> Path:
    """A short folder only this user can use (the runtime folder, else /tmp): for keepers'
    sockets (unix socket paths are limited to ~100 bytes) and other files that name
    hosts or let whoever opens them control a server."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    base = Path(runtime) if runtime and Path(runtime).is_dir() else Path("/tmp")
    folder = base / f"anyclaude-{os.getuid()}"
    folder.mkdir(exist_ok=True, mode=0o700)
    info = folder.lstat()
    if info.st_uid != os.getuid() or not folder.is_dir() or folder.is_symlink():
        raise OSError(f"{folder} is not a folder of this user's")
    os.chmod(folder, 0o700)
    return folder


def socket_path(record_file: Path) -> Path:
    """Where the keeper of `record_file` listens, named by a hash of the record's path."""
    digest = hashlib.sha256(str(record_file.resolve()).encode()).hexdigest()[:16]
    return private_dir() / f"{digest}.sock"


def write(record: Record, path: Path) -> None:
    redact.write_private(path, record.to_json().encode())


def keeper_alive(pid: int) -> bool:
    """The pid is a live keeper process (not a reused pid)."""
    try:
        proc = psutil.Process(pid)
        return proc.status() != psutil.STATUS_ZOMBIE and KEEPER_MODULE in " ".join(proc.cmdline())
    except (psutil.Error, OSError):
        return False


def read(path: Path) -> Record | None:
    """The record at `path` when its keeper is alive; a stale record is removed."""
    try:
        record = Record.from_json(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, TypeError, KeyError):
        return None
    if keeper_alive(record.keeper_pid):
        return record
    remove(record, path)
    return None


def remove(record: Record, path: Path) -> None:
    for stale in (path, Path(record.socket)):
        with contextlib.suppress(OSError):
            stale.unlink()


def load_all(state_dir: Path) -> list[Record]:
    """Every live kept server, by address."""
    folder = state_dir / "kept"
    if not folder.is_dir():
        return []
    found = (read(path) for path in sorted(folder.glob("*.json")))
    return [record for record in found if record is not None]
