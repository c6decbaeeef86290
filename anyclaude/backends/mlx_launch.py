"""What every MLX server anyclaude starts has in common: the environment it runs in
(`mlx_lm.mlx_env`: OpenBLAS preloaded on Linux, ~50x faster float32 matmul with mlx's CPU
build) and how its command is found."""

from __future__ import annotations

from collections.abc import Mapping

from anyclaude.backends.base import Endpoint, LaunchPlan
from anyclaude.backends.mlx_lm import mlx_env
from anyclaude.backends.net import host_port


def port_of(endpoint: Endpoint) -> str:
    return str(host_port(endpoint.url)[1])


def plan(argv: list[str]) -> LaunchPlan:
    return LaunchPlan(argv=argv, env=mlx_env())


def command(options: Mapping[str, str | None], default: str) -> str:
    """The server's command: the `executable` option, else its usual name on PATH."""
    return options.get("executable") or default
