"""Per-request records: the source of debug lines, traces and the exit summary."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class RequestRecord:
    mode: str
    model: str
    stream: bool
    started: float
    prompt_tokens: int = 0
    cached_tokens: int = 0
    output_tokens: int = 0
    first_token_s: float | None = None
    duration_s: float = 0.0
    stop_reason: str | None = None
    status: int = 200
    error: str | None = None
    background: bool = False
    served: str = ""
    """The model that answered (its short name)."""
    role: str = "main"
    """Which kind of route answered: main, small or choice (`anyclaude.routing`)."""


@dataclass
class Stats:
    """Everything the proxy served in this run; listeners see each record as it completes."""

    records: list[RequestRecord] = field(default_factory=list)
    listeners: list[Callable[[RequestRecord], None]] = field(default_factory=list)

    def add(self, record: RequestRecord) -> None:
        self.records.append(record)
        for listener in self.listeners:
            listener(record)

    def summary(self) -> dict[str, float | int | None]:
        done = [r for r in self.records if r.error is None]
        prompt = sum(r.prompt_tokens for r in done)
        cached = sum(r.cached_tokens for r in done)
        ttfts = [r.first_token_s for r in done if r.first_token_s is not None]
        gen = [(r.output_tokens, r.duration_s - (r.first_token_s or 0.0)) for r in done
               if r.output_tokens > 1 and r.duration_s > (r.first_token_s or 0.0)]
        tokens = sum(t for t, _ in gen)
        seconds = sum(s for _, s in gen)
        return {
            "requests": len(self.records),
            "errors": len(self.records) - len(done),
            "prompt_tokens": prompt,
            "cached_tokens": cached,
            "cached_share": cached / prompt if prompt else None,
            "output_tokens": sum(r.output_tokens for r in done),
            "ttft_median_s": statistics.median(ttfts) if ttfts else None,
            "ttft_worst_s": max(ttfts) if ttfts else None,
            "output_tokens_per_s": tokens / seconds if seconds else None,
        }
