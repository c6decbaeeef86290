"""The run's side of keep-alive: reuse a kept server or start one under a keeper, hold a
lease while the run lasts, and the `status` / `stop` queries.

A lock file per address serialises runs that start at once: the second one finds the first
one's keeper and leases the same server instead of starting another.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from anyclaude import processes, redact
from anyclaude.keep import state

SPAWN_TIMEOUT_S = 60.0
"""The keeper only starts a process and binds a socket; on a busy machine this is seconds."""
QUERY_TIMEOUT_S = 10.0
STOP_WAIT_S = 30.0
"""How long `stop` waits for a keeper to stop its server's tree (TERM, then KILL)."""


class KeepError(Exception):
    """A kept server cannot be used or started; the message is one sentence for the user."""


@dataclass(frozen=True)
class Spec:
    """What to start and keep: the launch plan's command plus where it belongs."""

    mode: str
    model: str | None
    url: str
    argv: Sequence[str]
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: str = field(default_factory=os.getcwd)
    description: str = ""
    """The plan's own words (`on 2 ranks (...)`), shown by `anyclaude status`."""

    @property
    def fingerprint(self) -> str:
        """Equal fingerprints mean the same server: same command, environment and, when the
        command names relative paths, the same folder."""
        relative = any(not a.startswith("/") and os.path.exists(a) for a in self.argv[1:])
        data = [self.mode, list(self.argv), sorted(self.env.items()),
                self.cwd if relative else ""]
        return hashlib.sha256(json.dumps(data).encode()).hexdigest()[:32]


class Lease:
    """One run's use of a kept server; `exited` resolves with the server's exit code when it
    dies (None when the keeper went away)."""

    def __init__(self, record: state.Record, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter, *, started: bool) -> None:
        self.record = record
        self.started = started
        self._writer = writer
        self.exited: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()
        self._reader_task = asyncio.create_task(self._read(reader))

    async def _read(self, reader: asyncio.StreamReader) -> None:
        code: int | None = None
        with contextlib.suppress(OSError, ValueError):
            while line := await reader.readline():
                event = json.loads(line)
                if event.get("event") == "exited":
                    code = int(event.get("code", 0))
        if not self.exited.done():
            self.exited.set_result(code)

    def release(self) -> None:
        """End this run's use; the keeper starts counting idle time when no lease is left."""
        self._reader_task.cancel()
        self._writer.close()

    def stop_server(self) -> None:
        """Stop the kept server now (it never became ready for this run)."""
        with contextlib.suppress(OSError, ValueError):
            query(self.record, "stop")
        self.release()


