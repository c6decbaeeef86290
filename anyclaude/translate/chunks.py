"""An upstream answer's bytes -> chunks -> Anthropic events, for one `StreamTranslator`.

What each upstream read means is decided here, not in the proxy: a `data:` payload is a
chunk (or garbage, or an error object: both fail the stream), a comment is a keepalive
(the backend is alive; the client gets a ping), `[DONE]` ends the answer, and a body that
ends without `[DONE]` or a finish reason was cut. A whole (non-streaming) answer is recast
as one chunk, so both go through the same state machine.
"""

from __future__ import annotations

from typing import Any, cast

import orjson

from anyclaude.translate import errors
from anyclaude.translate.protocol import ChatChunk, ChunkDelta
from anyclaude.translate.sse import Event, SSEDecoder
from anyclaude.translate.stream import StreamTranslator


def parse_chunk(text: str) -> object:
    """One upstream `data:` payload; garbage or an error object fails the stream."""
    try:
        parsed = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise errors.mid_stream(f"it sent a chunk that is not valid JSON: {text[:120]!r}") from None
    if isinstance(parsed, dict) and "error" in parsed and not parsed.get("choices"):
        raise errors.mid_stream(errors.backend_message(text.encode()))
    return parsed


class ChunkStream:
    """Upstream SSE bytes in, events out; one `feed` per upstream read."""

    def __init__(self, translator: StreamTranslator) -> None:
        self.translator = translator
        self._decoder = SSEDecoder()
        self._done = False
        self._eof = False
        self._keepalives = 0

    def feed(self, data: bytes) -> list[Event]:
        """One read of the upstream body; `b""` means the body ended."""
        translator = self.translator
        events: list[Event] = []
        if not data:
            self._eof = True
        for kind, text in self._decoder.feed(data) if data else self._decoder.close():
            if kind == "data":
                events.extend(translator.feed(parse_chunk(text)))
            elif kind == "keepalive":
                self._keepalives += 1
                events.extend(translator.ping())
            else:
                self._done = True
                break  # the answer is over: whatever follows in this read is not part of it
        return events

    @property
    def progress(self) -> int:
        """Grows while the backend makes progress: pieces of the answer, and comments (mlx-lm
        sends `: keepalive n/total` while it reads a long prompt); empty deltas do not."""
        return self._keepalives + self.translator.pieces

    @property
    def over(self) -> bool:
        """Nothing more is worth reading: `[DONE]`, a matched stop sequence, or the end."""
        return self._done or self._eof or self.translator.stopped

    def finish(self) -> list[Event]:
        """The closing events; a body that ended before the answer did fails the stream."""
        translator = self.translator
        if not (self._done or translator.stopped or translator.finish_reason):
            raise errors.mid_stream("the connection closed before the answer was complete")
        return translator.finish()


def whole_answer(data: bytes) -> ChatChunk | None:
    """A non-streaming answer's body as one chunk, or None if it is not a chat completion."""
    try:
        return response_chunk(orjson.loads(data))
    except orjson.JSONDecodeError:
        return None


def response_chunk(body: object) -> ChatChunk | None:
    """A non-streaming OpenAI response as one chunk for `StreamTranslator.feed`."""
    if not isinstance(body, dict):
        return None
    choices = body.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return None
    message = choices[0].get("message")
    if not isinstance(message, dict):
        return None
    delta: dict[str, Any] = dict(message)
    calls = message.get("tool_calls")
    if isinstance(calls, list):
        delta["tool_calls"] = [dict(c, index=i) if isinstance(c, dict) else c
                               for i, c in enumerate(calls)]
    return {"choices": [{"index": 0, "delta": cast(ChunkDelta, delta),
                         "finish_reason": choices[0].get("finish_reason")}],
            "usage": body.get("usage")}


PROBE_ANSWER: ChatChunk = {"choices": [{"index": 0, "delta": {"content": "OK"},
                                        "finish_reason": "length"}]}
"""What a `max_tokens: 1` probe gets: one token, stopped by the limit."""


def probe_events(translator: StreamTranslator) -> list[Event]:
    """The whole answer to a probe, made here: it checks that the API answers, and sending
    it to the backend would cost a full prefill of its prompt."""
    return translator.start() + translator.feed(PROBE_ANSWER) + translator.finish()
