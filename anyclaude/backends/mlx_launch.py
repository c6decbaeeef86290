"""What every MLX server anyclaude starts has in common: the environment it runs in and
how its command is found.

On Linux, mlx's CPU build ships a slow reference BLAS; Debian's OpenBLAS, preloaded, makes
float32 matmul ~50x faster. Doctor reports that preload, so every MLX launch plan applies it.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping

from anyclaude.backends.base import Endpoint, LaunchPlan
from anyclaude.backends.mlx_lm import openblas_path
from anyclaude.backends.net import host_port


def mlx_env() -> dict[str, str]:
    """`LD_PRELOAD` of OpenBLAS on Linux when it is installed, else nothing."""
    openblas = openblas_path()
    if sys.platform.startswith("linux") and openblas.exists():
        return {"LD_PRELOAD": str(openblas)}
    return {}


def port_of(endpoint: Endpoint) -> str:
    return str(host_port(endpoint.url)[1])


def plan(argv: list[str]) -> LaunchPlan:
    return LaunchPlan(argv=argv, env=mlx_env())


def command(options: Mapping[str, str | None], default: str) -> str:
    """The server's command: the `executable` option, else its usual name on PATH."""
    return options.get("executable") or default
