"""The planning step: background kinds, the size estimate, when an exact count is worth it."""

from __future__ import annotations

from typing import Any

import pytest

from anyclaude.backends import get
from anyclaude.translate import size
from anyclaude.translate.plan import (
    BACKGROUND_MODEL,
    EXACT_FROM,
    EXACT_UNTIL,
    classify,
    draft,
    token_count,
    wants_exact_count,
)

MLX = get("mlx-lm").dialect  # type: ignore[union-attr]
HI = [{"role": "user", "content": "hi"}]
BASH = {"name": "Bash", "input_schema": {"type": "object"}}
TITLE = {"format": {"type": "json_schema", "schema": {"type": "object"}}}


@pytest.mark.parametrize(("request_", "kind"), [
    ({"model": "claude-x", "max_tokens": 1, "messages": HI}, "probe"),
    ({"model": BACKGROUND_MODEL, "max_tokens": 50, "messages": HI}, "haiku"),
    ({"model": "claude-x", "max_tokens": 50, "messages": HI, "output_config": TITLE}, "title"),
    ({"model": "claude-x", "max_tokens": 50, "messages": HI, "output_config": TITLE,
      "tools": [BASH]}, None),
    ({"model": "claude-x", "max_tokens": 50, "messages": HI}, None),
])
def test_background_work_is_told_apart_from_the_main_conversation(
        request_: dict[str, Any], kind: str | None) -> None:
    assert classify(request_) == kind
    plan = draft(request_, MLX, model="m", tool_calls=None, chars_per_token=3.6)
    assert plan.background == kind


def test_draft_estimates_the_translated_prompt() -> None:
    request = {"model": "claude-x", "max_tokens": 50, "system": "be brief " * 100,
               "messages": HI, "tools": [BASH]}
    plan = draft(request, MLX, model="m", tool_calls=None, chars_per_token=3.6)
    assert plan.prompt_tokens == size.estimate(plan.body, 3.6) > 200
    assert plan.max_tokens == 50


def test_count_tokens_is_planned_as_a_one_token_request_without_streaming() -> None:
    request = {"model": "claude-x", "messages": HI, "stream": True}
    plan = draft(request, MLX, model=None, tool_calls=None, chars_per_token=3.6,
                 count_only=True)
    assert plan.max_tokens == 1 and plan.body["stream"] is False and plan.background is None
    assert token_count(plan) == {"input_tokens": plan.prompt_tokens}


@pytest.mark.parametrize(("estimate", "window", "count_only", "wanted"), [
    (1000, None, False, False),  # no window: nothing to clamp against
    (1000, None, True, True),  # count_tokens wants the number itself
    (int(EXACT_FROM * 10_000), 10_000, False, False),  # far enough below the window
    (int(EXACT_FROM * 10_000) + 1, 10_000, False, True),  # close: the clamp depends on it
    (15_000, 10_000, False, True),  # above, but a count could still bring it in
    (int(EXACT_UNTIL * 10_000), 10_000, False, True),
    (int(EXACT_UNTIL * 10_000) + 1, 10_000, False, False),  # far above: refused either way
    (int(EXACT_UNTIL * 10_000) + 1, 10_000, True, False),
])
def test_exact_counts_only_where_they_can_change_the_outcome(
        estimate: int, window: int | None, count_only: bool, wanted: bool) -> None:
    assert wants_exact_count(estimate, window, count_only=count_only) is wanted
