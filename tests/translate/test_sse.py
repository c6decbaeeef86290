"""SSE encoding of Anthropic events and decoding of upstream OpenAI streams."""

from __future__ import annotations

import time

from hypothesis import given
from hypothesis import strategies as st

from anyclaude.translate.sse import SSEDecoder, encode
from tests.support.grammar import parse_sse


def test_every_event_has_its_event_line_equal_to_its_type() -> None:
    raw = encode([("ping", {"type": "ping"}), ("message_stop", {"type": "message_stop"})])
    assert raw == (b'event: ping\ndata: {"type":"ping"}\n\n'
                   b'event: message_stop\ndata: {"type":"message_stop"}\n\n')
    assert parse_sse(raw) == [("ping", {"type": "ping"}), ("message_stop", {"type": "message_stop"})]


def test_non_ascii_text_is_encoded_as_utf8_on_one_line() -> None:
    raw = encode([("x", {"type": "x", "text": "héllo\nwörld ✓"})])
    assert raw.count(b"\n") == 3 and "✓".encode() in raw


MLX_STREAM = (b": keepalive 1/2\n\n: keepalive 2/2\n\n"
              b'data: {"choices": [{"delta": {"content": "Hi"}}]}\n\n'
              b"data: [DONE]\n\n")


def test_decoder_yields_keepalives_data_and_done_in_order() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(MLX_STREAM) + decoder.close() == [
        ("keepalive", "keepalive 1/2"), ("keepalive", "keepalive 2/2"),
        ("data", '{"choices": [{"delta": {"content": "Hi"}}]}'), ("done", "")]


def test_decoder_accepts_done_without_a_trailing_blank_line() -> None:
    decoder = SSEDecoder()
    out = decoder.feed(b'data: {"a": 1}\n\ndata: [DONE]')
    assert out == [("data", '{"a": 1}')]
    assert decoder.close() == [("done", "")]


def test_decoder_handles_crlf_and_ignores_event_and_stray_lines() -> None:
    decoder = SSEDecoder()
    out = decoder.feed(b"event: x\r\nid: 3\r\nnonsense\r\ndata:{\"a\":1}\r\n\r\n")
    assert out == [("data", '{"a":1}')]


def test_multi_line_data_is_joined_with_newlines() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\ndata: b\n\n") == [("data", "a\nb")]


@given(st.lists(st.integers(1, 40), max_size=30))
def test_decoding_does_not_depend_on_how_bytes_are_split(cuts: list[int]) -> None:
    whole = SSEDecoder()
    expected = whole.feed(MLX_STREAM) + whole.close()
    decoder, out, at = SSEDecoder(), [], 0
    for size in cuts:
        out += decoder.feed(MLX_STREAM[at:at + size])
        at += size
    out += decoder.feed(MLX_STREAM[at:]) + decoder.close()
    assert out == expected


LINE_BOUND = 10.0
"""Seconds to decode a 16 MB line arriving in 1 KB reads: generous (linear decoding takes
well under 0.1 s; re-joining the pending line on every read took minutes)."""


def test_a_long_line_in_small_reads_is_decoded_in_linear_time() -> None:
    size = 16 << 20
    line = b'data: {"x": "' + b"a" * size + b'"}\n\n'
    decoder = SSEDecoder()
    started = time.monotonic()
    items = [item for at in range(0, len(line), 1024) for item in decoder.feed(line[at:at + 1024])]
    assert time.monotonic() - started < LINE_BOUND
    assert len(items) == 1 and len(items[0][1]) == size + 9


@given(st.lists(st.binary(max_size=8), max_size=40))
def test_any_split_of_a_body_decodes_as_the_whole(pieces: list[bytes]) -> None:
    body = b"".join(pieces)
    whole = SSEDecoder()
    expected = whole.feed(body) + whole.close()
    split = SSEDecoder()
    got = [item for piece in pieces for item in split.feed(piece)] + split.close()
    assert got == expected
