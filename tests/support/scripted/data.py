"""What a test scripts and what the scripted backend records: replies, requests, connections.

These are the double's public vocabulary; everything else in the package renders them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal, get_args

from tests.support.scripted.wire import reason

Dialect = Literal["mlx-lm", "lmstudio", "mlx-textgen", "vllm", "llamacpp"]
DIALECTS: Final[tuple[str, ...]] = get_args(Dialect)

Fault = Literal[
    "die_mid_stream",
    "hang_after_headers",
    "hang_before_headers",
    "invalid_json_chunk",
    "invalid_sse",
    "html_error",
    "no_done",
    "slow",
]
FAULTS: Final[tuple[str, ...]] = get_args(Fault)

DERIVED: Final = "<derived>"
"""`Reply.finish_reason` default: "tool_calls" when the reply has calls, else "stop"."""

DEFAULT_PIECES: Final[tuple[str, ...]] = (
    "Hel", "lo", "!", " I", " a", "m", " the", " t", "in", "y",
    " s", "cri", "p", "ted", " test", " mode", "l", ".",
)  # fmt: skip
"""The token pieces of the scripted test model in the captures ("Hello! I am the tiny
scripted test model."); the default reply, so a bare request reproduces fixture 02."""

SLOW_DELAY: Final = 0.2
"""Per-chunk delay of the `slow` fault when the reply sets no `chunk_delay`."""

HTML_PAGE: Final = (
    "<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n"
    "<center><h1>{status} {reason}</h1></center>\r\n<hr><center>nginx</center>\r\n"
    "</body>\r\n</html>\r\n"
)

INVALID: Final[Any] = object()
"""`Request.json` sentinel while routing: the body was present but not valid JSON (the
recorded request carries None)."""


@dataclass(frozen=True)
class Usage:
    """Token counts to report; None means "derive": prompt ≈ len(request body) // 4,
    completion = number of pieces sent, cached = 0 (reported only by dialects that report it:
    mlx-lm always; the others only when given explicitly)."""

    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cached_tokens: int | None = None
    reasoning_tokens: int | None = None


@dataclass(frozen=True)
class Reply:
    """What the scripted model "generates" for one request, rendered in the backend's dialect.

    `text` / `reasoning`: a string split into `chunk_size`-character pieces, or explicit pieces.
    `tool_calls`: (name, arguments JSON text) pairs; mlx-lm and mlx-textgen send each call whole,
    the others send a start delta and `arg_chunk_size` fragments (`interleave=True` alternates
    the fragments of several calls by index). `status != 200` or an `error_body` makes it a
    fixed response instead (a mapping is JSON-encoded in the dialect's style, str/bytes are
    sent as is; no body gives the dialect's usual error shape), framed like that server's
    errors. `fault` breaks the response on purpose (see `FAULTS`).
    """

    text: str | Sequence[str] = ""
    reasoning: str | Sequence[str] = ""
    tool_calls: Sequence[tuple[str, str]] = ()
    finish_reason: str | None = DERIVED
    usage: Usage = Usage()
    include_usage: bool | None = None
    """None: follow the request's `stream_options.include_usage` (dialect rules apply)."""
    chunk_size: int = 3
    arg_chunk_size: int = 6
    interleave: bool = False
    tool_call_ids: Sequence[str] = ()
    """Upstream ids to report; default: minted in the dialect's format."""
    keepalives: int | None = None
    """`: keepalive i/n` comments before the first chunk; None: 1 for mlx-lm, 0 otherwise."""
    keepalive_delay: float = 0.0
    """Seconds to wait after each keepalive (prefill time)."""
    delay: float = 0.0
    """Seconds to wait before the status line (queueing, non-streaming generation)."""
    chunk_delay: float = 0.0
    """Seconds to wait before each data chunk."""
    status: int = 200
    error_body: Mapping[str, Any] | str | bytes | None = None
    content_type: str | None = None
    fault: Fault | None = None
    fault_after: int = 2
    """Data chunks sent before `die_mid_stream` closes / the invalid chunk is inserted."""


@dataclass(frozen=True)
class Request:
    """One request as received (headers keyed in lower case)."""

    index: int
    connection: int
    method: str
    path: str
    version: str
    headers: Mapping[str, str]
    body: bytes
    raw: bytes
    json: Any
    """The parsed body, or None when absent or not JSON."""
    received_at: float

    @property
    def stream(self) -> bool:
        return isinstance(self.json, dict) and self.json.get("stream") is True

    @property
    def model(self) -> Any:
        return self.json.get("model") if isinstance(self.json, dict) else None

    @property
    def messages(self) -> list[Any]:
        msgs = self.json.get("messages") if isinstance(self.json, dict) else None
        return msgs if isinstance(msgs, list) else []


@dataclass(frozen=True)
class ConnectionRecord:
    """One TCP connection: when it opened and closed (time.monotonic), who closed it, and
    whether the peer went away while a response was still being sent."""

    index: int
    opened_at: float
    closed_at: float | None = None
    closed_by: Literal["peer", "server"] | None = None
    peer_closed_early: bool = False
    requests: tuple[int, ...] = ()
    responses_completed: int = 0


Responder = Callable[[Request], "Reply | None"]


def error_reply(
    status: int, body: Mapping[str, Any] | str | bytes, content_type: str | None = None
) -> Reply:
    """A plain error reply; the body is JSON-encoded in the dialect's style when a mapping."""
    return Reply(status=status, error_body=body, content_type=content_type)


def html_error(status: int = 500) -> Reply:
    """An HTML error page, as a reverse proxy or a crashed gateway would send."""
    page = HTML_PAGE.format(status=status, reason=reason(status))
    return error_reply(status, page, "text/html")
