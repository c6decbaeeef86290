"""The scripted backend must be worth trusting: replay the captured requests against it and
compare the bytes (ids, timestamps and dates masked) with what the real servers sent, then
check every fault and error reply the double offers."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest

from tests.support.scripted import (
    DEFAULT_PIECES,
    DIALECTS,
    FAULTS,
    Reply,
    ScriptedBackend,
    Usage,
    html_error,
    llamacpp_context_overflow,
    lmstudio_model_not_found,
    lmstudio_no_models_loaded,
    lmstudio_prompt_too_long,
    mlx_lm_error,
    textgen_detail,
    vllm_context_overflow,
)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
"""Raw HTTP exchanges captured from mlx-lm 0.32.2 and mlx-textgen 0.2.1 (tiny prompts)."""
MLX = FIXTURES / "mlx-lm-0.32.2"
TEXTGEN = FIXTURES / "mlx-textgen-0.2.1"

CHAT = [{"role": "user", "content": "Hi"}]
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


# --------------------------------------------------------------------------- helpers


def split_fixture(path: Path) -> tuple[bytes, bytes]:
    """(raw request, raw response) of a capture file."""
    data = path.read_bytes()
    head, response = data.split(b"\n### RESPONSE (raw bytes as received)\n", 1)
    return head.split(b"### REQUEST\n", 1)[1], response


def read_response(sock: socket.socket) -> bytes:
    """One whole HTTP response: by Content-Length, by chunks, or until EOF (HTTP/1.0)."""
    buf = b""

    def more() -> bool:
        nonlocal buf
        data = sock.recv(65536)
        buf += data
        return bool(data)

    while b"\r\n\r\n" not in buf:
        if not more():
            return buf
    head, _ = buf.split(b"\r\n\r\n", 1)
    lower = head.lower()
    if b"\r\ncontent-length:" in lower:
        length = int(re.search(rb"content-length: *(\d+)", lower).group(1))  # type: ignore[union-attr]
        while len(buf) < len(head) + 4 + length:
            if not more():
                break
        return buf
    if b"transfer-encoding: chunked" in lower:
        pos = len(head) + 4
        while True:
            while b"\r\n" not in buf[pos:]:
                if not more():
                    return buf
            line_end = buf.index(b"\r\n", pos)
            size = int(buf[pos:line_end], 16)
            end = line_end + 2 + size + 2
            while len(buf) < end:
                if not more():
                    return buf
            pos = end
            if size == 0:
                return buf
    while more():
        pass
    return buf


def exchange(port: int, raw: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(raw)
        return read_response(sock)


def mask(data: bytes) -> bytes:
    """Blank out what differs between runs (same lengths, so chunk sizes still compare)."""
    data = re.sub(rb"(?i)(\r\ndate: )[^\r\n]+", rb"\1DATE", data)
    data = re.sub(rb"chatcmpl-[0-9a-f-]+", lambda m: b"chatcmpl-" + b"X" * (len(m[0]) - 9), data)
    data = re.sub(rb'"id": "[0-9a-f-]{36}"', b'"id": "UUID"', data)
    data = re.sub(rb"call_[0-9a-f]{8}", b"call_XXXXXXXX", data)
    return re.sub(rb'"created": ?\d{10}', lambda m: m[0][:-10] + b"0" * 10, data)


def sse_data(text: str) -> list[str]:
    return [line[6:] for line in text.split("\n") if line.startswith("data: ")]


def chunks(text: str) -> list[dict[str, Any]]:
    return [json.loads(d) for d in sse_data(text) if d != "[DONE]"]


@pytest.fixture
def mlx() -> Iterator[ScriptedBackend]:
    with ScriptedBackend("mlx-lm") as be:
        yield be
        assert be.errors == []


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


# --------------------------------------------------------------------------- other dialects


def test_lmstudio_streams_fragments_interleaved_with_usage() -> None:
    with ScriptedBackend("lmstudio") as be:
        be.reply(
            Reply(tool_calls=[("a", '{"p": "1234567890"}'), ("b", '{"q": 2}')], interleave=True)
        )
        body = {
            "model": "scripted",
            "messages": CHAT,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        r = httpx.post(be.url + "/chat/completions", json=body)
        assert r.text.endswith("data: [DONE]\n\n")
        parsed = chunks(r.text)
        assert parsed[-1]["choices"] == [] and parsed[-1]["usage"]["total_tokens"] > 0
        assert parsed[-2]["choices"][0]["finish_reason"] == "tool_calls"
        calls = [tc for c in parsed[:-2] for tc in c["choices"][0]["delta"]["tool_calls"]]
        starts = [tc for tc in calls if "id" in tc]
        assert [(s["index"], s["function"]) for s in starts] == [
            (0, {"name": "a", "arguments": ""}),
            (1, {"name": "b", "arguments": ""}),
        ]
        assert all(s["id"].isdigit() for s in starts)
        order = [tc["index"] for tc in calls]
        assert order[:4] == [0, 1, 0, 1]
        joined = {
            i: "".join(tc["function"].get("arguments", "") for tc in calls if tc["index"] == i)
            for i in (0, 1)
        }
        assert joined == {0: '{"p": "1234567890"}', 1: '{"q": 2}'}

        r = httpx.post(be.url + "/chat/completions", json={**body, "stream_options": None})
        assert all("usage" not in c for c in chunks(r.text))


def test_lmstudio_errors_and_models() -> None:
    with (
        ScriptedBackend("lmstudio", model="qwen/qwen3-4b", context_length=50) as be,
        httpx.Client() as c,
    ):
        r = c.post(be.url + "/chat/completions", json={"model": "claude-x", "messages": CHAT})
        assert r.status_code == 400
        assert r.json()["error"]["code"] == "model_not_found"
        long = [{"role": "user", "content": "word " * 100}]
        r = c.post(be.url + "/chat/completions", json={"model": "qwen/qwen3-4b", "messages": long})
        assert r.status_code == 500
        assert "context length of only 50 tokens" in r.json()["error"]
        assert c.get(be.url + "/models").json()["data"][0]["id"] == "qwen/qwen3-4b"
        native = c.get(be.root_url + "/api/v0/models").json()["data"][0]
        assert native["max_context_length"] == 50
        assert c.get(be.url + "/nope").status_code == 404
        be.reply(
            lmstudio_no_models_loaded(),
            lmstudio_model_not_found("m"),
            lmstudio_prompt_too_long(9, 8),
        )
        statuses = [
            c.post(be.url + "/chat/completions", json={"messages": CHAT}).status_code
            for _ in range(3)
        ]
        assert statuses == [400, 400, 500]
        assert len(be.connections) == 1  # keep-alive, as Express does


def test_vllm_context_overflow_and_reasoning() -> None:
    with ScriptedBackend("vllm", context_length=4096, token_counter=lambda r: 4000) as be:
        body = {"model": "scripted", "messages": CHAT, "max_tokens": 1000}
        r = httpx.post(be.url + "/chat/completions", json=body)
        assert r.status_code == 400
        assert r.json()["error"]["message"] == (
            "This model's maximum context length is 4096 tokens. However, you requested 5000 "
            "tokens (4000 in the messages, 1000 in the completion). Please reduce the length of "
            "the messages or completion."
        )
        assert httpx.get(be.url + "/models").json()["data"][0]["max_model_len"] == 4096
        be.reply(Reply(reasoning="hm", text="ok"))
        r = httpx.post(
            be.url + "/chat/completions", json={**body, "max_tokens": 10, "stream": True}
        )
        deltas = [c["choices"][0]["delta"] for c in chunks(r.text)]
        assert deltas[0] == {"role": "assistant", "content": ""}
        assert "".join(d.get("reasoning", "") for d in deltas) == "hm"
        assert vllm_context_overflow().status == 400


def test_llamacpp_shape_and_overflow() -> None:
    with ScriptedBackend("llamacpp", context_length=40) as be:
        be.reply(Reply(reasoning="r", text="t", tool_calls=[("f", '{"a": 1}')]))
        r = httpx.post(be.url + "/chat/completions", json={"messages": CHAT, "stream": True})
        first = sse_data(r.text)[0]
        assert first.startswith('{"choices":')
        deltas = [c["choices"][0]["delta"] for c in chunks(r.text)]
        assert any(d.get("reasoning_content") == "r" for d in deltas)
        assert httpx.get(be.root_url + "/health").json() == {"status": "ok"}
        r = httpx.post(
            be.url + "/chat/completions",
            json={"messages": [{"role": "user", "content": "x" * 200}]},
        )
        assert r.status_code == 400
        assert r.json()["error"]["type"] == "exceed_context_size_error"
        assert llamacpp_context_overflow(5, 4).status == 400


@pytest.mark.parametrize("dialect", DIALECTS)
def test_every_dialect_answers_text_and_non_streaming(dialect: str) -> None:
    with ScriptedBackend(dialect) as be:  # type: ignore[arg-type]
        be.reply(Reply(text="hello there"), Reply(text="plain"))
        body = {"model": "scripted", "messages": CHAT, "stream": True}
        r = httpx.post(be.url + "/chat/completions", json=body)
        text = "".join(
            c["choices"][0]["delta"].get("content") or "" for c in chunks(r.text) if c["choices"]
        )
        assert text == "hello there"
        r = httpx.post(be.url + "/chat/completions", json={**body, "stream": False})
        assert r.json()["choices"][0]["message"]["content"] == "plain"
        assert be.errors == []


# --------------------------------------------------------------------------- faults


def stream_body(model: str = "scripted") -> dict[str, Any]:
    return {"model": model, "messages": CHAT, "stream": True}


@pytest.mark.parametrize("dialect", ["mlx-lm", "lmstudio"])
def test_die_mid_stream(dialect: str) -> None:
    with ScriptedBackend(dialect) as be:  # type: ignore[arg-type]
        be.reply(Reply(text="abcdefghijkl", fault="die_mid_stream", fault_after=2))
        received = b""
        with httpx.stream("POST", be.url + "/chat/completions", json=stream_body()) as r:
            try:
                for part in r.iter_bytes():
                    received += part
            except httpx.RemoteProtocolError:
                assert dialect == "lmstudio"  # chunked body cut before its last chunk
        data = sse_data(received.decode())
        assert len(data) == 2 and "[DONE]" not in data
        assert be.wait_closed(0).closed_by == "server"


def test_hang_after_headers_and_peer_close_is_recorded(mlx: ScriptedBackend) -> None:
    mlx.reply(Reply(fault="hang_after_headers"))
    with (
        pytest.raises(httpx.ReadTimeout),
        httpx.stream(
            "POST",
            mlx.url + "/chat/completions",
            json=stream_body(),
            timeout=httpx.Timeout(5, read=0.3),
        ) as r,
    ):
        assert r.status_code == 200
        r.read()
    gone_at = time.monotonic()
    rec = mlx.wait_closed(0, timeout=5)
    assert rec.closed_by == "peer" and rec.peer_closed_early
    assert rec.closed_at is not None and rec.closed_at - gone_at < 1.0
    assert mlx.open_connections() == 0


def test_hang_before_headers(mlx: ScriptedBackend) -> None:
    mlx.reply(Reply(fault="hang_before_headers"))
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            mlx.url + "/chat/completions",
            json={"messages": CHAT},
            timeout=httpx.Timeout(5, read=0.3),
        )
    assert mlx.wait_closed(0).peer_closed_early


def test_client_leaving_mid_stream_is_noticed_between_chunks() -> None:
    """The double notices a close while it sleeps, so a test can time the proxy's reaction."""
    with ScriptedBackend("lmstudio") as be:
        be.reply(Reply(text="x" * 30, chunk_size=1, chunk_delay=0.05))
        with httpx.stream("POST", be.url + "/chat/completions", json=stream_body()) as r:
            next(r.iter_lines())
        rec = be.wait_closed(0, timeout=5)
        assert rec.closed_by == "peer" and rec.peer_closed_early
        assert rec.responses_completed == 0


