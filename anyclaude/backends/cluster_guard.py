"""The guard of a cluster: `python -m anyclaude.backends.cluster_guard -- mlx.launch ...`.

`mlx.launch` alone does not give a cluster the lifecycle of one server process:

* killed, it leaves its ranks running: the local ones are its children, and each remote
  one lives as long as the ssh client that started it (`ssh -tt`), which is its child too;
* it stops the others only when a rank fails with a non-zero status (a rank whose model
  failed to load can end with 0 and leave rank 0 answering `/health`);
* with its standard input at end-of-file it spins a core copying nothing.

So the supervisor (or keep-alive's keeper) runs this guard, which runs mlx.launch with a
silent, open stdin, copies its output to the log, and stops the whole process group (the
local ranks and the ssh clients; a closing ssh connection makes sshd hang up the remote
rank's terminal, and SIGHUP ends it) the moment a rank ends, mlx.launch ends, a signal
arrives, or its own parent dies (PR_SET_PDEATHSIG with SIGTERM on Linux, polling on
macOS). Its ssh connections get limits (`SSH_LIMITS`), so an unreachable or silent host
fails its rank instead of hanging the cluster. What it learns goes into the log as
`[anyclaude] ...` lines, which the supervisor shows: ranks joining while the shards load,
and which rank on which host ended first.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

from anyclaude import processes
from anyclaude.backends.mlx_cluster import ClusterError, read_hostfile
from anyclaude.keep.state import private_dir
from anyclaude.serverlog import LOG_NOTE
from anyclaude.timeouts import STOP_GRACE_S

TICK_S = 0.2
PR_SET_PDEATHSIG = 1
ANSI = re.compile(rb"\x1b\[[0-9;]*m")
JOINED = re.compile(rb"\[ring\] Rank (\d+) connecting")
EXITED = re.compile(rb"Node with rank (\d+) (?:exited with code (-?\d+)|completed|was killed)")
SSH_LIMITS = ("-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "-o", "ServerAliveInterval=5",
              "-o", "ServerAliveCountMax=3")
"""ssh options for the ranks' connections: never wait at a password prompt, give up on a host
that does not answer within 10 s, and notice a host gone silent (a pulled cable, a crash)
within ~15 s, so its rank counts as ended and every rank is stopped, instead of the others
waiting on it for ever."""
SSH_FAILED = 255
"""ssh's own status when the connection failed or the remote command was killed."""
CALM_LAUNCH = """
import runpy, select, sys
script = sys.argv.pop(1)
sys.argv[0] = script
try:
    from mlx._distributed_utils import launch
    launch.select
except (ImportError, AttributeError):
    runpy.run_path(script, run_name="__main__")
else:
    def calm(read, write, error, timeout=None):
        return select.select(read, [], error, timeout)[0], [], []
    launch.select = calm
    sys.exit(launch.main())
"""
"""mlx.launch as its script would run it, except that it is never told a rank's stdin is
writable: its per-rank loops wait on `select` with the ranks' stdin pipes in the write set,
which are always writable, so each loop spins a core. Nothing is ever typed to the ranks
here. (If mlx's layout changes, the script runs unchanged.)"""


def describe(code: int, remote: bool) -> str:
    if code == SSH_FAILED and remote:
        return "status 255 (ssh could not reach its host, or lost it)"
    return processes.describe_exit(code)


