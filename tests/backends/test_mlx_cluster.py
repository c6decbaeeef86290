"""mlx-lm across several machines: the settings, the hosts, the parallel mode read from the
installed mlx-lm, and the exact `mlx.launch` command, all without starting anything."""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from anyclaude import settings
from anyclaude.backends import mlx_cluster, mlx_sharding
from anyclaude.backends.mlx_cluster import ClusterError
from anyclaude.backends.mlx_lm import mlx_env
from anyclaude.settings import SettingsError
from tests.support.tiny_model import build_scripted_model, default_models_dir
from tests.support.tiny_sharded import INDEX_FILE, build_scripted_qwen2

BIN = Path(sys.executable).parent


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.delenv("ANYCLAUDE_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    yield


@pytest.fixture(scope="module")
def llama() -> Path:
    return build_scripted_model(default_models_dir() / "scripted")


@pytest.fixture(scope="module")
def qwen2() -> Path:
    return build_scripted_qwen2(default_models_dir() / "scripted-qwen2-3", layers=3)


def load(env: dict[str, str], toml: str = "") -> settings.Settings:
    if toml:
        Path(".anyclaude.toml").write_text(toml, encoding="utf-8")
    return settings.load({}, env, Path.cwd())


def plan_for(env: dict[str, str], toml: str = "") -> Any:
    s = load({"MLX_LM_URL": "http://127.0.0.1:8090/v1", **env}, toml)
    assert s.backend.start is not None
    return s.backend.start(s.endpoint, s.backend_options())


# -- settings -------------------------------------------------------------------------------

def test_hosts_come_as_a_toml_list_or_comma_separated(tmp_path: Path) -> None:
    from_file = load({}, '[mlx-lm]\nhosts = ["127.0.0.1", "10.0.0.2"]\nparallel = "pipeline"\n')
    assert from_file.backend_options()["hosts"] == "127.0.0.1,10.0.0.2"
    assert from_file.backend_options()["parallel"] == "pipeline"
    from_env = load({"MLX_LM_HOSTS": "127.0.0.1, 10.0.0.2 ,10.0.0.3"})
    assert from_env.backend_options()["hosts"] == "127.0.0.1,10.0.0.2,10.0.0.3"


@pytest.mark.parametrize(("env", "says"), [
    ({"MLX_LM_PARALLEL": "data"}, "MLX_LM_PARALLEL (mlx-lm.parallel) from the environment "
     "is 'data', but expected tensor or pipeline; fix or remove it."),
    ({"MLX_LM_DISTRIBUTED_BACKEND": "nccl"}, "but expected one of ring, jaccl, jaccl-ring, mpi"),
    ({"MLX_LM_HOSTS": "a,,b"}, "but expected host names or addresses separated by commas"),
    ({"MLX_LM_DISTRIBUTED_PORT": "80"}, "but expected a port number between 1024 and 65000"),
])
def test_a_bad_cluster_setting_is_one_sentence(env: dict[str, str], says: str) -> None:
    with pytest.raises(SettingsError, match=None) as caught:
        load(env)
    assert says in str(caught.value)


def test_without_hosts_mlx_lm_runs_as_one_process_exactly_as_before(llama: Path) -> None:
    plan = plan_for({"MLX_LM_MODEL": str(llama)})
    assert list(plan.argv) == [sys.executable, "-m", "mlx_lm", "server", "--model", str(llama),
                               "--host", "127.0.0.1", "--port", "8090"]
    assert plan.description == "" and plan.env == mlx_env()


# -- the launch plan ------------------------------------------------------------------------

def test_the_plan_runs_mlx_launch_under_the_guard_with_a_hostfile(llama: Path) -> None:
    plan = plan_for({"MLX_LM_MODEL": str(llama), "MLX_LM_HOSTS": "127.0.0.1,127.0.0.2",
                     "MLX_LM_DISTRIBUTED_PORT": "40000"})
    argv = list(plan.argv)
    hostfile = argv[argv.index("--hostfile") + 1]
    envs = [f"--env={key}={value}" for key, value in {**mlx_env(), "PYTHONUNBUFFERED": "1"}
            .items()]
    assert argv == [
        sys.executable, "-m", "anyclaude.backends.cluster_guard", "--",
        str(BIN / "mlx.launch"), "--verbose", "--hostfile", hostfile, "--backend", "ring",
        "--starting-port", "40000",
        *[part for env in envs for part in env.split("=", 1)],
        "--python", sys.executable, "--", str(BIN / "mlx_lm.server"), "--model", str(llama),
        "--host", "127.0.0.1", "--port", "8090"]
    assert json.loads(Path(hostfile).read_text()) == {"backend": "ring", "envs": [], "hosts": [
        {"ssh": "127.0.0.1", "ips": ["127.0.0.1"], "rdma": []},
        {"ssh": "127.0.0.2", "ips": ["127.0.0.2"], "rdma": []}]}
    assert plan.description == ("on 2 ranks (127.0.0.1, 127.0.0.2) over ring, tensor parallel "
                                "(the only one llama models support)")
    again = plan_for({"MLX_LM_MODEL": str(llama), "MLX_LM_HOSTS": "127.0.0.1,127.0.0.2",
                      "MLX_LM_DISTRIBUTED_PORT": "40000"})
    assert list(again.argv) == argv, "the same cluster, the same command (keep-alive reuses it)"


def test_pipeline_adds_the_flag_and_says_why(qwen2: Path) -> None:
    both = plan_for({"MLX_LM_MODEL": str(qwen2), "MLX_LM_HOSTS": "127.0.0.1,127.0.0.1"})
    assert "--pipeline" not in both.argv
    assert both.description.endswith("tensor parallel (qwen2 models support tensor and "
                                     "pipeline; MLX_LM_PARALLEL chooses)")
    chosen = plan_for({"MLX_LM_MODEL": str(qwen2), "MLX_LM_HOSTS": "127.0.0.1,127.0.0.1",
                       "MLX_LM_PARALLEL": "pipeline"})
    assert chosen.argv[-1] == "--pipeline"
    assert chosen.description.endswith("pipeline parallel (MLX_LM_PARALLEL)")


def test_the_hosts_python_runs_the_ranks_and_names_the_server_script(
        llama: Path, tmp_path: Path) -> None:
    remote = "/opt/mlx/venv/bin/python3"
    plan = plan_for({"MLX_LM_MODEL": str(llama), "MLX_LM_HOSTS": "127.0.0.1,127.0.0.2",
                     "MLX_LM_HOSTS_PYTHON": remote})
    argv = list(plan.argv)
    assert argv[argv.index("--python") + 1] == remote
    assert "/opt/mlx/venv/bin/mlx_lm.server" in argv
    assert argv[4] == str(BIN / "mlx.launch"), "mlx.launch itself runs here"


def test_the_hosts_python_is_an_absolute_path(llama: Path) -> None:
    with pytest.raises(ClusterError) as caught:
        plan_for({"MLX_LM_MODEL": str(llama), "MLX_LM_HOSTS": "127.0.0.1,127.0.0.2",
                  "MLX_LM_HOSTS_PYTHON": "python3"})
    assert str(caught.value) == ("MLX_LM_HOSTS_PYTHON is 'python3', but the ranks need an "
                                 "absolute path, the same on every host; set it to one (e.g. "
                                 "/Users/you/mlx/bin/python).")


# -- hosts ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("options", "says"), [
    ({"hosts": "127.0.0.1", "hostfile": "h.json"}, "Both MLX_LM_HOSTS and MLX_LM_HOSTFILE are "
     "set; keep one of them."),
    ({"hosts": "192.0.2.10,127.0.0.1"}, "The first host, 192.0.2.10, is not this machine; rank 0 "
     "runs here and serves the model on 127.0.0.1, so list this machine first."),
    ({"hosts": "127.0.0.1,192.0.2.10"}, "This machine is listed first as 127.0.0.1, an address "
     "the other hosts cannot reach; list it by its address on the network that joins them "
     "(its Thunderbolt bridge or Ethernet IP)."),
    ({"hosts": "127.0.0.1,no-such-host.invalid"}, "The host no-such-host.invalid in "
     "MLX_LM_HOSTS has no IPv4 address this machine can find; use its address, or an "
     "mlx.launch hostfile with `ips` (MLX_LM_HOSTFILE)."),
    ({"hosts": "127.0.0.1,127.0.0.2", "distributed_backend": "jaccl"}, "The JACCL backend "
     "needs a hostfile naming each Mac's Thunderbolt RDMA devices; write one with "
     "`mlx.distributed_config --backend jaccl --over thunderbolt --hosts HOST1,HOST2 "
     "--output-hostfile hosts.json` and set MLX_LM_HOSTFILE to it."),
    ({"hostfile": "missing.json"}, "MLX_LM_HOSTFILE names missing.json, which is not a "
     "readable mlx.launch hostfile"),
])
def test_hosts_that_cannot_work_are_one_sentence(options: dict[str, str], says: str) -> None:
    with pytest.raises(ClusterError) as caught:
        mlx_cluster.layout(options)
    assert str(caught.value).startswith(says)