@pytest.mark.parametrize(
    ("fault", "marker"),
    [("invalid_json_chunk", "data: {not json"), ("invalid_sse", "this line is not SSE")],
)
def test_garbage_in_stream(mlx: ScriptedBackend, fault: str, marker: str) -> None:
    mlx.reply(Reply(text="abcdef", fault=fault, fault_after=1))  # type: ignore[arg-type]
    r = httpx.post(mlx.url + "/chat/completions", json=stream_body())
    lines = r.text.split("\n")
    assert marker in lines
    assert lines.index(marker) < lines.index("data: [DONE]")
    assert (
        "".join(
            c["choices"][0]["delta"].get("content", "")
            for c in chunks(r.text.replace(marker, ""))[:-1]
        )
        == "abcdef"
    )


def test_html_error(mlx: ScriptedBackend) -> None:
    mlx.reply(Reply(fault="html_error"), html_error(502))
    for status in (500, 502):
        r = httpx.post(mlx.url + "/chat/completions", json=stream_body())
        assert r.status_code == status
        assert r.headers["content-type"] == "text/html"
        assert r.text.startswith("<html>")


def test_no_done() -> None:
    with ScriptedBackend("vllm") as be:
        be.reply(Reply(text="ab", fault="no_done"))
        r = httpx.post(be.url + "/chat/completions", json=stream_body())  # a clean chunked end
        data = sse_data(r.text)
        assert "[DONE]" not in data
        assert json.loads(data[-1])["choices"][0]["finish_reason"] == "stop"
        assert be.wait_closed(0).closed_by == "server"


