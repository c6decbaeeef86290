"""The first user turn with its static context first and the user's own words last.

Claude Code wraps the first thing the user types in a few thousand tokens of context that is
the same for every session in a folder: reminders (the date, CLAUDE.md, attribution rules)
before the words, and the agent and skill lists or the `# Environment` block as a system
message after them. A backend's prefix cache serves a new session only up to the first token
that differs, so with the words in the middle two sessions part ways a few thousand tokens
before the end. Moving the context in front of the words lets them share everything but what
was typed. Only the turn before the first answer is rearranged, by a fixed rule on its own
content, so every later request of the session still starts with the same bytes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

REMINDER_OPEN, REMINDER_CLOSE = "<system-reminder>", "</system-reminder>"


def is_context(block: Mapping[str, Any]) -> bool:
    """A block Claude Code adds around the user's words: a system reminder or system text."""
    if block.get("type") == "mid_conv_system":
        return True
    if block.get("type") != "text":
        return False
    text = str(block.get("text", "")).strip()
    return text.startswith(REMINDER_OPEN) and text.endswith(REMINDER_CLOSE)


def _blocks(content: str | Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return [{"type": "text", "text": content}] if isinstance(content, str) else list(content)


def context_first(messages: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """`messages` with the first user turn (the user and system messages before the first
    assistant message) made one user message: context blocks first, then the rest, each
    group in its original order. System messages become `mid_conv_system` blocks. Leading
    system messages stay (they join the system prompt); a turn with tool results, or with
    nothing to move, is left alone."""
    start = next((i for i, m in enumerate(messages) if m["role"] != "system"), len(messages))
    end = next((i for i in range(start, len(messages)) if messages[i]["role"] == "assistant"),
               len(messages))
    context: list[Mapping[str, Any]] = []
    words: list[Mapping[str, Any]] = []
    for message in messages[start:end]:
        if message["role"] == "system":
            context.append({"type": "mid_conv_system", "content": message["content"]})
            continue
        for block in _blocks(message["content"]):
            if block.get("type") == "tool_result":
                return list(messages)
            (context if is_context(block) else words).append(block)
    if not context or not words:
        return list(messages)
    return [*messages[:start], {"role": "user", "content": [*context, *words]},
            *messages[end:]]

