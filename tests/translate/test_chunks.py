"""Upstream bytes -> events: keepalives, [DONE], garbage, error objects, cut bodies, probes."""

from __future__ import annotations

import json
from typing import Any

import pytest

from anyclaude.backends import get
from anyclaude.translate.chunks import ChunkStream, parse_chunk, probe_events, whole_answer
from anyclaude.translate.errors import AnthropicError
from anyclaude.translate.events import accumulate
from anyclaude.translate.request import Plan, to_openai
from anyclaude.translate.stream import StreamTranslator
from tests.support.grammar import check

MLX = get("mlx-lm").dialect  # type: ignore[union-attr]


def plan() -> Plan:
    return to_openai({"model": "claude-x", "max_tokens": 100, "stream": True,
                      "messages": [{"role": "user", "content": "hi"}]}, MLX, model="m")


def data(chunk: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(chunk).encode() + b"\n\n"


def text(content: str, finish: str | None = None) -> bytes:
    return data({"choices": [{"index": 0, "delta": {"content": content},
                              "finish_reason": finish}]})


def started() -> tuple[ChunkStream, list[Any]]:
    translator = StreamTranslator(plan())
    return ChunkStream(translator), translator.start()


def test_keepalive_comments_become_pings_and_done_ends_the_answer() -> None:
    stream, events = started()
    events += stream.feed(b": keepalive 1/3\n\n")
    assert events[-1][0] == "ping" and not stream.over
    events += stream.feed(text("Hello") + text(" there", "stop") + b"data: [DONE]\n\n")
    assert stream.over
    events += stream.finish()
    summary = check(events, complete=True)
    assert summary["text"] == "Hello there"


def test_a_body_that_ends_with_a_finish_reason_but_no_done_is_complete() -> None:
    stream, events = started()
    events += stream.feed(text("Hi", "stop"))
    assert not stream.over
    events += stream.feed(b"")
    assert stream.over
    check(events + stream.finish(), complete=True)


def test_a_body_cut_before_the_answer_ended_fails_the_stream() -> None:
    stream, _ = started()
    stream.feed(text("Hal"))
    stream.feed(b"")
    assert stream.over
    with pytest.raises(AnthropicError) as caught:
        stream.finish()
    assert "closed before the answer was complete" in caught.value.message


@pytest.mark.parametrize(("payload", "says"), [
    ("{not json", "not valid JSON"),
    ('{"error": {"message": "model crashed"}}', "model crashed"),
    ('{"error": "out of memory"}', "out of memory"),
])
def test_garbage_and_error_objects_fail_the_stream(payload: str, says: str) -> None:
    with pytest.raises(AnthropicError) as caught:
        parse_chunk(payload)
    assert caught.value.status == 500 and says in caught.value.message
    stream, _ = started()
    with pytest.raises(AnthropicError):
        stream.feed(b"data: " + payload.encode() + b"\n\n")


def test_an_error_key_next_to_choices_is_a_chunk() -> None:
    chunk = '{"choices": [{"index": 0, "delta": {}}], "error": null}'
    assert parse_chunk(chunk) == json.loads(chunk)


def test_whole_answers_are_one_chunk_and_anything_else_is_none() -> None:
    body = {"choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": "Hi"}}]}
    assert whole_answer(json.dumps(body).encode()) == {
        "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hi"},
                     "finish_reason": "stop"}], "usage": None}
    assert whole_answer(b"<html>Bad gateway</html>") is None
    assert whole_answer(b'{"object": "list"}') is None


def test_probes_get_one_token_stopped_by_the_limit() -> None:
    events = probe_events(StreamTranslator(plan()))
    summary = check(events, complete=True)
    assert summary["text"] == "OK" and summary["stop_reason"] == "max_tokens"
    assert accumulate(events)["stop_reason"] == "max_tokens"
