"""Unknown is not malformed: what a newer Claude Code sends that the translator does not
know is dropped or mapped here, with a note for the debug output, never refused.

Claude Code adds fields, block types, roles, effort levels and tool kinds every few weeks,
and each addition has broken servers and proxies that rejected it. `validate.py` still
refuses what is malformed (wrong types, missing fields); everything it lets through that is
merely unknown is reduced here to what the translator handles, so one new field never ends
a session. A request with nothing unknown comes back as the same object, uncopied.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from anyclaude.translate.errors import invalid_request

ROLES = ("user", "assistant", "system")
CONTENT_TYPES = frozenset({
    "text", "image", "document", "search_result", "tool_use", "tool_result", "thinking",
    "redacted_thinking", "server_tool_use", "mid_conv_system", "tool_reference",
    "container_upload", "mcp_tool_use", "mcp_tool_result",
})
"""Message block types the translator knows, besides server tools' results."""
RESULT_PART_TYPES = frozenset({"text", "image", "document", "search_result", "tool_reference"})
"""Block types the translator knows inside a tool_result."""

READ_FIELDS = frozenset({
    "model", "messages", "system", "max_tokens", "stream", "tools", "tool_choice",
    "temperature", "top_p", "top_k", "stop_sequences", "thinking", "output_config"})
"""Top-level fields the translator uses."""

IGNORED_FIELDS: Mapping[str, str | None] = {
    "metadata": None,
    "service_tier": None,
    "context_management": "ignored context_management: the backend gets the whole history "
                          "(thinking is dropped from it anyway)",
    "safeguards": "ignored safeguards: auto mode's server-side check of tool calls is not "
                  "available here (Claude Code then asks before risky actions)",
    "mcp_servers": "ignored mcp_servers: the backend cannot reach MCP servers",
    "container": "ignored container: the backend has no code-execution container",
}
"""Top-level fields known to be of no use to a local backend; a note says so when one
matters to what the user gets."""

MESSAGE_FIELDS = frozenset({"role", "content", "output_config"})
"""`output_config` on a message is per-turn effort; the top-level effort already says it."""

EFFORT: Mapping[str, str] = {"low": "low", "medium": "medium", "high": "high",
                             "xhigh": "high", "max": "high"}
"""Claude Code's effort levels -> OpenAI `reasoning_effort` (which stops at high)."""

THINKING: Mapping[str, bool] = {"enabled": True, "adaptive": True, "disabled": False}
"""Thinking types -> thinking on or off (`display` only changes what the client shows)."""

TOOL_CHOICES = frozenset({"auto", "any", "tool", "none"})


def known_block(kind: str) -> bool:
    """Server tools' results (`web_search_tool_result`, `code_execution_tool_result`...)
    count as known: the translator summarises or drops them."""
    return kind in CONTENT_TYPES or (kind.endswith("_tool_result") and kind != "tool_result")


def _is_empty(content: str | list[dict[str, Any]]) -> bool:
    if isinstance(content, str):
        return not content.strip()
    return not any(block["type"] != "text" or block["text"].strip() for block in content)


def _result(block: dict[str, Any], notes: list[str]) -> dict[str, Any]:
    content = block.get("content")
    if not isinstance(content, list):
        return block
    kept = [part for part in content if part["type"] in RESULT_PART_TYPES]
    if len(kept) == len(content):
        return block
    notes.extend(f"dropped an unknown {part['type']} part of a tool result"
                 for part in content if part["type"] not in RESULT_PART_TYPES)
    return {**block, "content": kept}


