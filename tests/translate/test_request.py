"""Anthropic request -> OpenAI request, table-driven by behaviour."""

from __future__ import annotations

import json
from typing import Any

import pytest

from anyclaude.backends import get
from anyclaude.backends.base import Dialect
from anyclaude.translate.errors import AnthropicError
from anyclaude.translate.plan import Limits, apply_limits
from anyclaude.translate.request import Plan, to_openai

MLX = get("mlx-lm").dialect  # type: ignore[union-attr]
LMSTUDIO = get("lmstudio").dialect  # type: ignore[union-attr]
TEXTGEN = get("mlx-textgen").dialect  # type: ignore[union-attr]
OPENAI = get("openai").dialect  # type: ignore[union-attr]

BASH = {"name": "Bash", "description": "Run a command",
        "input_schema": {"$schema": "http://json-schema.org/draft-07/schema#", "type": "object",
                         "properties": {"command": {"type": "string"},
                                        "timeout": {"type": "integer"}},
                         "required": ["command"], "additionalProperties": False}}


def req(messages: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"model": "claude-sonnet-4-5", "max_tokens": 1000, "messages": messages, **extra}


def body(request: dict[str, Any], dialect: Dialect = MLX, **kw: Any) -> dict[str, Any]:
    return to_openai(request, dialect, model=kw.pop("model", "local-model"), **kw).body


def test_system_string_becomes_first_system_message() -> None:
    out = body(req([{"role": "user", "content": "hi"}], system="Be brief."))
    assert out["messages"][0] == {"role": "system", "content": "Be brief."}
    assert out["messages"][1] == {"role": "user", "content": "hi"}


