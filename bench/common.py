"""Process plumbing shared by the benchmarks: start servers, wait for them, stop them."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from anyclaude import processes
from tests.support.mlx_server import free_port

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
TOKEN = "bench-token-0123456789"


def wait_port(port: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on port {port} after {timeout} s")


def stop(process: subprocess.Popen[Any]) -> None:
    """Stop a benchmark server and everything it started (anyclaude's own tree code)."""
    processes.stop(process.pid)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(5)


@contextlib.contextmanager
def fast_backend(framing: str = "keepalive") -> Iterator[str]:
    """`bench.fast_backend` in its own process; yields its base URL (ending in /v1)."""
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "bench.fast_backend", "--port", str(port),
                                "--framing", framing], cwd=ROOT)
    try:
        wait_port(port)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        stop(process)


@contextlib.contextmanager
def anyclaude_proxy(env: Mapping[str, str]) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """`anyclaude --proxy-only` as users run it; yields its URL and process."""
    full = {**os.environ, "ANYCLAUDE_PROXY_TOKEN": TOKEN, "ANYCLAUDE_DEBUG": "0", **env}
    process = subprocess.Popen([sys.executable, "-m", "anyclaude", "--proxy-only"], cwd=ROOT,
                               env=full, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        for line in process.stdout:
            match = re.search(r"Proxy URL: (\S+)", line)
            if match:
                yield match.group(1), process
                return
        raise RuntimeError("anyclaude --proxy-only exited without printing its URL")
    finally:
        stop(process)


def machine() -> dict[str, Any]:
    return {"python": platform.python_version(), "platform": platform.platform(),
            "cpus": os.cpu_count(), "date": time.strftime("%Y-%m-%d")}


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def save(name: str, data: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({**data, "machine": machine()}, indent=2) + "\n")
    return path
