"""The one-screen session summary printed when anyclaude exits."""

from __future__ import annotations

from collections import Counter

from rich.console import Console
from rich.table import Table

from anyclaude.proxy.stats import Stats


def _seconds(value: float | None) -> str:
    return "-" if value is None else (f"{value * 1000:.0f} ms" if value < 1 else f"{value:.1f} s")


ROLES = {"small": " (small model)", "choice": "", "main": ""}


def models(stats: Stats) -> str:
    """Which models answered and how often, the main one first: `qwen3 12, qwen3-0.6b
    (small model) 5`."""
    counts = Counter((r.served, r.role) for r in stats.records if r.served)
    order = sorted(counts, key=lambda key: key[1] != "main")
    return ", ".join(f"{served}{ROLES.get(role, '')} {counts[served, role]}"
                     for served, role in order)


def render(stats: Stats, console: Console) -> None:
    """Requests, prompt tokens and the share served from the backend's cache, time to first
    token, output speed. Nothing when no request was served."""
    summary = stats.summary()
    if not summary["requests"]:
        return
    table = Table(title="anyclaude session", show_header=False, title_justify="left",
                  box=None, padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    requests = f"{summary['requests']}"
    if summary["errors"]:
        requests += f" ({summary['errors']} failed)"
    background = sum(1 for r in stats.records if r.background)
    if background:
        requests += f", {background} background"
    table.add_row("Requests", requests)
    if any(r.role != "main" for r in stats.records):
        table.add_row("Models", models(stats))
    share = summary["cached_share"]
    cached = "" if share is None else f", {share:.0%} from the backend's prompt cache"
    table.add_row("Prompt tokens", f"{summary['prompt_tokens']:,}{cached}")
    table.add_row("Time to first token",
                  f"median {_seconds(summary['ttft_median_s'])}, "
                  f"worst {_seconds(summary['ttft_worst_s'])}")
    speed = summary["output_tokens_per_s"]
    table.add_row("Output", f"{summary['output_tokens']:,} tokens" +
                  ("" if speed is None else f", {speed:.1f} tokens/s"))
    console.print(table)