def test_slow(mlx: ScriptedBackend) -> None:
    mlx.reply(Reply(text="abc", chunk_size=1, fault="slow", chunk_delay=0.05))
    start = time.monotonic()
    r = httpx.post(mlx.url + "/chat/completions", json=stream_body())
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks(r.text)) == "abc"
    assert time.monotonic() - start >= 4 * 0.05 * 0.5  # four chunks, each delayed (lower bound)


def test_keepalives_with_delay(mlx: ScriptedBackend) -> None:
    mlx.reply(Reply(text="a", keepalives=3, keepalive_delay=0.01))
    r = httpx.post(mlx.url + "/chat/completions", json=stream_body())
    assert r.text.startswith(": keepalive 1/3\n\n: keepalive 2/3\n\n: keepalive 3/3\n\ndata: ")


def test_fault_list_is_covered() -> None:
    assert set(FAULTS) == {
        "die_mid_stream",
        "hang_after_headers",
        "hang_before_headers",
        "invalid_json_chunk",
        "invalid_sse",
        "html_error",
        "no_done",
        "slow",
    }


def test_fixed_200_body_for_malformed_completions() -> None:
    with ScriptedBackend("vllm") as be:
        be.reply(Reply(error_body=b'{"choices": "nope"}'))
        r = httpx.post(be.url + "/chat/completions", json={"model": "scripted", "messages": CHAT})
        assert (r.status_code, r.content) == (200, b'{"choices": "nope"}')


