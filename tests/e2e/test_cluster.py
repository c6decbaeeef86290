"""A model across several "machines": anyclaude with `MLX_LM_HOSTS` starts the REAL mlx-lm
server through the REAL mlx.launch (ring backend), two or three ranks on this machine and
on "remote hosts" (loopback addresses reached through the fake ssh, whose commands live in
a process tree of their own), and the REAL Claude Code runs a Bash round trip on it, tensor
parallel and pipelined. Every way out leaves nothing running, here or on the remote hosts.
"""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from anyclaude.keep import client, state
from tests.e2e.test_launch import TOKEN, Run, mlx_env, started_mlx, write_fake_claude
from tests.support.mlx_server import OPENBLAS, free_port, port_open
from tests.support.sshd import FakeSshd, running_sshd
from tests.support.tiny_model import DEFAULT_SENTENCE, build_random_model, default_models_dir
from tests.support.tiny_sharded import build_scripted_qwen2

pytestmark = pytest.mark.e2e

ROUND_TRIP = ["-p", "create the marker file", "--output-format", "json", "--tools", "Bash",
              "--allowedTools", "Bash"]
REQUEST = re.compile(r"^\[anyclaude\] mlx-lm \S+ stream: prompt (\d+) \((\d+) cached\)")


@pytest.fixture
def sshd() -> Iterator[FakeSshd]:
    with running_sshd() as running:
        yield running


@pytest.fixture(scope="module")
def qwen2() -> Path:
    """The scripted model as a 3-layer Qwen2, which mlx-lm can pipeline."""
    return build_scripted_qwen2(default_models_dir() / "scripted-qwen2-3", layers=3)


def ring_ports(count: int) -> int:
    """A first port with `count` free ports from it (the ring listens on one per rank)."""
    while True:
        first = free_port()
        try:
            for port in range(first, first + count):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", port))
            return first
        except OSError:
            continue


def cluster_env(tmp_path: Path, model: Path, port: int, hosts: list[str], sshd: FakeSshd,
                claude: Path | None = None, **extra: str) -> dict[str, str]:
    env = mlx_env(tmp_path, model, port, claude, MLX_LM_HOSTS=",".join(hosts),
                  MLX_LM_DISTRIBUTED_PORT=str(ring_ports(len(hosts))), **extra)
    env["PATH"] = sshd.path(env["PATH"])
    return env


def cached_shares(state_dir: Path) -> list[float]:
    """Cached share of each main request, from the run's debug log."""
    [log] = (state_dir / "logs").glob("debug-*.log")
    found = [REQUEST.match(line) for line in log.read_text().splitlines()]
    return [int(m[2]) / int(m[1]) for m in found if m]


def nothing_left(run: Run, sshd: FakeSshd, port: int) -> None:
    run.assert_nothing_left(port)
    assert not sshd.wait_empty(), "a rank is still running on a remote host"


def remote_rank(sshd: FakeSshd) -> psutil.Process:
    deadline = time.monotonic() + 60
    while not (ranks := sshd.ranks()):
        assert time.monotonic() < deadline, "no rank on the remote host"
        time.sleep(0.1)
    return ranks[0]


# -- Claude Code on a sharded model ---------------------------------------------------------


def test_claude_code_runs_bash_on_two_tensor_parallel_ranks(
        tmp_path: Path, tiny_model: Path, launch: Callable[..., Run], sshd: FakeSshd) -> None:
    port = free_port()
    run = launch(ROUND_TRIP, cluster_env(tmp_path, tiny_model, port, ["127.0.0.1", "127.0.0.1"],
                                         sshd, ANYCLAUDE_DEBUG="1"))
    assert run.finish() == 0, run.stderr
    result = json.loads(run.out[-1])
    assert result["result"] == DEFAULT_SENTENCE and result["num_turns"] == 2
    assert (tmp_path / "project" / "anyclaude-e2e.txt").read_text() == "anyclaude-e2e\n"
    assert ("[anyclaude] Starting the mlx-lm server on 2 ranks (127.0.0.1, 127.0.0.1) over ring, "
            "tensor parallel (the only one llama models support) (log: ") in run.stderr
    shares = cached_shares(tmp_path / "state")
    assert len(shares) >= 2 and all(s >= 0.95 for s in shares[1:]), shares
    log = (tmp_path / "state" / "logs" / f"mlx-lm-{port}.log").read_text()
    assert log.startswith(f"$ {sys.executable} -m anyclaude.backends.cluster_guard -- ")
    assert "[ring] Rank 1 connecting" in log, "two ranks joined the ring"
    nothing_left(run, sshd, port)


