"""Asking a backend server whether it is up and whether its model answers.

The supervisor (waiting for a server it starts) and doctor (checking one) ask the same two
questions the same way: the declaration's health URL, and, for servers whose health answers
before the model is loaded (mlx-lm), a 1-token completion. Every request is bounded, and a
server that accepts the connection but stays silent is told apart from one that is not there.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import aiohttp

from anyclaude import timeouts
from anyclaude.backends.base import Backend, Endpoint, upstream_model
from anyclaude.backends.net import auth_headers, server_root


@dataclass(frozen=True)
class Answer:
    """One GET or POST: the HTTP status (0: none), the body, and why there was none."""

    status: int
    body: Any = None
    """The parsed JSON, or None."""
    text: str = ""
    problem: str = ""
    """Why there is no answer, in a few words (`connection refused`, `no answer within 2 s`)."""
    silent: bool = False
    """Connected, then nothing within the time limit."""

    @property
    def said(self) -> str:
        """`HTTP 503`, or the problem."""
        return f"HTTP {self.status}" if self.status else self.problem


def session(endpoint: Endpoint) -> aiohttp.ClientSession:
    """A client session that sends the endpoint's API key."""
    return aiohttp.ClientSession(headers=auth_headers(endpoint.api_key))


def health_url(backend: Backend, endpoint: Endpoint) -> str:
    base = server_root(endpoint.url) if backend.health_is_absolute else endpoint.url.rstrip("/")
    return base + backend.health_path


def one_token_request(backend: Backend, endpoint: Endpoint,
                      tokens: int = 1) -> tuple[str, dict[str, Any]]:
    """The URL and body of the smallest completion that proves the model is loaded (plus the
    tokens a server that stops short of `max_tokens` needs to produce any)."""
    dialect = backend.dialect
    body: dict[str, Any] = {"messages": [{"role": "user", "content": "hi"}],
                            dialect.max_tokens_param: tokens + dialect.stops_short_by,
                            "stream": False}
    if dialect.model_field != "omit" and endpoint.model:
        body["model"] = upstream_model(dialect, endpoint.model)
    return endpoint.url.rstrip("/") + "/chat/completions", body


async def ask(client: aiohttp.ClientSession, url: str, body: dict[str, Any] | None = None,
              timeout: float = timeouts.PROBE_S) -> Answer:
    """One GET (or POST of `body`), never longer than `timeout`, never redirected (a
    redirect's status is the answer); never raises."""
    limits = aiohttp.ClientTimeout(total=timeout, sock_connect=timeouts.PROBE_S * 0.75)
    try:
        async with client.request("GET" if body is None else "POST", url, json=body,
                                  timeout=limits, allow_redirects=False) as resp:
            text = await resp.text(errors="replace")
    except aiohttp.ClientConnectorDNSError:
        return Answer(0, problem="host not found")
    except aiohttp.ConnectionTimeoutError:
        return Answer(0, problem="connection timed out")
    except aiohttp.ClientConnectorError:
        return Answer(0, problem="connection refused")
    except TimeoutError:
        return Answer(0, problem=f"no answer within {timeout:g} s", silent=True)
    except (aiohttp.ClientError, OSError) as exc:
        return Answer(0, problem=type(exc).__name__)
    try:
        parsed = json.loads(text)
    except ValueError:
        parsed = None
    return Answer(resp.status, parsed, text)
