"""mlx-textgen: an MLX server with multi-slot prompt caches (macOS only in practice).

Quirks (protocol-notes §G.3): streaming with tools loses the tool call, so tool requests
go non-streaming and the proxy streams the result; an assistant turn may not carry both
text and tool calls; one system message only; `reasoning_effort` crashes it. A folder is
served under its base name. Tool calls are constrained by an outlines grammar built from
the tool schemas, which must avoid what outlines cannot compile (`format`, properties
without a type: the `outlines` schema profile). `/v1/models` answers even when every
generation fails, so readiness is a 1-token answer.
"""

from __future__ import annotations

from collections.abc import Mapping

from anyclaude.backends.base import Backend, Dialect, Endpoint, LaunchPlan, Option, Requirement
from anyclaude.backends.mlx_lm import mlx_env
from anyclaude.backends.net import host_port


def _launch(endpoint: Endpoint, options: Mapping[str, str | None]) -> LaunchPlan | None:
    if not endpoint.model:
        return None
    _, port = host_port(endpoint.url)
    exe = options.get("executable") or "mlx_textgen"
    argv = [exe, "serve", "-m", endpoint.model, "--host", "127.0.0.1", "-p", str(port)]
    return LaunchPlan(argv=argv, env=mlx_env())


BACKEND = Backend(
    name="mlx-textgen",
    description="mlx-textgen (Apple Silicon)",
    protocol="openai",
    url_setting="MLX_TEXTGEN_URL",
    model_setting="MLX_TEXTGEN_MODEL",
    default_url="http://localhost:5001/v1",
    dialect=Dialect(
        model_field="configured",
        content_parts="text",
        tool_calls="native",
        stream_with_tools=False,
        text_with_tool_calls=False,
        schema_profile="outlines",
        model_name="folder-name",
        include_usage=False,
        send_top_k=True,
    ),
    health_path="/models",
    confirm_with_generation=True,
    start=_launch,
    start_hint="start it with `mlx_textgen serve -m MODEL -p PORT`, "
    "or set MLX_TEXTGEN_MODEL so anyclaude starts it",
    options=(
        Option("executable", "MLX_TEXTGEN_EXECUTABLE", None,
               "The mlx_textgen command (default: found on PATH)."),
    ),
    requirement=Requirement("executable", "mlx_textgen", "executable",
                            "Install it: `pip install mlx-textgen`, or set "
                            "MLX_TEXTGEN_EXECUTABLE to its path."),
    needs_mlx=True,
    model_switching="fixed",
)
