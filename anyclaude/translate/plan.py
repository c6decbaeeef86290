"""One planning step for `/v1/messages` and `/v1/messages/count_tokens`: what kind of work a
request is, its translation, its size, and the limits that size implies.

The proxy runs it in three moves because only the middle one may be slow: `draft`
(classify, translate, estimate: microseconds), an exact count with the model's tokenizer
when `wants_exact_count` says it can change the outcome (seconds for megabytes, so the
proxy runs it in an executor), then `apply_limits` once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from anyclaude.backends.base import Dialect, ToolCalls
from anyclaude.translate import size
from anyclaude.translate.errors import prompt_too_long
from anyclaude.translate.protocol import MessagesRequest, TokenCount, set_field
from anyclaude.translate.request import Plan, to_openai

BACKGROUND_MODEL = "anyclaude-background"
"""The model name the launcher gives Claude Code for Haiku-class (background) work."""

EXACT_FROM = 0.8
"""Below this share of the context window the estimate decides nothing: no clamp, no refusal."""
EXACT_UNTIL = 2.0
"""Above this multiple of the context window an exact count cannot change the answer."""


def classify(body: Mapping[str, Any]) -> str | None:
    """Why a request is background work ("probe", "haiku", "title"), or None for main.

    Claude Code sends `max_tokens: 1` probes, session titles (no tools, a JSON output
    format) and anything addressed to the Haiku alias next to the main conversation; see
    `proxy/background.py` for what the proxy does with them."""
    if body.get("max_tokens") == 1:
        return "probe"
    if body.get("model") == BACKGROUND_MODEL:
        return "haiku"
    output = body.get("output_config")
    if isinstance(output, Mapping) and output.get("format") and not body.get("tools"):
        return "title"
    return None


def draft(request: MessagesRequest, dialect: Dialect, *, model: str | None,
          tool_calls: ToolCalls | None, chars_per_token: float,
          count_only: bool = False) -> Plan:
    """The translation with its prompt size estimated (`plan.prompt_tokens`), limits not
    yet applied. A count_tokens request is translated as a one-token, non-streaming request
    (it has no `max_tokens` of its own), so it is counted exactly as it would be sent."""
    if count_only:
        request = {**request, "max_tokens": 1, "stream": False}
    plan = to_openai(request, dialect, model=model, tool_calls=tool_calls)
    plan.prompt_tokens = size.estimate(plan.body, chars_per_token)
    if not count_only:
        plan.background = classify(request)
    return plan


def wants_exact_count(estimate: int, window: int | None, *, count_only: bool) -> bool:
    """Whether counting with the tokenizer is worth its cost.

    count_tokens asks for the number itself; a message only needs it near the window,
    where it decides the clamp on `max_tokens` or a refusal. Far above the window (more
    than `EXACT_UNTIL` times) no count is made at all, for either: the estimate divides
    characters by a ratio calibrated on this model's own counts that starts on the low
    side (more tokens), so for the prompt to fit after all the tokenizer would have to
    see twice the characters per token the ratio says (over 7 for the default), which
    no tokenizer does on prose, code or JSON. The answer is the same either way,
    "prompt is too long", and the count it skips took seconds to minutes on the
    multi-megabyte prompts that get there.
    """
    if window and estimate > EXACT_UNTIL * window:
        return False
    return count_only or bool(window and estimate > EXACT_FROM * window)


@dataclass(frozen=True)
class Limits:
    context_window: int | None = None
    max_output_tokens: int | None = None


def apply_limits(plan: Plan, limits: Limits) -> None:
    """Clamp `max_tokens` to the output cap and to what fits the context window next to
    `plan.prompt_tokens`; refuse a prompt that cannot fit at all with the phrase Claude
    Code compacts on."""
    max_tokens = plan.requested_max_tokens
    if limits.max_output_tokens:
        max_tokens = min(max_tokens, limits.max_output_tokens)
    if limits.context_window:
        room = limits.context_window - plan.prompt_tokens
        if room <= 0:
            raise prompt_too_long(plan.prompt_tokens, limits.context_window)
        max_tokens = min(max_tokens, room)
    plan.max_tokens = max(1, max_tokens)
    set_field(plan.body, plan.max_tokens_param, plan.max_tokens)


def token_count(plan: Plan) -> TokenCount:
    """The count_tokens answer."""
    return {"input_tokens": plan.prompt_tokens}