def test_a_user_hostfile_keeps_its_backend_and_devices_and_rank_0_runs_here(
        tmp_path: Path) -> None:
    hostfile = tmp_path / "hosts.json"
    hostfile.write_text(json.dumps({"backend": "jaccl", "envs": ["MLX_METAL_FAST_SYNCH=1"],
                                    "hosts": [
        {"ssh": "localhost", "ips": ["127.0.0.1"], "rdma": [None, "rdma_en3"]},
        {"ssh": "127.0.0.2", "ips": ["127.0.0.2"], "rdma": ["rdma_en3", None]}]}))
    found = mlx_cluster.layout({"hostfile": str(hostfile)})
    assert found.backend == "jaccl" and found.envs == ("MLX_METAL_FAST_SYNCH=1",)
    assert [h.entry() for h in found.hosts] == [
        {"ssh": "127.0.0.1", "ips": ["127.0.0.1"], "rdma": [None, "rdma_en3"]},
        {"ssh": "127.0.0.2", "ips": ["127.0.0.2"], "rdma": ["rdma_en3", None]}]
    assert found.labels == ["127.0.0.1", "127.0.0.2"]
    assert mlx_cluster.layout({"hostfile": str(hostfile),
                               "distributed_backend": "ring"}).backend == "ring"


def test_this_machine_is_known_by_its_names_and_addresses() -> None:
    import socket

    assert mlx_cluster.is_this_machine("127.0.0.1")
    assert mlx_cluster.is_this_machine("me@localhost")
    assert mlx_cluster.is_this_machine(socket.gethostname())
    assert not mlx_cluster.is_this_machine("192.0.2.10")


