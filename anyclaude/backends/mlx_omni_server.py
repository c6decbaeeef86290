"""MLX-Omni-Server (`mlx-omni-server`): loads the model each request names.

Dialect (fixtures `mlx-omni-server-0.5.3`): no model flag, so the model setting (a Hub id or
a local folder's path) goes in every request, and a request without one fails 422; anyclaude
warns at start when it is not set. `/v1/models` lists only Hugging Face cache models
(`data: []` for a folder) and there is no `/health`, so readiness is a 1-token answer.
Image parts get 422: images become a text placeholder. It stops one token short of
`max_tokens` and says `stop`. Streaming usage only with `include_usage`.
"""

from __future__ import annotations

from collections.abc import Mapping

from anyclaude.backends.base import Backend, Dialect, Endpoint, LaunchPlan, Option, Requirement
from anyclaude.backends.mlx_launch import command, plan, port_of


def _launch(endpoint: Endpoint, options: Mapping[str, str | None]) -> LaunchPlan | None:
    return plan([command(options, "mlx-omni-server"),
                 "--host", "127.0.0.1", "--port", port_of(endpoint)])


BACKEND = Backend(
    name="mlx-omni-server",
    description="MLX-Omni-Server (Apple Silicon; CPU build on Linux)",
    protocol="openai",
    url_setting="MLX_OMNI_SERVER_URL",
    model_setting="MLX_OMNI_SERVER_MODEL",
    default_url="http://localhost:10240/v1",
    dialect=Dialect(
        model_field="configured",
        content_parts="text",
        tool_calls="native",
        schema_profile="minimal",
        stops_short_by=1,
    ),
    health_path="/models",
    confirm_with_generation=True,
    model_required=True,
    start=_launch,
    start_hint="start it with `mlx-omni-server --port PORT` and set MLX_OMNI_SERVER_MODEL to a "
    "model folder or Hugging Face id",
    options=(
        Option("executable", "MLX_OMNI_SERVER_EXECUTABLE", None,
               "The mlx-omni-server command (default: found on PATH)."),
    ),
    requirement=Requirement("executable", "mlx-omni-server", "executable",
                            "Install it: `pip install mlx-omni-server`, or set "
                            "MLX_OMNI_SERVER_EXECUTABLE to its path."),
    needs_mlx=True,
    model_switching="reload",
)
