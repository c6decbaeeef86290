"""What one proxy instance serves: the backend, its limits, and the run's token."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from anyclaude import routing, timeouts
from anyclaude.backends.base import Backend, Endpoint, ToolCalls
from anyclaude.proxy.background import Gate
from anyclaude.proxy.stats import Stats
from anyclaude.proxy.tokens import TokenCounter
from anyclaude.proxy.trace import Tracer
from anyclaude.proxy.upstream import ConnectorFactory, Upstream
from anyclaude.redact import Redactor
from anyclaude.translate.errors import AnthropicError

if TYPE_CHECKING:
    from anyclaude.warmup import WarmUp

log = logging.getLogger("anyclaude.proxy")

MAX_BODY = 32 * 1024 * 1024
"""Anthropic's own request limit; long Claude Code sessions with images come close."""


@dataclass
class ProxyConfig:
    backend: Backend
    endpoint: Endpoint
    token: str
    context_window: int | None = None
    max_output_tokens: int | None = None
    tool_calls: ToolCalls | None = None
    small_model: str | None = None
    """Model for side work as a name on the main server (where `routes` is not given)."""
    routes: routing.Routes | None = None
    """Which server and model answer each request (default: the main model, plus
    `small_model` where the server serves models by name)."""
    notify: Callable[[str], None] | None = None
    """Tells the user something while Claude Code runs (a model being loaded)."""
    tokens: TokenCounter = field(default_factory=TokenCounter)
    stats: Stats = field(default_factory=Stats)
    ping_interval: float = 5.0
    """Seconds of client-side silence before a `ping` (Claude Code's watchdog is 300 s;
    gateways in between may be far less patient)."""
    idle_timeout: float = timeouts.IDLE_S
    """Seconds a streaming backend may produce nothing before the stream fails (see
    `timeouts.IDLE_S`)."""
    answer_timeout: float = timeouts.ANSWER_S
    """Seconds an answer that arrives all at once may take (see `timeouts.ANSWER_S`)."""
    header_grace: float = 0.5
    """How long to wait for the backend's status line before committing to a 200 stream."""
    max_body: int = MAX_BODY
    gate: Gate = field(default_factory=Gate)
    tracer: Tracer | None = None
    """ANYCLAUDE_DEBUG output; None when debugging is off (nothing is recorded then)."""
    warmup: WarmUp | None = None
    """The run's cache warm-up (`anyclaude.warmup`), when it has one."""
    connector: ConnectorFactory | None = None
    """How to reach the backend; None: TCP (tests reach an in-process backend instead)."""
    upstream: Upstream = field(init=False)
    """The main server's client."""
    upstreams: dict[str, Upstream] = field(init=False)
    """A client per server, by base URL (the small model's own server next to the main one)."""
    redactor: Redactor = field(init=False)
    """The run's secrets (token, backend key, URL password), kept out of client errors."""

    def __post_init__(self) -> None:
        self.redactor = Redactor((self.token, self.endpoint.api_key, self.endpoint.url))
        self.upstream = Upstream(self.backend, self.endpoint,
                                 auto_decompress=self.backend.protocol != "anthropic",
                                 connector=self.connector)
        if self.routes is None:
            self.routes = routing.build(self.backend, self.endpoint,
                                        small_model=self.small_model)
        self.upstreams = {self.endpoint.url: self.upstream}
        for route in self.routes.all:
            if route.url not in self.upstreams:
                self.upstreams[route.url] = Upstream(
                    self.backend, Endpoint(route.url, route.model, self.endpoint.api_key),
                    connector=self.connector)
        if self.tracer is not None:
            self.stats.listeners.append(self.tracer.done)

    @property
    def backend_url(self) -> str:
        return self.endpoint.url

    @property
    def router(self) -> routing.Routes:
        assert self.routes is not None
        return self.routes

    def upstream_for(self, route: routing.Route | None) -> Upstream:
        """The client of the server that answers `route` (the main one by default)."""
        return self.upstream if route is None else self.upstreams[route.url]

    def tell(self, message: str) -> None:
        """On the console (over Claude Code's screen, which soon redraws) and in the log."""
        log.info("%s", message)
        if self.notify is not None:
            self.notify(message)

    async def close(self) -> None:
        for upstream in self.upstreams.values():
            await upstream.close()

    def scrubbed(self, error: AnthropicError) -> AnthropicError:
        """`error` as the client may see it: errors name the backend URL, and backends
        sometimes quote the request's credentials back."""
        message = self.redactor.text(error.message)
        return error if message == error.message else replace(error, message=message)
