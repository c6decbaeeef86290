"""Process-tree plumbing: children that die with anyclaude, and stopping whole trees.

psutil does the portable part; on Linux PR_SET_PDEATHSIG covers the case no `finally` can:
anyclaude itself being SIGKILLed.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import sys
from collections.abc import Callable, Iterable

import psutil

GRACE_S = 5.0
"""Seconds between SIGTERM and SIGKILL when stopping a process tree."""
PROBE_TIMEOUT_S = 2.0
PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGKILL) -> Callable[[], None] | None:
    """A `preexec_fn` that makes the child receive `sig` when anyclaude dies (Linux only).

    The kernel fires it when the *thread* that forked the child exits, so spawn from the
    main thread (the event loop's), never from a worker thread."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)
    parent = os.getpid()

    def preexec() -> None:
        libc.prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0)
        if os.getppid() != parent:  # anyclaude died before prctl took effect
            os.kill(os.getpid(), sig)

    return preexec


def tree(proc: psutil.Process) -> list[psutil.Process]:
    """A process and all its descendants (empty when it is gone)."""
    try:
        return [proc, *proc.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def terminate(procs: Iterable[psutil.Process], grace: float = GRACE_S) -> list[psutil.Process]:
    """SIGTERM every process, SIGKILL what is left after `grace` seconds, reap; return the
    processes still alive after that (normally none)."""
    unique = {p.pid: p for p in procs}
    alive = list(unique.values())
    for sig_send in (psutil.Process.terminate, psutil.Process.kill):
        for proc in alive:
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                sig_send(proc)
        _, alive = psutil.wait_procs(alive, timeout=grace)
        if not alive:
            break
    return alive


def port_in_use(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S):
            return True
    except OSError:
        return False


def describe_exit(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"signal {signal.Signals(-code).name}"
        return f"signal {-code}"
    return f"code {code}"
