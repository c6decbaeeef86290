"""Counting prompts never stalls the proxy: the tokenizer runs off the event loop, stops when
its client goes away, and does not run at all when the estimate is already far above the
context window."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Mapping
from typing import Any, cast
from urllib.parse import urlsplit

import httpx
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer

from anyclaude import backends
from anyclaude.hub import find_tokenizer
from anyclaude.proxy.tokens import TokenCounter, pieces
from anyclaude.translate import size
from anyclaude.translate.plan import draft
from anyclaude.translate.protocol import MessagesRequest
from tests.support.proxy import TOKEN, running_proxy
from tests.support.scripted import ScriptedBackend
from tests.support.tiny_model import build_scripted_model, default_models_dir

AUTH = {"x-api-key": TOKEN}
SMALL: dict[str, Any] = {"model": "claude-x", "max_tokens": 10,
                         "messages": [{"role": "user", "content": "hi"}]}
LINE = "hello world, how are you today?\n"
MLX = backends.get("mlx-lm").dialect  # type: ignore[union-attr]


def tokenizer_path() -> str:
    path = find_tokenizer(str(build_scripted_model(default_models_dir() / "scripted")))
    assert path is not None
    return str(path)


class WatchedCounter(TokenCounter):
    """The real counter, telling the test when a count starts and what it returned."""

    def __init__(self) -> None:
        super().__init__(find_tokenizer(str(default_models_dir() / "scripted")))
        self.started = threading.Event()
        self.finished = threading.Event()
        self.result: int | None = None

    def count(self, body: Mapping[str, Any], stop: threading.Event | None = None) -> int:
        self.started.set()
        try:
            self.result = super().count(body, stop)
            return self.result
        finally:
            self.finished.set()


def big_request(megabytes: int, line: str = LINE) -> MessagesRequest:
    text = line * (megabytes * 1024 * 1024 // len(line))
    return cast(MessagesRequest, {**SMALL, "messages": [{"role": "user", "content": text}]})


def test_small_requests_are_answered_while_a_20_mb_prompt_is_counted() -> None:
    tokenizer_path()  # builds the model if needed
    tokens = WatchedCounter()
    big = big_request(20)
    plan = draft(big, MLX, model="m", tool_calls=None, chars_per_token=tokens.chars_per_token)
    full = len(cast(str, plan.body["messages"][0]["content"])) // len(LINE) * len(
        Tokenizer.from_file(tokenizer_path()).encode(LINE, add_special_tokens=False).ids)
    window = int(plan.prompt_tokens * 1.1)  # close enough that the count must run
    body = json.dumps(big).encode()
    with ScriptedBackend("mlx-lm") as backend, running_proxy(
            "mlx-lm", backend.url, "m", tokens=tokens, context_window=window) as proxy, \
            httpx.Client(base_url=proxy.url, headers=AUTH, timeout=60) as client:
        address = urlsplit(proxy.url)
        sock = socket.create_connection((address.hostname, address.port))
        try:
            sock.sendall(b"POST /v1/messages HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                         b"Content-Type: application/json\r\nx-api-key: " + TOKEN.encode() +
                         b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
            assert tokens.started.wait(120), "the 20 MB prompt was never counted"
            latencies = []
            for _ in range(3):
                started = time.monotonic()
                assert client.post("/v1/messages", json=SMALL).status_code == 200
                latencies.append(time.monotonic() - started)
            # Answered while the count was still running, each at once (a generous bound
            # for a busy 2-core machine: with the count on the loop one waited 38 s).
            assert not tokens.finished.is_set(), "the count ended before the small requests"
            assert max(latencies) < 2.0, latencies
        finally:
            sock.close()  # the client goes away: the proxy stops counting
        assert tokens.finished.wait(120)
    assert tokens.result is not None and tokens.result < full


def test_a_prompt_far_above_the_window_is_refused_without_counting() -> None:
    big = big_request(1, "hello ")
    tokens = TokenCounter(find_tokenizer(tokenizer_path()[: -len("/tokenizer.json")]))
    plan = draft(big, MLX, model="m", tool_calls=None,
                 chars_per_token=size.DEFAULT_CHARS_PER_TOKEN)
    assert tokens.count(plan.body) != plan.prompt_tokens
    with ScriptedBackend("mlx-lm") as backend, running_proxy(
            "mlx-lm", backend.url, "m", tokens=tokens, context_window=1000) as proxy:
        response = httpx.post(proxy.url + "/v1/messages", json=big, headers=AUTH, timeout=60)
        counted = httpx.post(proxy.url + "/v1/messages/count_tokens", json=big, headers=AUTH,
                             timeout=60)
        assert backend.requests == []
    assert response.status_code == 400
    assert response.json()["error"]["message"] == \
        f"prompt is too long: {plan.prompt_tokens} tokens > 1000 maximum"
    assert counted.json() == {"input_tokens": plan.prompt_tokens}


TEXT = st.lists(st.sampled_from(["a", "b", " ", "\n", ".", "\t", "é", "\r\n", "x y",
                                 "<tool_call>", "1", "\n\n"]), max_size=150).map("".join)


@settings(max_examples=200, deadline=None)
@given(text=TEXT, at_least=st.integers(1, 40))
def test_pieces_count_as_the_whole_text(text: str, at_least: int) -> None:
    tokenizer = Tokenizer.from_file(tokenizer_path())
    parts = pieces(text, at_least)
    assert "".join(parts) == text and all(parts[:-1])

    def count(t: str) -> int:
        return len(tokenizer.encode(t, add_special_tokens=False).ids)

    assert sum(count(p) for p in parts) == count(text)


def test_a_huge_prompt_is_counted_in_pieces_with_the_same_total() -> None:
    tokens = TokenCounter(find_tokenizer(tokenizer_path()[: -len("/tokenizer.json")]))
    text = LINE * 20_000
    assert len(pieces(text)) > 1
    body = {"messages": [{"role": "user", "content": text}]}
    whole = Tokenizer.from_file(tokenizer_path()).encode(text, add_special_tokens=False).ids
    assert tokens.count(body) == len(whole) + size.MESSAGE_OVERHEAD
