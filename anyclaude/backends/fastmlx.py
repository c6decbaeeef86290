"""FastMLX (`fastmlx`): loads the model each request names.

Dialect (fixtures `fastmlx-0.2.1`): OpenAI `tools` are rejected (422, it wants a flat shape
of its own whose template is missing from the package), so the tools are described in the
prompt and calls are read from the text. Message content must be a string: images become a
text placeholder. No usage anywhere and no `finish_reason` when streaming, but one token per
chunk, which is how a cut answer is told apart. `/v1/models` answers `{"models": [...]}`;
there is no `/health`, so readiness is a 1-token answer.
"""

from __future__ import annotations

from collections.abc import Mapping

from anyclaude.backends.base import Backend, Dialect, Endpoint, LaunchPlan, Option, Requirement
from anyclaude.backends.mlx_launch import command, plan, port_of


def _launch(endpoint: Endpoint, options: Mapping[str, str | None]) -> LaunchPlan | None:
    return plan([command(options, "fastmlx"), "--host", "127.0.0.1",
                 "--port", port_of(endpoint), "--workers", "1"])


BACKEND = Backend(
    name="fastmlx",
    description="FastMLX (Apple Silicon; CPU build on Linux), tool calls as text",
    protocol="openai",
    url_setting="FASTMLX_URL",
    model_setting="FASTMLX_MODEL",
    default_url="http://localhost:8000/v1",
    dialect=Dialect(
        model_field="configured",
        content_parts="text",
        tool_calls="text",
        send_tools=False,
        tool_choice=False,
        response_format=False,
        include_usage=False,
        send_top_k=False,
        chunk_is_token=True,
        schema_profile="minimal",
    ),
    health_path="/models",
    confirm_with_generation=True,
    model_required=True,
    start=_launch,
    start_hint="start it with `fastmlx --port PORT` and set FASTMLX_MODEL to a model folder or "
    "Hugging Face id",
    options=(
        Option("executable", "FASTMLX_EXECUTABLE", None,
               "The fastmlx command (default: found on PATH)."),
    ),
    requirement=Requirement("executable", "fastmlx", "executable",
                            "Install it: `pip install fastmlx` (on Linux with mlx-lm 0.19), or "
                            "set FASTMLX_EXECUTABLE to its path."),
    needs_mlx=True,
    model_switching="reload",
)
