"""Work on the event loop does not grow out of bounds with the input (issue 11, class 5).

While the proxy digests a hostile input (long overlapping stop sequences, megabytes of
broken tool arguments, a huge SSE line), a small request next to it is still answered: each
`/health` sent during the big request gets its answer within a generous bound (the fixed
proxy answers in milliseconds; the unbounded work held the loop for tens of seconds).
"""

from __future__ import annotations

import random
import string
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from tests.support.grammar import check, parse_sse
from tests.support.proxy import TOKEN, ThreadedProxy, running_proxy
from tests.support.scripted import Reply, ScriptedBackend

HEADERS = {"x-api-key": TOKEN, "anthropic-version": "2023-06-01"}
HEALTH_BOUND = 10.0
"""Seconds a /health may take while the big request runs: generous, not a benchmark."""


@pytest.fixture
def mlx() -> Iterator[tuple[ScriptedBackend, ThreadedProxy]]:
    with ScriptedBackend("mlx-lm", strict_model=False) as backend, \
            running_proxy("mlx-lm", backend.url, "scripted") as proxy:
        yield backend, proxy


def served_alongside(proxy: ThreadedProxy, backend: ScriptedBackend,
                     big: Callable[[], httpx.Response]) -> httpx.Response:
    """Run `big`, and ask /health again and again until it is over; every answer must come
    within HEALTH_BOUND. Returns the big request's response."""
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(big)
        backend.wait_for_request(1, timeout=30)
        while not future.done():
            health = httpx.get(proxy.url + "/health", timeout=HEALTH_BOUND)
            assert health.status_code == 200
            time.sleep(0.05)
        return future.result()


def post(proxy: ThreadedProxy, body: dict[str, Any]) -> Callable[[], httpx.Response]:
    return lambda: httpx.post(proxy.url + "/v1/messages", json={**body, "stream": True},
                              headers=HEADERS, timeout=600)


def test_long_overlapping_stop_sequences(mlx: tuple[ScriptedBackend, ThreadedProxy]) -> None:
    """32 stops of 6,000 characters; the answer keeps a 5,999-character partial match open
    while it streams in 3-character chunks."""
    backend, proxy = mlx
    rng = random.Random(11)
    stops = ["".join(rng.choices(string.ascii_letters, k=6000)) for _ in range(31)]
    stops.append("a" * 5999 + "Z")
    backend.reply(Reply(text=["a" * 6000] + ["aaa"] * 2500 + [" done"]))
    body = {"model": "claude-x", "max_tokens": 100000, "stop_sequences": stops,
            "messages": [{"role": "user", "content": "go"}]}
    response = served_alongside(proxy, backend, post(proxy, body))
    summary = check(parse_sse(response.content), complete=True)
    assert summary["text"] == "a" * 13500 + " done" and summary["stop_reason"] == "end_turn"


def test_megabytes_of_broken_tool_arguments(mlx: tuple[ScriptedBackend, ThreadedProxy]) -> None:
    """A 2 MB Write call whose JSON is broken (not cut): too big to repair on the loop, so it
    becomes the not-valid-JSON note, and the loop stays free."""
    backend, proxy = mlx
    arguments = "{'file_path': '/a', 'content': '" + "line, with 'quotes' and {braces}\\n" * 60000 + "'}"
    backend.reply(Reply(tool_calls=[("Write", arguments)], finish_reason="tool_calls"))
    body = {"model": "claude-x", "max_tokens": 100000,
            "tools": [{"name": "Write", "input_schema": {"type": "object", "properties": {
                "file_path": {"type": "string"}, "content": {"type": "string"}}}}],
            "messages": [{"role": "user", "content": "write it"}]}
    response = served_alongside(proxy, backend, post(proxy, body))
    summary = check(parse_sse(response.content), complete=True)
    assert summary["tools"] == [] and "not valid JSON" in summary["text"]


def test_a_huge_sse_line_streams_through(mlx: tuple[ScriptedBackend, ThreadedProxy]) -> None:
    """One 32 MB `data:` line, read in many pieces (the decoder's own cost is bounded in
    tests/translate/test_sse.py)."""
    backend, proxy = mlx
    size = 32 << 20
    chunk = (b'data: {"choices": [{"index": 0, "delta": {"content": "' + b"a" * size
             + b'"}, "finish_reason": "stop"}]}\n\ndata: [DONE]\n\n')
    backend.reply(Reply(error_body=chunk, content_type="text/event-stream"))
    body = {"model": "claude-x", "max_tokens": 100000,
            "messages": [{"role": "user", "content": "go"}]}
    response = served_alongside(proxy, backend, post(proxy, body))
    summary = check(parse_sse(response.content), complete=True)
    assert len(summary["text"]) == size
