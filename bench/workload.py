"""Claude-Code-shaped requests built here (not copied from captures): a long system prompt,
24 tools with long descriptions and JSON schemas, a user turn; ~85 KB of JSON by default."""

from __future__ import annotations

import json
import random
from typing import Any

WORDS = ["the", "file", "path", "command", "tool", "read", "write", "edit", "search", "pattern", "result", "user", "model", "agent", "code", "test", "error", "line", "output", "input", "directory", "process", "server", "request", "response", "token", "cache", "prompt", "context", "session", "project", "change", "review", "commit", "branch", "build", "run", "check", "value", "option", "default", "parameter", "function", "class", "module", "import", "package", "version"]


def prose(rng: random.Random, words: int) -> str:
    sentences, out = [], []
    for _ in range(words):
        out.append(rng.choice(WORDS))
        if len(out) >= rng.randint(8, 18):
            sentences.append(" ".join(out).capitalize() + ".")
            out = []
    if out:
        sentences.append(" ".join(out).capitalize() + ".")
    return " ".join(sentences)


def tool(rng: random.Random, index: int, description_words: int) -> dict[str, Any]:
    properties: dict[str, Any] = {}
    for p in range(rng.randint(2, 6)):
        kind = rng.choice(["string", "integer", "boolean", "array"])
        schema: dict[str, Any] = {"type": kind, "description": prose(rng, rng.randint(10, 40))}
        if kind == "array":
            schema["items"] = {"type": "string"}
        properties[f"param_{p}"] = schema
    return {"name": f"Tool{index:02d}", "description": prose(rng, description_words),
            "input_schema": {"$schema": "http://json-schema.org/draft-07/schema#",
                             "type": "object", "properties": properties,
                             "required": list(properties)[:1], "additionalProperties": False}}


def claude_code_request(target_bytes: int = 85_000, *, seed: int = 7, stream: bool = True,
                        cch: str = "00000", max_tokens: int = 32000) -> dict[str, Any]:
    """A request of about `target_bytes` of JSON, shaped like Claude Code's first turn."""
    rng = random.Random(seed)
    tools = [tool(rng, i, 200) for i in range(24)]
    system_words = 1500
    request: dict[str, Any] = {
        "model": "claude-opus-4-8", "max_tokens": max_tokens, "stream": stream,
        "system": [{"type": "text", "text": f"x-anthropic-billing-header: cc_version=2.1.197; "
                                            f"cc_entrypoint=cli; cch={cch};"},
                   {"type": "text", "text": "You are Claude Code. " + prose(rng, system_words),
                    "cache_control": {"type": "ephemeral"}}],
        "tools": tools,
        "messages": [{"role": "user", "content": [
            {"type": "text", "text": "<system-reminder>\n" + prose(rng, 120) +
             "\n</system-reminder>\n\n"},
            {"type": "text", "text": "Fix the failing test.", "cache_control": {"type": "ephemeral"}}]}],
        "thinking": {"type": "adaptive"}, "metadata": {"user_id": "bench"},
    }
    size = len(json.dumps(request))
    if size < target_bytes:  # grow the system prompt to the target size
        extra = prose(rng, (target_bytes - size) // 6)
        request["system"][1]["text"] += " " + extra
    return request
