"""The official SDK, through the proxy, in front of each recorded backend dialect."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anthropic
import pytest

from tests.support.proxy import MODE_FOR_DIALECT, serving
from tests.support.scripted import Reply, ScriptedBackend, Usage

DIALECTS = ["mlx-lm", "lmstudio", "mlx-textgen", "vllm", "llamacpp"]
TOOLS: list[Any] = [
    {"name": "Bash", "description": "Run a shell command", "input_schema": {
        "type": "object", "properties": {"command": {"type": "string"},
                                         "timeout": {"type": "integer"}},
        "required": ["command"]}},
    {"name": "Read", "description": "Read a file", "input_schema": {
        "type": "object", "properties": {"file_path": {"type": "string"}}}},
]
HI: list[Any] = [{"role": "user", "content": "hi"}]
Setup = tuple[ScriptedBackend, anthropic.AsyncAnthropic]


@pytest.fixture(params=DIALECTS)
async def setup(request: pytest.FixtureRequest) -> AsyncIterator[Setup]:
    dialect = request.param
    async with ScriptedBackend(dialect, model="local-model") as backend:
        model = None if dialect == "mlx-lm" else "local-model"
        async with serving(MODE_FOR_DIALECT[dialect], backend, model=model) as proxy:
            yield backend, proxy.sdk


async def test_streaming_text(setup: Setup) -> None:
    backend, sdk = setup
    backend.reply(Reply(text="Hello there, friend.", usage=Usage(prompt_tokens=120,
                                                                 completion_tokens=5)))
    async with sdk.messages.stream(model="claude-x", max_tokens=200, messages=HI) as stream:
        message = await stream.get_final_message()
    assert message.content[0].type == "text" and message.content[0].text == "Hello there, friend."
    assert message.stop_reason == "end_turn" and message.model == "claude-x"
    assert message.usage.output_tokens == 5
    assert message.usage.input_tokens + (message.usage.cache_read_input_tokens or 0) == 120


async def test_non_streaming_text(setup: Setup) -> None:
    backend, sdk = setup
    backend.reply(Reply(text="Plain answer."))
    message = await sdk.messages.create(model="claude-x", max_tokens=200, messages=HI)
    assert [b.type for b in message.content] == ["text"]
    assert message.content[0].text == "Plain answer."  # type: ignore[union-attr]
    assert message.id.startswith("msg_")


@pytest.mark.parametrize("stream", [True, False])
async def test_tool_call_round_trip(setup: Setup, stream: bool) -> None:
    backend, sdk = setup
    backend.reply(Reply(text="Let me look.", tool_calls=[("Bash", '{"command": "ls -la"}')]),
                  Reply(text="There are 3 files."))
    kwargs: dict[str, Any] = {"model": "claude-x", "max_tokens": 500, "tools": TOOLS,
                              "messages": [{"role": "user", "content": "list files"}]}
    if stream:
        async with sdk.messages.stream(**kwargs) as s:
            first = await s.get_final_message()
    else:
        first = await sdk.messages.create(**kwargs)
    uses = [b for b in first.content if b.type == "tool_use"]
    assert first.stop_reason == "tool_use" and len(uses) == 1
    assert uses[0].name == "Bash" and uses[0].input == {"command": "ls -la"}
    assert uses[0].id.startswith("toolu_")
    follow = [*kwargs["messages"], {"role": "assistant", "content": first.content},
              {"role": "user", "content": [{"type": "tool_result", "tool_use_id": uses[0].id,
                                            "content": "a\nb\nc"}]}]
    second = await sdk.messages.create(**{**kwargs, "messages": follow})
    assert second.content[0].text == "There are 3 files."
    sent = backend.requests[-1].json
    tool_message = next(m for m in sent["messages"] if m["role"] == "tool")
    assert tool_message == {"role": "tool", "tool_call_id": uses[0].id, "content": "a\nb\nc"}


async def test_two_tool_calls_in_one_answer(setup: Setup) -> None:
    backend, sdk = setup
    calls = [("Read", '{"file_path": "/a.py"}'), ("Bash", '{"command": "pwd", "timeout": "30"}')]
    backend.reply(Reply(tool_calls=calls, interleave=backend.dialect in ("lmstudio", "vllm")))
    async with sdk.messages.stream(model="claude-x", max_tokens=300, tools=TOOLS,
                                   messages=HI) as s:
        message = await s.get_final_message()
    assert [(b.name, b.input) for b in message.content if b.type == "tool_use"] == [
        ("Read", {"file_path": "/a.py"}), ("Bash", {"command": "pwd", "timeout": 30})]


async def test_reasoning_becomes_a_thinking_block(setup: Setup) -> None:
    backend, sdk = setup
    backend.reply(Reply(reasoning="First, think.", text="Done."))
    async with sdk.messages.stream(model="claude-x", max_tokens=300, messages=HI,
                                   thinking={"type": "enabled", "budget_tokens": 1024}) as s:
        message = await s.get_final_message()
    assert [b.type for b in message.content] == ["thinking", "text"]
    assert message.content[0].thinking == "First, think."  # type: ignore[union-attr]
    assert message.content[0].signature  # type: ignore[union-attr]


async def test_stop_sequence_is_reported(setup: Setup) -> None:
    backend, sdk = setup
    backend.reply(Reply(text="alpha beta END gamma delta"))
    async with sdk.messages.stream(model="claude-x", max_tokens=100, messages=HI,
                                   stop_sequences=["END"]) as s:
        message = await s.get_final_message()
    assert message.content[0].text == "alpha beta "  # type: ignore[union-attr]
    assert message.stop_reason == "stop_sequence" and message.stop_sequence == "END"


async def test_length_becomes_max_tokens(setup: Setup) -> None:
    backend, sdk = setup
    backend.reply(Reply(text="truncated", finish_reason="length"))
    message = await sdk.messages.create(model="claude-x", max_tokens=3, messages=HI)
    assert message.stop_reason == "max_tokens"


async def test_mlx_lm_never_receives_the_claude_model_name() -> None:
    async with ScriptedBackend("mlx-lm") as backend, serving("mlx-lm", backend) as proxy:
        await proxy.sdk.messages.create(model="claude-opus-4-8", max_tokens=10, messages=HI)
        assert "model" not in backend.requests[0].json
        assert backend.dropped_models == []
        assert backend.requests[0].json["max_tokens"] == 10


async def test_mlx_textgen_with_tools_is_asked_without_streaming_and_streamed_by_the_proxy(
        ) -> None:
    async with ScriptedBackend("mlx-textgen", model="qwen") as backend, \
            serving("mlx-textgen", backend, model="qwen") as proxy:
        backend.reply(Reply(tool_calls=[("Bash", '{"command": "ls"}')]))
        async with proxy.sdk.messages.stream(model="claude-x", max_tokens=100, tools=TOOLS,
                                             messages=HI) as s:
            message = await s.get_final_message()
        assert backend.requests[0].json["stream"] is False
        assert message.content[0].type == "tool_use" and message.stop_reason == "tool_use"


async def test_mlx_textgen_gets_no_text_beside_tool_calls_in_history() -> None:
    async with ScriptedBackend("mlx-textgen", model="qwen") as backend, \
            serving("mlx-textgen", backend, model="qwen") as proxy:
        history: list[Any] = [
            {"role": "user", "content": "go"},
            {"role": "assistant", "content": [
                {"type": "text", "text": "Running."},
                {"type": "tool_use", "id": "toolu_1", "name": "Bash", "input": {"command": "ls"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1",
                                          "content": "x"}]}]
        message = await proxy.sdk.messages.create(model="claude-x", max_tokens=100, tools=TOOLS,
                                                  messages=history, system="sys")
        assert message.content[0].type == "text"  # the backend accepted the history


async def test_cached_tokens_are_reported_as_cache_reads() -> None:
    async with ScriptedBackend("mlx-lm") as backend, serving("mlx-lm", backend) as proxy:
        backend.reply(Reply(text="ok", usage=Usage(prompt_tokens=20000, cached_tokens=19500,
                                                   completion_tokens=2)))
        async with proxy.sdk.messages.stream(model="claude-x", max_tokens=10, messages=HI) as s:
            message = await s.get_final_message()
        assert message.usage.input_tokens == 500
        assert message.usage.cache_read_input_tokens == 19500