def test_claude_code_runs_bash_on_two_pipeline_ranks_one_of_them_remote(
        tmp_path: Path, qwen2: Path, launch: Callable[..., Run], sshd: FakeSshd) -> None:
    port = free_port()
    run = launch(ROUND_TRIP, cluster_env(tmp_path, qwen2, port, ["127.0.0.1", "127.0.0.2"],
                                         sshd, MLX_LM_PARALLEL="pipeline"))
    run.wait_for("the remote rank", sshd.ranks)
    rank = remote_rank(sshd)
    environment = rank.environ()
    assert environment["MLX_RANK"] == "1" and "MLX_LM_HOSTS" not in environment, \
        "the remote rank has ssh's login environment, plus what mlx.launch passes"
    if OPENBLAS.exists():
        assert environment["LD_PRELOAD"] == str(OPENBLAS)
    assert run.finish() == 0, run.stderr
    result = json.loads(run.out[-1])
    assert result["result"] == DEFAULT_SENTENCE and result["num_turns"] == 2
    assert (tmp_path / "project" / "anyclaude-e2e.txt").read_text() == "anyclaude-e2e\n"
    assert "on 2 ranks (127.0.0.1, 127.0.0.2) over ring, pipeline parallel (MLX_LM_PARALLEL)" \
        in run.stderr
    nothing_left(run, sshd, port)


def test_claude_code_runs_bash_on_three_pipeline_ranks(
        tmp_path: Path, qwen2: Path, launch: Callable[..., Run], sshd: FakeSshd) -> None:
    port = free_port()
    hosts = ["127.0.0.1", "127.0.0.2", "127.0.0.3"]
    run = launch(ROUND_TRIP, cluster_env(tmp_path, qwen2, port, hosts, sshd,
                                         MLX_LM_PARALLEL="pipeline", ANYCLAUDE_DEBUG="1"))
    assert run.finish() == 0, run.stderr
    result = json.loads(run.out[-1])
    assert result["result"] == DEFAULT_SENTENCE and result["num_turns"] == 2
    assert "on 3 ranks (127.0.0.1, 127.0.0.2, 127.0.0.3) over ring, pipeline parallel" \
        in run.stderr
    shares = cached_shares(tmp_path / "state")
    assert len(shares) >= 2 and all(s >= 0.95 for s in shares[1:]), shares
    nothing_left(run, sshd, port)


# -- every way out --------------------------------------------------------------------------


def serving(tmp_path: Path, model: Path, launch: Callable[..., Run], sshd: FakeSshd,
            **extra: str) -> tuple[Run, int, str, dict[str, str]]:
    """anyclaude --proxy-only on two ranks, one remote, serving; and its environment."""
    port = free_port()
    env = cluster_env(tmp_path, model, port, ["127.0.0.1", "127.0.0.2"], sshd, **extra)
    run = launch(["--proxy-only"], env)
    url = run.proxy_url()
    assert started_mlx(run) and sshd.ranks(), "ranks here and on the remote host"
    return run, port, url, env


def ask(url: str, text: str = "hi") -> httpx.Response:
    return httpx.post(f"{url}/v1/messages", headers={"x-api-key": TOKEN}, timeout=120, json={
        "model": "x", "max_tokens": 50, "messages": [{"role": "user", "content": text}]})


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_and_sigterm_stop_every_rank_here_and_remote(
        tmp_path: Path, tiny_model: Path, launch: Callable[..., Run], sshd: FakeSshd,
        sig: signal.Signals) -> None:
    run, port, url, _ = serving(tmp_path, tiny_model, launch, sshd)
    assert ask(url).json()["content"][0]["text"] == DEFAULT_SENTENCE
    run.proc.send_signal(sig)
    assert run.finish() == 0, run.stderr
    nothing_left(run, sshd, port)


def test_sigkill_of_anyclaude_stops_every_rank(
        tmp_path: Path, tiny_model: Path, launch: Callable[..., Run], sshd: FakeSshd) -> None:
    run, port, _, _ = serving(tmp_path, tiny_model, launch, sshd)
    run.proc.kill()  # no clean-up code runs: the guard's parent-death signal does it
    assert run.finish() == -signal.SIGKILL
    nothing_left(run, sshd, port)


