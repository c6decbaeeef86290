"""The locked door: who may talk to the proxy, and every spelling of the run's token.

One home for the spellings, so the guard that accepts the token and claude mode's
passthrough that strips it before forwarding agree exactly: whatever lets a request in
never reaches the upstream. Header values are compared as the bytes that arrived (aiohttp
keeps bytes that are not UTF-8 as surrogates), so no header can make the check itself fail.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Iterable

from anyclaude.translate.errors import AnthropicError, of_status

TOKEN_HEADER = "x-anyclaude-token"
"""Carries the run's token in claude mode, where `x-api-key` is the user's own key."""
_PLAIN = frozenset({"x-api-key", TOKEN_HEADER})
_BEARER = "bearer "
_LOOPBACK_HOST = re.compile(r"^(localhost|127\.\d+\.\d+\.\d+|\[::1\]|::1)(:\d+)?$", re.I)


def presented(name: str, value: str) -> str | None:
    """The token a header presents (`x-api-key: t`, `x-anyclaude-token: t`,
    `Authorization: Bearer t` in any case and with any spaces), or None."""
    lowered = name.lower()
    if lowered in _PLAIN:
        return value
    if lowered == "authorization" and value[:len(_BEARER)].lower() == _BEARER:
        return value[len(_BEARER):].strip()
    return None


def _raw(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def carries(name: str, value: str, token: str) -> bool:
    """Whether this header presents the run's token."""
    candidate = presented(name, value)
    return candidate is not None and hmac.compare_digest(_raw(candidate), _raw(token))


def refusal(headers: Iterable[tuple[str, str]], host: str | None, path: str,
            token: str) -> AnthropicError | None:
    """Why a request may not come in, or None: loopback Host only (DNS rebinding), no
    browser Origin (cross-site pages), the run's token on everything but /health."""
    pairs = list(headers)
    if host is not None and not _LOOPBACK_HOST.match(host):
        return of_status(403, f"Host {host!r} is not a loopback name; anyclaude only answers "
                         "requests made to 127.0.0.1.")
    if any(name.lower() == "origin" for name, _ in pairs):
        return of_status(403, "Requests from web pages (with an Origin header) are refused; "
                         "anyclaude serves local clients.")
    if path != "/health" and not any(carries(name, value, token) for name, value in pairs):
        return of_status(401, "Missing or wrong token: send the proxy token "
                         "(ANYCLAUDE_PROXY_TOKEN) as x-api-key or Authorization: Bearer.")
    return None
