"""What anyclaude knows about Claude Code itself: the versions the test suite runs, how to
install the newest, and every kind of thing the tested versions send (roles, block types,
fields, beta flags, tool kinds...), so `anyclaude doctor` can name what a newer version
sends that nobody has looked at yet.

`KNOWN` is data: what the translator handles (its tables in `translate/tolerate.py`) and
what the captures in `tests/fixtures/claude-code-*` contain (a test keeps it complete).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from anyclaude.translate.tolerate import (
    CONTENT_TYPES,
    EFFORT,
    IGNORED_FIELDS,
    MESSAGE_FIELDS,
    READ_FIELDS,
    RESULT_PART_TYPES,
    ROLES,
    THINKING,
)

OLDEST_TESTED = (2, 1, 197)
"""The oldest Claude Code the suite runs (the newest whose npm package accepts Node 20);
doctor warns below it."""
NEWEST_TESTED = (2, 1, 332)
"""The newest release the suite runs (2026-11-24)."""
INSTALL_COMMAND = "npm install -g @anthropic-ai/claude-code@latest"
"""`@latest` explicitly: without it, npm on Node 20 silently picks 2.1.197, the newest release
whose `engines` accepts Node 20 (newer ones ask for Node 22 but are native binaries that run
on Node 20; npm installs them with an EBADENGINE warning)."""

CATEGORIES = ("role", "block", "field", "message field", "beta", "tool kind", "tool field",
              "thinking", "effort")

KNOWN: Mapping[str, frozenset[str]] = {
    "role": frozenset(ROLES),
    "block": CONTENT_TYPES | RESULT_PART_TYPES | {"web_search_tool_result"},
    "field": READ_FIELDS | set(IGNORED_FIELDS),
    "message field": MESSAGE_FIELDS - {"role", "content"},
    "beta": frozenset({
        "claude-code-20250219", "interleaved-thinking-2025-05-14",
        "context-management-2025-06-27", "context-1m-2025-08-07", "effort-2025-11-24",
        "prompt-caching-scope-2026-01-05", "mid-conversation-system-2026-04-07",
        "thinking-token-count-2026-05-13", "redact-thinking-2026-02-12",
        "structured-outputs-2025-12-15", "advanced-tool-use-2025-11-20",
        "per-turn-control-2026-07-01", "mid-conversation-tool-changes-2026-07-01",
        "dangerous-tool-use-2026-09-03", "thinking-display-updates-2026-08-18",
        "afk-mode-2026-01-31", "token-counting-2024-11-01"}),
    "tool kind": frozenset({"custom", "web_search_20250305"}),
    "tool field": frozenset({"name", "description", "input_schema", "cache_control", "type",
                             "defer_loading"}),
    "thinking": frozenset(THINKING) | {"display: omitted", "display: updates"},
    "effort": frozenset(EFFORT),
}


def _blocks(content: object) -> Iterable[str]:
    """Block types in a content list, tool results' own content included."""
    if not isinstance(content, list):
        return
    for block in content:
        if isinstance(block, dict) and isinstance(block.get("type"), str):
            yield block["type"]
            if block["type"] == "tool_result":
                yield from _blocks(block.get("content"))


def _effort(config: object) -> list[str]:
    effort = config.get("effort") if isinstance(config, dict) else None
    return [effort] if isinstance(effort, str) else []


def features(body: Mapping[str, Any], headers: Mapping[str, str]) -> dict[str, set[str]]:
    """Everything in one Messages request that `KNOWN` tracks, by category."""
    found: dict[str, set[str]] = {name: set() for name in CATEGORIES}
    found["field"].update(body)
    beta = next((v for k, v in headers.items() if k.lower() == "anthropic-beta"), "")
    found["beta"].update(flag.strip() for flag in beta.split(",") if flag.strip())
    system = body.get("system")
    found["block"].update(_blocks(system))
    for message in body.get("messages") or []:
        if not isinstance(message, dict):
            continue
        found["role"].add(str(message.get("role")))
        found["message field"].update(k for k in message if k not in ("role", "content"))
        found["block"].update(_blocks(message.get("content")))
        found["effort"].update(_effort(message.get("output_config")))
    for tool in body.get("tools") or []:
        if isinstance(tool, dict):
            found["tool kind"].add(str(tool.get("type") or "custom"))
            found["tool field"].update(tool)
    thinking = body.get("thinking")
    if isinstance(thinking, dict):
        found["thinking"].add(str(thinking.get("type")))
        found["thinking"].update(f"{k}: {v}" for k, v in thinking.items()
                                 if k not in ("type", "budget_tokens"))
    found["effort"].update(_effort(body.get("output_config")))
    return found


def unseen(found: Mapping[str, Iterable[str]]) -> dict[str, list[str]]:
    """What `found` has beyond `KNOWN`, by category (categories without news left out)."""
    news = {name: sorted(set(found.get(name, ())) - KNOWN[name]) for name in CATEGORIES}
    return {name: items for name, items in news.items() if items}


def describe(news: Mapping[str, list[str]]) -> str:
    """`beta foo-2027-01-01, field bar and tool kind baz`."""
    items = [f"{name} {item}" for name, found in news.items() for item in found]
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]
