"""The keeper: one small process per kept server (`python -m anyclaude.keep.daemon SPEC`).

It starts the server (which dies with the keeper), writes the record, then answers on its
unix socket, one JSON line per request:

- `{"op": "lease", "keep_alive": S}`: the connection stays open for as long as a run uses
  the server; the keeper answers with the record, and later sends `{"event": "exited",
  "code": N}` if the server dies. `keep_alive` is the latest run's setting.
- `{"op": "status"}`: leases, idle time, keep-alive; `{"op": "stop"}`: stop now.

With no lease for `keep_alive` seconds, on SIGTERM/SIGINT/SIGHUP, or when the server exits,
it stops the server's whole process tree, removes its record and socket, and exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import psutil

from anyclaude import processes
from anyclaude.keep import state

TICK_S = 0.5


class Keeper:
    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.path = Path(spec["record"])
        self.keep_alive = float(spec["keep_alive"])
        self.record: state.Record | None = None
        self.server: psutil.Popen | None = None
        self.known: dict[int, psutil.Process] = {}
        self.leases: set[asyncio.StreamWriter] = set()
        self.idle_since = time.monotonic()
        self.done = asyncio.Event()
        self.exit_code: int | None = None

    def start_server(self) -> None:
        log = open(self.spec["log"], "ab")  # noqa: SIM115 - the server owns it from here
        log.write(f"$ {' '.join(self.spec['argv'])}\n".encode())
        log.flush()
        self.server = processes.spawn(
            self.spec["argv"], stdout=log, stderr=subprocess.STDOUT, cwd=self.spec["cwd"],
            env={"PYTHONUNBUFFERED": "1", **os.environ, **self.spec["env"]})
        log.close()
        self.record = state.Record(
            mode=self.spec["mode"], model=self.spec["model"], url=self.spec["url"],
            fingerprint=self.spec["fingerprint"], log=self.spec["log"],
            socket=self.spec["socket"], started=time.time(), keeper_pid=os.getpid(),
            server_pid=self.server.pid, description=self.spec.get("description", ""))

    async def serve(self) -> None:
        """Listen, start the server, write the record, report on stdout, then keep it."""
        server = await asyncio.start_unix_server(self.handle, path=self.spec["socket"])
        os.chmod(self.spec["socket"], 0o600)
        try:
            self.start_server()
        except OSError as exc:
            server.close()
            _report({"error": exc.strerror or str(exc)})
            return
        assert self.record is not None
        state.write(self.record, self.path)
        _report({"server_pid": self.record.server_pid})
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.add_signal_handler(sig, self.done.set)
        watcher = asyncio.create_task(self.watch())
        try:
            await self.done.wait()
        finally:
            watcher.cancel()
            server.close()
            await self.shutdown()

    async def watch(self) -> None:
        """Remember the server's descendants (they are stopped with it), notice its exit, and
        end the keep-alive once nobody used it for `keep_alive` seconds."""
        assert self.server is not None
        while not self.done.is_set():
            code = self.server.poll()
            if code is not None:
                self.exit_code = code
                for writer in list(self.leases):
                    with contextlib.suppress(Exception):
                        writer.write(json.dumps({"event": "exited", "code": code}).encode() + b"\n")
                        await writer.drain()
                self.done.set()
                return
            for proc in processes.tree(self.server)[1:]:
                self.known.setdefault(proc.pid, proc)
            if not self.leases and time.monotonic() - self.idle_since >= self.keep_alive:
                self.done.set()
                return
            await asyncio.sleep(TICK_S)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = json.loads(await reader.readline() or b"{}")
            op = request.get("op")
            if op == "lease":
                await self.lease(request, reader, writer)
            elif op == "status":
                await self.reply(writer, self.status())
            elif op == "stop":
                await self.reply(writer, {"ok": True})
                self.done.set()
        except (ValueError, OSError, AttributeError):
            pass
        finally:
            writer.close()

    async def lease(self, request: dict[str, Any], reader: asyncio.StreamReader,
                    writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(TypeError, ValueError):
            self.keep_alive = max(float(request.get("keep_alive", self.keep_alive)), 0.0)
        self.leases.add(writer)
        try:
            assert self.record is not None
            await self.reply(writer, json.loads(self.record.to_json()))
            while await reader.read(4096):
                pass
        finally:
            self.leases.discard(writer)
            if not self.leases:
                self.idle_since = time.monotonic()

    def status(self) -> dict[str, Any]:
        idle = None if self.leases else time.monotonic() - self.idle_since
        return {"leases": len(self.leases), "idle_s": idle, "keep_alive_s": self.keep_alive}

    @staticmethod
    async def reply(writer: asyncio.StreamWriter, message: dict[str, Any]) -> None:
        writer.write(json.dumps(message).encode() + b"\n")
        await writer.drain()

    async def shutdown(self) -> None:
        if self.server is not None:
            await processes.stop_soon(self.server.pid, also=self.known.values())
        for writer in list(self.leases):
            writer.close()
        if self.record is not None:
            current = state.read(self.path) if self.path.exists() else None
            if current is None or current.keeper_pid == os.getpid():
                state.remove(replace(self.record), self.path)


def _report(message: dict[str, Any]) -> None:
    """The one line the starting run waits for; then stdin/stdout go to /dev/null so the
    keeper holds nothing of the run's terminal or pipes."""
    print(json.dumps(message), flush=True)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1):
        os.dup2(devnull, fd)


def main(argv: list[str]) -> int:
    spec_file = Path(argv[0])
    spec = json.loads(spec_file.read_text(encoding="utf-8"))
    spec_file.unlink(missing_ok=True)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(spec["socket"])
    keeper = Keeper(spec)
    asyncio.run(keeper.serve())
    return 0 if keeper.record is not None else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
