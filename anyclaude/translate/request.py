"""Anthropic Messages request -> OpenAI Chat Completions request, shaped by a `Dialect`.

Everything here serves two goals: the backend accepts the request (its dialect's quirks),
and the rendered prompt of turn N+1 starts with exactly the prompt of turn N, so the
backend's prefix (KV) cache is reused. Hence: the volatile billing header is removed, text
is joined with fixed rules, tool arguments are serialised canonically, tools keep their
order and cleaned schemas are deterministic, and mid-conversation system messages stay
where they are instead of rewriting the system prompt.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from anyclaude.backends.base import Dialect, ToolCalls, upstream_model
from anyclaude.translate.arguments import dumps_arguments
from anyclaude.translate.content import (
    Parts,
    join_text,
    message_parts,
    result_parts,
    system_reminder,
)
from anyclaude.translate.firstturn import context_first
from anyclaude.translate.protocol import ChatRequest, MessagesRequest
from anyclaude.translate.schemas import ToolNameMap, clean_schema
from anyclaude.translate.tolerate import tolerate
from anyclaude.translate.toolprompt import inline

BILLING_PREFIX = "x-anthropic-billing-header:"
_BILLING_LINE = re.compile(r"^x-anthropic-billing-header:[^\n]*\n?", re.M)


@dataclass
class Plan:
    """The upstream request plus what the response side needs to translate the answer back."""

    body: ChatRequest
    requested_model: str
    client_stream: bool
    upstream_stream: bool
    max_tokens: int
    """The output cap sent upstream (`plan.apply_limits` clamps it)."""
    prompt_tokens: int
    """The prompt's size: estimated, or counted exactly (see `plan.py`)."""
    stop_sequences: list[str]
    names: ToolNameMap
    schemas: dict[str, Mapping[str, Any]]
    emit_thinking: bool
    text_tools: bool
    text_formats: tuple[str, ...]
    start_in_thinking: bool
    max_tokens_param: str = "max_tokens"
    notes: list[str] = field(default_factory=list)
    """What was dropped or changed, for debug output."""
    background: str | None = None
    """Why this is background work (see `plan.classify`), None for the main conversation."""
    stops_short_by: int = 0
    """See `Dialect.stops_short_by`: how close to `max_tokens` a `stop` means cut off."""
    chunk_is_token: bool = False
    requested_max_tokens: int = field(init=False)
    """`max_tokens` as the client asked, before `apply_limits` clamps `max_tokens`."""

    def __post_init__(self) -> None:
        self.requested_max_tokens = self.max_tokens


def _strip_billing(text: str) -> str:
    return _BILLING_LINE.sub("", text) if BILLING_PREFIX in text else text


def system_text(system: object) -> str:
    """The system prompt as one string, billing header removed, blocks joined stably."""
    if system is None:
        return ""
    if isinstance(system, str):
        return _strip_billing(system)
    assert isinstance(system, list)
    texts = [_strip_billing(block.get("text", "")) for block in system
             if not block.get("text", "").startswith(BILLING_PREFIX)]
    return join_text([t for t in texts if t])


@dataclass(frozen=True)
class ToolSet:
    """The offered tools, translated once per distinct tool list (Claude Code resends the
    same ~24 tools every turn; cleaning their schemas is most of a request's translation)."""

    entries: list[dict[str, Any]]
    schemas: dict[str, Mapping[str, Any]]
    names: ToolNameMap
    notes: tuple[str, ...]


_TOOLSETS: OrderedDict[tuple[object, ...], tuple[object, ToolSet]] = OrderedDict()
_TOOLSETS_MAX = 16


def tool_set(tools: Sequence[Mapping[str, Any]] | None, dialect: Dialect) -> ToolSet:
    """Cached by the tool names and checked by equality with the list it was made from:
    comparing two 64 KB tool lists takes a third of the time of serialising one."""
    key = (tuple(tool.get("name") for tool in tools or ()), dialect.schema_profile,
           dialect.max_tool_name_length)
    cached = _TOOLSETS.get(key)
    if cached is not None and cached[0] == tools:
        _TOOLSETS.move_to_end(key)
        return cached[1]
    custom, notes = [], []
    for tool in tools or []:
        kind = tool.get("type")
        if kind not in (None, "custom") or ("input_schema" not in tool and kind is not None):
            notes.append(f"dropped server tool {tool.get('name')!r} ({kind}): the local model "
                         "cannot run it")
            continue
        custom.append(tool)
    names = ToolNameMap([t["name"] for t in custom], dialect.max_tool_name_length)
    result = ToolSet(entries=[_tool_entry(t, names, dialect) for t in custom],
                     schemas={t["name"]: t.get("input_schema") or {} for t in custom},
                     names=names, notes=tuple(notes))
    _TOOLSETS[key] = (tools, result)
    _TOOLSETS.move_to_end(key)
    if len(_TOOLSETS) > _TOOLSETS_MAX:
        _TOOLSETS.popitem(last=False)
    return result


