"""The tiny test models behave as scripted behind the REAL mlx-lm server.

Other end-to-end tests rely on these models (built offline by tests.support.tiny_model)
to drive real tool round trips and prompt-cache measurements, so this file pins down
what they do through plain OpenAI HTTP: a tool call when tools are offered and no result
is there yet, a multi-token sentence otherwise, for short and ~85 KB prompts, streaming
and not; and a random-weight model whose repeated prompt is served from the cache.
Measured numbers are printed (run with ``-s``), never asserted.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from tests.support import tiny_model as tm
from tests.support.mlx_server import (
    MlxServer,
    MlxServerError,
    port_open,
    running_mlx_server,
)

pytestmark = [pytest.mark.e2e]

TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": "Bash",
            "description": "Run a shell command.",
            "parameters": {
                "type": "object",
                "properties": {
                    "command": {"type": "string"},
                    "description": {"type": "string"},
                },
                "required": ["command"],
            },
        },
    }
]
USER = {"role": "user", "content": "Please create the marker file."}
TIMEOUT = httpx.Timeout(120.0)


def report(name: str, value: float, unit: str = "s") -> None:
    """Print a measurement (visible with -s); timings are informative, not asserted."""
    print(f"[tiny-model] {name}: {value:.3f} {unit}")


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def scripted_dir() -> Path:
    start = time.monotonic()
    path = tm.build_scripted_model(tm.default_models_dir() / "scripted")
    report("scripted build (or cache hit)", time.monotonic() - start)
    return path


@pytest.fixture(scope="module")
def random_dir() -> Path:
    start = time.monotonic()
    path = tm.build_random_model(tm.default_models_dir() / "random")
    report("random build (or cache hit)", time.monotonic() - start)
    return path


@pytest.fixture(scope="module")
def scripted_server(
    scripted_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[MlxServer]:
    log = tmp_path_factory.mktemp("mlx-scripted") / "server.log"
    with running_mlx_server(scripted_dir, log_path=log) as server:
        report("scripted server start", server.startup_s)
        yield server


@pytest.fixture(scope="module")
def random_server(
    random_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[MlxServer]:
    log = tmp_path_factory.mktemp("mlx-random") / "server.log"
    with running_mlx_server(random_dir, log_path=log) as server:
        report("random server start", server.startup_s)
        yield server


# --------------------------------------------------------------------------- HTTP helpers


def chat(server: MlxServer, body: Mapping[str, Any]) -> dict[str, Any]:
    """Non-streaming chat completion; no ``model`` field (mlx-lm would try the Hub)."""
    response = httpx.post(
        f"{server.base_url}/chat/completions",
        json={"max_tokens": 100, "temperature": 0, **body},
        timeout=TIMEOUT,
    )
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def chat_stream(server: MlxServer, body: Mapping[str, Any]) -> tuple[list[dict[str, Any]], float]:
    """Streaming chat completion: the data chunks, and seconds until the first one."""
    payload = {
        "max_tokens": 100,
        "temperature": 0,
        **body,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    chunks: list[dict[str, Any]] = []
    first = -1.0
    start = time.monotonic()
    with httpx.stream(
        "POST", f"{server.base_url}/chat/completions", json=payload, timeout=TIMEOUT
    ) as response:
        assert response.status_code == 200, response.read()
        done = False
        for line in response.iter_lines():
            if not line.startswith("data: "):
                continue  # blank separators and ": keepalive" comments
            data = line[len("data: ") :]
            if data == "[DONE]":
                done = True
                break
            if first < 0:
                first = time.monotonic() - start
            chunks.append(json.loads(data))
        assert done, "stream ended without [DONE]"
    return chunks, first


def stream_summary(chunks: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Content pieces, tool calls, finish reason and usage of a stream."""
    pieces: list[str] = []
    calls: list[dict[str, Any]] = []
    finish = None
    usage = None
    for chunk in chunks:
        if chunk.get("usage"):
            usage = chunk["usage"]
        for choice in chunk["choices"]:
            delta = choice.get("delta") or {}
            if delta.get("content"):
                pieces.append(delta["content"])
            calls.extend(delta.get("tool_calls") or [])
            if choice.get("finish_reason"):
                finish = choice["finish_reason"]
    return {"pieces": pieces, "calls": calls, "finish": finish, "usage": usage}


def assert_tool_call(call: Mapping[str, Any], name: str, arguments: Mapping[str, Any]) -> None:
    assert call["type"] == "function"
    assert call["id"]
    assert call["function"]["name"] == name
    assert json.loads(call["function"]["arguments"]) == arguments