def query(record: state.Record, op: str) -> dict[str, Any]:
    """One request to a keeper (`status` or `stop`); raises OSError when it does not answer."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(QUERY_TIMEOUT_S)
        sock.connect(record.socket)
        sock.sendall(json.dumps({"op": op}).encode() + b"\n")
        with sock.makefile("rb") as stream:
            answer = stream.readline()
    if not answer:
        raise OSError("no answer from the keeper")
    result: dict[str, Any] = json.loads(answer)
    return result


def stop(record: state.Record, wait: float = STOP_WAIT_S) -> bool:
    """Stop a kept server and wait for its keeper to finish; True when it is gone."""
    with contextlib.suppress(OSError, ValueError):
        query(record, "stop")
    try:
        keeper = psutil.Process(record.keeper_pid)
        if state.keeper_alive(record.keeper_pid):
            keeper.wait(wait)
    except psutil.NoSuchProcess:
        pass
    except psutil.TimeoutExpired:
        with contextlib.suppress(psutil.Error):
            keeper.terminate()
        return False
    return True


def stop_all(state_dir: Path) -> list[state.Record]:
    """Stop every kept server; returns what was stopped."""
    records = state.load_all(state_dir)
    for record in records:
        stop(record)
    return records


async def _lease(record: state.Record, keep_alive: float, *,
                 started: bool) -> Lease | None:
    try:
        reader, writer = await asyncio.open_unix_connection(record.socket)
        writer.write(json.dumps({"op": "lease", "keep_alive": keep_alive}).encode() + b"\n")
        await writer.drain()
        first = await asyncio.wait_for(reader.readline(), QUERY_TIMEOUT_S)
        current = state.Record.from_json(first.decode())
    except (OSError, ValueError, TypeError, KeyError, TimeoutError):
        return None
    return Lease(current, reader, writer, started=started)


@contextlib.asynccontextmanager
async def _locked(path: Path) -> AsyncIterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                await asyncio.sleep(0.1)
        yield
    finally:
        os.close(fd)  # releases the lock


class Slot:
    """The address's keep-alive slot, locked while a run decides to reuse or start."""

    def __init__(self, state_dir: Path, url: str, keep_alive: float) -> None:
        self.state_dir = state_dir
        self.path = state.record_path(state_dir, url)
        self.keep_alive = keep_alive

    async def reuse(self, spec: Spec) -> Lease | None:
        """A lease on the kept server at this address when it runs what `spec` asks for.
        One that runs something else is stopped when idle; in use, it is a KeepError."""
        record = state.read(self.path)
        if record is None:
            return None
        if record.fingerprint != spec.fingerprint:
            try:
                busy = int(query(record, "status").get("leases", 0))
            except (OSError, ValueError):
                busy = 0
            if busy:
                raise KeepError(
                    f"The {record.mode} server anyclaude keeps at {record.url} runs "
                    f"{record.model or 'another model'} for another anyclaude session; finish "
                    "that session or point this one at another port.")
            await asyncio.to_thread(stop, record)
            return None
        return await _lease(record, self.keep_alive, started=False)

    async def start(self, spec: Spec, log: Path) -> Lease:
        """Start `spec` under a new keeper and lease it."""
        sock = state.socket_path(self.path)
        record_spec = {"record": str(self.path), "socket": str(sock), "log": str(log),
                       "keep_alive": self.keep_alive, "mode": spec.mode, "model": spec.model,
                       "url": spec.url, "fingerprint": spec.fingerprint,
                       "argv": list(spec.argv), "env": dict(spec.env), "cwd": spec.cwd,
                       "description": spec.description}
        spec_file = self.path.with_suffix(".spec")
        redact.write_private(spec_file, json.dumps(record_spec).encode())
        with log.open("ab") as errors:
            # No parent-death signal: the keeper is meant to outlive this run.
            proc = await processes.start(
                [sys.executable, "-m", state.KEEPER_MODULE, str(spec_file)], parent_death=None,
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=errors)
        assert proc.stdout is not None
        try:
            line = await asyncio.wait_for(proc.stdout.readline(), SPAWN_TIMEOUT_S)
            answer = json.loads(line or b"{}")
        except (TimeoutError, ValueError):
            answer = {}
        if "server_pid" not in answer:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            why = answer.get("error") or f"the keeper did not start; see {log}"
            raise KeepError(f"Could not run {spec.argv[0]} ({why}); install it or fix the "
                            f"{spec.mode} settings.")
        record = state.read(self.path)
        lease = await _lease(record, self.keep_alive, started=True) if record else None
        if lease is None:
            raise KeepError(f"The keeper of the {spec.mode} server stopped at once; see {log}.")
        return lease


@contextlib.asynccontextmanager
async def slot(state_dir: Path, url: str, keep_alive: float) -> AsyncIterator[Slot]:
    """The locked slot for `url` (one run at a time decides what runs there)."""
    path = state.record_path(state_dir, url)
    async with _locked(path.with_suffix(".lock")):
        yield Slot(state_dir, url, keep_alive)


def describe(record: state.Record, now: float | None = None) -> dict[str, Any]:
    """What `anyclaude status` shows for one kept server."""
    now = time.time() if now is None else now
    try:
        info = query(record, "status")
    except (OSError, ValueError):
        info = {}
    memory = 0
    with contextlib.suppress(psutil.Error):
        server = psutil.Process(record.server_pid)
        memory = sum(p.memory_info().rss for p in [server, *server.children(recursive=True)])
    idle = info.get("idle_s")
    keep_alive = info.get("keep_alive_s")
    left = None if idle is None or keep_alive is None else max(keep_alive - idle, 0.0)
    return {"mode": record.mode, "model": record.model, "url": record.url,
            "description": record.description,
            "pid": record.server_pid, "memory_bytes": memory, "sessions": info.get("leases"),
            "idle_s": idle, "left_s": left, "up_s": now - record.started}
