"""mlx-lm across several machines, with MLX's own distributed runtime.

`mlx.launch` starts one rank of `mlx_lm.server` per host (ssh for the others), joined by
the ring (TCP), JACCL (Thunderbolt RDMA) or MPI backend; mlx-lm shards the model over
them (tensor parallel, or pipeline stages with `--pipeline`) and only rank 0 serves HTTP.

Rank 0 is always this machine: the server has no authentication, so it binds 127.0.0.1
and the proxy talks to it there. anyclaude writes the hostfile mlx.launch reads (from
`hosts`, or rewriting the user's own `hostfile`) so that rank 0 runs here without ssh
while the other ranks reach it at its network address. The launch runs under
`cluster_guard`, which makes every way out stop every rank (see there).
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import shutil
import socket
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

from anyclaude.backends import mlx_sharding
from anyclaude.backends.base import Endpoint, LaunchPlan
from anyclaude.errors import UserError

LOCAL_SSH = "127.0.0.1"
"""mlx.launch runs a host spelled exactly so on this machine, without ssh."""
DEFAULT_PORT = 32323
"""mlx.launch's own `--starting-port`: the ring listens there (+1 per rank), JACCL's
coordinator too."""
BACKENDS = ("ring", "jaccl", "jaccl-ring", "mpi")
PARALLEL = mlx_sharding.MODES
GUARD_MODULE = "anyclaude.backends.cluster_guard"
JACCL_SETUP = ("mlx.distributed_config --backend jaccl --over thunderbolt --hosts HOST1,HOST2 "
               "--output-hostfile hosts.json")


class ClusterError(UserError):
    """The cluster settings cannot work; the message is one sentence for the user."""


# -- settings -------------------------------------------------------------------------------

def parse_hosts(text: str) -> str:
    """`a, b,c` or a TOML list (arriving comma-joined) as `a,b,c`."""
    names = [name.strip() for name in text.split(",")]
    if not names or any(not name or any(c.isspace() for c in name) for name in names):
        raise ValueError("expected host names or addresses separated by commas")
    return ",".join(names)


def parse_parallel(text: str) -> str:
    if text not in PARALLEL:
        raise ValueError("expected tensor or pipeline")
    return text


def parse_backend(text: str) -> str:
    if text not in BACKENDS:
        raise ValueError("expected one of " + ", ".join(BACKENDS))
    return text


def parse_port(text: str) -> str:
    value = int(text)
    if not 1024 <= value <= 65000:
        raise ValueError("expected a port number between 1024 and 65000")
    return str(value)


def configured(options: Mapping[str, str | None]) -> bool:
    """A cluster is asked for: without `hosts` or `hostfile`, mlx-lm runs as one process."""
    return bool(options.get("hosts") or options.get("hostfile"))


# -- hosts ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Host:
    """One rank's machine, as mlx.launch's hostfile names it."""

    ssh: str
    ips: tuple[str, ...] = ()
    rdma: tuple[object, ...] = ()

    @property
    def label(self) -> str:
        """How messages name it: the address others reach it at, for rank 0 too."""
        return self.ips[0] if self.ssh == LOCAL_SSH and self.ips else self.ssh

    def entry(self) -> dict[str, object]:
        return {"ssh": self.ssh, "ips": list(self.ips), "rdma": list(self.rdma)}


@dataclass(frozen=True)
class Layout:
    """The hosts in rank order and how they talk."""

    hosts: tuple[Host, ...]
    backend: str
    envs: tuple[str, ...] = ()

    @property
    def labels(self) -> list[str]:
        return [host.label for host in self.hosts]

    def hostfile_text(self) -> str:
        return json.dumps({"backend": self.backend, "envs": list(self.envs),
                           "hosts": [host.entry() for host in self.hosts]}, indent=1)


def _bare(name: str) -> str:
    return name.rpartition("@")[2]


def address_of(name: str) -> str | None:
    """The IPv4 address a host name resolves to (itself for an address)."""
    bare = _bare(name)
    try:
        return str(ipaddress.ip_address(bare))
    except ValueError:
        pass
    try:
        return str(socket.getaddrinfo(bare, None, socket.AF_INET)[0][4][0])
    except (OSError, IndexError):
        return None


def is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def is_this_machine(name: str) -> bool:
    """The host is this machine: a loopback address, this machine's name, or an address of
    one of its interfaces."""
    bare = _bare(name)
    if bare == "localhost" or bare in (socket.gethostname(), socket.gethostname().split(".")[0]):
        return True
    address = address_of(bare)
    if address is None:
        return False
    if is_loopback(address):
        return True
    return any(a.address == address for found in psutil.net_if_addrs().values() for a in found)


def read_hostfile(path: Path) -> tuple[list[Host], str, list[str]]:
    """mlx.launch's JSON hostfile (a list of hosts, or `{"backend", "envs", "hosts"}`)."""
    try:
        data = json.loads(path.expanduser().read_text(encoding="utf-8"))
        entries = data["hosts"] if isinstance(data, dict) else data
        hosts = [Host(str(e["ssh"]), tuple(e.get("ips") or ()), tuple(e.get("rdma") or ()))
                 for e in entries]
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise ClusterError(f"MLX_LM_HOSTFILE names {path}, which is not a readable "
                           f"mlx.launch hostfile ({exc}); fix it, or list the hosts in "
                           "MLX_LM_HOSTS instead.") from exc
    if not hosts:
        raise ClusterError(f"The hostfile {path} lists no hosts; add them, or set "
                           "MLX_LM_HOSTS instead.")
    backend = str(data.get("backend") or "") if isinstance(data, dict) else ""
    envs = [str(e) for e in data.get("envs") or []] if isinstance(data, dict) else []
    return hosts, backend, envs


