"""The exit summary: the figures users care about, nothing when nothing was served."""

from __future__ import annotations

import io

from rich.console import Console

from anyclaude.proxy.stats import RequestRecord, Stats
from anyclaude.summary import render


def record(prompt: int, cached: int, ttft: float, duration: float, output: int,
           **kw: object) -> RequestRecord:
    return RequestRecord(mode="mlx-lm", model="m", stream=True, started=0.0,
                         prompt_tokens=prompt, cached_tokens=cached, first_token_s=ttft,
                         duration_s=duration, output_tokens=output, **kw)  # type: ignore[arg-type]


def text(stats: Stats) -> str:
    out = io.StringIO()
    render(stats, Console(file=out, width=100))
    return out.getvalue()


def test_summary_shows_cache_share_ttft_and_speed() -> None:
    stats = Stats()
    stats.add(record(20000, 0, 30.0, 40.0, 100))
    stats.add(record(20100, 19900, 0.5, 10.5, 100))
    stats.add(record(50, 0, 0.1, 0.1, 1, background=True))
    shown = text(stats)
    assert "Requests" in shown and "3, 1 background" in shown
    assert "40,150" in shown and "50% from the backend's prompt cache" in shown
    assert "median 500 ms, worst 30.0 s" in shown
    assert "10.0 tokens/s" in shown


def test_summary_counts_failures() -> None:
    stats = Stats()
    stats.add(record(10, 0, 0.1, 0.2, 5))
    stats.add(record(0, 0, 0.0, 0.0, 0, error="boom", status=529))
    assert "2 (1 failed)" in text(stats)


def test_nothing_is_printed_without_requests() -> None:
    assert text(Stats()) == ""
