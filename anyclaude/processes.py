"""Starting and stopping child processes: the one place that knows how.

Everything anyclaude (and its tests and benchmarks) starts goes through here: `spawn` for a
long-running server, `start` for a child the event loop waits on (Claude Code), `run_command`
for a bounded one-shot command. Stopping is always the whole family (the process, its
descendants, and its process group), SIGTERM then SIGKILL after a grace period; `stop_soon`
does that in a worker thread, since the grace period must not freeze the event loop.

psutil does the portable part; on Linux PR_SET_PDEATHSIG covers the case no `finally` can:
anyclaude itself being SIGKILLed.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import psutil

from anyclaude.timeouts import STOP_GRACE_S

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


def spawn(argv: Sequence[str], *, parent_death: int | None = signal.SIGKILL,
          new_session: bool = True, **popen: Any) -> psutil.Popen:
    """A long-running child: in its own session unless told otherwise (the terminal's Ctrl-C
    is not its business), killed by `parent_death` when anyclaude dies, stdin closed unless
    given. `popen` goes to `subprocess.Popen` (env, cwd, stdout...)."""
    popen.setdefault("stdin", subprocess.DEVNULL)
    return psutil.Popen(list(argv), start_new_session=new_session,
                        preexec_fn=die_with_parent(parent_death) if parent_death else None,
                        **popen)


async def start(argv: Sequence[str], *, parent_death: int | None = signal.SIGKILL,
                new_session: bool = True, **popen: Any) -> asyncio.subprocess.Process:
    """`spawn` for a child the event loop waits on (`await child.wait()`)."""
    return await asyncio.create_subprocess_exec(
        *argv, start_new_session=new_session,
        preexec_fn=die_with_parent(parent_death) if parent_death else None, **popen)


@dataclass(frozen=True)
class Output:
    """A one-shot command's exit code and output; `code` is None when it could not run or
    did not finish in time (`text` says which)."""

    code: int | None
    text: str
    timed_out: bool = False


async def run_command(argv: Sequence[str], timeout: float, *,
                      env: dict[str, str] | None = None, log: IO[bytes] | None = None,
                      grace: float = 0.0, cwd: Path | None = None) -> Output:
    """Run a short command in its own session, its output captured (or appended to `log`).
    On timeout, or when the caller is cancelled, its whole family is stopped (SIGKILL at once
    unless a `grace` is given), so a hanging command can neither hold anyclaude up nor
    outlive it."""
    try:
        proc = await start(argv, stdin=subprocess.DEVNULL, env=env, stderr=subprocess.STDOUT,
                           stdout=subprocess.PIPE if log is None else log, cwd=cwd)
    except OSError as exc:
        return Output(None, exc.strerror or type(exc).__name__)
    try:
        data, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        return Output(None, f"no answer within {timeout:g} s", timed_out=True)
    finally:
        if proc.returncode is None:
            if grace:
                await stop_soon(proc.pid, grace)
            else:
                stop(proc.pid, 0.0)
            with contextlib.suppress(ProcessLookupError):
                await proc.wait()
    return Output(proc.returncode, (data or b"").decode("utf-8", "replace").strip())


def tree(proc: psutil.Process) -> list[psutil.Process]:
    """A process and all its descendants (empty when it is gone)."""
    try:
        return [proc, *proc.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def family(pid: int) -> list[psutil.Process]:
    """A process, its descendants and, when it leads a process group (children anyclaude
    starts get their own session), the group's members: a daemonised grandchild that was
    re-parented away still belongs to the group."""
    try:
        root = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return []
    members = tree(root)
    with contextlib.suppress(OSError):
        if os.getpgid(pid) == pid:
            for proc in psutil.process_iter():
                with contextlib.suppress(OSError, psutil.Error):
                    if os.getpgid(proc.pid) == pid:
                        members.append(proc)
    return members


def terminate(procs: Iterable[psutil.Process],
              grace: float = STOP_GRACE_S) -> list[psutil.Process]:
    """SIGTERM every process (never anyclaude itself), SIGKILL what is left after `grace`
    seconds, reap; return the processes still alive after that (normally none)."""
    unique = {p.pid: p for p in procs if p.pid != os.getpid()}
    alive = list(unique.values())
    for sig_send in (psutil.Process.terminate, psutil.Process.kill):
        for proc in alive:
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                sig_send(proc)
        _, alive = psutil.wait_procs(alive, timeout=grace)
        if not alive:
            break
    return alive


def stop(pid: int, grace: float = STOP_GRACE_S,
         also: Iterable[psutil.Process] = ()) -> list[psutil.Process]:
    """Stop `pid`'s family and `also` (processes seen in it earlier); blocks up to twice
    `grace`. Returns the survivors (normally none)."""
    return terminate([*family(pid), *also], grace)


async def stop_soon(pid: int, grace: float = STOP_GRACE_S,
                    also: Iterable[psutil.Process] = ()) -> list[psutil.Process]:
    """`stop` in a worker thread, so the event loop keeps serving meanwhile."""
    return await asyncio.to_thread(stop, pid, grace, list(also))


def describe_exit(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"signal {signal.Signals(-code).name}"
        return f"signal {-code}"
    return f"code {code}"
