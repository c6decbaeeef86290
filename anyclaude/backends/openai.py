"""Any OpenAI-compatible server (vLLM, SGLang, llama.cpp, a remote cluster); never started.

Defaults suit vLLM and llama.cpp: native tool calls, and the `grammar` schema profile so
GBNF-based servers accept Claude Code's tool schemas.
"""

from __future__ import annotations

from anyclaude.backends.base import Backend, Dialect

BACKEND = Backend(
    name="openai",
    description="any OpenAI-compatible server (vLLM, SGLang, llama.cpp, remote)",
    protocol="openai",
    url_setting="ANYCLAUDE_OPENAI_URL",
    model_setting="ANYCLAUDE_OPENAI_MODEL",
    key_setting="ANYCLAUDE_OPENAI_KEY",
    default_url="http://localhost:8000/v1",
    dialect=Dialect(
        model_field="configured",
        content_parts="vision",
        tool_calls="native",
        schema_profile="grammar",
    ),
    health_path="/models",
    start_hint="start your server (e.g. `vllm serve MODEL`) and set ANYCLAUDE_OPENAI_URL to its "
    "base URL ending in /v1",
    model_files=False,
)
