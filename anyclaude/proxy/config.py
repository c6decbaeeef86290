"""What one proxy instance serves: the backend, its limits, and the run's token."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from anyclaude import timeouts
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
    """Model for background requests, on servers that switch models per request."""
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
    redactor: Redactor = field(init=False)
    """The run's secrets (token, backend key, URL password), kept out of client errors."""

    def __post_init__(self) -> None:
        self.redactor = Redactor((self.token, self.endpoint.api_key, self.endpoint.url))
        self.upstream = Upstream(self.backend, self.endpoint,
                                 auto_decompress=self.backend.protocol != "anthropic",
                                 connector=self.connector)
        if self.tracer is not None:
            self.stats.listeners.append(self.tracer.done)

    @property
    def backend_url(self) -> str:
        return self.endpoint.url

    def scrubbed(self, error: AnthropicError) -> AnthropicError:
        """`error` as the client may see it: errors name the backend URL, and backends
        sometimes quote the request's credentials back."""
        message = self.redactor.text(error.message)
        return error if message == error.message else replace(error, message=message)
