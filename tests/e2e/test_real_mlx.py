"""The official SDK through the proxy in front of the REAL mlx-lm server and a tiny model
the project builds itself: text and tool calls, streaming and not, and the prompt cache."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import pytest

from anyclaude.hub import find_tokenizer
from anyclaude.proxy.tokens import TokenCounter
from tests.support.mlx_server import MlxServer, running_mlx_server
from tests.support.proxy import ThreadedProxy, client, running_proxy
from tests.support.tiny_model import (
    DEFAULT_SENTENCE,
    DEFAULT_TOOL_ARGUMENTS,
    build_scripted_model,
    default_models_dir,
)

pytestmark = pytest.mark.e2e

TOOLS: list[Any] = [
    {"name": "Bash", "description": "Run a shell command.",
     "input_schema": {"type": "object", "properties": {
         "command": {"type": "string"}, "description": {"type": "string"}},
         "required": ["command"]}},
    {"name": "Read", "description": "Read a file.",
     "input_schema": {"type": "object", "properties": {"file_path": {"type": "string"}}}},
]
SYSTEM = [{"type": "text", "text": "x-anthropic-billing-header: cc_version=0; cch=12345;"},
          {"type": "text", "text": "You are a coding agent. " * 200}]


@pytest.fixture(scope="module")
def mlx() -> Iterator[MlxServer]:
    model = build_scripted_model(default_models_dir() / "scripted")
    with running_mlx_server(model) as server:
        yield server


@pytest.fixture(scope="module")
def proxy(mlx: MlxServer) -> Iterator[ThreadedProxy]:
    counter = TokenCounter(find_tokenizer(mlx.model))
    with running_proxy("mlx-lm", mlx.base_url, mlx.model, tokens=counter) as running:
        yield running


@pytest.fixture
def sdk(proxy: ThreadedProxy) -> anthropic.Anthropic:
    return client(proxy, timeout=120)


def test_text_answer_streaming_and_not(sdk: anthropic.Anthropic) -> None:
    messages: list[Any] = [{"role": "user", "content": "say hi"}]
    with sdk.messages.stream(model="claude-x", max_tokens=64, messages=messages,
                             system=SYSTEM) as stream:
        streamed = stream.get_final_message()
    plain = sdk.messages.create(model="claude-x", max_tokens=64, messages=messages, system=SYSTEM)
    for message in (streamed, plain):
        assert message.content[0].text == DEFAULT_SENTENCE  # type: ignore[union-attr]
        assert message.stop_reason == "end_turn"
        assert message.usage.output_tokens > 1


@pytest.mark.parametrize("stream", [True, False])
def test_tool_round_trip(sdk: anthropic.Anthropic, stream: bool) -> None:
    kwargs: dict[str, Any] = {"model": "claude-x", "max_tokens": 200, "system": SYSTEM,
                              "tools": TOOLS,
                              "messages": [{"role": "user", "content": "make the file"}]}
    if stream:
        with sdk.messages.stream(**kwargs) as s:
            first = s.get_final_message()
    else:
        first = sdk.messages.create(**kwargs)
    uses = [b for b in first.content if b.type == "tool_use"]
    assert first.stop_reason == "tool_use" and len(uses) == 1
    assert uses[0].name == "Bash" and uses[0].input == DEFAULT_TOOL_ARGUMENTS
    follow = [*kwargs["messages"], {"role": "assistant", "content": first.content},
              {"role": "user", "content": [{"type": "tool_result", "tool_use_id": uses[0].id,
                                            "content": ""}]}]
    second = sdk.messages.create(**{**kwargs, "messages": follow})
    assert second.content[0].text == DEFAULT_SENTENCE  # type: ignore[union-attr]
    assert second.stop_reason == "end_turn"


def test_follow_up_turn_is_served_from_the_prompt_cache(sdk: anthropic.Anthropic) -> None:
    """The billing header changes every turn and the system prompt stays a cached prefix."""
    def system(cch: str) -> list[Any]:
        return [{"type": "text", "text": f"x-anthropic-billing-header: cch={cch};"}, SYSTEM[1]]

    history: list[Any] = [{"role": "user", "content": "first question " * 50}]
    first = sdk.messages.create(model="claude-x", max_tokens=64, messages=history,
                                system=system("aaaaa"))
    history += [{"role": "assistant", "content": first.content},
                {"role": "user", "content": "second question"}]
    second = sdk.messages.create(model="claude-x", max_tokens=64, messages=history,
                                 system=system("bbbbb"))
    prompt = second.usage.input_tokens + (second.usage.cache_read_input_tokens or 0)
    assert (second.usage.cache_read_input_tokens or 0) >= 0.9 * prompt


def test_count_tokens_matches_the_backends_own_count(sdk: anthropic.Anthropic) -> None:
    messages: list[Any] = [{"role": "user", "content": "count these words please " * 30}]
    counted = sdk.messages.count_tokens(model="claude-x", messages=messages, system=SYSTEM,
                                        tools=TOOLS).input_tokens
    real = sdk.messages.create(model="claude-x", max_tokens=5, messages=messages, system=SYSTEM,
                               tools=TOOLS).usage
    backend = real.input_tokens + (real.cache_read_input_tokens or 0)
    assert abs(counted - backend) <= 0.1 * backend  # template markup is the difference
