"""What a backend says is checked before Claude Code sees it (issue 11, classes 4 and 9):
token counts are ints ≥ 0, nothing after `[DONE]` belongs to the answer, and a tool call
cut at max_tokens never arrives as a tool_use, streaming or not, in every dialect."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.support.grammar import check, parse_sse
from tests.support.proxy import MODE_FOR_DIALECT, TOKEN, Proxied, serving
from tests.support.scripted import Dialect, Reply, ScriptedBackend

BODY: dict[str, Any] = {"model": "claude-x", "max_tokens": 100,
                        "messages": [{"role": "user", "content": "hi"}]}
TOOLS = [{"name": "Bash", "input_schema": {"type": "object", "properties": {
    "command": {"type": "string"}}, "required": ["command"]}},
    {"name": "Write", "input_schema": {"type": "object", "properties": {
        "file_path": {"type": "string"}, "content": {"type": "string"}}}}]
HEADERS = {"x-api-key": TOKEN, "anthropic-version": "2023-06-01"}


Served = tuple[ScriptedBackend, Proxied]


@pytest.fixture
async def mlx() -> AsyncIterator[Served]:
    async with ScriptedBackend("mlx-lm") as backend, serving("mlx-lm", backend) as proxy:
        yield backend, proxy


def sse(*payloads: object) -> bytes:
    """A raw upstream SSE body, all in one piece (so it arrives in one read)."""
    return b"".join(b"data: " + (p if isinstance(p, bytes) else json.dumps(p).encode()) + b"\n\n"
                    for p in payloads)


def chunk(content: str | None = None, finish: str | None = None,
          usage: dict[str, Any] | None = None, **delta: Any) -> dict[str, Any]:
    if content is not None:
        delta["content"] = content
    out: dict[str, Any] = {"id": "c", "object": "chat.completion.chunk", "created": 1,
                           "model": "scripted", "choices": [{"index": 0, "delta": delta,
                                                             "finish_reason": finish}]}
    if usage is not None:
        out["usage"] = usage
    return out


def raw(body: bytes) -> Reply:
    return Reply(error_body=body, content_type="text/event-stream")


async def streamed(proxy: Proxied, body: dict[str, Any] | None = None) -> dict[str, Any]:
    response = await proxy.client.post("/v1/messages", json={**(body or BODY), "stream": True},
                                       headers=HEADERS)
    content = await response.read()
    assert response.status == 200, content
    return check(parse_sse(content), complete=True)


# -- class 9: token counts ------------------------------------------------------------------

BAD_COUNTS = [-3, -1, True, -(2**63), 2**63 - 1]
"""Negative, a bool posing as an int, and far beyond any window (floats, strings and other
types were already dropped and estimated: see tests/translate/test_usage.py)."""


@pytest.mark.parametrize("value", BAD_COUNTS, ids=repr)
async def test_streamed_usage_is_always_non_negative_ints(mlx: Served,
                                                    value: object) -> None:
    backend, proxy = mlx
    usage = {"prompt_tokens": value, "completion_tokens": value,
             "prompt_tokens_details": {"cached_tokens": value}}
    backend.reply(raw(sse(chunk("Hello"), chunk(finish="stop", usage=usage), b"[DONE]")))
    summary = await streamed(proxy)
    assert summary["text"] == "Hello"
    for key, count in summary["usage"].items():
        assert type(count) is int and 0 <= count < 2**31, (key, count)


@pytest.mark.parametrize("value", BAD_COUNTS, ids=repr)
async def test_non_streaming_usage_is_always_non_negative_ints(
        mlx: Served, value: object) -> None:
    backend, proxy = mlx
    answer = {"id": "c", "object": "chat.completion", "created": 1, "model": "scripted",
              "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello"},
                           "finish_reason": "stop"}],
              "usage": {"prompt_tokens": value, "completion_tokens": value,
                        "prompt_tokens_details": {"cached_tokens": value}}}
    backend.reply(Reply(error_body=json.dumps(answer).encode()))
    message = await proxy.sdk.messages.create(**BODY)
    usage = message.usage.model_dump(exclude_none=True)
    for key in ("input_tokens", "output_tokens", "cache_read_input_tokens"):
        assert type(usage[key]) is int and 0 <= usage[key] < 2**31, (key, usage)


async def test_a_negative_output_count_is_not_passed_on(mlx: Served) -> None:
    backend, proxy = mlx
    usage = {"prompt_tokens": 20, "completion_tokens": -3}
    backend.reply(raw(sse(chunk("Hi"), chunk(finish="stop", usage=usage), b"[DONE]")))
    assert (await streamed(proxy))["usage"]["output_tokens"] == 0


# -- class 9: [DONE] ends the answer -----------------------------------------------------

AFTER_DONE = {
    "text": chunk(" EVIL"),
    "tool call": chunk(tool_calls=[{"index": 0, "id": "x", "type": "function",
                                    "function": {"name": "Bash",
                                                 "arguments": '{"command": "rm -rf ~"}'}}]),
    "garbage": b"{not json",
    "error object": {"error": {"message": "boom"}},
    "usage": chunk(finish="length", usage={"prompt_tokens": 999, "completion_tokens": 999}),
    "second done and more text": b"[DONE]\n\ndata: " + json.dumps(chunk(" EVIL")).encode(),
}


@pytest.mark.parametrize("after", sorted(AFTER_DONE))
async def test_nothing_after_done_in_the_same_read_reaches_the_client(
        mlx: Served, after: str) -> None:
    backend, proxy = mlx
    usage = {"prompt_tokens": 20, "completion_tokens": 2}
    backend.reply(raw(sse(chunk("Hello"), chunk(finish="stop", usage=usage), b"[DONE]",
                          AFTER_DONE[after])))
    summary = await streamed(proxy, {**BODY, "tools": TOOLS})
    assert summary["text"] == "Hello" and summary["tools"] == []
    assert summary["stop_reason"] == "end_turn"
    assert summary["usage"]["output_tokens"] == 2


# -- class 4: a cut call through the proxy, every dialect, both modes ---------------------

CUT = '{"command": "rm -rf /tmp/build-'


@pytest.mark.parametrize("dialect", ["mlx-lm", "lmstudio", "vllm", "llamacpp", "mlx-textgen"])
@pytest.mark.parametrize("stream", [True, False])
async def test_a_call_cut_at_max_tokens_never_reaches_the_client_as_a_tool_use(
        dialect: Dialect, stream: bool) -> None:
    async with ScriptedBackend(dialect, strict_model=False) as backend, \
            serving(MODE_FOR_DIALECT[dialect], backend, model="scripted") as proxy:
        backend.reply(Reply(text="Cleaning.", tool_calls=[("Bash", CUT)], finish_reason="length"))
        body = {**BODY, "tools": TOOLS}
        if stream:
            summary = await streamed(proxy, body)
            uses, text, stop = summary["tools"], summary["text"], summary["stop_reason"]
        else:
            message = await proxy.sdk.messages.create(**body)
            uses = [b for b in message.content if b.type == "tool_use"]
            text = "".join(b.text for b in message.content if b.type == "text")
            stop = message.stop_reason
    assert uses == [] and stop == "max_tokens"
    assert "incomplete call was dropped, not run" in text and "rm -rf" not in text
