"""The first user turn: static context first, the user's words last, every later request a
byte-exact extension of the one before."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest

from anyclaude.backends import get
from anyclaude.translate.firstturn import context_first, is_context
from anyclaude.translate.request import to_openai

MLX = get("mlx-lm").dialect  # type: ignore[union-attr]
DATE = "<system-reminder>\nContext: today is a fixed date.\n</system-reminder>\n\n"
RULES = "<system-reminder>\nAttribution rules.\n</system-reminder>\n"
AGENTS = "Available agent types: A, B."
ENVIRONMENT = [{"type": "text", "text": "# Environment\nWorking directory: /p",
                "cache_control": {"type": "ephemeral"}}]


def typed(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text, "cache_control": {"type": "ephemeral"}}


def older(words: str) -> list[dict[str, Any]]:
    """The first turn as Claude Code 2.1.197 sends it: reminder, words, a system message."""
    return [{"role": "user", "content": [{"type": "text", "text": DATE}, typed(words)]},
            {"role": "system", "content": AGENTS}]


def newer(words: str) -> list[dict[str, Any]]:
    """...and as 2.1.330+ does: reminder, words, the environment as a system message."""
    return [{"role": "user", "content": [{"type": "text", "text": RULES}, typed(words)]},
            {"role": "system", "content": ENVIRONMENT}]


def upstream(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    request = {"model": "m", "max_tokens": 100, "system": "Base.", "messages": messages}
    out: list[dict[str, Any]] = to_openai(request, MLX, model=None).body["messages"]
    return out


def test_claude_code_2_1_197_first_turn_puts_the_words_last() -> None:
    assert upstream(older("say hi"))[1] == {"role": "user", "content": (
        f"{DATE}<system-reminder>\n{AGENTS}\n</system-reminder>\n\nsay hi")}


def test_claude_code_2_1_330_first_turn_puts_the_words_last() -> None:
    assert upstream(newer("say hi"))[1] == {"role": "user", "content": (
        f"{RULES}<system-reminder>\n# Environment\nWorking directory: /p\n"
        "</system-reminder>\n\nsay hi")}


@pytest.mark.parametrize("turn", [older, newer])
def test_two_sessions_share_everything_before_the_typed_words(turn: Any) -> None:
    one = json.dumps(upstream(turn("say hi")))
    two = json.dumps(upstream(turn("what does this project do?")))
    shared = next(i for i, (a, b) in enumerate(zip(one, two, strict=False)) if a != b)
    assert one[shared:] == 'say hi"}]' and two[shared:] == 'what does this project do?"}]'


@pytest.mark.parametrize("turn", [older, newer])
def test_every_later_request_extends_the_one_before(turn: Any) -> None:
    history: list[dict[str, Any]] = turn("run ls")
    requests = [list(history)]
    for step in range(3):
        history += [{"role": "assistant", "content": [
            {"type": "text", "text": "Running it."},
            {"type": "tool_use", "id": f"toolu_{step}", "name": "Bash", "input": {"c": "ls"}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": f"toolu_{step}", "content": "a.txt"},
                {"type": "text", "text": DATE}]},
            {"role": "system", "content": AGENTS}]
        requests.append(list(history))
    rendered = [upstream(r) for r in requests]
    for before, after in itertools.pairwise(rendered):
        assert after[:len(before)] == before
    assert rendered[-1][1]["content"].endswith("run ls")


def test_images_and_documents_stay_with_the_words_in_their_order() -> None:
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                         "data": "AAAA"}}
    moved = context_first([{"role": "user", "content": [
        typed("look:"), image, {"type": "text", "text": DATE}, typed("what is it?")]}])
    assert moved == [{"role": "user", "content": [
        {"type": "text", "text": DATE}, typed("look:"), image, typed("what is it?")]}]


def test_string_content_and_several_user_messages_become_one_turn() -> None:
    moved = context_first([{"role": "user", "content": "first"},
                           {"role": "user", "content": DATE},
                           {"role": "user", "content": "second"}])
    assert moved == [{"role": "user", "content": [
        {"type": "text", "text": DATE}, {"type": "text", "text": "first"},
        {"type": "text", "text": "second"}]}]


@pytest.mark.parametrize("messages", [
    [{"role": "user", "content": "hi"}],
    [{"role": "user", "content": [{"type": "text", "text": DATE}, typed("hi")]}],
    [{"role": "user", "content": DATE}, {"role": "system", "content": AGENTS}],
    [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": "x"},
                                  {"type": "text", "text": "hi"}]},
     {"role": "system", "content": AGENTS}],
    [],
], ids=["words only", "already in order", "context only", "tool results", "empty"])
def test_nothing_to_move_leaves_the_messages_alone(messages: list[dict[str, Any]]) -> None:
    assert context_first(messages) == messages


def test_leading_system_messages_stay_part_of_the_system_prompt() -> None:
    out = upstream([{"role": "system", "content": "Extra."}, *older("hi")])
    assert out[0] == {"role": "system", "content": "Base.\n\nExtra."}
    assert out[1]["content"].endswith("\n\nhi")


def test_only_the_turn_before_the_first_answer_is_rearranged() -> None:
    later: list[dict[str, Any]] = [{"role": "assistant", "content": "Hello."},
                                   {"role": "user", "content": [typed("and now?"),
                                                                {"type": "text", "text": DATE}]}]
    moved = context_first([*older("hi"), *later])
    assert moved[1:] == later


@pytest.mark.parametrize(("block", "expected"), [
    ({"type": "text", "text": DATE}, True),
    ({"type": "text", "text": "  <system-reminder>x</system-reminder>  "}, True),
    ({"type": "mid_conv_system", "content": "x"}, True),
    ({"type": "text", "text": "<system-reminder>x</system-reminder> and my question"}, False),
    ({"type": "text", "text": "my words"}, False),
    ({"type": "image", "source": {}}, False),
])
def test_context_is_a_whole_reminder_or_system_text(block: dict[str, Any],
                                                    expected: bool) -> None:
    assert is_context(block) is expected
