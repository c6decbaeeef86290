"""Backend failures as Anthropic errors that Claude Code reacts to sensibly.

Claude Code retries 5xx and 429 for minutes, gives up on 529 after three quick tries, and
never retries a 400. It recognises a too-long prompt by the phrase `prompt is too long`
(then compacts) or ``input length and `max_tokens` exceed context limit: A + B > C`` (then
retries with a smaller max_tokens), whatever the status. So: errors a retry cannot fix are
400, a backend that is down is 529, and context overflows are reworded to those phrases.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import orjson

from anyclaude.translate.protocol import ErrorEvent


@dataclass
class AnthropicError(Exception):
    """An error in Anthropic's shape (a mutable dataclass: exceptions get tracebacks set)."""

    status: int
    type: str
    message: str
    retry: bool | None = None
    """Sent as `x-should-retry` when not None."""

    def __post_init__(self) -> None:
        # Messages may quote what a client sent (a Host, a path, a header): bytes that were
        # not UTF-8 arrive as surrogates, which no JSON encoder writes. Escape them here.
        if not self.message.isascii():
            self.message = self.message.encode("utf-8", "backslashreplace").decode("utf-8")

    def body(self, request_id: str | None = None) -> ErrorEvent:
        body: ErrorEvent = {"type": "error", "error": {"type": self.type, "message": self.message}}
        if request_id:
            body["request_id"] = request_id
        return body

    def __str__(self) -> str:
        return f"{self.status} {self.type}: {self.message}"


STATUS_TYPES: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def of_status(status: int, message: str, retry: bool | None = None) -> AnthropicError:
    """An error with the `type` Anthropic uses for that HTTP status."""
    kind = STATUS_TYPES.get(status, "invalid_request_error" if status < 500 else "api_error")
    return AnthropicError(status, kind, message, retry)


def client_closed() -> AnthropicError:
    """Not sent anywhere (the client is gone): how the stats record a request it dropped."""
    return AnthropicError(499, "client_closed", "client disconnected")


def internal() -> AnthropicError:
    """A bug of ours (the traceback goes to the log, not to the client)."""
    return AnthropicError(500, "api_error", "anyclaude hit an internal error; run with "
                          "ANYCLAUDE_DEBUG=1 and report it.")


def invalid_request(message: str) -> AnthropicError:
    return AnthropicError(400, "invalid_request_error", message)


def prompt_too_long(tokens: int, maximum: int) -> AnthropicError:
    """The exact wording Claude Code turns into auto-compaction."""
    return invalid_request(f"prompt is too long: {tokens} tokens > {maximum} maximum")


def context_exceeded(prompt: int, max_tokens: int, limit: int) -> AnthropicError:
    """The wording Claude Code parses to retry with a smaller `max_tokens`."""
    return invalid_request(
        f"input length and `max_tokens` exceed context limit: {prompt} + {max_tokens} > "
        f"{limit}, decrease input length or `max_tokens` and try again")


def unreachable(url: str, setting: str) -> AnthropicError:
    return AnthropicError(
        529, "overloaded_error",
        f"The backend at {url} is not reachable; start it or point {setting} at a running "
        "server.")


def not_http(url: str, trouble: str, setting: str) -> AnthropicError:
    """The backend's answer could not be read as HTTP (`trouble`: "it sent ...")."""
    return AnthropicError(500, "api_error", f"The backend at {url} did not answer in HTTP: "
                          f"{trouble}; check that {setting} points at the server itself.",
                          retry=False)


def broken_answer(url: str, trouble: str) -> AnthropicError:
    """A non-streaming answer that broke off after its status line."""
    return AnthropicError(500, "api_error",
                          f"The backend at {url} broke off its answer: {trouble}; check its log.")


def redirected(url: str, status: int, location: str | None, setting: str) -> AnthropicError:
    """Redirects are never followed: the request would leave for another address."""
    where = f"to {location}" if location else "without a Location"
    return AnthropicError(500, "api_error", f"The backend at {url} answered with a redirect "
                          f"(HTTP {status}) {where}, which anyclaude does not follow; set "
                          f"{setting} to the address the server answers at.", retry=False)


def timed_out(url: str, seconds: float, setting: str) -> AnthropicError:
    """No (complete) answer within a limit of ours."""
    return AnthropicError(504, "timeout_error", f"The backend at {url} sent no complete answer "
                          f"within {seconds:g} s; check its log, or raise {setting}.")


def mid_stream(reason: str) -> AnthropicError:
    """Sent as an `error` event so Claude Code retries instead of keeping a cut answer."""
    return AnthropicError(500, "api_error",
                          f"The backend stopped in the middle of the answer: {reason}.")


