"""The warm-up prefix: what is cut, what is kept, when a request can use it."""

from __future__ import annotations

from typing import Any

import pytest

from anyclaude.translate import warm

TOOLS = [{"type": "function", "function": {"name": "Bash", "parameters": {"type": "object"}}}]
STATIC = "<system-reminder>\nthe date\n</system-reminder>\n\n<system-reminder>\nenv\n</system-reminder>"


def first(content: Any, **extra: Any) -> dict[str, Any]:
    return {"messages": [{"role": "system", "content": "You are Claude Code."},
                         {"role": "user", "content": content}],
            "tools": TOOLS, "max_tokens": 32000, "stream": True,
            "stream_options": {"include_usage": True}, **extra}


def test_the_typed_words_are_cut_and_the_static_context_kept() -> None:
    prefix = warm.first_turn_prefix(first(STATIC + "\n\nfix the bug"))
    assert prefix is not None
    assert prefix["messages"][-1]["content"] == STATIC
    assert prefix["messages"][0] == {"role": "system", "content": "You are Claude Code."}
    assert prefix["tools"] == TOOLS


def test_parts_are_cut_at_the_first_part_that_is_not_a_reminder() -> None:
    parts = [{"type": "text", "text": "<system-reminder>a</system-reminder>"},
             {"type": "text", "text": "typed"},
             {"type": "text", "text": "<system-reminder>b</system-reminder>"}]
    prefix = warm.first_turn_prefix(first(parts))
    assert prefix is not None and prefix["messages"][-1]["content"] == parts[:1]


@pytest.mark.parametrize("body", [
    first(STATIC),  # nothing typed: nothing to cut
    first("fix the bug"),  # no static context: nothing worth replaying
    {**first(STATIC + "\n\nhi"), "tools": []},  # side requests have no tools
    {"messages": [{"role": "user", "content": STATIC + "x"},
                  {"role": "assistant", "content": "ok"},
                  {"role": "user", "content": STATIC + "y"}], "tools": TOOLS},  # a follow-up
])
def test_only_a_session_s_first_main_request_is_recorded(body: dict[str, Any]) -> None:
    assert warm.first_turn_prefix(body) is None


def test_the_replay_asks_for_one_token_without_streaming() -> None:
    prefix = warm.first_turn_prefix(first(STATIC + "\n\nhi"))
    assert prefix is not None
    body = warm.replay_body(prefix, "max_completion_tokens")
    assert body["max_completion_tokens"] == 1 and body["stream"] is False
    assert "max_tokens" not in body and "stream_options" not in body
    assert body["messages"] == prefix["messages"]


def test_a_request_shares_the_prefix_when_it_starts_the_same_way() -> None:
    prefix = warm.first_turn_prefix(first(STATIC + "\n\nhi"))
    assert prefix is not None
    assert warm.shares_prefix(prefix, first(STATIC + "\n\nsomething else entirely"))
    assert not warm.shares_prefix(prefix, first("<system-reminder>\nanother day\n"
                                                "</system-reminder>\n\nhi"))
    assert not warm.shares_prefix(prefix, {**first(STATIC + "\n\nhi"), "tools": []})
    other_system = first(STATIC + "\n\nhi")
    other_system["messages"][0] = {"role": "system", "content": "Another prompt."}
    assert not warm.shares_prefix(prefix, other_system)
