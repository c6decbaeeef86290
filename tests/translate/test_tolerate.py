"""Unknown is not malformed: what a newer Claude Code sends is dropped or mapped with a note,
and a request with nothing unknown passes untouched."""

from __future__ import annotations

from typing import Any

import pytest

from anyclaude.backends import get
from anyclaude.backends.base import Dialect
from anyclaude.translate.errors import AnthropicError
from anyclaude.translate.request import Plan, to_openai
from anyclaude.translate.tolerate import tolerate
from anyclaude.translate.validate import MAX_DEPTH, check_depth, validate_messages_request

MLX = get("mlx-lm").dialect  # type: ignore[union-attr]
EFFORT_DIALECT = Dialect(send_reasoning_effort=True)
BASH = {"name": "Bash", "description": "Run a command",
        "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}}}


def req(messages: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"model": "claude-x", "max_tokens": 100, "messages": messages, **extra}


def plan(request: dict[str, Any], dialect: Dialect = MLX) -> Plan:
    return to_openai(validate_messages_request(request), dialect, model="local")


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": [{"type": "text", "text": text}]}


def test_a_request_with_nothing_unknown_is_the_same_object() -> None:
    request = req([user("hi"), {"role": "system", "content": "env"}], tools=[BASH],
                  thinking={"type": "adaptive"}, output_config={"effort": "high"})
    same, notes = tolerate(request)
    assert same is request and notes == []


def test_an_empty_system_message_with_per_turn_effort_leaves_no_trace() -> None:
    with_empty = plan(req([user("hi"), {"role": "assistant", "content": "hello"}, user("more"),
                           {"role": "system", "content": [],
                            "output_config": {"effort": "low"}}]))
    without = plan(req([user("hi"), {"role": "assistant", "content": "hello"}, user("more")]))
    assert with_empty.body["messages"] == without.body["messages"]
    assert "system-reminder" not in str(with_empty.body)


@pytest.mark.parametrize("content", ["", "  \n", [], [{"type": "text", "text": ""}]])
def test_every_kind_of_empty_system_message_is_dropped(content: object) -> None:
    messages = plan(req([user("hi"), {"role": "system", "content": content}])).body["messages"]
    assert messages == [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize(("effort", "sent", "note"), [
    ("low", "low", None), ("high", "high", None),
    ("xhigh", "high", "effort 'xhigh' sent as 'high'"),
    ("max", "high", "effort 'max' sent as 'high'"),
    ("ludicrous", None, "ignored the unknown effort 'ludicrous'"),
])
def test_effort_levels_map_onto_reasoning_effort(effort: str, sent: str | None,
                                                 note: str | None) -> None:
    result = plan(req([user("hi")], output_config={"effort": effort}), EFFORT_DIALECT)
    assert result.body.get("reasoning_effort") == sent
    assert result.notes == ([note] if note else [])


def test_a_structured_output_format_survives_an_unknown_effort() -> None:
    fmt = {"type": "json_schema", "schema": {"type": "object"}}
    result = plan(req([user("hi")], output_config={"effort": "max", "format": fmt}),
                  Dialect(response_format=True))
    assert result.body["response_format"]["json_schema"]["schema"] == {"type": "object"}


@pytest.mark.parametrize(("thinking", "enabled"), [
    ({"type": "adaptive", "display": "omitted"}, True),
    ({"type": "adaptive", "display": "updates"}, True),
    ({"type": "enabled", "budget_tokens": 1024}, True),
    ({"type": "disabled"}, False),
])
def test_thinking_types_and_display_modes(thinking: dict[str, Any], enabled: bool) -> None:
    result = plan(req([user("hi")], thinking=thinking))
    assert result.body["chat_template_kwargs"] == {"enable_thinking": enabled}
    assert result.notes == []


def test_an_unknown_thinking_type_is_ignored_with_a_note() -> None:
    result = plan(req([user("hi")], thinking={"type": "telepathic"}))
    assert "chat_template_kwargs" not in result.body and result.emit_thinking
    assert result.notes == ["ignored the unknown thinking type 'telepathic'"]


def test_unknown_and_ignored_top_level_fields_are_noted_not_sent() -> None:
    result = plan(req([user("hi")], crystal_ball={"on": True}, metadata={"user_id": "u"},
                      context_management={"edits": [{"type": "clear_thinking_20251015"}]},
                      safeguards=[{"type": "dangerous_tool_use"}]))
    assert not {"crystal_ball", "metadata", "context_management", "safeguards"} & set(
        result.body)
    assert result.notes[0] == "ignored the unknown field crystal_ball"
    assert result.notes[1].startswith("ignored context_management")
    assert result.notes[2].startswith("ignored safeguards")
    assert len(result.notes) == 3, "metadata is ignored without a note"


def test_unknown_blocks_roles_and_parts_are_dropped_with_notes() -> None:
    tool_use = {"role": "assistant", "content": [
        {"type": "text", "text": "running"}, {"type": "aura", "glow": 1},
        {"type": "tool_use", "id": "toolu_1", "name": "Bash", "input": {"command": "ls"}}]}
    result = plan(req([
        {"role": "user", "content": [{"type": "text", "text": "go"},
                                     {"type": "hologram", "data": "x"}]},
        {"role": "narrator", "content": "meanwhile"},
        tool_use,
        {"role": "user", "mood": "calm", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1",
             "content": [{"type": "text", "text": "a.txt"}, {"type": "video", "url": "x"}]}]},
    ], tools=[BASH], system=[{"type": "text", "text": "be brief"}, {"type": "sticker"}]))
    assert result.body["messages"] == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": "running", "tool_calls": [
            {"id": "toolu_1", "type": "function",
             "function": {"name": "Bash", "arguments": '{"command": "ls"}'}}]},
        {"role": "tool", "tool_call_id": "toolu_1", "content": "a.txt"}]
    assert result.notes == [
        "dropped an unknown hologram block", "dropped a message with the unknown role "
        "'narrator'", "dropped an unknown aura block", "ignored the unknown message field mood",
        "dropped an unknown video part of a tool result",
        "dropped a sticker block from the system prompt"]


