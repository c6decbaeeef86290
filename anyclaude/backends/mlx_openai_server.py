"""mlx-openai-server (`mlx-openai-server launch`): mlx-lm and mlx-vlm behind FastAPI.

Dialect (fixtures `mlx-openai-server-1.7.1`): tool calls come back as OpenAI `tool_calls`
only when it runs with `--enable-auto-tool-choice --tool-call-parser NAME` (without them the
`<tool_call>` text lands in `content`), so anyclaude starts it with both. `model` is not
checked. Usage is always reported. `max_tokens` reached says `stop`, with
`completion_tokens == max_tokens` (the general rule turns that into `max_tokens`). An `lm`
model ignores image parts silently, so images become a text placeholder. Errors are
FastAPI's 422 `{"detail": [...]}` and 500 `{"detail": {"error": {...}}}`.
"""

from __future__ import annotations

from collections.abc import Mapping

from anyclaude.backends.base import Backend, Dialect, Endpoint, LaunchPlan, Option, Requirement
from anyclaude.backends.mlx_launch import command, plan, port_of


def _launch(endpoint: Endpoint, options: Mapping[str, str | None]) -> LaunchPlan | None:
    if not endpoint.model:
        return None
    parser = options.get("tool_parser") or "hermes"
    return plan([command(options, "mlx-openai-server"), "launch",
                 "--model-path", endpoint.model, "--model-type", "lm",
                 "--enable-auto-tool-choice", "--tool-call-parser", parser,
                 "--host", "127.0.0.1", "--port", port_of(endpoint), "--no-log-file"])


BACKEND = Backend(
    name="mlx-openai-server",
    description="mlx-openai-server (Apple Silicon; CPU build on Linux)",
    protocol="openai",
    url_setting="MLX_OPENAI_SERVER_URL",
    model_setting="MLX_OPENAI_SERVER_MODEL",
    default_url="http://localhost:8000/v1",
    dialect=Dialect(
        model_field="configured",
        content_parts="text",
        tool_calls="native",
        schema_profile="minimal",
    ),
    health_path="/health",
    health_is_absolute=True,
    confirm_with_generation=True,
    start=_launch,
    start_hint="start it with `mlx-openai-server launch --model-path MODEL --model-type lm "
    "--enable-auto-tool-choice --tool-call-parser hermes`, or set MLX_OPENAI_SERVER_MODEL so "
    "anyclaude starts it",
    options=(
        Option("executable", "MLX_OPENAI_SERVER_EXECUTABLE", None,
               "The mlx-openai-server command (default: found on PATH)."),
        Option("tool_parser", "MLX_OPENAI_SERVER_TOOL_PARSER", "hermes",
               "Its --tool-call-parser for the model family (hermes, qwen3, glm4_moe, ...)."),
    ),
    requirement=Requirement("executable", "mlx-openai-server", "executable",
                            "Install it: `pip install mlx-openai-server`, or set "
                            "MLX_OPENAI_SERVER_EXECUTABLE to its path."),
    needs_mlx=True,
    model_switching="fixed",
)