def test_keep_alive_keeps_the_whole_cluster_and_stop_stops_every_rank(
        tmp_path: Path, tiny_model: Path, launch: Callable[..., Run], sshd: FakeSshd) -> None:
    folder = tmp_path / "state"
    try:
        run, port, _, env = serving(tmp_path, tiny_model, launch, sshd,
                                    ANYCLAUDE_KEEP_ALIVE="10m")
        [record] = state.load_all(folder)
        run.proc.kill()  # the keeper owns the cluster now
        run.finish()
        assert psutil.pid_exists(record.server_pid) and sshd.ranks(), "still kept"
        again = launch(["-p", "say hi", "--output-format", "json", "--tools", ""], env)
        assert again.finish() == 0, again.stderr
        assert json.loads(again.out[-1])["result"] == DEFAULT_SENTENCE
        assert "Using the mlx-lm server anyclaude kept running" in again.stderr
        listed = subprocess.run([sys.executable, "-m", "anyclaude", "status"], capture_output=True,
                                text=True, env=env, timeout=60)
        assert "on 2 ranks (127.0.0.1, 127.0.0.2) over ring, tensor parallel" in listed.stdout
        stopped = subprocess.run([sys.executable, "-m", "anyclaude", "stop"],
                                 capture_output=True, text=True, env=env, timeout=120)
        assert stopped.returncode == 0 and "Stopped the mlx-lm server" in stopped.stderr
        assert not sshd.wait_empty(), "the remote rank was stopped with the cluster"
        deadline = time.monotonic() + 30
        while port_open("127.0.0.1", port) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not port_open("127.0.0.1", port)
        assert state.load_all(folder) == []
    finally:
        client.stop_all(folder)


def test_a_rank_dying_mid_stream_ends_the_stream_with_an_error_and_stops_every_rank(
        tmp_path: Path, launch: Callable[..., Run], sshd: FakeSshd) -> None:
    model = build_random_model(default_models_dir() / "random")  # talks until max_tokens
    run, port, url, _ = serving(tmp_path, model, launch, sshd)
    events: list[str] = []
    with httpx.stream("POST", f"{url}/v1/messages", headers={"x-api-key": TOKEN}, timeout=120,
                      json={"model": "x", "max_tokens": 4000, "stream": True,
                            "messages": [{"role": "user", "content": "talk"}]}) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith("event: "):
                events.append(line[7:])
                if events[-1] == "content_block_delta" and events.count(events[-1]) == 1:
                    remote_rank(sshd).kill()  # the remote host's rank dies (OOM, reboot...)
    assert "content_block_delta" in events and events[-1] == "error", events
    assert "message_stop" not in events
    line = run.wait_for("the crash report", lambda: [
        e for e in run.err if "stopped unexpectedly" in e])[0]
    assert line.startswith("[anyclaude] The mlx-lm server stopped unexpectedly: rank 1 on "
                           "127.0.0.2 exited with status 255 (ssh could not reach its host, or "
                           "lost it), so every rank was stopped; requests fail until anyclaude "
                           "is restarted; log: "), line
    assert not sshd.wait_empty() and not started_mlx(run), "every rank stopped"
    assert ask(url).status_code == 529
    run.proc.send_signal(signal.SIGTERM)
    assert run.finish() == 0
    nothing_left(run, sshd, port)


def test_an_unreachable_host_fails_the_start_in_one_sentence(
        tmp_path: Path, tiny_model: Path, launch: Callable[..., Run], sshd: FakeSshd) -> None:
    port = free_port()
    record = tmp_path / "record.json"
    env = cluster_env(tmp_path, tiny_model, port, ["127.0.0.1", "127.0.0.9"], sshd,
                      write_fake_claude(tmp_path / "claude"), FAKE_CLAUDE_RECORD=str(record),
                      FAKE_SSH_DOWN="127.0.0.9")
    run = launch(["-p", "hi"], env)
    assert run.finish() == 1
    errors = [line for line in run.err if line.startswith("anyclaude:")]
    assert errors == [
        "anyclaude: The mlx-lm server stopped while starting: rank 1 on 127.0.0.9 exited with "
        "status 255 (ssh could not reach its host, or lost it), so every rank was stopped; its "
        f"last log lines are below (full log: {tmp_path / 'state' / 'logs'}/mlx-lm-{port}.log)."
    ], run.stderr
    assert not record.exists(), "Claude Code was not started"
    nothing_left(run, sshd, port)


def test_pipeline_on_a_model_that_cannot_pipeline_fails_before_anything_starts(
        tmp_path: Path, tiny_model: Path, launch: Callable[..., Run], sshd: FakeSshd) -> None:
    port = free_port()
    record = tmp_path / "record.json"
    run = launch(["-p", "hi"], cluster_env(
        tmp_path, tiny_model, port, ["127.0.0.1", "127.0.0.2"], sshd,
        write_fake_claude(tmp_path / "claude"), MLX_LM_PARALLEL="pipeline",
        FAKE_CLAUDE_RECORD=str(record)))
    assert run.finish() == 1
    assert run.err[-1] == (f"anyclaude: mlx-lm cannot run {tiny_model} with pipeline "
                           "parallelism (llama models support tensor only); set "
                           "MLX_LM_PARALLEL=tensor or leave it unset."), run.stderr
    assert not record.exists() and not (tmp_path / "state" / "logs").exists()
    assert not run.watch.seen and not sshd.remote_processes()