def test_an_unknown_tool_choice_is_ignored() -> None:
    result = plan(req([user("hi")], tools=[BASH], tool_choice={"type": "whatever"}),
                  get("lmstudio").dialect)  # type: ignore[union-attr]
    assert "tool_choice" not in result.body
    assert result.notes == ["ignored the unknown tool_choice type 'whatever'"]


def test_deferred_tools_wait_for_a_tool_search_and_server_tools_are_dropped() -> None:
    deferred = {**BASH, "name": "Later", "defer_loading": True}
    search = {"type": "web_search_20250305", "name": "web_search", "max_uses": 5}
    first = plan(req([user("hi")], tools=[BASH, deferred, search]))
    assert [t["function"]["name"] for t in first.body["tools"]] == ["Bash"]
    assert "left out deferred tool(s) Later until a tool search loads them" in first.notes
    assert any("web_search" in note for note in first.notes)
    loaded = plan(req([
        user("find a tool"),
        {"role": "assistant", "content": [
            {"type": "tool_use", "id": "toolu_9", "name": "Bash", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_9",
                                      "content": [{"type": "tool_reference",
                                                   "tool_name": "Later"}]}]}],
        tools=[BASH, deferred]))
    assert [t["function"]["name"] for t in loaded.body["tools"]] == ["Bash", "Later"]


def test_a_request_with_nothing_usable_left_is_a_clear_400() -> None:
    with pytest.raises(AnthropicError) as caught:
        plan(req([{"role": "narrator", "content": "hi"}]))
    assert caught.value.status == 400
    assert "none is left" in caught.value.message and "narrator" in caught.value.message


@pytest.mark.parametrize(("request_body", "path"), [
    (req([{"role": 3, "content": "hi"}]), "messages.0.role"),
    (req([{"role": "user", "content": [{"type": 7}]}]), "messages.0.content.0.type"),
    (req([user("hi")], system=[{"text": "x"}]), "system.0.type"),
    (req([user("hi")], tool_choice={"type": 1}), "tool_choice.type"),
])
def test_malformed_is_still_a_400_naming_the_field(request_body: dict[str, Any],
                                                    path: str) -> None:
    with pytest.raises(AnthropicError) as caught:
        validate_messages_request(request_body)
    assert caught.value.message.startswith(path + ":")


def test_nesting_is_limited_exactly_at_max_depth() -> None:
    """`check_depth` counts the body itself as level 1, arrays and objects alike."""

    def nest(levels: int) -> Any:
        value: Any = "leaf"
        for i in range(levels):
            value = [value] if i % 2 else {"k": value}
        return value

    check_depth(nest(MAX_DEPTH))
    check_depth("a string")
    with pytest.raises(AnthropicError, match="nested more than 128 levels"):
        check_depth(nest(MAX_DEPTH + 1))
