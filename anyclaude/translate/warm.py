"""What a cache warm-up replays: the start of a session's first request, without the user's
own words (pure functions over translated OpenAI bodies).

A prefix-caching server (mlx-lm, LM Studio, llama.cpp, vLLM) reuses the longest common
prefix of a cached prompt even when what follows differs. The first request of every session
in a folder starts with the same system prompt, tools and static context (reminders, the
environment block; `firstturn.py` puts them before the typed text), so replaying that start
while Claude Code boots makes the first real answer warm.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

_LEADING_REMINDERS = re.compile(r"\A(?:\s*<system-reminder>.*?</system-reminder>)+", re.S)
REMINDER = "<system-reminder>"


def _static_part(content: object) -> object | None:
    """The leading static context of a user message (its reminders), without the words the
    user typed; None when nothing typed follows (then there is nothing to cut)."""
    if isinstance(content, str):
        match = _LEADING_REMINDERS.match(content)
        if match is None or not content[match.end():].strip():
            return None
        return match.group(0).strip()
    if isinstance(content, list):
        kept = []
        for part in content:
            text = part.get("text") if isinstance(part, Mapping) else None
            if not isinstance(text, str) or not text.lstrip().startswith(REMINDER):
                break
            kept.append(part)
        return kept if kept and len(kept) < len(content) else None
    return None


def first_turn_prefix(body: Mapping[str, Any]) -> dict[str, Any] | None:
    """The warm-up body for a session's first main request (system prompt, tools, one user
    message), with the typed text cut off; None for anything else."""
    messages = body.get("messages")
    if not body.get("tools") or not isinstance(messages, list) or not messages:
        return None
    roles = [m.get("role") for m in messages if isinstance(m, Mapping)]
    if roles not in (["user"], ["system", "user"]):
        return None
    static = _static_part(messages[-1].get("content"))
    if static is None:
        return None
    cut = dict(body)
    cut["messages"] = [*messages[:-1], {**messages[-1], "content": static}]
    return cut


def replay_body(prefix: Mapping[str, Any], max_tokens_param: str) -> dict[str, Any]:
    """The warm-up request: the prefix, one token, not streamed."""
    body = {k: v for k, v in prefix.items() if k not in ("stream", "stream_options")}
    for key in ("max_tokens", "max_completion_tokens"):
        body.pop(key, None)
    body[max_tokens_param] = 1
    body["stream"] = False
    return body


def _text(content: object) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, Mapping)
                       and isinstance(p.get("text"), str))
    return ""


def shares_prefix(prefix: Mapping[str, Any], body: Mapping[str, Any]) -> bool:
    """Whether `body` starts the way the warm-up does (so waiting for it pays off)."""
    ours, theirs = prefix.get("messages") or [], body.get("messages") or []
    if prefix.get("tools") != body.get("tools") or len(theirs) < len(ours) or not ours:
        return False
    if any(a != b for a, b in zip(ours[:-1], theirs, strict=False)):
        return False
    last = ours[-1]
    other = theirs[len(ours) - 1]
    return bool(other.get("role") == last.get("role")
                and _text(other.get("content")).startswith(_text(last.get("content"))))