def test_error_helpers_render_in_dialect(mlx: ScriptedBackend) -> None:
    mlx.reply(mlx_lm_error("boom", 404), Reply(status=503))
    r = httpx.post(mlx.url + "/chat/completions", json={"messages": CHAT})
    assert (r.status_code, r.json()) == (404, {"error": "boom"})
    assert "content-length" not in r.headers  # mlx-lm errors end with the connection
    r = httpx.post(mlx.url + "/chat/completions", json={"messages": CHAT})
    assert r.status_code == 503 and isinstance(r.json()["error"], str)


# --------------------------------------------------------------------------- scripting, recording


def test_queue_then_responder_then_default() -> None:
    seen: list[str] = []

    def responder(req: Any) -> Reply | None:
        seen.append(req.messages[-1]["content"])
        return Reply(text="from responder") if req.messages[-1]["content"] == "r" else None

    with ScriptedBackend("vllm", responder=responder) as be, httpx.Client() as c:
        be.reply(Reply(text="queued"))

        def ask(content: str) -> str:
            body = {"model": "scripted", "messages": [{"role": "user", "content": content}]}
            return str(
                c.post(be.url + "/chat/completions", json=body).json()["choices"][0]["message"][
                    "content"
                ]
            )

        assert [ask("q"), ask("r"), ask("d")] == [
            "queued",
            "from responder",
            "Hello! I am the tiny scripted test model.",
        ]
        assert seen == ["r", "d"]
        req = be.wait_for_request(2)
        assert req.json["messages"][0]["content"] == "r"
        assert req.headers["content-type"] == "application/json"
        assert req.raw.startswith(b"POST /v1/chat/completions HTTP/1.1\r\n")
        assert req.raw.endswith(req.body)
        with pytest.raises(TimeoutError):
            be.wait_for_request(4, timeout=0.05)


def test_works_from_a_client_with_its_own_event_loop() -> None:
    async def call(url: str) -> list[str]:
        async with (
            aiohttp.ClientSession() as session,
            session.post(url + "/chat/completions", json=stream_body()) as resp,
        ):
            return [line.decode() async for line in resp.content]

    with ScriptedBackend("mlx-textgen") as be:
        lines = asyncio.run(call(be.url))
        assert lines[-1] == "data: [DONE]"  # aiohttp yields the final line without a newline


def test_close_ends_hanging_connections_promptly() -> None:
    be = ScriptedBackend("lmstudio").start()
    be.reply(Reply(fault="hang_before_headers"))
    sock = socket.create_connection(("127.0.0.1", be.port))
    body = json.dumps({"model": "scripted", "messages": CHAT}).encode()
    sock.sendall(
        b"POST /v1/chat/completions HTTP/1.1\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    be.wait_for_request(1)
    assert be.open_connections() == 1
    start = time.monotonic()
    be.close()
    assert time.monotonic() - start < 5
    with contextlib.suppress(ConnectionResetError):  # an abort may arrive as a reset
        assert sock.recv(10) == b""
    sock.close()
    rec = be.connections[0]
    assert rec.closed_by == "server"
