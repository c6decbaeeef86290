"""Doctor on a cluster: the host list, the parallel mode against the model, and one row per
host, asked for real (here, and on "remote hosts" through the fake ssh, whose BatchMode
login either works or fails like a real one)."""

from __future__ import annotations

import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from anyclaude.doctor.cluster import cluster_check
from tests.doctor.helpers import closed_port, context, python_without_mlx, run
from tests.support.sshd import FakeSshd, running_sshd
from tests.support.tiny_model import build_scripted_model, default_models_dir


@pytest.fixture(scope="module")
def tiny_model() -> Path:
    return build_scripted_model(default_models_dir() / "scripted")


@pytest.fixture
def sshd(environ: dict[str, str]) -> Iterator[FakeSshd]:
    with running_sshd() as running:
        environ["PATH"] = running.path(environ["PATH"])
        yield running


def check(environ: dict[str, str], model: Path | str, hosts: str,
          **options: str) -> dict[str, tuple[str, str, str]]:
    flags = {"mlx-lm.url": f"http://127.0.0.1:{closed_port()}/v1", "mlx-lm.model": str(model),
             "mlx-lm.hosts": hosts, **{f"mlx-lm.{k}": v for k, v in options.items()}}
    return {r.check: (r.status, r.found, r.fix) for r in run(cluster_check,
                                                             context(environ, **flags))}


def free_range(count: int) -> int:
    while True:
        first = closed_port()
        try:
            for port in range(first, first + count):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", port))
            return first
        except OSError:
            continue


def test_a_working_cluster_gets_a_row_per_host(environ: dict[str, str], sshd: FakeSshd,
                                              tiny_model: Path) -> None:
    port = free_range(2)
    rows = check(environ, tiny_model, "127.0.0.1,127.0.0.2", distributed_port=str(port))
    versions = rows["host 127.0.0.1"][1].split(", the model")[0]
    assert rows == {
        "cluster": ("ok", "2 ranks over ring: 127.0.0.1, 127.0.0.2 (rank 0 is this machine)", ""),
        "parallel": ("ok", "tensor parallel (the only one llama models support)", ""),
        "host 127.0.0.1": ("ok", f"{versions}, the model, port {port} free", ""),
        "host 127.0.0.2": ("ok", f"{versions}, the model, port {port + 1} free", ""),
    }
    assert versions.startswith(f"Python {sys.version.split()[0]}, mlx 0.")
    assert not sshd.remote_processes()


def test_a_host_ssh_cannot_log_in_to_says_how_to_set_up_the_key(
        environ: dict[str, str], sshd: FakeSshd, tiny_model: Path) -> None:
    environ["FAKE_SSH_DOWN"] = "127.0.0.3"
    rows = check(environ, tiny_model, "127.0.0.1,127.0.0.3")
    assert rows["host 127.0.0.3"] == (
        "fail", "ssh cannot log in without a prompt (connect to host 127.0.0.3 port 22: "
        "Connection refused)", "Make `ssh 127.0.0.3 true` work without a prompt: turn on "
        "Remote Login there (System Settings > General > Sharing) and run "
        "`ssh-copy-id 127.0.0.3`.")
    assert rows["host 127.0.0.1"][0] == "ok"


def test_a_model_missing_on_the_hosts_says_what_to_copy(
        environ: dict[str, str], sshd: FakeSshd, tmp_path: Path) -> None:
    missing = tmp_path / "no-model"
    rows = check(environ, missing, "127.0.0.1,127.0.0.2")
    assert rows["host 127.0.0.2"] == (
        "fail", f"{missing} is not there", f"Copy it: `rsync -a {missing}/ 127.0.0.2:{missing}/` "
        "(every host needs the model at the same path).")
    assert rows["host 127.0.0.1"][:2] == ("fail", f"{missing} is not a model folder")


def test_the_hosts_python_must_exist_and_have_mlx_lm(
        environ: dict[str, str], sshd: FakeSshd, tiny_model: Path, tmp_path: Path) -> None:
    rows = check(environ, tiny_model, "127.0.0.1,127.0.0.2",
                 hosts_python="/nowhere/venv/bin/python")
    status, found, fix = rows["host 127.0.0.2"]
    assert (status, found) == ("fail", "there is no /nowhere/venv/bin/python")
    assert "ssh 127.0.0.2 python3 -m venv /nowhere/venv" in fix and "MLX_LM_HOSTS_PYTHON" in fix
    bare = python_without_mlx(tmp_path / "venv")
    rows = check(environ, tiny_model, "127.0.0.1,127.0.0.2", hosts_python=str(bare))
    status, found, fix = rows["host 127.0.0.2"]
    assert (status, found) == ("fail", f"{bare} has no mlx-lm")
    assert fix.startswith(f"Install it: `ssh 127.0.0.2 {bare} -m pip install ")


def test_a_busy_ring_port_is_named(environ: dict[str, str], sshd: FakeSshd,
                                   tiny_model: Path) -> None:
    port = free_range(2)
    with socket.socket() as busy:
        busy.bind(("127.0.0.2", port + 1))
        busy.listen()
        rows = check(environ, tiny_model, "127.0.0.1,127.0.0.2", distributed_port=str(port))
    assert rows["host 127.0.0.2"] == (
        "fail", f"127.0.0.2:{port + 1}, where its rank listens, is in use",
        "Stop what uses it, or set MLX_LM_DISTRIBUTED_PORT to another free range.")


def test_the_parallel_mode_and_the_host_list_are_checked(
        environ: dict[str, str], sshd: FakeSshd, tiny_model: Path) -> None:
    rows = check(environ, tiny_model, "127.0.0.1,127.0.0.2", parallel="pipeline")
    assert rows["parallel"] == (
        "fail", f"mlx-lm cannot run {tiny_model} with pipeline parallelism (llama models "
        "support tensor only)", "Set MLX_LM_PARALLEL=tensor or leave it unset.")
    rows = check(environ, tiny_model, "192.0.2.10,127.0.0.1")
    assert rows == {"cluster": (
        "fail", "The first host, 192.0.2.10, is not this machine", "Rank 0 runs here and "
        "serves the model on 127.0.0.1, so list this machine first.")}


def test_no_rows_without_hosts(environ: dict[str, str], tiny_model: Path) -> None:
    assert run(cluster_check, context(environ, **{"mlx-lm.model": str(tiny_model)})) == []
