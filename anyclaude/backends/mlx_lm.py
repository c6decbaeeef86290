"""mlx-lm's `mlx_lm server`: fast on Apple Silicon, native tool calls, a prefix (KV) cache.

Quirks (protocol-notes §G.1): any `model` other than the exact `--model` string makes it
unload the loaded model and try the Hub, so `model` is omitted; list content must be text
only; `/health` answers before the model is loaded; it ignores `tool_choice`.
"""

from __future__ import annotations

import platform
import sys
from collections.abc import Mapping
from pathlib import Path

from anyclaude.backends import mlx_cluster
from anyclaude.backends.base import Backend, Dialect, Endpoint, LaunchPlan, Option, Requirement
from anyclaude.backends.net import host_port


def openblas_path(machine: str | None = None, lib_root: Path = Path("/usr/lib")) -> Path:
    """Debian's `libopenblas0-pthread` for this architecture: preloaded, it makes mlx's CPU
    build ~50x faster on Linux."""
    name = (machine or platform.machine()).lower()
    arch = {"amd64": "x86_64", "arm64": "aarch64"}.get(name, name)
    return lib_root / f"{arch}-linux-gnu" / "openblas-pthread" / "libopenblas.so.0"


def mlx_env() -> dict[str, str]:
    """The environment of every MLX server anyclaude starts: OpenBLAS preloaded on Linux
    when it is installed (doctor reports that preload)."""
    openblas = openblas_path()
    if sys.platform.startswith("linux") and openblas.exists():
        return {"LD_PRELOAD": str(openblas)}
    return {}

def _launch(endpoint: Endpoint, options: Mapping[str, str | None]) -> LaunchPlan | None:
    if not endpoint.model:
        return None
    _, port = host_port(endpoint.url)
    if mlx_cluster.configured(options):
        return mlx_cluster.plan(endpoint, options, port, mlx_env())
    python = options.get("python") or sys.executable
    argv = [python, "-m", "mlx_lm", "server", "--model", endpoint.model,
            "--host", "127.0.0.1", "--port", str(port)]
    return LaunchPlan(argv=argv, env=mlx_env())


BACKEND = Backend(
    name="mlx-lm",
    description="mlx-lm's server (Apple Silicon; CPU build on Linux)",
    protocol="openai",
    url_setting="MLX_LM_URL",
    model_setting="MLX_LM_MODEL",
    default_url="http://localhost:8081/v1",
    dialect=Dialect(
        model_field="omit",
        content_parts="text",
        tool_calls="native",
        schema_profile="minimal",
        thinking_template_kwarg=True,
        tool_choice=False,
        response_format=False,
    ),
    health_path="/health",
    health_is_absolute=True,
    confirm_with_generation=True,
    start=_launch,
    start_hint="start it with `python -m mlx_lm server --model MODEL --port PORT`, "
    "or set MLX_LM_MODEL so anyclaude starts it",
    options=(
        Option("python", "MLX_LM_PYTHON", None,
               "Python interpreter that has mlx-lm installed (default: anyclaude's own)."),
        Option("hosts", "MLX_LM_HOSTS", None,
               "Run the model across these machines with mlx.launch, this one first (a TOML "
               "list, or comma-separated); unset: one process here.",
               mlx_cluster.parse_hosts),
        Option("hostfile", "MLX_LM_HOSTFILE", None,
               "An mlx.launch hostfile (from `mlx.distributed_config`) instead of hosts."),
        Option("parallel", "MLX_LM_PARALLEL", None,
               "How a cluster shards the model: tensor or pipeline (default: tensor when "
               "the model supports it, else pipeline).", mlx_cluster.parse_parallel),
        Option("distributed_backend", "MLX_LM_DISTRIBUTED_BACKEND", None,
               "How the ranks talk: ring (TCP, the default), jaccl (Thunderbolt RDMA), "
               "jaccl-ring or mpi; default: the hostfile's, else ring.",
               mlx_cluster.parse_backend),
        Option("hosts_python", "MLX_LM_HOSTS_PYTHON", None,
               "The Python with mlx-lm that runs the ranks, at the same path on every host "
               "(default: MLX_LM_PYTHON, else anyclaude's own)."),
        Option("distributed_port", "MLX_LM_DISTRIBUTED_PORT", None,
               "First port the ranks listen on to join (default: mlx.launch's 32323).",
               mlx_cluster.parse_port),
    ),
    requirement=Requirement(
        "python-module", "mlx_lm, mlx.core", "python",
        "Install it: `{python} -m pip install " + (
            '"mlx-lm[cpu]"' if sys.platform.startswith("linux") else "mlx-lm") +
        "`, or set MLX_LM_PYTHON to a Python that has it."),
    needs_mlx=True,
    model_switching="reload",
)