# Context-overflow messages of the servers we know, with the numbers they carry.
_OVERFLOW = [
    # vLLM / OpenAI: "maximum context length is 4096 tokens. However, you requested 5000
    # tokens (4000 in the messages, 1000 in the completion)."
    re.compile(r"maximum context length is (?P<limit>\d+) tokens.*?(?P<prompt>\d+) in the "
               r"messages(?:, (?P<completion>\d+) in the completion)?", re.I | re.S),
    re.compile(r"maximum context length is (?P<limit>\d+) tokens.*?requested (?P<prompt>\d+)",
               re.I | re.S),
    # llama.cpp: "the request exceeds the available context size (n_ctx 4096, n_prompt 5000)"
    re.compile(r"exceeds the available context size.*?(?P<limit>\d+).*?(?P<prompt>\d+)", re.I | re.S),
    # LM Studio: "The number of tokens to keep from the initial prompt is greater than the
    # context length", "Trying to keep the first 5000 tokens when context overflows"
    re.compile(r"(?:first (?P<prompt>\d+) tokens when context|context length of only "
               r"(?P<limit>\d+))", re.I),
    re.compile(r"prompt is too long(?::\s*(?P<prompt>\d+) tokens\s*>\s*(?P<limit>\d+))?", re.I),
    re.compile(r"(?:context (?:length|window|size)|too many tokens|exceeds? (?:the )?context|"
               r"context overflow)", re.I),
]


def overflow(message: str, prompt_estimate: int, window: int | None,
             max_tokens: int) -> AnthropicError | None:
    """The Claude Code phrasing for a backend's context-overflow message, or None."""
    for pattern in _OVERFLOW:
        match = pattern.search(message)
        if not match:
            continue
        groups = match.groupdict()
        prompt = int(groups.get("prompt") or 0) or prompt_estimate
        limit = int(groups.get("limit") or 0) or window or 0
        if limit and prompt > limit:
            return prompt_too_long(prompt, limit)
        if limit:
            return context_exceeded(prompt, max_tokens, limit)
        return invalid_request(f"prompt is too long for the model's context window "
                               f"(about {prompt} tokens): {message}")
    return None


def backend_message(body: bytes, content_type: str = "") -> str:
    """The human part of a backend error body: OpenAI `{"error": {...}}`, mlx-lm's
    `{"error": "..."}`, FastAPI's `{"detail": ...}`, plain text, or an HTML page."""
    text = body.decode("utf-8", "replace").strip()
    if "html" in content_type or text[:15].lower().startswith(("<!doctype", "<html")):
        title = re.search(r"<title>(.*?)</title>", text, re.I | re.S)
        return "an HTML error page" + (f" ({title.group(1).strip()})" if title else "")
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return text[:500] or "an empty response"
    if isinstance(data, dict):
        for key in ("error", "detail", "message"):
            value = data.get(key)
            if isinstance(value, dict):
                value = value.get("message") or value.get("msg") or value
            if isinstance(value, list) and value and isinstance(value[0], dict):
                value = _validation_error(value[0])
            if value:
                return str(value)[:500]
    return text[:500]


def _validation_error(item: dict[str, Any]) -> str:
    """FastAPI's first 422 detail with its field path: `body.tools.0.name: Field required`."""
    message = str(item.get("msg", item))
    location = item.get("loc")
    if isinstance(location, list) and location:
        return ".".join(str(part) for part in location) + ": " + message
    return message


_MODEL_MISSING = re.compile(
    r"(model_not_found|does not exist|invalid model|no models loaded|model .*not found|"
    r"repository not found|not a valid model|is not a local folder)", re.I)


def from_backend(status: int, body: bytes, content_type: str, *, url: str,
                 prompt_estimate: int, window: int | None, max_tokens: int,
                 model_setting: str | None) -> AnthropicError:
    """Map a backend's HTTP error to the Anthropic error Claude Code should see."""
    message = backend_message(body, content_type)
    too_long = overflow(message, prompt_estimate, window, max_tokens)
    if too_long is not None:
        return too_long
    if _MODEL_MISSING.search(message) and status in (400, 404, 422):
        hint = f"; set {model_setting} to a model the server has" if model_setting else ""
        return invalid_request(f"The backend does not have the requested model ({message}){hint}.")
    if status in (401, 403):
        return invalid_request(f"The backend at {url} refused anyclaude's credentials (HTTP "
                               f"{status}: {message}); check the backend API key setting.")
    if status == 429:
        return AnthropicError(429, "rate_limit_error", f"The backend is rate limiting: {message}")
    if status in (502, 503, 504):
        return AnthropicError(529, "overloaded_error",
                              f"The backend at {url} is unavailable (HTTP {status}: {message}).")
    if status >= 500:
        return AnthropicError(500, "api_error",
                              f"The backend at {url} failed with HTTP {status}: {message}",
                              retry=False)
    return invalid_request(f"The backend rejected the request (HTTP {status}): {message}")