def _from_names(names: Sequence[str], backend: str) -> list[Host]:
    if backend.startswith("jaccl"):
        raise ClusterError("The JACCL backend needs a hostfile naming each Mac's Thunderbolt "
                           f"RDMA devices; write one with `{JACCL_SETUP}` and set "
                           "MLX_LM_HOSTFILE to it.")
    hosts = []
    for name in names:
        address = address_of(name)
        if address is None and backend != "mpi":
            raise ClusterError(f"The host {name} in MLX_LM_HOSTS has no IPv4 address this "
                               "machine can find; use its address, or an mlx.launch hostfile "
                               "with `ips` (MLX_LM_HOSTFILE).")
        hosts.append(Host(name, (address,) if address else ()))
    return hosts


def layout(options: Mapping[str, str | None]) -> Layout:
    """The hosts from `hosts` or `hostfile`, rank 0 made local; ClusterError when they
    cannot work (rank 0 elsewhere, an address the others cannot reach...)."""
    names, hostfile = options.get("hosts"), options.get("hostfile")
    if names and hostfile:
        raise ClusterError("Both MLX_LM_HOSTS and MLX_LM_HOSTFILE are set; keep one of them.")
    chosen = options.get("distributed_backend")
    if hostfile:
        hosts, own, envs = read_hostfile(Path(hostfile))
        backend = chosen or own or "ring"
    else:
        backend, envs = chosen or "ring", []
        hosts = _from_names((names or "").split(","), backend)
    first = hosts[0]
    if not is_this_machine(first.ssh):
        raise ClusterError(f"The first host, {first.ssh}, is not this machine; rank 0 runs "
                           "here and serves the model on 127.0.0.1, so list this machine "
                           "first.")
    ips = first.ips or ((address_of(first.ssh) or LOCAL_SSH),)
    hosts[0] = Host(LOCAL_SSH, tuple(ips), first.rdma)
    others = [ip for host in hosts[1:] for ip in host.ips]
    if is_loopback(ips[0]) and any(not is_loopback(ip) for ip in others):
        raise ClusterError(f"This machine is listed first as {first.ssh}, an address the "
                           "other hosts cannot reach; list it by its address on the network "
                           "that joins them (its Thunderbolt bridge or Ethernet IP).")
    if backend == "ring" and any(not host.ips for host in hosts):
        raise ClusterError("The ring backend needs every host's IP address; add `ips` to "
                           "the hostfile's entries.")
    return Layout(tuple(hosts), backend, tuple(envs))


def write_hostfile(plan: Layout) -> Path:
    """The hostfile mlx.launch reads, in this user's private folder, named by its content
    (so the same cluster gives the same command line, which keep-alive compares)."""
    from anyclaude.keep.state import private_dir

    text = plan.hostfile_text()
    path = private_dir() / f"hosts-{hashlib.sha256(text.encode()).hexdigest()[:16]}.json"
    if not path.is_file() or path.read_text(encoding="utf-8") != text:
        path.write_text(text, encoding="utf-8")
    return path


# -- the parallel mode ----------------------------------------------------------------------

