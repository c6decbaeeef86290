"""The cluster guard with the REAL mlx.launch, on ranks that are shell scripts (cheap, and
each rank can be made to end its own way): any rank ending stops every rank and says which
one on which host; a signal, or the death of the guard's parent, stops every rank too,
here and on a "remote host" reached through the fake ssh."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from anyclaude import processes
from anyclaude.backends import cluster_guard
from anyclaude.backends.mlx_cluster import Host, Layout, write_hostfile
from tests.support.claude_code import ProcessWatch
from tests.support.mlx_server import free_port
from tests.support.sshd import FakeSshd, running_sshd

LAUNCH = str(Path(sys.executable).parent / "mlx.launch")


@pytest.fixture
def sshd() -> Iterator[FakeSshd]:
    with running_sshd() as running:
        yield running


class Cluster:
    """The guard running `script` as every rank (`$MLX_RANK` tells them apart)."""

    def __init__(self, tmp_path: Path, hosts: list[str], script: str, sshd: FakeSshd,
                 parent: bool = False) -> None:
        self.marks = tmp_path / "marks"
        self.marks.mkdir()
        self.log = tmp_path / "guard.log"
        layout = Layout(tuple(Host(h, (h,)) for h in hosts), "ring")
        body = f"touch {self.marks}/rank$MLX_RANK; {script}"
        self.argv = [sys.executable, "-m", "anyclaude.backends.cluster_guard", "--", LAUNCH,
                     "--verbose", "--hostfile", str(write_hostfile(layout)), "--backend",
                     "ring", "--starting-port", str(free_port()), "--", "/bin/bash", "-c", body]
        env = {**os.environ, "PATH": sshd.path(os.environ["PATH"])}
        if parent:  # a stand-in supervisor: it spawns the guard as anyclaude does, then waits
            code = (f"from anyclaude import processes; import time, sys; "
                    f"processes.spawn({self.argv!r}, stdout=open({str(self.log)!r}, 'wb')); "
                    "time.sleep(600)")
            self.proc = processes.spawn([sys.executable, "-c", code], env=env)
        else:
            with self.log.open("wb") as log:
                self.proc = processes.spawn(self.argv, stdout=log, stderr=subprocess.STDOUT,
                                            env=env)
        self.watch = ProcessWatch(self.proc.pid)
        self.ranks = len(hosts)

    def wait_ranks(self) -> None:
        deadline = time.monotonic() + 60
        while len(list(self.marks.iterdir())) < self.ranks:
            assert time.monotonic() < deadline, self.log.read_text()
            time.sleep(0.05)
        time.sleep(0.5)  # past the first lines mlx.launch reads from each rank

    def notes(self) -> list[str]:
        return [line.removeprefix("[anyclaude] ") for line in self.log.read_text().splitlines()
                if line.startswith("[anyclaude] ")]

    def nothing_left(self, sshd: FakeSshd) -> None:
        assert not self.watch.survivors(), self.log.read_text()
        assert not sshd.wait_empty(), "a remote rank outlived the guard"


@pytest.mark.parametrize(("script", "says"), [
    ('[ "$MLX_RANK" = 1 ] && exit 0; sleep 600', "rank 1 on 127.0.0.2 exited with code 0"),
    ('[ "$MLX_RANK" = 1 ] && exit 3; sleep 600', "rank 1 on 127.0.0.2 exited with code 3"),
    ('[ "$MLX_RANK" = 0 ] && kill -9 $$; sleep 600', "rank 0 on 127.0.0.1 exited with signal "
     "SIGKILL"),
])
def test_any_rank_ending_stops_every_rank_and_names_it(
        tmp_path: Path, sshd: FakeSshd, script: str, says: str) -> None:
    cluster = Cluster(tmp_path, ["127.0.0.1", "127.0.0.2"], script, sshd)
    assert cluster.proc.wait(60) == 1
    assert cluster.notes() == ["starting 2 ranks: 127.0.0.1, 127.0.0.2",
                               f"{says}, so every rank was stopped"]
    cluster.nothing_left(sshd)


def test_an_unreachable_host_is_named(tmp_path: Path, sshd: FakeSshd,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_SSH_DOWN", "127.0.0.3")
    cluster = Cluster(tmp_path, ["127.0.0.1", "127.0.0.3"], "sleep 600", sshd)
    assert cluster.proc.wait(60) == 1
    assert cluster.notes()[-1] == ("rank 1 on 127.0.0.3 exited with status 255 (ssh could not "
                                   "reach its host, or lost it), so every rank was stopped")
    cluster.nothing_left(sshd)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_a_signal_stops_every_rank_here_and_remote(tmp_path: Path, sshd: FakeSshd,
                                                   sig: signal.Signals) -> None:
    cluster = Cluster(tmp_path, ["127.0.0.1", "127.0.0.1", "127.0.0.2"], "sleep 600", sshd)
    cluster.wait_ranks()
    assert len(sshd.remote_processes()) == 1
    cluster.proc.send_signal(sig)
    assert cluster.proc.wait(60) == 0
    assert cluster.notes() == ["starting 3 ranks: 127.0.0.1, 127.0.0.1, 127.0.0.2"]
    cluster.nothing_left(sshd)


def test_the_ranks_ssh_never_prompts_and_notices_a_silent_host(
        tmp_path: Path, sshd: FakeSshd, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_SSH_ARGV", str(tmp_path / "ssh-argv"))
    cluster = Cluster(tmp_path, ["127.0.0.1", "127.0.0.2"], "sleep 600", sshd)
    cluster.wait_ranks()
    cluster.proc.terminate()
    assert cluster.proc.wait(60) == 0
    first = json.loads((tmp_path / "ssh-argv").read_text().splitlines()[0])
    assert first[:8] == list(cluster_guard.SSH_LIMITS)
    assert first[8:12] == ["-tt", "-o", "LogLevel=QUIET", "127.0.0.2"], "mlx.launch's own"
    cluster.nothing_left(sshd)


def test_the_parent_s_death_stops_every_rank(tmp_path: Path, sshd: FakeSshd) -> None:
    """SIGKILL of the process that started the guard (anyclaude, or keep-alive's keeper):
    no clean-up code of the parent runs; the guard's parent-death signal does it."""
    cluster = Cluster(tmp_path, ["127.0.0.1", "127.0.0.2"], "sleep 600", sshd, parent=True)
    cluster.wait_ranks()
    cluster.proc.kill()
    cluster.proc.wait(10)
    cluster.nothing_left(sshd)


def test_mlx_launch_runs_without_spinning_on_its_ranks_stdin(tmp_path: Path) -> None:
    calm = cluster_guard.calm([LAUNCH, "--verbose", "--", "true"])
    first_line = Path(LAUNCH).read_text().splitlines()[0]
    assert calm == [first_line[2:], "-c", cluster_guard.CALM_LAUNCH, LAUNCH, "--verbose", "--",
                    "true"]
    ran = subprocess.run([*calm[:-2], "--hosts", "127.0.0.1", "--", "/bin/echo", "hi"],
                         capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert ran.returncode == 0 and "hi" in ran.stdout, ran.stderr
    assert cluster_guard.calm(["/bin/sleep", "1"]) == ["/bin/sleep", "1"]
    assert psutil.Process().children() == []
