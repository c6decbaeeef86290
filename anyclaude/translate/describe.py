"""One-line descriptions of requests and answers for ANYCLAUDE_DEBUG (level 2 and up)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from anyclaude.translate.protocol import Message


def request_summary(body: Mapping[str, Any], notes: list[str]) -> str:
    """An upstream (OpenAI) request: its shape and what the translation dropped or changed."""
    messages = body.get("messages") or []
    roles = "".join(str(m.get("role", "?"))[0] for m in messages)
    tools = len(body.get("tools") or [])
    limit = body.get("max_tokens", body.get("max_completion_tokens"))
    text = (f"[anyclaude]   → upstream: {len(messages)} messages ({roles}), {tools} tools, "
            f"max_tokens {limit}, stream {bool(body.get('stream'))}")
    return text + "".join(f"\n[anyclaude]     note: {note}" for note in notes)


def answer_summary(message: Message) -> str:
    """An Anthropic answer: its blocks and why it stopped."""
    parts = []
    for block in message["content"]:
        if block["type"] == "text":
            parts.append(f"text({len(block['text'])} chars)")
        elif block["type"] == "thinking":
            parts.append(f"thinking({len(block['thinking'])} chars)")
        else:
            parts.append(f"tool_use {block['name']}")
    return (f"[anyclaude]   ← {', '.join(parts) or 'no content'}; "
            f"stop_reason {message['stop_reason']}")
