"""Checks an Anthropic request before translation, so bad input is a 400 with one sentence.

The translator may then assume the shapes checked here. Messages name the field by its path
(`messages.2.content.0.tool_use_id`), as Anthropic's own errors do. What is merely unknown (a
role, block type, tool_choice type or field a newer Claude Code sends) is not malformed: it
passes here and `tolerate.py` drops or maps it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from anyclaude.translate.errors import AnthropicError, invalid_request
from anyclaude.translate.protocol import MessagesRequest

MAX_TOKENS_LIMIT = 1_000_000
MAX_DEPTH = 128
"""Arrays and objects nested deeper than this are refused: Claude Code's requests nest about
15 levels, while a few hundred break the JSON encoder (orjson stops at 255) and recursive
walks (schema cleaning, traces) somewhere below Python's recursion limit."""


def _fail(path: str, problem: str) -> AnthropicError:
    return invalid_request(f"{path}: {problem}")


def _type_name(value: object) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
            int: "a number", float: "a number", type(None): "null"}.get(type(value), "a value")


def _expect(value: object, kind: type | tuple[type, ...], path: str, what: str) -> None:
    if isinstance(value, bool) and kind in (int, float, (int, float)):
        raise _fail(path, f"expected {what}, got a boolean")
    if not isinstance(value, kind):
        raise _fail(path, f"expected {what}, got {_type_name(value)}")


def too_deep() -> AnthropicError:
    return invalid_request(f"The request body is nested more than {MAX_DEPTH} levels deep; "
                           "send arrays and objects nested less deeply.")


def check_depth(body: object) -> None:
    """Refuse a body nested deeper than `MAX_DEPTH`, wherever (checked before anything else
    walks it, tracing included): one level at a time, no recursion, ~0.1 ms for Claude
    Code's largest requests."""
    level: list[Any] = [body] if type(body) is dict or type(body) is list else []
    depth = 0
    while level:
        depth += 1
        if depth > MAX_DEPTH:
            raise too_deep()
        below: list[Any] = []
        for node in level:
            for child in node.values() if type(node) is dict else node:
                if type(child) is dict or type(child) is list:
                    below.append(child)
        level = below


def validate_messages_request(body: object, *, count_only: bool = False) -> MessagesRequest:
    """Return the body, typed, when it is a valid Messages (or count_tokens) request."""
    if not isinstance(body, dict):
        raise invalid_request(f"The request body must be a JSON object, got {_type_name(body)}.")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _fail("model", "a model name (string) is required")
    if not count_only:
        if "max_tokens" not in body:
            raise _fail("max_tokens", "field required")
        _expect(body["max_tokens"], int, "max_tokens", "an integer")
        if not 1 <= body["max_tokens"] <= MAX_TOKENS_LIMIT:
            raise _fail("max_tokens", f"must be between 1 and {MAX_TOKENS_LIMIT}, got "
                        f"{body['max_tokens']}")
        if "stream" in body and body["stream"] is not None:
            _expect(body["stream"], bool, "stream", "a boolean")
    _check_sampling(body)
    _check_system(body.get("system"))
    _check_tools(body.get("tools"), body.get("tool_choice"))
    _check_messages(body.get("messages"))
    return cast(MessagesRequest, body)


def _check_sampling(body: Mapping[str, Any]) -> None:
    for key, low, high in (("temperature", 0.0, 2.0), ("top_p", 0.0, 1.0)):
        if body.get(key) is not None:
            _expect(body[key], (int, float), key, "a number")
            if not low <= body[key] <= high:
                raise _fail(key, f"must be between {low:g} and {high:g}, got {body[key]}")
    if body.get("top_k") is not None:
        _expect(body["top_k"], int, "top_k", "an integer")
        if body["top_k"] < 0:
            raise _fail("top_k", "must be 0 or more")
    stops = body.get("stop_sequences")
    if stops is not None:
        _expect(stops, list, "stop_sequences", "an array of strings")
        for i, stop in enumerate(stops):
            _expect(stop, str, f"stop_sequences.{i}", "a string")
    for key in ("metadata", "thinking", "output_config"):
        if body.get(key) is not None:
            _expect(body[key], dict, key, "an object")


def _check_system(system: object) -> None:
    if system is None or isinstance(system, str):
        return
    _expect(system, list, "system", "a string or an array of text blocks")
    assert isinstance(system, list)
    for i, block in enumerate(system):
        path = f"system.{i}"
        _expect(block, dict, path, "a text block")
        _expect(block.get("type"), str, f"{path}.type", "a block type (string)")
        if block["type"] == "text":
            _expect(block.get("text"), str, f"{path}.text", "a string")