def _tool_entry(tool: Mapping[str, Any], names: ToolNameMap, dialect: Dialect) -> dict[str, Any]:
    function: dict[str, Any] = {"name": names.to_upstream(tool["name"])}
    if tool.get("description"):
        function["description"] = tool["description"]
    function["parameters"] = clean_schema(tool.get("input_schema") or {}, dialect.schema_profile)
    return {"type": "function", "function": function}


_TOOL_CHOICE: dict[str, str] = {"auto": "auto", "any": "required", "none": "none"}


def _tool_choice(choice: Mapping[str, Any], names: ToolNameMap) -> object:
    if choice["type"] == "tool":
        return {"type": "function", "function": {"name": names.to_upstream(choice["name"])}}
    return _TOOL_CHOICE[choice["type"]]


def _content(parts: Parts) -> str | list[dict[str, Any]]:
    """A plain string when every part is text (some servers take strings only)."""
    if all(p["type"] == "text" for p in parts):
        return join_text([p["text"] for p in parts])
    return list(parts)


def _assistant(blocks: Sequence[Mapping[str, Any]], names: ToolNameMap, dialect: Dialect,
               notes: list[str]) -> dict[str, Any]:
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for block in blocks:
        kind = block["type"]
        if kind == "text" and block["text"]:
            texts.append(block["text"])
        elif kind == "tool_use":
            calls.append({"id": block["id"], "type": "function",
                          "function": {"name": names.to_upstream(block["name"]),
                                       "arguments": dumps_arguments(block["input"])}})
        elif kind in ("thinking", "redacted_thinking"):
            continue  # dropped every turn alike, so the prefix stays stable
        elif kind != "text":
            notes.append(f"dropped an assistant {kind} block")
    message: dict[str, Any] = {"role": "assistant", "content": join_text(texts)}
    if calls:
        message["tool_calls"] = calls
        if not dialect.text_with_tool_calls:
            message["content"] = None
    return message


def _user(blocks: Sequence[Mapping[str, Any]] | str, dialect: Dialect,
          notes: list[str]) -> list[dict[str, Any]]:
    """One Anthropic user turn -> tool messages (in order) followed by a user message."""
    if isinstance(blocks, str):
        return [{"role": "user", "content": blocks}]
    out: list[dict[str, Any]] = []
    later_images: Parts = []
    rest: list[Mapping[str, Any]] = []
    for block in blocks:
        if block["type"] == "tool_result":
            text, images = result_parts(block, vision=dialect.content_parts == "vision")
            out.append({"role": "tool", "tool_call_id": block["tool_use_id"], "content": text})
            later_images.extend(images)
        else:
            rest.append(block)
    parts = [*later_images, *message_parts(rest, vision=dialect.content_parts == "vision",
                                             notes=notes)]
    if parts:
        out.append({"role": "user", "content": _content(parts)})
    return out


def _answer_every_call(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each assistant tool call must be answered by a tool message before the next turn;
    an interrupted call gets a fixed placeholder (templates and servers reject gaps)."""
    out: list[dict[str, Any]] = []
    pending: list[str] = []
    for message in messages:
        if message["role"] == "tool":
            if message["tool_call_id"] in pending:
                pending.remove(message["tool_call_id"])
            out.append(message)
            continue
        out.extend({"role": "tool", "tool_call_id": call_id, "content": "[no result]"}
                   for call_id in pending)
        pending = [call["id"] for call in message.get("tool_calls", [])]
        out.append(message)
    out.extend({"role": "tool", "tool_call_id": call_id, "content": "[no result]"}
               for call_id in pending)
    return out


def _merge(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Join consecutive user or assistant messages (many templates require alternation)."""
    out: list[dict[str, Any]] = []
    for message in messages:
        prev = out[-1] if out else None
        if prev is None or prev["role"] != message["role"] or message["role"] not in (
                "user", "assistant"):
            out.append(dict(message))
            continue
        if message["role"] == "assistant":
            prev["content"] = join_text([t for t in (prev.get("content"), message.get("content"))
                                         if t]) or prev.get("content")
            calls = prev.get("tool_calls", []) + message.get("tool_calls", [])
            if calls:
                prev["tool_calls"] = calls
        else:
            a, b = prev["content"], message["content"]
            if isinstance(a, str) and isinstance(b, str):
                prev["content"] = join_text([a, b])
            else:
                prev["content"] = _as_parts(a) + _as_parts(b)
    return out


def _as_parts(content: str | list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"type": "text", "text": content}] if isinstance(content, str) else list(content)