def choose_parallel(setting: str | None, found: mlx_sharding.Support | None,
                    ranks: int, model: str) -> tuple[str, str]:
    """The mode to run and why, for the start-up line: the setting, else the first mode the
    model supports that fits `ranks` (tensor before pipeline, as mlx-lm itself defaults);
    ClusterError when it cannot work."""
    if found is None:
        return setting or "tensor", "MLX_LM_PARALLEL" if setting else \
            "mlx-lm's default; the model's type could not be read yet"
    kind = f"{found.model_type} models"
    if not found.modes:
        raise ClusterError(f"mlx-lm cannot shard {model} ({kind} support neither tensor nor "
                           "pipeline parallelism); run it on one machine (unset "
                           "MLX_LM_HOSTS) or pick a model mlx-lm can shard.")
    if setting:
        if not found.supports(setting):
            other = found.modes[0]
            raise ClusterError(f"mlx-lm cannot run {model} with {setting} parallelism ({kind} "
                               f"support {other} only); set MLX_LM_PARALLEL={other} or leave "
                               "it unset.")
        if why := _misfit(setting, found, ranks, model):
            raise ClusterError(why)
        return setting, "MLX_LM_PARALLEL"
    misfits = {mode: _misfit(mode, found, ranks, model) for mode in found.modes}
    fitting = [mode for mode, why in misfits.items() if why is None]
    if not fitting:
        raise ClusterError(next(why for why in misfits.values() if why))
    if len(found.modes) == 1:
        return fitting[0], f"the only one {kind} support"
    if fitting[0] != found.modes[0]:
        heads = next(count for count in found.heads if count % ranks)
        return fitting[0], f"{heads} attention heads do not split over {ranks} ranks for " \
            "tensor parallelism"
    return fitting[0], f"{kind} support tensor and pipeline; MLX_LM_PARALLEL chooses"


def _misfit(mode: str, found: mlx_sharding.Support, ranks: int, model: str) -> str | None:
    """Why `mode` cannot run this model on `ranks` ranks (a sentence), or None."""
    if mode == "tensor":
        uneven = [count for count in found.heads if count % ranks]
        if uneven:
            return (f"{model} has {uneven[0]} attention heads, which do not split over {ranks} "
                    "ranks for tensor parallelism; use a number of ranks that divides them" +
                    (", or MLX_LM_PARALLEL=pipeline." if found.pipeline else "."))
        return None
    if found.layers is not None and found.layers < ranks:
        return (f"{model} has {found.layers} layers, too few for {ranks} pipeline stages; use "
                "fewer hosts or tensor parallelism.")
    if not found.indexed and Path(model).expanduser().is_dir():
        return (f"{model} has no model.safetensors.index.json, which mlx-lm's pipelining "
                "reads; use tensor parallelism, or re-save the model with `mlx_lm.convert`.")
    return None


# -- the launch plan ------------------------------------------------------------------------

def pythons(options: Mapping[str, str | None]) -> tuple[str, str]:
    """The Python that runs mlx.launch here, and the one that runs the ranks: an absolute
    path, the same on every host (mlx.launch passes one path to all of them)."""
    configured = options.get("python") or sys.executable
    local = shutil.which(configured) or configured
    remote = options.get("hosts_python") or local
    if not Path(remote).is_absolute():
        raise ClusterError(f"MLX_LM_HOSTS_PYTHON is {remote!r}, but the ranks need an absolute "
                           "path, the same on every host; set it to one (e.g. "
                           "/Users/you/mlx/bin/python).")
    return local, remote


def launcher(python: str) -> str:
    """mlx.launch, installed next to the Python that has mlx."""
    found = Path(python).parent / "mlx.launch"
    if not found.is_file():
        raise ClusterError(f"mlx.launch is not next to {python}; install mlx-lm in that "
                           "Python, or point MLX_LM_PYTHON at one that has it.")
    return str(found)


def plan(endpoint: Endpoint, options: Mapping[str, str | None], port: int,
         env: Mapping[str, str]) -> LaunchPlan:
    """`mlx.launch` of `mlx_lm.server` on every host, under the guard."""
    assert endpoint.model
    local, remote = pythons(options)
    hosts = layout(options)
    found = mlx_sharding.support(endpoint.model, local)
    parallel, why = choose_parallel(options.get("parallel"), found, len(hosts.hosts),
                                    endpoint.model)
    argv = [sys.executable, "-m", GUARD_MODULE, "--", launcher(local), "--verbose",
            "--hostfile", str(write_hostfile(hosts)), "--backend", hosts.backend]
    if options.get("distributed_port"):
        argv += ["--starting-port", str(options["distributed_port"])]
    for key, value in {**env, "PYTHONUNBUFFERED": "1"}.items():
        argv += ["--env", f"{key}={value}"]
    argv += ["--python", remote, "--", str(Path(remote).parent / "mlx_lm.server"),
             "--model", endpoint.model, "--host", "127.0.0.1", "--port", str(port)]
    if parallel == "pipeline":
        argv.append("--pipeline")
    ranks = len(hosts.hosts)
    description = (f"on {ranks} ranks ({', '.join(hosts.labels)}) over {hosts.backend}, "
                   f"{parallel} parallel ({why})")
    return LaunchPlan(argv=argv, env=env, description=description)