def _check_tools(tools: object, tool_choice: object) -> None:
    names: set[str] = set()
    if tools is not None:
        _expect(tools, list, "tools", "an array of tools")
        assert isinstance(tools, list)
        for i, tool in enumerate(tools):
            path = f"tools.{i}"
            _expect(tool, dict, path, "a tool object")
            name = tool.get("name")
            if not isinstance(name, str) or not name:
                raise _fail(f"{path}.name", "a tool name (string) is required")
            names.add(name)
            if tool.get("type") in (None, "custom"):
                schema = tool.get("input_schema")
                _expect(schema, dict, f"{path}.input_schema", "a JSON schema object")
                if tool.get("description") is not None:
                    _expect(tool["description"], str, f"{path}.description", "a string")
    if tool_choice is None:
        return
    _expect(tool_choice, dict, "tool_choice", "an object")
    assert isinstance(tool_choice, dict)
    kind = tool_choice.get("type")
    _expect(kind, str, "tool_choice.type", "a string (auto, any, tool or none)")
    if kind == "tool":
        name = tool_choice.get("name")
        if not isinstance(name, str) or name not in names:
            raise _fail("tool_choice.name", f"names no tool in `tools`: {name!r}")


def _check_messages(messages: object) -> None:
    if messages is None:
        raise _fail("messages", "field required")
    _expect(messages, list, "messages", "an array of messages")
    assert isinstance(messages, list)
    if not messages:
        raise _fail("messages", "at least one message is required")
    tool_use_ids: set[str] = set()
    for i, message in enumerate(messages):
        path = f"messages.{i}"
        _expect(message, dict, path, "a message object")
        role = message.get("role")
        if not isinstance(role, str) or not role:
            raise _fail(f"{path}.role", f"must be user, assistant or system, got {role!r}")
        content = message.get("content")
        if isinstance(content, str):
            continue
        if content is None:
            raise _fail(f"{path}.content", "field required")
        _expect(content, list, f"{path}.content", "a string or an array of blocks")
        for j, block in enumerate(content):
            _check_block(block, f"{path}.content.{j}", role, tool_use_ids)


def _check_block(block: object, path: str, role: str, tool_use_ids: set[str]) -> None:
    _expect(block, dict, path, "a content block object")
    assert isinstance(block, dict)
    kind = block.get("type")
    if not isinstance(kind, str):
        raise _fail(f"{path}.type", "a block type (string) is required")
    if kind == "text":
        _expect(block.get("text"), str, f"{path}.text", "a string")
    elif kind == "image":
        _check_source(block.get("source"), f"{path}.source", ("base64", "url"))
    elif kind == "document":
        _check_source(block.get("source"), f"{path}.source", ("base64", "url", "text", "content"))
    elif kind == "tool_use":
        if role != "assistant":
            raise _fail(path, "tool_use blocks may only appear in assistant messages")
        block_id = block.get("id")
        if not isinstance(block_id, str) or not block_id:
            raise _fail(f"{path}.id", "a tool_use id (string) is required")
        if not isinstance(block.get("name"), str) or not block["name"]:
            raise _fail(f"{path}.name", "a tool name (string) is required")
        _expect(block.get("input"), dict, f"{path}.input", "an object")
        tool_use_ids.add(block_id)
    elif kind == "tool_result":
        use_id = block.get("tool_use_id")
        if not isinstance(use_id, str) or not use_id:
            raise _fail(f"{path}.tool_use_id", "a tool_use_id (string) is required")
        if use_id not in tool_use_ids:
            raise _fail(f"{path}.tool_use_id", f"no earlier tool_use block has the id {use_id!r}")
        if block.get("is_error") is not None:
            _expect(block["is_error"], bool, f"{path}.is_error", "a boolean")
        _check_result_content(block.get("content"), f"{path}.content")
    elif kind == "thinking":
        _expect(block.get("thinking"), str, f"{path}.thinking", "a string")
    elif kind == "mid_conv_system":
        content = block.get("content")
        if not isinstance(content, (str, list)):
            raise _fail(f"{path}.content", "expected a string or an array of text blocks")


def _check_result_content(content: object, path: str) -> None:
    if content is None or isinstance(content, str):
        return
    _expect(content, list, path, "a string or an array of blocks")
    assert isinstance(content, list)
    for k, part in enumerate(content):
        part_path = f"{path}.{k}"
        _expect(part, dict, part_path, "a content block object")
        kind = part.get("type")
        _expect(kind, str, f"{part_path}.type", "a block type (string)")
        if kind == "text":
            _expect(part.get("text"), str, f"{part_path}.text", "a string")
        elif kind == "image":
            _check_source(part.get("source"), f"{part_path}.source", ("base64", "url"))


def _check_source(source: object, path: str, kinds: tuple[str, ...]) -> None:
    _expect(source, dict, path, "a source object")
    assert isinstance(source, dict)
    kind = source.get("type")
    if kind not in kinds:
        raise _fail(f"{path}.type", f"must be one of {', '.join(kinds)}, got {kind!r}")
    if kind == "base64":
        _expect(source.get("data"), str, f"{path}.data", "a base64 string")
        _expect(source.get("media_type"), str, f"{path}.media_type", "a media type string")
    elif kind == "url":
        _expect(source.get("url"), str, f"{path}.url", "a URL string")
    elif kind == "text":
        _expect(source.get("data"), str, f"{path}.data", "a string")
    elif kind == "content":
        content = source.get("content")
        if not isinstance(content, (str, list)):
            raise _fail(f"{path}.content", "expected a string or an array of blocks")
