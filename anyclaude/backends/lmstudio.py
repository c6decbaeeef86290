"""LM Studio's OpenAI-compatible server, managed through its `lms` CLI.

Quirks (protocol-notes §G.2): tool-call arguments arrive as fragments; its grammar compiler
rejects `pattern`, `format` and length limits; a too-long prompt comes back as HTTP 500.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping

from anyclaude.backends.base import Backend, Dialect, Endpoint, LaunchPlan, Option, Requirement
from anyclaude.backends.net import host_port


def _launch(endpoint: Endpoint, options: Mapping[str, str | None]) -> LaunchPlan | None:
    lms = options.get("lms") or shutil.which("lms")
    if not lms:
        return None
    _, port = host_port(endpoint.url)
    setup: list[list[str]] = [[lms, "server", "start", "--port", str(port)]]
    if endpoint.model:
        setup.append([lms, "load", endpoint.model, "--yes"])
    return LaunchPlan(setup_commands=setup, stop_commands=[[lms, "server", "stop"]])


BACKEND = Backend(
    name="lmstudio",
    description="LM Studio's local server",
    protocol="openai",
    url_setting="LMSTUDIO_URL",
    model_setting="LMSTUDIO_MODEL",
    default_url="http://localhost:1234/v1",
    dialect=Dialect(
        model_field="configured",
        content_parts="vision",
        tool_calls="native",
        schema_profile="grammar",
    ),
    health_path="/models",
    start=_launch,
    start_hint="open LM Studio and start its server (Developer tab), or install its CLI with "
    "`npx lmstudio install-cli` so anyclaude can run `lms server start`",
    options=(Option("lms", "LMSTUDIO_LMS", None, "The `lms` CLI (default: found on PATH)."),),
    requirement=Requirement("executable", "lms", "lms",
                            "Install LM Studio's CLI (`npx lmstudio install-cli`), or start its "
                            "server in the app yourself.", bundled="~/.lmstudio/bin/lms"),
    reload_hint="`lms load {model} --context-length {size}`",
    model_files=False,
)
