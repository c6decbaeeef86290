"""What Claude Code is told about the window: it compacts at 80% of the real one, and the model
names anyclaude passes are never taken for Claude's own (`tests/e2e/test_compaction.py`
checks both against the real Claude Code)."""

from __future__ import annotations

import pytest

from anyclaude.compaction import (
    AT,
    claude_would_take,
    compaction_env,
    model_name,
    threshold,
)
from anyclaude.launcher import max_output_tokens

WINDOWS = [16384, 32768, 40960, 65536, 131072, 163840, 200000, 262144, 1048576]


@pytest.mark.parametrize("window", WINDOWS)
@pytest.mark.parametrize("configured", [None, 1000, 8192, 64000])
def test_claude_code_compacts_at_80_percent_of_the_real_window(window: int,
                                                                configured: int | None) -> None:
    output = max_output_tokens(configured, window)
    assert output is not None
    env = compaction_env(window, output)
    assert abs(threshold(env, output) - AT * window) <= 2
    assert env["CLAUDE_CODE_AUTO_COMPACT_WINDOW"] == env["CLAUDE_CODE_MAX_CONTEXT_TOKENS"]
    assert int(env["CLAUDE_CODE_MAX_CONTEXT_TOKENS"]) >= window


def test_small_windows_are_stated_larger_and_big_ones_get_a_percentage() -> None:
    assert compaction_env(65536, 16384) == {"CLAUDE_CODE_MAX_CONTEXT_TOKENS": "81812",
                                            "CLAUDE_CODE_AUTO_COMPACT_WINDOW": "81812"}
    assert compaction_env(262144, 32000) == {"CLAUDE_CODE_MAX_CONTEXT_TOKENS": "262144",
                                             "CLAUDE_CODE_AUTO_COMPACT_WINDOW": "262144",
                                             "CLAUDE_AUTOCOMPACT_PCT_OVERRIDE": "86.6076"}


def test_claude_code_s_own_formula_as_measured_with_slash_context() -> None:
    # 2.1.197 and 2.1.332, /context with a 65,536 window and 16,384 output tokens: 29.4k
    # autocompact buffer; the percentage only lowers the threshold.
    env = {"CLAUDE_CODE_MAX_CONTEXT_TOKENS": "65536"}
    assert 65536 - threshold(env, 16384) == 29384
    assert threshold({**env, "CLAUDE_AUTOCOMPACT_PCT_OVERRIDE": "50"}, 16384) == 24576
    assert threshold({**env, "CLAUDE_AUTOCOMPACT_PCT_OVERRIDE": "99"}, 16384) == 36152


@pytest.mark.parametrize(("name", "taken"), [
    ("anyclaude-mlx-lm", False),
    ("anyclaude-background", False),
    ("mlx-community/Qwen3-Coder-30B-A3B-Instruct-4bit", False),
    ("/home/me/.cache/anyclaude-test/tiny-models/scripted", False),
    ("qwen/qwen3-coder-30b", False),
    ("claude-sonnet-4-5", True),
    ("claude-local", True),  # 2.1.197 ignores the window for any claude- name
    ("my-claude-sonnet-4-5-distill", True),
    ("anyclaude-claude-opus-4-1", True),
    ("us.anthropic.claude-3-5-haiku-20241022-v1:0", True),
    ("Sonnet", True),
    ("qwen[1m]", True),
])
def test_names_claude_code_takes_for_its_own(name: str, taken: bool) -> None:
    assert claude_would_take(name) is taken


def test_the_configured_model_is_passed_unless_claude_code_would_take_it() -> None:
    assert model_name("/models/qwen3", "mlx-lm") == "/models/qwen3"
    assert model_name(None, "openai") == "anyclaude-openai"
    assert model_name("claude-3-5-sonnet-distill", "lmstudio") == "anyclaude-lmstudio"