# -- what mlx-lm can shard ------------------------------------------------------------------

def test_support_is_read_from_the_installed_mlx_lm(llama: Path, qwen2: Path,
                                                   tmp_path: Path) -> None:
    assert mlx_sharding.support(str(llama), sys.executable) == mlx_sharding.Support(
        "llama", tensor=True, pipeline=False, layers=1, indexed=False, heads=(2, 2))
    assert mlx_sharding.support(str(qwen2), sys.executable) == mlx_sharding.Support(
        "qwen2", tensor=True, pipeline=True, layers=3, indexed=True, heads=(4, 4))
    config = tmp_path / "m" / "config.json"
    config.parent.mkdir()
    modes = {}
    for model_type in ("qwen3_moe", "deepseek_v3", "kimi_k2", "mistral", "qwen3", "qwen3_next",
                       "not_a_model"):
        config.write_text(json.dumps({"model_type": model_type}))
        found = mlx_sharding.support(str(config.parent), sys.executable)
        assert found is not None
        modes[model_type] = (found.model_type, found.modes)
    assert modes == {
        "qwen3_moe": ("qwen3_moe", ("tensor", "pipeline")),
        "deepseek_v3": ("deepseek_v3", ("tensor", "pipeline")),
        "kimi_k2": ("deepseek_v3", ("tensor", "pipeline")),  # mlx-lm's own remapping
        "mistral": ("llama", ("tensor",)),
        "qwen3": ("qwen3", ("tensor",)),
        "qwen3_next": ("qwen3_next", ("pipeline",)),
        "not_a_model": ("not_a_model", ()),
    }
    assert mlx_sharding.support("someone/not-downloaded", sys.executable) is None


def test_the_parallel_mode_is_checked_against_the_model(llama: Path, qwen2: Path,
                                                        tmp_path: Path) -> None:
    def choose(setting: str | None, model: Path, ranks: int = 2) -> tuple[str, str]:
        found = mlx_sharding.support(str(model), sys.executable)
        return mlx_cluster.choose_parallel(setting, found, ranks, str(model))

    assert choose(None, llama) == ("tensor", "the only one llama models support")
    assert choose("tensor", qwen2) == ("tensor", "MLX_LM_PARALLEL")
    assert choose("pipeline", qwen2, 3) == ("pipeline", "MLX_LM_PARALLEL")
    with pytest.raises(ClusterError) as caught:
        choose("pipeline", llama)
    assert str(caught.value) == (f"mlx-lm cannot run {llama} with pipeline parallelism (llama "
                                 "models support tensor only); set MLX_LM_PARALLEL=tensor or "
                                 "leave it unset.")
    with pytest.raises(ClusterError, match="has 3 layers, too few for 4 pipeline stages"):
        choose("pipeline", qwen2, 4)
    assert choose(None, qwen2, 3) == (
        "pipeline", "4 attention heads do not split over 3 ranks for tensor parallelism")
    with pytest.raises(ClusterError) as uneven:
        choose("tensor", qwen2, 3)
    assert str(uneven.value) == (f"{qwen2} has 4 attention heads, which do not split over 3 "
                                 "ranks for tensor parallelism; use a number of ranks that "
                                 "divides them, or MLX_LM_PARALLEL=pipeline.")
    with pytest.raises(ClusterError, match=r"has 2 attention heads.*divides them\.$"):
        choose(None, llama, 3)
    unindexed = tmp_path / "unindexed"
    shutil.copytree(qwen2, unindexed)
    (unindexed / INDEX_FILE).unlink()
    with pytest.raises(ClusterError, match=r"has no model\.safetensors\.index\.json"):
        choose("pipeline", unindexed)
    assert mlx_cluster.choose_parallel(None, None, 2, "x/y") == (
        "tensor", "mlx-lm's default; the model's type could not be read yet")
