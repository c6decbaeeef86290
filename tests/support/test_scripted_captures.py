"""The scripted backend must be worth trusting: replay the captured requests against it and
compare the bytes (ids, timestamps and dates masked) with what the real servers sent."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import pytest

from tests.support.scripted import DEFAULT_PIECES, Reply, ScriptedBackend, Usage, textgen_detail
from tests.support.scripted.capture import (
    CHAT,
    MLX,
    TEXTGEN,
    chunks,
    exchange,
    mask,
    split_fixture,
    sse_data,
)

WEATHER_ARGS = '{"city": "Paris"}'
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]


# --------------------------------------------------------------------------- mlx-lm captures


@pytest.mark.parametrize(
    ("name", "reply"),
    [
        ("02_stream_basic", Reply(text=DEFAULT_PIECES)),
        ("03_stream_include_usage", Reply(text=DEFAULT_PIECES, usage=Usage(12, 19, 11))),
        (
            "05_stream_length_usage",
            Reply(text=["Hel", "lo", "!"], finish_reason="length", usage=Usage(12, 3, 11)),
        ),
        (
            "07_tools_stream",
            Reply(tool_calls=[("get_weather", WEATHER_ARGS)], usage=Usage(182, 4, 181)),
        ),
        ("09_tool_history_stream", Reply(text=DEFAULT_PIECES, keepalives=2)),
        ("01_nonstream_basic", Reply(text=DEFAULT_PIECES, usage=Usage(12, 19, 3))),
        (
            "04_nonstream_length",
            Reply(text="Hello!", finish_reason="length", usage=Usage(12, 3, 11)),
        ),
        (
            "06_tools_nonstream",
            Reply(tool_calls=[("get_weather", WEATHER_ARGS)], usage=Usage(182, 4, 1)),
        ),
    ],
)
def test_mlx_lm_generation_matches_capture(mlx: ScriptedBackend, name: str, reply: Reply) -> None:
    request, expected = split_fixture(MLX / f"{name}.http")
    # 09 was captured with 18 prefill steps of which the first 16 went unreported
    expected = expected.replace(b"keepalive 17/18", b"keepalive 1/2").replace(b"18/18", b"2/2")
    mlx.reply(reply)
    got = exchange(mlx.port, request)
    assert mask(got) == mask(expected)


@pytest.mark.parametrize(
    "name",
    [
        "15_malformed_json",
        "16_json_array_body",
        "17_missing_messages",
        "18_bad_type_max_tokens",
        "19_max_tokens_zero",
        "20_temperature_negative",
        "21_stream_string",
        "22_no_content_length",
        "23_image_data_url",
        "25_tool_args_invalid_json",
        "28_content_parts_unknown_type",
        "30_get_health",
        "31_get_unknown",
        "32_post_unknown",
        "35_options",
        "37_empty_messages",
        "50_offline_model_claude_name",
    ],
)
def test_mlx_lm_rejections_match_capture(mlx: ScriptedBackend, name: str) -> None:
    request, expected = split_fixture(MLX / f"{name}.http")
    got = exchange(mlx.port, request)
    assert mask(got) == mask(expected)
    assert mlx.pending_replies == 0


def test_mlx_lm_bad_model_drops_the_loaded_model(mlx: ScriptedBackend) -> None:
    with httpx.Client() as c:
        r = c.post(mlx.url + "/chat/completions", json={"model": "claude-x", "messages": CHAT})
        assert r.status_code == 404
        assert "error" in r.json()
        ok = c.post(mlx.url + "/chat/completions", json={"model": "scripted", "messages": CHAT})
        assert ok.status_code == 200
        assert ok.json()["model"] == "scripted"
    assert mlx.dropped_models == ["claude-x"]


def test_mlx_lm_one_connection_per_response(mlx: ScriptedBackend) -> None:
    with httpx.Client() as c:
        for _ in range(2):
            assert c.post(mlx.url + "/chat/completions", json={"messages": CHAT}).status_code == 200
    records = [mlx.wait_closed(i) for i in range(2)]
    assert [r.closed_by for r in records] == ["server", "server"]
    assert [r.requests for r in records] == [(0,), (1,)]


def test_mlx_lm_stream_options_without_include_usage_cuts_the_stream(mlx: ScriptedBackend) -> None:
    """server.py indexes stream_options["include_usage"]: a KeyError after the finish chunk."""
    body = {"messages": CHAT, "stream": True, "stream_options": {}}
    r = httpx.post(mlx.url + "/chat/completions", json=body)
    data = sse_data(r.text)
    assert json.loads(data[-1])["choices"][0]["finish_reason"] == "stop"
    assert "[DONE]" not in data


def test_mlx_lm_reasoning_and_whole_calls(mlx: ScriptedBackend) -> None:
    mlx.reply(Reply(reasoning="think", text="ok", tool_calls=[("a", "{}"), ("b", '{"x": 1}')]))
    r = httpx.post(mlx.url + "/chat/completions", json={"messages": CHAT, "stream": True})
    deltas = [c["choices"][0]["delta"] for c in chunks(r.text)]
    assert all(d["role"] == "assistant" for d in deltas)
    assert "".join(d.get("reasoning", "") for d in deltas) == "think"
    calls = [tc for d in deltas for tc in d.get("tool_calls", [])]
    assert [(c["index"], c["function"]["name"], c["function"]["arguments"]) for c in calls] == [
        (0, "a", "{}"),
        (1, "b", '{"x": 1}'),
    ]
    assert len(calls[0]["id"]) == 36


# --------------------------------------------------------------------------- mlx-textgen captures


@pytest.mark.parametrize(
    ("name", "reply"),
    [
        ("with_metal_shim/tg02_stream", Reply(text=DEFAULT_PIECES, usage=Usage(12, 19))),
        ("with_metal_shim/tg06_tools_stream", Reply(tool_calls=[("get_weather", WEATHER_ARGS)])),
        (
            "with_metal_shim/tg01_nonstream",
            textgen_detail("There is no Stream(cpu, 0) in current thread."),
        ),
        ("tg01_nonstream", textgen_detail("'max_recommended_working_set_size'")),
        ("tg03_wrong_model", None),
        ("tg04_no_model", None),
        ("tg07_health", None),
        ("tg08_malformed", None),
    ],
)
def test_mlx_textgen_matches_capture(name: str, reply: Reply | None) -> None:
    request, expected = split_fixture(TEXTGEN / f"{name}.http")
    with ScriptedBackend("mlx-textgen") as be:
        if reply is not None:
            be.reply(reply)
        got = exchange(be.port, request)
        assert mask(got) == mask(expected)
        assert be.errors == []


def test_mlx_textgen_stream_with_tools_loses_the_call() -> None:
    with ScriptedBackend("mlx-textgen") as be:
        be.reply(Reply(text="Let me check.", tool_calls=[("f", "{}")]))
        body = {
            "model": "scripted",
            "messages": CHAT,
            "stream": True,
            "tools": TOOLS,
        }
        raw = httpx.post(be.url + "/chat/completions", json=body).content
        assert raw.endswith(b"\n\ndata: [DONE]")  # no blank line after [DONE]
        parsed = chunks(raw.decode())
        assert "".join(c["choices"][0]["delta"]["content"] or "" for c in parsed) == "Let me check."
        assert all(c["choices"][0]["finish_reason"] is None for c in parsed)
        assert all(c["choices"][0]["delta"]["tool_calls"] == [] for c in parsed)

        be.reply(Reply(tool_calls=[("f", "{}"), ("g", "{}")]))
        resp = httpx.post(be.url + "/chat/completions", json={**body, "stream": False}).json()
        calls = resp["choices"][0]["message"]["tool_calls"]
        assert [c["index"] for c in calls] == [0, 0]
        assert all(re.fullmatch(r"call_[0-9a-f]{8}", c["id"]) for c in calls)
        assert resp["choices"][0]["message"]["content"] is None
        assert resp["choices"][0]["finish_reason"] == "tool_calls"


@pytest.mark.parametrize(
    ("messages", "extra", "needle"),
    [
        (
            [
                *CHAT,
                {
                    "role": "assistant",
                    "content": "x",
                    "tool_calls": [
                        {
                            "id": "1",
                            "type": "function",
                            "function": {"name": "f", "arguments": "{}"},
                        }
                    ],
                },
            ],
            {},
            "Cannot have both tool_calls and content.",
        ),
        (
            [{"role": "system", "content": "a"}, {"role": "system", "content": "b"}, *CHAT],
            {},
            "more than one system",
        ),
        ([*CHAT, {"role": "system", "content": "a"}], {}, "must be the first message"),
        (CHAT, {"reasoning_effort": "high"}, "'dict' object is not callable"),
    ],
)
def test_mlx_textgen_rejections(messages: list[Any], extra: dict[str, Any], needle: str) -> None:
    with ScriptedBackend("mlx-textgen") as be:
        body = {"model": "scripted", "messages": messages, **extra}
        r = httpx.post(be.url + "/chat/completions", json=body)
        assert r.status_code == 500
        assert needle in r.json()["detail"]
        # streaming: the error raises inside the generator after the 200 went out
        with (
            pytest.raises(httpx.RemoteProtocolError),
            httpx.stream("POST", be.url + "/chat/completions", json={**body, "stream": True}) as s,
        ):
            assert s.status_code == 200
            s.read()
        assert be.pending_replies == 0
