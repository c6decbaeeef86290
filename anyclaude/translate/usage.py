"""A backend's token counts, as Claude Code may see them.

Claude Code adds these up for its context meter, compaction and cost lines, so a negative,
boolean or absurd count from a misbehaving backend must not pass through (issue 11): a
count is an int in [0, 2**31) or it is missing, and then the proxy estimates it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Usage:
    prompt_tokens: int | None = None
    cached_tokens: int = 0
    completion_tokens: int | None = None

    @classmethod
    def parse(cls, raw: object) -> Usage | None:
        if not isinstance(raw, dict):
            return None
        details = raw.get("prompt_tokens_details")
        cached = _count(details.get("cached_tokens")) if isinstance(details, dict) else None
        return cls(_count(raw.get("prompt_tokens")), cached or 0,
                   _count(raw.get("completion_tokens")))


_MAX_COUNT = 2**31 - 1
"""No window comes near it, and every JSON encoder on the way can carry it."""


def _count(value: object) -> int | None:
    """A backend's token count as Claude Code may see it: an int in [0, 2**31) (a whole
    float is accepted, values outside are clamped); anything else is no count at all, so
    it gets estimated."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        return None
    return min(max(0, value), _MAX_COUNT)


__all__ = ["Usage"]