def translate_messages(request: Mapping[str, Any], dialect: Dialect, names: ToolNameMap,
                       notes: list[str]) -> list[dict[str, Any]]:
    """The OpenAI `messages` list: one system message first, then the conversation."""
    system = [system_text(request.get("system"))]
    messages: list[dict[str, Any]] = []
    for message in context_first(request["messages"]):
        role, content = message["role"], message["content"]
        if role == "system":
            text = content if isinstance(content, str) else join_text(
                [b.get("text", "") for b in content if b.get("type") == "text"])
            if not messages:
                system.append(text)  # a leading system message is part of the system prompt
            else:
                messages.append({"role": "user", "content": system_reminder(text)})
        elif role == "assistant":
            blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content
            messages.append(_assistant(blocks, names, dialect, notes))
        else:
            messages.extend(_user(content, dialect, notes))
    if messages and messages[-1]["role"] == "assistant" and not messages[-1].get("tool_calls"):
        notes.append("dropped a trailing assistant prefill (not supported by local templates)")
        messages.pop()
    messages = _merge(_answer_every_call(messages))
    head = join_text([s for s in system if s])
    return ([{"role": "system", "content": head}] if head else []) + messages


def _thinking_enabled(request: Mapping[str, Any]) -> bool | None:
    thinking = request.get("thinking")
    if not isinstance(thinking, Mapping):
        return None
    return thinking.get("type") in ("enabled", "adaptive")


def to_openai(request: MessagesRequest, dialect: Dialect, *, model: str | None,
              tool_calls: ToolCalls | None = None) -> Plan:
    """Translate a validated Anthropic request (see `validate.py`); `plan.py` sizes it
    and applies the limits."""
    tolerated, notes = tolerate(request)
    request = cast(MessagesRequest, tolerated)
    tools = tool_set(request.get("tools"), dialect)
    notes += tools.notes
    names = tools.names
    body: dict[str, Any] = {}
    if dialect.model_field == "configured" and model:
        body["model"] = upstream_model(dialect, model)
    elif dialect.model_field == "request":
        body["model"] = request["model"]
    body["messages"] = translate_messages(request, dialect, names, notes)

    body[dialect.max_tokens_param] = int(request.get("max_tokens") or 4096)

    for key in ("temperature", "top_p") + (("top_k",) if dialect.send_top_k else ()):
        if request.get(key) is not None:
            body[key] = request[key]
    stops = [s for s in request.get("stop_sequences") or [] if s]
    if stops and dialect.send_stop:
        body["stop"] = stops
    if not dialect.send_tools:
        body["messages"] = inline(body["messages"], tools.entries)
    elif tools.entries:
        body["tools"] = tools.entries
        choice = request.get("tool_choice")
        if dialect.tool_choice and isinstance(choice, Mapping):
            body["tool_choice"] = _tool_choice(choice, names)
            if choice.get("disable_parallel_tool_use"):
                body["parallel_tool_calls"] = False
    thinking = _thinking_enabled(request)
    if dialect.thinking_template_kwarg and thinking is not None:
        body["chat_template_kwargs"] = {"enable_thinking": thinking}
    output = request.get("output_config") or {}
    schema_format = output.get("format")
    if dialect.response_format and isinstance(schema_format, Mapping) and \
            schema_format.get("type") == "json_schema" and isinstance(schema_format.get("schema"),
                                                                     Mapping):
        body["response_format"] = {"type": "json_schema", "json_schema": {
            "name": "output", "schema": schema_format["schema"]}}
    effort = output.get("effort")
    if dialect.send_reasoning_effort and effort in ("low", "medium", "high"):
        body["reasoning_effort"] = effort
    body.update(dialect.extra_body)

    client_stream = bool(request.get("stream"))
    upstream_stream = client_stream and (dialect.stream_with_tools or not tools.entries)
    body["stream"] = upstream_stream
    if upstream_stream and dialect.include_usage:
        body["stream_options"] = {"include_usage": True}
    text_tools = ((tool_calls or dialect.tool_calls) == "text" or not dialect.send_tools) \
        and bool(tools.entries)
    formats = (("think",) if dialect.parse_inline_think else ()) + (
        dialect.text_tool_formats if text_tools else ())
    return Plan(
        body=cast(ChatRequest, body), requested_model=request["model"],
        client_stream=client_stream, upstream_stream=upstream_stream,
        max_tokens=body[dialect.max_tokens_param], prompt_tokens=0, stop_sequences=stops,
        names=names, schemas=tools.schemas, emit_thinking=thinking is not False,
        text_tools=text_tools, text_formats=formats,
        start_in_thinking=dialect.start_in_thinking, max_tokens_param=dialect.max_tokens_param,
        notes=notes, stops_short_by=dialect.stops_short_by,
        chunk_is_token=dialect.chunk_is_token)
