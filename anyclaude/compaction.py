"""What Claude Code must believe about the model so that it compacts in time.

Claude Code compacts when the conversation reaches its threshold, which it computes from
what it believes the window is (measured on 2.1.197 and 2.1.332, `claude -p /context`):

    threshold = window - min(max output tokens, 20,000) - 13,000

where `window` is CLAUDE_CODE_MAX_CONTEXT_TOKENS, honoured only for a model name Claude Code
does not take for one of its own, and CLAUDE_AUTOCOMPACT_PCT_OVERRIDE can only lower it (to
that percentage of `window - reserve`). CLAUDE_CODE_AUTO_COMPACT_WINDOW is raised to 100,000
when below, so on its own it is no use for a local model; 2.1.197 still needs it, as it
compacts before a rejection only when the window comes from a setting. Without these Claude
Code assumes 200k (2.1.197) or 1M (2.1.332+) tokens and compacts only after the proxy has
refused a prompt as too long, which older versions do not always survive.

So anyclaude states the window that puts the threshold at `AT` of the real one: larger than
the real window for small models (the reserve and buffer would otherwise eat most of it), or
the real window with a percentage for big ones.
"""

from __future__ import annotations

import math
import re

AT = 0.8
"""Compact when the prompt fills this share of the real window: the rest leaves room for the
next answer and for one turn's growth (a tool result) before the proxy must refuse."""
SUMMARY_BUFFER = 13_000
"""What Claude Code keeps free below its effective window for the compaction summary."""
RESERVE_CAP = 20_000
"""Claude Code reserves min(CLAUDE_CODE_MAX_OUTPUT_TOKENS, this) for the answer."""
_CLAUDE_NAME = re.compile(r"^claude-|claude-(?:opus|sonnet|haiku|fable|mythos|instant|\d)|\[1m\]")
CLAUDE_ALIASES = frozenset({"default", "best", "opus", "sonnet", "haiku", "opusplan", "fable"})
"""Names Claude Code resolves to its own models."""


def claude_would_take(name: str) -> bool:
    """Whether Claude Code would take `name` for one of its own models: it then ignores
    CLAUDE_CODE_MAX_CONTEXT_TOKENS and sends the longer prompt it writes for Claude. That is
    a name starting with `claude-` (2.1.197), one naming a Claude family anywhere
    (`my-claude-sonnet-4-5-distill`), a `[1m]` suffix, or an alias such as `sonnet`."""
    lowered = name.strip().lower()
    return bool(_CLAUDE_NAME.search(lowered)) or lowered in CLAUDE_ALIASES


def model_name(configured: str | None, mode: str) -> str:
    """The model name Claude Code gets: the configured model, unless Claude Code would take
    it for its own, else `anyclaude-<mode>`."""
    if configured and not claude_would_take(configured):
        return configured
    return f"anyclaude-{mode}"


def compaction_env(window: int, max_output: int) -> dict[str, str]:
    """The variables that make Claude Code compact at `AT` of `window`, given the output cap
    it is told (CLAUDE_CODE_MAX_OUTPUT_TOKENS)."""
    target = math.floor(AT * window)
    reserve = min(max_output, RESERVE_CAP)
    believed = max(window, target + reserve + SUMMARY_BUFFER)
    env = {"CLAUDE_CODE_MAX_CONTEXT_TOKENS": str(believed),
           "CLAUDE_CODE_AUTO_COMPACT_WINDOW": str(believed)}
    if believed - reserve - SUMMARY_BUFFER > target:
        percent = math.ceil(1_000_000 * target / (believed - reserve)) / 10_000
        env["CLAUDE_AUTOCOMPACT_PCT_OVERRIDE"] = str(percent)
    return env


def threshold(env: dict[str, str], max_output: int) -> int:
    """Where Claude Code compacts with `env` (its own formula, for tests and the summary)."""
    window = int(env["CLAUDE_CODE_MAX_CONTEXT_TOKENS"])
    effective = window - min(max_output, RESERVE_CAP)
    limit = effective - SUMMARY_BUFFER
    percent = env.get("CLAUDE_AUTOCOMPACT_PCT_OVERRIDE")
    return min(math.floor(effective * float(percent) / 100), limit) if percent else limit
