"""Start the real mlx-lm server for a test and always take it down again.

mlx-lm's ``/health`` answers before the model is loaded, so readiness here means a real
one-token chat completion succeeded. On exit the whole process tree is terminated (TERM,
then KILL after a grace period) and the port is checked to be closed, even when the test
failed, so no server outlives its test.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx
import psutil

from anyclaude import processes

OPENBLAS = Path("/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so.0")
"""mlx-cpu's bundled BLAS is ~50x slower for float32 matmul; preloaded when present."""

OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "TOKENIZERS_PARALLELISM": "false",
}


class MlxServerError(RuntimeError):
    """The server did not come up, or did not go away."""


@dataclass
class MlxServer:
    """A running mlx-lm server: where to reach it and what it logs."""

    base_url: str
    """``http://127.0.0.1:PORT/v1``."""
    host: str
    port: int
    model: str
    """The exact ``--model`` value: the only ``model`` field the server accepts as-is."""
    log_path: Path
    process: psutil.Popen
    startup_s: float = 0.0
    """Seconds from spawn until the first completion succeeded."""
    command: list[str] = field(default_factory=list)

    def log_tail(self, chars: int = 4000) -> str:
        """The end of the server log, for error messages."""
        return _tail(self.log_path, chars)

    def log_text(self, head: int = 6000, tail: int = 2000) -> str:
        """Start and end of the log: tracebacks from start-up come first, access lines after."""
        try:
            data = self.log_path.read_bytes()
        except OSError:
            return ""
        if len(data) > head + tail:
            data = data[:head] + b"\n[...]\n" + data[-tail:]
        return data.decode("utf-8", "replace")


def mlx_available() -> bool:
    """Whether mlx-lm and an mlx backend can be imported here (without importing them)."""
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("mlx", "mlx_lm"))


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_open(host: str, port: int, timeout: float = 0.2) -> bool:
    """Whether something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def server_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for the server: offline Hugging Face, OpenBLAS preloaded when present."""
    env = dict(os.environ if base is None else base)
    env.update(OFFLINE_ENV)
    if OPENBLAS.exists():
        preload = [p for p in env.get("LD_PRELOAD", "").split(":") if p]
        if str(OPENBLAS) not in preload:
            env["LD_PRELOAD"] = ":".join([str(OPENBLAS), *preload])
    return env


def _tail(path: Path, chars: int) -> str:
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(size - chars, 0))
            return fh.read().decode("utf-8", "replace")
    except OSError:
        return ""


def terminate_tree(pid: int, grace_s: float = 5.0) -> None:
    """TERM a process and all its descendants, KILL what is left after ``grace_s``
    (anyclaude's own `processes.stop`); survivors are an error."""
    alive = processes.stop(pid, grace_s)
    if alive:
        raise MlxServerError(f"processes survived SIGKILL: {[p.pid for p in alive]}")


def _wait_ready(server: MlxServer, deadline: float) -> None:
    """Poll with a real 1-token completion until it succeeds, the process dies, or time is up."""
    body = {
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 1,
        "temperature": 0,
    }
    last_error = "no attempt"
    while True:
        if server.process.poll() is not None:
            raise MlxServerError(
                f"mlx-lm server exited with {server.process.returncode} during start-up:\n"
                + server.log_text()
            )
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise MlxServerError(
                f"mlx-lm server not ready ({last_error}); log:\n" + server.log_text()
            )
        if port_open(server.host, server.port):
            try:
                response = httpx.post(
                    f"{server.base_url}/chat/completions", json=body, timeout=remaining
                )
            except httpx.HTTPError as exc:
                last_error = repr(exc)
            else:
                if response.status_code == 200:
                    return
                # Early requests wait for the model instead of failing, so any error is real
                # (e.g. 404 "generation thread died" when the model cannot be loaded).
                raise MlxServerError(
                    f"mlx-lm server answered HTTP {response.status_code} "
                    f"{response.text[:300]!r} to its first request; log:\n" + server.log_text()
                )
        time.sleep(0.1)


@contextlib.contextmanager
def running_mlx_server(
    model_dir: str | Path,
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
    extra_args: Sequence[str] = (),
    log_path: str | Path | None = None,
    startup_timeout_s: float = 120.0,
    grace_s: float = 5.0,
    python: str | None = None,
    env: Mapping[str, str] | None = None,
    die_with_parent: bool = True,
) -> Iterator[MlxServer]:
    """Run ``python -m mlx_lm server --model DIR`` for the ``with`` block; yield its handle.

    ``extra_args`` go to the server (e.g. ``["--prompt-cache-size", "4"]``). The log goes
    to ``log_path`` (default: a new temp file, kept for post-mortems). ``env`` replaces
    os.environ as the base environment; offline and OpenBLAS variables are always added.
    With ``port=None`` a free port is picked, and picked again if another process grabs it
    before the server binds. ``die_with_parent`` (Linux) kills the server if the starting
    thread dies without cleaning up; turn it off when starting from a short-lived thread.
    """
    model = str(model_dir)
    if log_path is None:
        fd, name = tempfile.mkstemp(prefix="mlx-server-", suffix=".log")
        os.close(fd)
        log = Path(name)
    else:
        log = Path(log_path)
        log.parent.mkdir(parents=True, exist_ok=True)
    full_env = server_env(env)
    log_file: IO[bytes] = log.open("ab")
    server: MlxServer | None = None
    failed = False
    try:
        start = time.monotonic()
        for attempt in range(3):
            chosen_port = port if port is not None else free_port(host)
            command = [
                python or sys.executable,
                "-m",
                "mlx_lm",
                "server",
                "--model",
                model,
                "--host",
                host,
                "--port",
                str(chosen_port),
                *extra_args,
            ]
            log_file.write(f"$ {' '.join(command)}\n".encode())
            log_file.flush()
            server = MlxServer(
                base_url=f"http://{host}:{chosen_port}/v1",
                host=host,
                port=chosen_port,
                model=model,
                log_path=log,
                process=processes.spawn(
                    command, stdout=log_file, stderr=log_file, env=full_env,
                    parent_death=signal.SIGKILL if die_with_parent else None),
                command=command,
            )
            try:
                _wait_ready(server, start + startup_timeout_s)
                break
            except MlxServerError:
                in_use = "Address already in use" in server.log_tail()
                if port is not None or not in_use or attempt == 2:
                    raise
                terminate_tree(server.process.pid, grace_s)
        assert server is not None
        server.startup_s = time.monotonic() - start
        yield server
    except BaseException:
        failed = True
        raise
    finally:
        try:
            if server is not None:
                _stop(server, grace_s, raise_if_open=not failed)
        finally:
            log_file.close()


def _stop(server: MlxServer, grace_s: float, *, raise_if_open: bool) -> None:
    """Terminate the tree, reap it, and check that nothing listens on the port any more."""
    terminate_tree(server.process.pid, grace_s)
    with contextlib.suppress(Exception):
        server.process.wait(timeout=grace_s)
    deadline = time.monotonic() + grace_s
    while port_open(server.host, server.port) and time.monotonic() < deadline:
        time.sleep(0.05)
    if port_open(server.host, server.port):
        message = f"port {server.port} still open after stopping the mlx-lm server"
        if raise_if_open:
            raise MlxServerError(message)
        print(f"warning: {message}", file=sys.stderr)