def test_billing_header_block_is_removed_and_remaining_blocks_joined() -> None:
    system = [
        {"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1.197.abc; cch=1f2e3;"},
        {"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}},
        {"type": "text", "text": "Be helpful."},
    ]
    out = body(req([{"role": "user", "content": "hi"}], system=system))
    assert out["messages"][0]["content"] == "You are Claude Code.\n\nBe helpful."


def test_billing_header_line_inside_a_larger_block_is_stripped() -> None:
    system = "x-anthropic-billing-header: cc_version=1; cch=00000;\nYou are Claude Code."
    out = body(req([{"role": "user", "content": "hi"}], system=system))
    assert out["messages"][0]["content"] == "You are Claude Code."


def test_billing_header_changes_do_not_change_the_upstream_request() -> None:
    def with_cch(cch: str) -> bytes:
        system = [{"type": "text", "text": f"x-anthropic-billing-header: cch={cch};"},
                  {"type": "text", "text": "Stable."}]
        return json.dumps(body(req([{"role": "user", "content": "hi"}], system=system))).encode()

    assert with_cch("aaaaa") == with_cch("bbbbb")


def test_mlx_lm_never_gets_a_model_name() -> None:
    out = body(req([{"role": "user", "content": "hi"}]), MLX, model="mlx-community/Qwen3")
    assert "model" not in out


def test_configured_model_replaces_the_claude_model_name() -> None:
    out = body(req([{"role": "user", "content": "hi"}]), LMSTUDIO, model="qwen3-coder")
    assert out["model"] == "qwen3-coder"


def test_leading_system_message_joins_the_system_prompt() -> None:
    out = body(req([{"role": "system", "content": "Extra rules."},
                    {"role": "user", "content": "hi"}], system="Base."))
    assert out["messages"][0] == {"role": "system", "content": "Base.\n\nExtra rules."}


@pytest.mark.parametrize("content", ["Agents: A, B.", [{"type": "text", "text": "Agents: A, B."}]])
def test_mid_conversation_system_message_becomes_a_user_reminder(content: object) -> None:
    out = body(req([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Hello."},
                    {"role": "user", "content": "go on"}, {"role": "system", "content": content}]))
    assert out["messages"][2:] == [
        {"role": "user",
         "content": "go on\n\n<system-reminder>\nAgents: A, B.\n</system-reminder>"}]


def test_text_blocks_join_without_doubling_newlines() -> None:
    out = body(req([{"role": "user", "content": [
        {"type": "text", "text": "<system-reminder>ctx</system-reminder>\n\n"},
        {"type": "text", "text": "say hi", "cache_control": {"type": "ephemeral"}}]}]))
    assert out["messages"][0]["content"] == "<system-reminder>ctx</system-reminder>\n\nsay hi"


def test_empty_text_blocks_are_dropped() -> None:
    out = body(req([{"role": "user", "content": [{"type": "text", "text": ""},
                                                 {"type": "text", "text": "hi"}]}]))
    assert out["messages"][0]["content"] == "hi"


IMAGE = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBO"}}


def test_images_become_image_url_parts_for_vision_backends() -> None:
    out = body(req([{"role": "user", "content": [{"type": "text", "text": "look"}, IMAGE]}]),
               LMSTUDIO)
    assert out["messages"][0]["content"] == [
        {"type": "text", "text": "look"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBO"}}]


def test_url_images_keep_their_url() -> None:
    image = {"type": "image", "source": {"type": "url", "url": "https://x/cat.png"}}
    out = body(req([{"role": "user", "content": [image]}]), LMSTUDIO)
    assert out["messages"][0]["content"][0]["image_url"]["url"] == "https://x/cat.png"


def test_images_become_placeholders_for_text_only_backends() -> None:
    out = body(req([{"role": "user", "content": [{"type": "text", "text": "look"}, IMAGE]}]), MLX)
    assert out["messages"][0]["content"] == "look\n\n[image omitted: image/png]"


def test_text_documents_are_inlined_and_pdfs_become_placeholders() -> None:
    doc = {"type": "document", "title": "notes",
           "source": {"type": "text", "media_type": "text/plain", "data": "line 1"}}
    pdf = {"type": "document",
           "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBE"}}
    out = body(req([{"role": "user", "content": [doc, pdf]}]))
    assert out["messages"][0]["content"] == (
        "[document: notes]\nline 1\n\n[document omitted: application/pdf]")


def tool_turns(result: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    result = result or {"type": "tool_result", "tool_use_id": "toolu_1", "content": "file.txt"}
    return [
        {"role": "user", "content": "list files"},
        {"role": "assistant", "content": [
            {"type": "text", "text": "Listing."},
            {"type": "tool_use", "id": "toolu_1", "name": "Bash", "input": {"command": "ls"}}]},
        {"role": "user", "content": [result, {"type": "text", "text": "<system-reminder>r"
                                                                     "</system-reminder>"}]},
    ]


def test_tool_use_and_tool_result_become_tool_calls_and_tool_messages() -> None:
    out = body(req(tool_turns(), tools=[BASH]))
    assert out["messages"] == [
        {"role": "user", "content": "list files"},
        {"role": "assistant", "content": "Listing.", "tool_calls": [
            {"id": "toolu_1", "type": "function",
             "function": {"name": "Bash", "arguments": '{"command": "ls"}'}}]},
        {"role": "tool", "tool_call_id": "toolu_1", "content": "file.txt"},
        {"role": "user", "content": "<system-reminder>r</system-reminder>"},
    ]


def test_tool_result_error_is_marked_for_the_model() -> None:
    result = {"type": "tool_result", "tool_use_id": "toolu_1", "is_error": True,
              "content": "permission denied"}
    out = body(req(tool_turns(result), tools=[BASH]))
    tool = next(m for m in out["messages"] if m["role"] == "tool")
    assert tool["content"] == "<tool_use_error>permission denied</tool_use_error>"


def test_tool_result_block_content_is_joined_and_empty_result_is_marked() -> None:
    result = {"type": "tool_result", "tool_use_id": "toolu_1",
              "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}
    out = body(req(tool_turns(result), tools=[BASH]))
    assert next(m for m in out["messages"] if m["role"] == "tool")["content"] == "a\nb"
    empty = {"type": "tool_result", "tool_use_id": "toolu_1", "content": []}
    out = body(req(tool_turns(empty), tools=[BASH]))
    assert next(m for m in out["messages"] if m["role"] == "tool")["content"] == "(no output)"


def test_images_in_tool_results_follow_the_tool_messages_for_vision_backends() -> None:
    result = {"type": "tool_result", "tool_use_id": "toolu_1",
              "content": [{"type": "text", "text": "screenshot:"}, IMAGE]}
    out = body(req(tool_turns(result), tools=[BASH]), LMSTUDIO)
    tool_at = next(i for i, m in enumerate(out["messages"]) if m["role"] == "tool")
    assert out["messages"][tool_at]["content"] == "screenshot:\n[image attached below]"
    follow = out["messages"][tool_at + 1]
    assert follow["role"] == "user" and follow["content"][0]["type"] == "image_url"


def test_images_in_tool_results_become_placeholders_for_text_backends() -> None:
    result = {"type": "tool_result", "tool_use_id": "toolu_1", "content": [IMAGE]}
    out = body(req(tool_turns(result), tools=[BASH]), MLX)
    assert next(m for m in out["messages"] if m["role"] == "tool")["content"] == (
        "[image omitted: image/png]")


def test_unanswered_tool_call_gets_a_placeholder_result() -> None:
    turns = [{"role": "user", "content": "go"},
             {"role": "assistant", "content": [
                 {"type": "tool_use", "id": "toolu_1", "name": "Bash", "input": {}},
                 {"type": "tool_use", "id": "toolu_2", "name": "Bash", "input": {}}]},
             {"role": "user", "content": [
                 {"type": "tool_result", "tool_use_id": "toolu_2", "content": "ok"}]}]
    roles = [(m["role"], m.get("tool_call_id"), m.get("content"))
             for m in body(req(turns, tools=[BASH]))["messages"]]
    assert roles[-2:] == [("tool", "toolu_2", "ok"), ("tool", "toolu_1", "[no result]")]


def test_thinking_blocks_are_dropped_from_history() -> None:
    turns = [{"role": "user", "content": "q"},
             {"role": "assistant", "content": [
                 {"type": "thinking", "thinking": "hmm", "signature": "sig"},
                 {"type": "redacted_thinking", "data": "xx"},
                 {"type": "text", "text": "answer"}]},
             {"role": "user", "content": "more"}]
    out = body(req(turns))
    assert out["messages"][1] == {"role": "assistant", "content": "answer"}


def test_assistant_text_is_dropped_beside_tool_calls_for_mlx_textgen() -> None:
    out = body(req(tool_turns(), tools=[BASH]), TEXTGEN)
    assistant = next(m for m in out["messages"] if m["role"] == "assistant")
    assert assistant["content"] is None and assistant["tool_calls"]


def test_consecutive_user_messages_are_merged() -> None:
    out = body(req([{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]))
    assert out["messages"] == [{"role": "user", "content": "a\n\nb"}]


def test_trailing_assistant_prefill_is_dropped() -> None:
    out = body(req([{"role": "user", "content": "a"}, {"role": "assistant", "content": "{"}]))
    assert out["messages"] == [{"role": "user", "content": "a"}]


def test_server_tools_are_dropped_with_a_note() -> None:
    search = {"type": "web_search_20250305", "name": "web_search", "max_uses": 5}
    plan = to_openai(req([{"role": "user", "content": "x"}], tools=[search, BASH]), MLX,
                     model=None)
    assert [t["function"]["name"] for t in plan.body["tools"]] == ["Bash"]
    assert any("web_search" in note for note in plan.notes)


def test_only_server_tools_means_no_tools_field() -> None:
    search = {"type": "web_search_20250305", "name": "web_search"}
    out = body(req([{"role": "user", "content": "x"}], tools=[search]))
    assert "tools" not in out


def test_tool_schemas_are_cleaned_and_keep_their_order() -> None:
    other = {"name": "Read", "input_schema": {"type": "object", "properties": {
        "path": {"type": "string", "format": "uri", "pattern": "^/"}}}}
    out = body(req([{"role": "user", "content": "x"}], tools=[BASH, other]), LMSTUDIO)
    assert [t["function"]["name"] for t in out["tools"]] == ["Bash", "Read"]
    assert "$schema" not in out["tools"][0]["function"]["parameters"]
    assert out["tools"][1]["function"]["parameters"]["properties"]["path"] == {"type": "string"}


@pytest.mark.parametrize(("choice", "expected"), [
    ({"type": "auto"}, "auto"),
    ({"type": "any"}, "required"),
    ({"type": "none"}, "none"),
    ({"type": "tool", "name": "Bash"}, {"type": "function", "function": {"name": "Bash"}}),
])
def test_tool_choice_maps_to_openai(choice: dict[str, Any], expected: object) -> None:
    out = body(req([{"role": "user", "content": "x"}], tools=[BASH], tool_choice=choice), LMSTUDIO)
    assert out["tool_choice"] == expected


def test_disable_parallel_tool_use_maps_to_parallel_tool_calls_false() -> None:
    out = body(req([{"role": "user", "content": "x"}], tools=[BASH],
                   tool_choice={"type": "auto", "disable_parallel_tool_use": True}), LMSTUDIO)
    assert out["parallel_tool_calls"] is False


def test_tool_choice_is_not_sent_to_mlx_lm_which_ignores_it() -> None:
    out = body(req([{"role": "user", "content": "x"}], tools=[BASH], tool_choice={"type": "any"}))
    assert "tool_choice" not in out


def test_sampling_parameters_pass_through_only_when_present() -> None:
    out = body(req([{"role": "user", "content": "x"}], temperature=0.2, top_k=40))
    assert out["temperature"] == 0.2 and out["top_k"] == 40 and "top_p" not in out


def test_unusable_fields_are_dropped() -> None:
    out = body(req([{"role": "user", "content": "x"}], metadata={"user_id": "u"},
                   thinking={"type": "adaptive"}, context_management={"edits": []},
                   output_config={"effort": "high"}, service_tier="auto", betas=["x"]))
    for key in ("metadata", "thinking", "context_management", "output_config", "service_tier",
                "betas", "reasoning_effort"):
        assert key not in out


def test_thinking_setting_becomes_chat_template_kwarg_for_mlx_lm() -> None:
    on = body(req([{"role": "user", "content": "x"}], thinking={"type": "adaptive"}))
    off = body(req([{"role": "user", "content": "x"}], thinking={"type": "disabled"}))
    assert on["chat_template_kwargs"] == {"enable_thinking": True}
    assert off["chat_template_kwargs"] == {"enable_thinking": False}


def test_stop_sequences_are_matched_in_the_proxy_not_sent() -> None:
    plan = to_openai(req([{"role": "user", "content": "x"}], stop_sequences=["END"]), MLX,
                     model=None)
    assert plan.stop_sequences == ["END"] and "stop" not in plan.body


def test_max_tokens_goes_to_the_parameter_the_backend_takes() -> None:
    dialect = Dialect(max_tokens_param="max_completion_tokens")
    out = body(req([{"role": "user", "content": "x"}]), dialect)
    assert out["max_completion_tokens"] == 1000 and "max_tokens" not in out


def limited(limits: Limits, prompt_tokens: int = 0) -> Plan:
    plan = to_openai(req([{"role": "user", "content": "x"}]), MLX, model=None)
    plan.prompt_tokens = prompt_tokens
    apply_limits(plan, limits)
    return plan


def test_max_tokens_is_clamped_to_the_context_window_and_output_cap() -> None:
    plan = limited(Limits(context_window=1200), prompt_tokens=500)
    assert plan.max_tokens == 700 and plan.body["max_tokens"] == 700
    assert plan.requested_max_tokens == 1000
    assert limited(Limits(max_output_tokens=300)).max_tokens == 300


def test_prompt_larger_than_the_window_is_refused_with_claude_codes_phrase() -> None:
    with pytest.raises(AnthropicError) as caught:
        limited(Limits(context_window=1000), prompt_tokens=1500)
    assert caught.value.status == 400
    assert caught.value.message == "prompt is too long: 1500 tokens > 1000 maximum"


def test_streaming_asks_for_usage() -> None:
    out = body(req([{"role": "user", "content": "x"}], stream=True))
    assert out["stream"] is True and out["stream_options"] == {"include_usage": True}


def test_mlx_textgen_with_tools_is_asked_without_streaming() -> None:
    plan = to_openai(req([{"role": "user", "content": "x"}], stream=True, tools=[BASH]), TEXTGEN,
                     model="m")
    assert plan.client_stream and not plan.upstream_stream and plan.body["stream"] is False


def test_long_tool_names_are_shortened_upstream() -> None:
    name = "mcp__some-server__" + "x" * 80
    tool = {"name": name, "input_schema": {"type": "object", "properties": {}}}
    turns = [{"role": "user", "content": "x"},
             {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": name,
                                                "input": {}}]},
             {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1",
                                           "content": "ok"}]}]
    plan = to_openai(req(turns, tools=[tool]), LMSTUDIO, model="m")
    short = plan.body["tools"][0]["function"]["name"]
    assert len(short) <= 64 and plan.names.from_upstream(short) == name
    assert plan.body["messages"][1]["tool_calls"][0]["function"]["name"] == short


def test_text_tool_mode_parses_tool_formats() -> None:
    plan = to_openai(req([{"role": "user", "content": "x"}], tools=[BASH]), OPENAI, model="m",
                     tool_calls="text")
    assert plan.text_tools and "hermes" in plan.text_formats
    assert plan.body["tools"]  # the template still needs the tool list


TITLE_FORMAT = {"type": "json_schema", "schema": {
    "type": "object", "properties": {"title": {"type": "string"}}, "required": ["title"]}}


def test_structured_output_becomes_response_format_where_servers_honour_it() -> None:
    request = req([{"role": "user", "content": "x"}],
                  output_config={"effort": "high", "format": TITLE_FORMAT})
    assert body(request, LMSTUDIO)["response_format"] == {
        "type": "json_schema", "json_schema": {"name": "output", "schema": TITLE_FORMAT["schema"]}}
    assert "response_format" not in body(request, MLX)  # mlx-lm ignores it
