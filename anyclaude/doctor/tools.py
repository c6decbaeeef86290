"""Can the server take Claude Code's tools, and do its calls come back in a shape anyclaude
reads? One small request with one tool, translated exactly as the proxy would for this mode.

It tells apart what a listing or a 1-token answer cannot: a server that rejects OpenAI
`tools` (FastMLX: 422 `body.tools.0.name: Field required`), one that prints calls as
`<tool_call>` text while the mode expects native calls (mlx-openai-server without its
tool-parser flags), and one whose every generation fails.
"""

from __future__ import annotations

import json
from typing import Any, cast

import aiohttp

from anyclaude.backends.base import Backend, Endpoint, ToolCalls
from anyclaude.doctor.result import Context, Result, fail, ok, warn
from anyclaude.doctor.server import shared_probe
from anyclaude.translate.errors import backend_message
from anyclaude.translate.protocol import MessagesRequest
from anyclaude.translate.request import to_openai
from anyclaude.translate.textcalls import CALL_OPEN

NAME = "tool-calls"
TOOL_TIMEOUT_S = 8.0
"""Inside doctor's per-check limit, after the shared 2 s probe."""
PROBE_TOOL = {"name": "get_time", "description": "Tell the current time.",
              "input_schema": {"type": "object", "properties": {
                  "zone": {"type": "string", "description": "IANA time zone"}},
                  "required": ["zone"]}}
PROBE_REQUEST = cast(MessagesRequest, {
    "model": "doctor", "max_tokens": 64, "tools": [PROBE_TOOL],
    "messages": [{"role": "user", "content": "What time is it in Europe/Paris? Use get_time."}]})


def probe_body(backend: Backend, endpoint: Endpoint, tool_calls: str | None) -> dict[str, Any]:
    """The request the proxy would send for a one-tool question in this mode."""
    mode: ToolCalls | None = "text" if tool_calls == "text" else None
    body = to_openai(PROBE_REQUEST, backend.dialect, model=endpoint.model, tool_calls=mode).body
    return dict(body)


async def tool_check(ctx: Context) -> Result | None:
    settings = ctx.settings
    backend, endpoint = settings.backend, settings.endpoint
    if backend.protocol != "openai" or not backend.local:
        return None
    found = await shared_probe(ctx)
    generation = found.generation
    if not found.up or (generation is not None and generation.status != 200):
        return None  # the backend-server row says what is wrong
    if backend.dialect.model_field == "configured" and not endpoint.model and \
            backend.model_setting:
        return None  # ditto: the model setting is missing
    body = probe_body(backend, endpoint, settings.tool_calls)
    headers = {"Authorization": f"Bearer {endpoint.api_key}"} if endpoint.api_key else {}
    url = endpoint.url.rstrip("/") + "/chat/completions"
    try:
        async with aiohttp.ClientSession(headers=headers) as session, session.post(
                url, json=body, timeout=aiohttp.ClientTimeout(total=TOOL_TIMEOUT_S),
                allow_redirects=False) as resp:
            status, raw = resp.status, await resp.read()
            content_type = resp.headers.get("Content-Type", "")
    except TimeoutError:
        return warn(NAME, f"no answer to a one-tool request within {TOOL_TIMEOUT_S:g} s "
                    "(a large model may still be loading)", "Run `anyclaude doctor` again "
                    "once the model has loaded.")
    except (aiohttp.ClientError, OSError) as exc:
        return warn(NAME, f"a one-tool request failed ({type(exc).__name__})",
                    "Run `anyclaude doctor` again; check the server's log if it persists.")
    text_mode = not backend.dialect.send_tools or \
        (settings.tool_calls or backend.dialect.tool_calls) == "text"
    return judge_tools(status, raw, content_type, backend, text_mode=text_mode)


def judge_tools(status: int, raw: bytes, content_type: str, backend: Backend, *,
                text_mode: bool) -> Result:
    """The verdict on the server's answer to the one-tool request."""
    if status != 200:
        said = backend_message(raw, content_type)
        if status in (400, 422) and "tools" in said:
            return fail(NAME, f"{backend.name} rejects OpenAI tools (HTTP {status}: {said})",
                        "Use a mode that describes tools in the prompt (e.g. fastmlx), or a "
                        "server that takes OpenAI `tools`.")
        return fail(NAME, f"{backend.name} failed a one-tool request (HTTP {status}: "
                    f"{said[:160]})", "Check the server's log: Claude Code's requests will fail "
                    "the same way.")
    message = _message(raw)
    if message.get("tool_calls"):
        return ok(NAME, f"{backend.name} answers tool calls as OpenAI tool_calls")
    content = message.get("content")
    printed = isinstance(content, str) and CALL_OPEN in content
    if printed and not text_mode:
        return fail(NAME, f"{backend.name} printed its tool call as <tool_call> text instead "
                    "of returning tool_calls, so Claude Code would never run it",
                    "Enable the server's tool-call parser (mlx-openai-server: "
                    "--enable-auto-tool-choice --tool-call-parser hermes), or set "
                    "ANYCLAUDE_TOOL_CALLS=text.")
    if printed:
        return ok(NAME, f"{backend.name} prints tool calls as text, which anyclaude reads")
    return ok(NAME, f"{backend.name} accepts tools (the model answered without calling one)")


def _message(raw: bytes) -> dict[str, Any]:
    try:
        data = json.loads(raw)
        message = data["choices"][0]["message"]
    except (ValueError, KeyError, IndexError, TypeError):
        return {}
    return message if isinstance(message, dict) else {}