def _content(content: list[dict[str, Any]], notes: list[str]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for block in content:
        if not known_block(block["type"]):
            notes.append(f"dropped an unknown {block['type']} block")
        elif block["type"] == "tool_result":
            out.append(_result(block, notes))
        else:
            out.append(block)
    return content if len(out) == len(content) and all(
        a is b for a, b in zip(out, content, strict=True)) else out


def _messages(messages: list[dict[str, Any]], notes: list[str]) -> list[dict[str, Any]]:
    """The same list when nothing is dropped."""
    out: list[dict[str, Any]] = []
    changed = False
    for message in messages:
        role = message["role"]
        if role not in ROLES:
            notes.append(f"dropped a message with the unknown role {role!r}")
            changed = True
            continue
        notes.extend(f"ignored the unknown message field {key}" for key in message
                     if key not in MESSAGE_FIELDS)
        content = message["content"]
        if role == "system" and _is_empty(content):
            changed = True  # per-turn settings only (`output_config`), nothing for the model
            continue
        if isinstance(content, list):
            kept = _content(content, notes)
            if kept is not content:
                message = {**message, "content": kept}
                changed = True
        out.append(message)
    return out if changed else messages


def _system(system: object, notes: list[str]) -> object:
    if not isinstance(system, list):
        return system
    kept = [block for block in system if block["type"] == "text"]
    notes.extend(f"dropped a {block['type']} block from the system prompt"
                 for block in system if block["type"] != "text")
    return system if len(kept) == len(system) else kept


def _referenced_tools(messages: Sequence[Mapping[str, Any]]) -> set[str]:
    """Tools a tool search loaded: `tool_reference` blocks in tool results."""
    names: set[str] = set()
    for message in messages:
        content = message["content"]
        for block in content if isinstance(content, list) else ():
            parts = block.get("content") if block["type"] == "tool_result" else None
            for part in parts if isinstance(parts, list) else ():
                if part.get("type") == "tool_reference":
                    names.add(str(part.get("tool_name")))
    return names


def _tools(tools: list[dict[str, Any]], messages: Sequence[Mapping[str, Any]],
           notes: list[str]) -> list[dict[str, Any]]:
    """Deferred tools (`defer_loading`) stay out of the prompt until a tool search loads
    them, as on Anthropic's API."""
    if not any(tool.get("defer_loading") for tool in tools):
        return tools
    loaded = _referenced_tools(messages)
    kept = [t for t in tools if not t.get("defer_loading") or t["name"] in loaded]
    dropped = [t["name"] for t in tools if t.get("defer_loading") and t["name"] not in loaded]
    notes.append(f"left out deferred tool(s) {', '.join(dropped)} until a tool search "
                 "loads them")
    return kept


def _settings(request: Mapping[str, Any], changed: dict[str, Any], notes: list[str]) -> None:
    output = request.get("output_config")
    effort = output.get("effort") if isinstance(output, Mapping) else None
    if effort is not None and EFFORT.get(effort) != effort:
        mapped = EFFORT.get(effort)
        notes.append(f"effort {effort!r} sent as {mapped!r}" if mapped else
                     f"ignored the unknown effort {effort!r}")
        assert isinstance(output, Mapping)
        changed["output_config"] = {k: v for k, v in output.items() if k != "effort"} | (
            {"effort": mapped} if mapped else {})
    thinking = request.get("thinking")
    if isinstance(thinking, Mapping) and thinking.get("type") not in THINKING:
        notes.append(f"ignored the unknown thinking type {thinking.get('type')!r}")
        changed["thinking"] = None
    choice = request.get("tool_choice")
    if isinstance(choice, Mapping) and choice.get("type") not in TOOL_CHOICES:
        notes.append(f"ignored the unknown tool_choice type {choice.get('type')!r}")
        changed["tool_choice"] = None


def tolerate(request: Mapping[str, Any]) -> tuple[Mapping[str, Any], list[str]]:
    """A validated request reduced to what the translator knows, and notes on what went."""
    notes: list[str] = []
    for key in request:
        if key not in READ_FIELDS:
            note = IGNORED_FIELDS.get(key, f"ignored the unknown field {key}")
            if note:
                notes.append(note)
    changed: dict[str, Any] = {}
    messages = _messages(request["messages"], notes)
    if not messages:
        raise invalid_request("messages: none is left that the backend can use ("
                              + "; ".join(notes) + ").")
    if messages is not request["messages"]:
        changed["messages"] = messages
    system = _system(request.get("system"), notes)
    if system is not request.get("system"):
        changed["system"] = system
    tools = request.get("tools")
    if tools:
        kept = _tools(tools, messages, notes)
        if kept is not tools:
            changed["tools"] = kept
    _settings(request, changed, notes)
    if not changed:
        return request, notes
    return {**request, **changed}, notes