def history_after_call(call: Mapping[str, Any], result: Any = "done") -> list[dict[str, Any]]:
    """The conversation after the model's tool call and its result (a real round trip)."""
    return [
        USER,
        {"role": "assistant", "content": None, "tool_calls": [dict(call)]},
        {"role": "tool", "tool_call_id": call["id"], "content": result},
    ]


# --------------------------------------------------------------------------- long prompts

_WORDS = [
    *("the", "a", "file", "command", "run", "read", "write", "edit", "search", "result"),
    *("user", "tool", "must", "should", "never", "always", "path", "directory", "output"),
    *("input", "JSON", "string", "number", "boolean", "array", "object", "when", "before"),
    *("after", "use", "this", "that", "with", "without", "only", "git", "commit", "test"),
]


def _prose(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(words)) + "."


def claude_code_sized_request(target_bytes: int = 85_000) -> dict[str, Any]:
    """A request shaped like Claude Code's: 24 tools with long descriptions, long system."""
    rng = random.Random(0)
    tools = [
        {
            "type": "function",
            "function": {
                "name": "Bash" if i == 0 else f"Tool{i}",
                "description": _prose(rng, 420),
                "parameters": {
                    "type": "object",
                    "properties": {
                        "command": {"type": "string", "description": _prose(rng, 40)},
                        "timeout": {"type": "number"},
                    },
                    "required": ["command"],
                },
            },
        }
        for i in range(24)
    ]
    system = _prose(rng, 2000)
    body: dict[str, Any] = {
        "messages": [{"role": "system", "content": system}, USER],
        "tools": tools,
    }
    while len(json.dumps(body)) < target_bytes:
        body["messages"][0]["content"] += " " + _prose(rng, 100)
    return body


# --------------------------------------------------------------------------- building


def test_builds_are_deterministic_and_cached(tmp_path: Path) -> None:
    first = tm.build_scripted_model(tmp_path / "a")
    second = tm.build_scripted_model(tmp_path / "b")
    for name in tm.MODEL_FILES:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name

    weights = first / "model.safetensors"
    before = weights.stat().st_mtime_ns
    tm.build_scripted_model(first)
    assert weights.stat().st_mtime_ns == before, "a complete build must not be redone"

    tm.build_scripted_model(first, sentence="Something else entirely.")
    assert weights.stat().st_mtime_ns != before, "other parameters must rebuild"
    assert '" entirely."' in (first / "tokenizer.json").read_text()

    r1 = tm.build_random_model(tmp_path / "r1", layers=1, hidden=64, heads=2)
    r2 = tm.build_random_model(tmp_path / "r2", layers=1, hidden=64, heads=2)
    assert (r1 / "model.safetensors").read_bytes() == (r2 / "model.safetensors").read_bytes()
    r3 = tm.build_random_model(tmp_path / "r3", layers=2, hidden=64, heads=2, seed=1)
    assert tm.count_parameters(r3) > tm.count_parameters(r1)


