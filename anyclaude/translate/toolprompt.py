"""Tools for servers that cannot take OpenAI `tools` (FastMLX answers 422): the tools go
into the system prompt, and earlier calls and results into the conversation, as text in
the Hermes layout that Qwen-style chat templates would render themselves.

The model then prints `<tool_call>{"name": ..., "arguments": ...}</tool_call>`, which
`textcalls.TextCallParser` reads back. The wording is fixed and tools keep their order, so
the prompt of turn N+1 starts with the prompt of turn N (the prefix cache stays warm).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from anyclaude.translate.arguments import loads_lenient
from anyclaude.translate.content import join_text

TOOLS_HEADER = (
    "# Tools\n\n"
    "You may call one or more functions to assist with the user query.\n\n"
    "The available functions are listed, one JSON signature per line, within "
    "<tools></tools> XML tags:\n<tools>"
)
TOOLS_FOOTER = (
    "</tools>\n\n"
    "To call a function, write a JSON object with the function name and its arguments "
    "within <tool_call></tool_call> XML tags:\n"
    '<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>'
)


def describe(entries: Sequence[Mapping[str, Any]]) -> str:
    """The system-prompt text that offers `entries` (OpenAI `tools` entries)."""
    lines = [orjson.dumps(entry, option=orjson.OPT_SORT_KEYS).decode() for entry in entries]
    return "\n".join([TOOLS_HEADER, *lines, TOOLS_FOOTER])


def _call_text(call: Mapping[str, Any]) -> str:
    function = call.get("function") or {}
    arguments = loads_lenient(function.get("arguments") or "{}")
    payload = {"name": function.get("name", ""),
               "arguments": arguments if isinstance(arguments, dict) else {}}
    return f"<tool_call>\n{orjson.dumps(payload).decode()}\n</tool_call>"


def _result_text(content: object) -> str:
    text = content if isinstance(content, str) else ""
    return f"<tool_response>\n{text}\n</tool_response>"


def inline(messages: list[dict[str, Any]],
           entries: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """`messages` with no `tool_calls` and no `tool` role (calls and results as text), the
    tool description appended to the system message, and consecutive user turns joined."""
    out: list[dict[str, Any]] = []
    for message in messages:
        role = message["role"]
        if role == "assistant" and message.get("tool_calls"):
            texts = [message.get("content") or "",
                     *(_call_text(call) for call in message["tool_calls"])]
            message = {"role": "assistant", "content": join_text(texts)}
        elif role == "tool":
            message = {"role": "user", "content": _result_text(message.get("content"))}
        previous = out[-1] if out else None
        if (previous is not None and role in ("tool", "user") and previous["role"] == "user"
                and isinstance(previous["content"], str)
                and isinstance(message["content"], str)):
            previous["content"] = f"{previous['content']}\n{message['content']}"
            continue
        out.append(dict(message))
    if entries:
        tools = describe(entries)
        if out and out[0]["role"] == "system":
            out[0]["content"] = join_text([out[0]["content"], tools])
        else:
            out.insert(0, {"role": "system", "content": tools})
    return out
