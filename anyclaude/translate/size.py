"""How big an OpenAI request's prompt is: its text, its length, a token estimate.

The text is what a chat template renders from the request (system, messages, tool calls,
tool definitions) without the template's own markup; `proxy/tokens.py` counts it exactly
with the model's tokenizer when it can. The estimate divides characters by a
chars-per-token ratio that the proxy calibrates on the backend's real `prompt_tokens`, so it
converges on the model's tokenizer; it costs a few microseconds, so it runs on every request.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

DEFAULT_CHARS_PER_TOKEN = 3.6
"""Claude Code prompts are English prose plus JSON schemas: ~3.5-4.5 chars per token with
the tokenizers of Qwen-class models. Erring low overestimates, which is the safe side."""
IMAGE_TOKENS = 1000
"""A flat cost per image; vision models vary (256-1600)."""
MESSAGE_OVERHEAD = 4
"""Template markup per message (`<|im_start|>role\\n ... <|im_end|>\\n`)."""


def prompt_text(body: Mapping[str, Any]) -> str:
    """The text a chat template renders from an OpenAI request (without its markup)."""
    pieces: list[str] = []
    for message in body.get("messages") or []:
        content = message.get("content")
        if isinstance(content, str):
            pieces.append(content)
        elif isinstance(content, list):
            pieces.extend(p.get("text", "") for p in content if isinstance(p, dict))
        for call in message.get("tool_calls") or []:
            function = call.get("function") or {}
            pieces.append(str(function.get("name", "")) + str(function.get("arguments", "")))
    if body.get("tools"):
        pieces.append(orjson.dumps(body["tools"]).decode())
    return "\n".join(pieces)


_TOOL_CHARS: dict[int, tuple[object, int]] = {}


def _tool_chars(tools: object) -> int:
    """Serialised size of a tool list; the translator reuses one list object per distinct
    tool set, so this is computed once per set (the entry keeps the list alive)."""
    cached = _TOOL_CHARS.get(id(tools))
    if cached is not None and cached[0] is tools:
        return cached[1]
    size = len(orjson.dumps(tools))
    if len(_TOOL_CHARS) > 64:
        _TOOL_CHARS.clear()
    _TOOL_CHARS[id(tools)] = (tools, size)
    return size


def prompt_chars(body: Mapping[str, Any]) -> int:
    """len(prompt_text(body)) without building the text (the hot path only needs sizes)."""
    total = 0
    for message in body.get("messages") or []:
        content = message.get("content")
        if isinstance(content, str):
            total += len(content) + 1
        elif isinstance(content, list):
            total += sum(len(p.get("text", "")) + 1 for p in content if isinstance(p, dict))
        for call in message.get("tool_calls") or []:
            function = call.get("function") or {}
            total += len(str(function.get("name", ""))) + len(str(function.get("arguments", "")))
    if body.get("tools"):
        total += _tool_chars(body["tools"])
    return total


def image_count(body: Mapping[str, Any]) -> int:
    count = 0
    for message in body.get("messages") or []:
        content = message.get("content")
        if isinstance(content, list):
            count += sum(1 for p in content if isinstance(p, dict) and p.get("type") == "image_url")
    return count


def overhead(body: Mapping[str, Any]) -> int:
    """Tokens the text does not show: template markup per message, images."""
    return MESSAGE_OVERHEAD * len(body.get("messages") or []) + IMAGE_TOKENS * image_count(body)


def estimate(body: Mapping[str, Any], chars_per_token: float) -> int:
    """Prompt tokens from characters, for the hot path."""
    return int(prompt_chars(body) / chars_per_token) + overhead(body)


def calibrated(chars_per_token: float, body: Mapping[str, Any], prompt_tokens: int) -> float:
    """The ratio moved towards what a backend's real prompt size says (a moving average, so
    one odd request does not swing it); unchanged when the prompt is too small to tell."""
    real = prompt_tokens - overhead(body)
    chars = prompt_chars(body)
    if real > 50 and chars > 200:
        return 0.7 * chars_per_token + 0.3 * chars / real
    return chars_per_token