class Guard:
    def __init__(self, command: Sequence[str]) -> None:
        self.command = calm(list(command))
        self.labels = self._labels()
        self.joined: set[int] = set()
        self.failure: str | None = None
        self.wake = threading.Event()
        self.signalled = False

    def _labels(self) -> list[str]:
        if "--hostfile" not in self.command[:-1]:
            return []
        with contextlib.suppress(ClusterError):
            hosts, _, _ = read_hostfile(Path(self.command[self.command.index("--hostfile") + 1]))
            return [host.label for host in hosts]
        return []

    def rank(self, number: int) -> str:
        host = self.labels[number] if number < len(self.labels) else None
        return f"rank {number} on {host}" if host else f"rank {number}"

    def note(self, text: str) -> None:
        sys.stdout.buffer.write((LOG_NOTE + text + "\n").encode())
        sys.stdout.buffer.flush()

    def read(self, output: Sequence[bytes]) -> None:
        """Copy mlx.launch's output to the log, noting ranks joining and ending."""
        for raw in output:
            sys.stdout.buffer.write(raw)
            sys.stdout.buffer.flush()
            line = ANSI.sub(b"", raw)
            if match := JOINED.search(line):
                self.joined.add(int(match[1]))
                total = len(self.labels) or "?"
                self.note(f"{self.rank(int(match[1]))} joined ({len(self.joined)} of {total}"
                          " ranks); the model's shards load once all have")
            elif (match := EXITED.search(line)) and self.failure is None:
                number, code = int(match[1]), match[2]
                how = "was stopped" if code is None and b"killed" in line else \
                    f"exited with {describe(int(code or 0), number > 0)}"
                self.failure = f"{self.rank(number)} {how}"
                self.wake.set()

    def on_signal(self, signum: int, frame: object) -> None:
        self.signalled = True
        self.wake.set()

    def run(self) -> int:
        parent = os.getppid()
        _die_with_parent()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self.on_signal)
        if self.labels:
            self.note(f"starting {len(self.labels)} ranks: {', '.join(self.labels)}")
        quiet, keep_open = os.pipe()  # mlx.launch spins on a stdin at end-of-file
        try:
            launch = subprocess.Popen(self.command, stdin=quiet, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, env=ssh_with_limits())
        except OSError as exc:
            self.note(f"could not run {self.command[0]} ({exc.strerror})")
            return 1
        os.close(quiet)
        assert launch.stdout is not None
        reader = threading.Thread(target=self.read, args=(launch.stdout,), daemon=True)
        reader.start()
        while not (self.signalled or self.failure) and launch.poll() is None:
            if os.getppid() != parent:
                self.signalled = True
                break
            self.wake.wait(TICK_S)
        if self.failure and not self.signalled:
            self.note(f"{self.failure}, so every rank was stopped")
        still_running = launch.poll() is None
        processes.stop(os.getpid(), STOP_GRACE_S)  # the whole group and every descendant
        reader.join(STOP_GRACE_S)
        os.close(keep_open)
        if self.signalled:
            return 0
        if self.failure:
            return 1
        if not still_running:
            self.note(f"mlx.launch ended ({processes.describe_exit(launch.returncode)}) "
                      "while every rank was still running")
        return launch.returncode or 1


def calm(command: list[str]) -> list[str]:
    """`mlx.launch ARGS` as `<its Python> -c CALM_LAUNCH mlx.launch ARGS`."""
    script = Path(command[0])
    if script.name != "mlx.launch":
        return command
    try:
        with script.open("rb") as handle:
            first = handle.readline().decode("utf-8", "replace")
    except OSError:
        return command
    interpreter = shlex.split(first[2:]) if first.startswith("#!") else []
    return [*interpreter, "-c", CALM_LAUNCH, *command] if interpreter else command


def ssh_with_limits(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """mlx.launch's environment with an `ssh` first on PATH that adds `SSH_LIMITS` to the
    real one's command line (mlx.launch gives ssh no options of its own)."""
    env = dict(os.environ if environ is None else environ)
    real = shutil.which("ssh", path=env.get("PATH", os.defpath))
    if real is None:
        return env
    folder = private_dir() / "ssh"
    folder.mkdir(exist_ok=True, mode=0o700)
    shim = folder / "ssh"
    text = f"#!/bin/sh\nexec {shlex.quote(real)} {' '.join(SSH_LIMITS)} \"$@\"\n"
    if not shim.is_file() or shim.read_text(encoding="utf-8") != text:
        partial = folder / f"ssh.{os.getpid()}"
        partial.write_text(text, encoding="utf-8")
        partial.chmod(0o700)
        partial.replace(shim)
    env["PATH"] = f"{folder}{os.pathsep}{env.get('PATH', os.defpath)}"
    return env


def _die_with_parent() -> None:
    """SIGTERM (not the supervisor's SIGKILL) when the parent dies, so the ranks go too."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def main(argv: Sequence[str]) -> int:
    args = list(argv)
    if args[:1] == ["--"]:
        args = args[1:]
    if not args:
        print("usage: python -m anyclaude.backends.cluster_guard -- mlx.launch ...",
              file=sys.stderr)
        return 2
    return Guard(args).run()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