def test_tokenizer_and_template(
    scripted_dir: Path, random_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    from mlx_lm import tokenizer_utils
    from transformers import AutoTokenizer

    tok: Any = AutoTokenizer.from_pretrained(str(scripted_dir))
    assert tok.eos_token == tm.IM_END
    assert "<think>" not in tok.chat_template
    infer: Any = tokenizer_utils._infer_tool_parser  # what the server uses to pick a parser
    assert infer(tok) == "json_tools"

    messages = [
        {
            "role": "system",
            "content": [{"type": "text", "text": "Sys A. "}, {"type": "text", "text": "B."}],
        },
        {"role": "user", "content": [{"type": "text", "text": "hi"}]},
        {
            "role": "assistant",
            "content": "ok",
            "tool_calls": [
                {
                    "id": "1",
                    "type": "function",
                    "function": {"name": "Bash", "arguments": '{"command": "ls"}'},
                },
                {
                    "id": "2",
                    "type": "function",
                    "function": {"name": "Read", "arguments": {"path": "x"}},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "1", "content": "a.txt"},
        {"role": "tool", "tool_call_id": "2", "content": [{"type": "text", "text": "text"}]},
    ]
    text = tok.apply_chat_template(
        messages, tools=TOOLS, add_generation_prompt=True, tokenize=False
    )
    assert text.startswith("<|im_start|>system\nSys A. B.\n\n# Tools")
    assert '\n<tools>\n{"type": "function", "function": {"name": "Bash"' in text
    assert '<tool_call>\n{"name": "Bash", "arguments": {"command": "ls"}}\n</tool_call>' in text
    assert '<tool_call>\n{"name": "Read", "arguments": {"path": "x"}}\n</tool_call>' in text
    assert (
        "<|im_start|>user\n<tool_response>\na.txt\n</tool_response>\n"
        "<tool_response>\ntext\n</tool_response><|im_end|>\n"
    ) in text
    assert text.endswith("<|im_start|>assistant\n")

    ids = tok.encode(text, add_special_tokens=False)
    tokens = tok.convert_ids_to_tokens(ids)
    assert tokens.count(tm.TOOLS_MARKER) == 1
    assert tokens.count(tm.TOOL_RESPONSE_MARKER) == 2
    assert tok.decode(ids) == text
    # Any text tokenizes (byte-level), and round-trips.
    odd = "naïve ünïcödé → 数据 🙂 \t\x00"
    assert tok.decode(tok.encode(odd, add_special_tokens=False)) == odd

    # The random model shares the base vocabulary (the scripted one only adds tokens).
    base = AutoTokenizer.from_pretrained(str(random_dir)).get_vocab()
    scripted_vocab = tok.get_vocab()
    assert all(scripted_vocab[t] == i for t, i in base.items())


# --------------------------------------------------------------------------- scripted model


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_tool_call_when_tools_offered(scripted_server: MlxServer, temperature: float) -> None:
    reply = chat(scripted_server, {"messages": [USER], "tools": TOOLS, "temperature": temperature})
    choice = reply["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert not choice["message"].get("content")
    (call,) = choice["message"]["tool_calls"]
    assert_tool_call(call, tm.DEFAULT_TOOL_NAME, tm.DEFAULT_TOOL_ARGUMENTS)


def test_tool_call_streaming(scripted_server: MlxServer) -> None:
    chunks, _ = chat_stream(scripted_server, {"messages": [USER], "tools": TOOLS})
    summary = stream_summary(chunks)
    assert summary["pieces"] == []
    assert summary["finish"] == "tool_calls"
    (call,) = summary["calls"]
    assert_tool_call(call, tm.DEFAULT_TOOL_NAME, tm.DEFAULT_TOOL_ARGUMENTS)
    assert summary["usage"]["prompt_tokens"] > 0


@pytest.mark.parametrize("tools", [None, TOOLS], ids=["no-tools", "after-tool-result"])
def test_sentence_otherwise(scripted_server: MlxServer, tools: list[dict[str, Any]] | None) -> None:
    if tools is None:
        messages: list[dict[str, Any]] = [USER]
    else:  # a real round trip: feed the model's own call back with a result
        first = chat(scripted_server, {"messages": [USER], "tools": tools})
        (call,) = first["choices"][0]["message"]["tool_calls"]
        messages = history_after_call(call, [{"type": "text", "text": "created"}])
    reply = chat(scripted_server, {"messages": messages, "tools": tools})
    choice = reply["choices"][0]
    assert choice["finish_reason"] == "stop"
    assert choice["message"]["content"] == tm.DEFAULT_SENTENCE
    assert not choice["message"].get("tool_calls")

    chunks, _ = chat_stream(scripted_server, {"messages": messages, "tools": tools})
    summary = stream_summary(chunks)
    assert "".join(summary["pieces"]) == tm.DEFAULT_SENTENCE
    assert len(summary["pieces"]) >= 5, summary["pieces"]
    assert summary["calls"] == []
    assert summary["finish"] == "stop"


def test_lookalike_text_does_not_trigger_a_call(scripted_server: MlxServer) -> None:
    bait = (
        "tools: <tool> <tool_call>\n"
        + json.dumps({"name": "Bash", "arguments": {}})
        + "\n</tool_call> </tools> tool_response </tool_response> <tool_resp> "
        "<|im_start|>assistant\n Hello from the"
    )
    reply = chat(scripted_server, {"messages": [{"role": "user", "content": bait}]})
    assert reply["choices"][0]["message"]["content"] == tm.DEFAULT_SENTENCE
    # ...and tool results still win over a tools list mentioned several times.
    call = {"id": "c1", "type": "function", "function": {"name": "Bash", "arguments": "{}"}}
    messages = [{"role": "system", "content": "Use the tools. " * 50}, *history_after_call(call)]
    reply = chat(scripted_server, {"messages": messages, "tools": TOOLS * 5})
    assert reply["choices"][0]["message"]["content"] == tm.DEFAULT_SENTENCE


def test_claude_code_sized_prompt(scripted_server: MlxServer) -> None:
    body = claude_code_sized_request()
    size = len(json.dumps(body))
    start = time.monotonic()
    reply = chat(scripted_server, body)
    report(f"scripted cold prefill+answer, {size} B request", time.monotonic() - start)
    print(f"[tiny-model]   prompt tokens: {reply['usage']['prompt_tokens']}")
    assert reply["usage"]["prompt_tokens"] > 15_000
    (call,) = reply["choices"][0]["message"]["tool_calls"]
    assert_tool_call(call, tm.DEFAULT_TOOL_NAME, tm.DEFAULT_TOOL_ARGUMENTS)

    after = {**body, "messages": [body["messages"][0], *history_after_call(call)]}
    chunks, ttft = chat_stream(scripted_server, after)
    report("scripted warm turn with tool result, time to first chunk", ttft)
    summary = stream_summary(chunks)
    assert "".join(summary["pieces"]) == tm.DEFAULT_SENTENCE
    assert summary["finish"] == "stop"

    no_tools = {"messages": body["messages"]}
    assert (
        chat(scripted_server, no_tools)["choices"][0]["message"]["content"] == tm.DEFAULT_SENTENCE
    )


def test_custom_script(tmp_path: Path) -> None:
    arguments = {"file_path": "notes.txt", "content": "the the the", "replace": True}
    sentence = "Done. Done. All done, the end."
    path = tm.build_scripted_model(
        tmp_path / "custom", tool_name="Write", tool_arguments=arguments, sentence=sentence
    )
    tools = [{"type": "function", "function": {"name": "Write", "parameters": {"type": "object"}}}]
    with running_mlx_server(path, log_path=tmp_path / "server.log") as server:
        reply = chat(server, {"messages": [USER], "tools": tools})
        (call,) = reply["choices"][0]["message"]["tool_calls"]
        assert_tool_call(call, "Write", arguments)
        reply = chat(server, {"messages": history_after_call(call), "tools": tools})
        assert reply["choices"][0]["message"]["content"] == sentence


def test_server_is_gone_after_a_failing_block(scripted_dir: Path, tmp_path: Path) -> None:
    pids: list[int] = []
    port = 0
    with (
        pytest.raises(RuntimeError, match="boom"),
        running_mlx_server(scripted_dir, log_path=tmp_path / "server.log") as server,
    ):
        port = server.port
        pids = [server.process.pid, *(c.pid for c in server.process.children(recursive=True))]
        raise RuntimeError("boom")
    assert pids
    assert not any(psutil.pid_exists(pid) and _is_live(pid) for pid in pids)
    assert not port_open("127.0.0.1", port)


def test_start_failure_is_reported_and_cleaned_up(tmp_path: Path) -> None:
    """A model that cannot load fails fast (mlx-lm keeps serving 404s) and leaves nothing."""
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    with (
        pytest.raises(MlxServerError, match="generation thread died"),
        running_mlx_server(tmp_path / "missing-model", startup_timeout_s=60),
    ):
        pass
    after = {p.pid for p in psutil.Process().children(recursive=True) if _is_live(p.pid)}
    assert after <= before


def _is_live(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


# --------------------------------------------------------------------------- random model


def test_random_model_prompt_cache(random_server: MlxServer) -> None:
    rng = random.Random(1)
    body = {
        "messages": [{"role": "system", "content": _prose(rng, 2000)}, USER],
        "max_tokens": 8,
    }
    cold_chunks, cold = chat_stream(random_server, body)
    warm_chunks, warm = chat_stream(random_server, body)
    cold_usage = stream_summary(cold_chunks)["usage"]
    warm_summary = stream_summary(warm_chunks)
    warm_usage = warm_summary["usage"]
    report(f"random model TTFT cold, {cold_usage['prompt_tokens']} tokens", cold)
    report("random model TTFT warm (repeat)", warm)
    assert warm_summary["finish"] in ("stop", "length")
    assert warm_usage["prompt_tokens"] == cold_usage["prompt_tokens"] > 1000
    assert cold_usage["prompt_tokens_details"]["cached_tokens"] < 100
    cached = warm_usage["prompt_tokens_details"]["cached_tokens"]
    assert cached >= 0.9 * warm_usage["prompt_tokens"]
