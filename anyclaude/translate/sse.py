"""Server-sent events: encoding Anthropic events, decoding OpenAI chunks. Bytes in, bytes out.

Every Anthropic event carries its `event:` line (the SDK dispatches on it, and Claude Code
reports "Stream ended without receiving any events" without it).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

import orjson

from anyclaude.translate.protocol import StreamEvent

Event = tuple[str, StreamEvent]
"""(event name, payload); the payload's `type` equals the name."""


def encode(events: Iterable[Event]) -> bytes:
    """All events as one byte string, so a batch goes out in one socket write."""
    return b"".join(
        b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"
        for name, data in events
    )


Kind = Literal["data", "keepalive", "done"]
Item = tuple[Kind, str]


class SSEDecoder:
    """Incremental decoder of an upstream `text/event-stream` body.

    Yields ("data", text) for each complete event's data, ("keepalive", text) for comment
    lines (mlx-lm's `: keepalive i/N` during prefill: the backend is alive, the client
    deserves a ping) and ("done", "") for OpenAI's `data: [DONE]`. Tolerates CRLF, a final
    event without its blank line (mlx-textgen's `data: [DONE]`), and lines without a
    `data:` prefix.
    """

    def __init__(self) -> None:
        self._partial: list[bytes] = []
        """The pieces of a line that has not ended yet, joined once it does: re-joining on
        every read made a long line quadratic (a 64 MB line took a minute)."""
        self._data: list[bytes] = []

    def feed(self, chunk: bytes) -> list[Item]:
        if b"\n" not in chunk:
            if chunk:
                self._partial.append(chunk)
            return []
        if self._partial:
            self._partial.append(chunk)
            chunk, self._partial = b"".join(self._partial), []
        lines = chunk.split(b"\n")
        rest = lines.pop()
        if rest:
            self._partial.append(rest)
        out: list[Item] = []
        for line in lines:
            self._line(line.rstrip(b"\r"), out)
        return out

    def close(self) -> list[Item]:
        """End of body: a pending line or event without its blank line still counts."""
        out: list[Item] = []
        if self._partial:
            self._line(b"".join(self._partial).rstrip(b"\r"), out)
            self._partial = []
        self._line(b"", out)
        return out

    def _line(self, line: bytes, out: list[Item]) -> None:
        if not line:
            if self._data:
                data = b"\n".join(self._data)
                out.append(("done", "") if data.strip() == b"[DONE]" else
                           ("data", data.decode("utf-8", "replace")))
                self._data = []
            return
        if line.startswith(b":"):
            out.append(("keepalive", line[1:].strip().decode("utf-8", "replace")))
        elif line.startswith(b"data:"):
            value = line[5:]
            self._data.append(value[1:] if value.startswith(b" ") else value)
        # `event:`, `id:`, `retry:` and stray lines carry nothing for chat completions.
