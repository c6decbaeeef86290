"""Run the fake sshd of `tests.support.fake_ssh` for a test: its `ssh` goes first on PATH,
and `remote_processes()` is the "remote hosts'" process table, which must be empty again
after every way out of anyclaude."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil

from anyclaude import processes
from tests.support import fake_ssh


@dataclass
class FakeSshd:
    process: psutil.Popen
    bin_dir: Path

    def path(self, rest: str) -> str:
        """A PATH with this `ssh` first."""
        return f"{self.bin_dir}:{rest}"

    def remote_processes(self) -> list[psutil.Process]:
        """What runs on the "remote hosts" (zombies excepted)."""
        alive = []
        with contextlib.suppress(psutil.Error):
            for proc in self.process.children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    if proc.status() != psutil.STATUS_ZOMBIE:
                        alive.append(proc)
        return alive

    def ranks(self) -> list[psutil.Process]:
        """The mlx-lm ranks running on the "remote hosts" (the Python running the server
        script, not the shell that will exec it)."""
        found = []
        for proc in self.remote_processes():
            with contextlib.suppress(psutil.Error):
                argv = proc.cmdline()
                if len(argv) > 1 and argv[1].endswith("mlx_lm.server"):
                    found.append(proc)
        return found

    def wait_empty(self, timeout: float = 30.0) -> list[psutil.Process]:
        """The remote processes still there after up to `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while (left := self.remote_processes()) and time.monotonic() < deadline:
            time.sleep(0.1)
        return left


@contextlib.contextmanager
def running_sshd() -> Iterator[FakeSshd]:
    """A fake sshd for the duration; whatever it still runs is killed at the end."""
    folder = Path(tempfile.mkdtemp(prefix="sshd-", dir="/tmp"))  # short: a socket path
    socket_path = folder / "sshd.sock"
    proc = processes.spawn([sys.executable, fake_ssh.__file__, "serve", str(socket_path)],
                           stdout=subprocess.PIPE, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
        sshd = FakeSshd(proc, folder / "bin")
        fake_ssh.install(sshd.bin_dir, socket_path)
        yield sshd
    finally:
        for child in proc.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                child.kill()
        processes.stop(proc.pid, 2.0)
        if proc.stdout is not None:
            proc.stdout.close()
        shutil.rmtree(folder, ignore_errors=True)
