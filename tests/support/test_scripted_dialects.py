"""The dialects without captures (LM Studio, vLLM, llama.cpp) keep the shapes their docs
describe, and every dialect answers plain text both ways."""

from __future__ import annotations

import httpx
import pytest

from tests.support.scripted import (
    DIALECTS,
    Reply,
    ScriptedBackend,
    llamacpp_context_overflow,
    lmstudio_model_not_found,
    lmstudio_no_models_loaded,
    lmstudio_prompt_too_long,
    vllm_context_overflow,
)
from tests.support.scripted.capture import CHAT, chunks, sse_data

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
