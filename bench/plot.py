"""Draw `bench/results/summary.png` from the benchmark results (needs matplotlib:
`.venv/bin/pip install matplotlib`).

    .venv/bin/python -m bench.plot
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.common import RESULTS


def load(name: str) -> dict[str, Any] | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def main() -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    compare, cache = load("compare"), load("prompt_cache")
    figure, (left, middle, right) = plt.subplots(1, 3, figsize=(13, 3.8))
    if compare:
        names = list(compare["summary"])
        added = [max(0.0, compare["summary"][n]["added_ms"]) for n in names]
        left.bar(names, added, color=["#999999", "#d97757", "#5b8def"][: len(names)])
        left.set_title("Time to first token added\n(85 KB request, ms, lower is better)")
        for x, value in enumerate(added):
            left.text(x, value, f"{value:.1f}", ha="center", va="bottom")
        ratio = [compare["summary"][n]["throughput_vs_direct"] for n in names]
        middle.bar(names, ratio, color=["#999999", "#d97757", "#5b8def"][: len(names)])
        middle.set_title("Streaming throughput\n(x of direct, higher is better)")
        for x, value in enumerate(ratio):
            middle.text(x, value, f"{value:.2f}", ha="center", va="bottom")
    if cache:
        turns = [row["turn"] for row in cache["turns_detail"]]
        ttft = [row["ttft_s"] for row in cache["turns_detail"]]
        right.plot(turns, ttft, marker="o", color="#d97757", label="through anyclaude")
        naive = cache.get("naive_detail") or []
        if naive:
            right.plot([r["turn"] for r in naive], [r["ttft_s"] for r in naive], marker="x",
                       color="#999999", label="billing header kept")
        right.set_yscale("log")
        right.set_xticks(turns)
        right.set_xlabel("turn")
        right.set_title("mlx-lm time to first token per turn\n(s, log scale, ~20k-token prompt)")
        right.legend()
    figure.tight_layout()
    out = RESULTS / "summary.png"
    figure.savefig(out, dpi=110)
    print(out)
    warm = load("warm_start")
    if warm:
        print(warm_start(plt, warm))
    return out


LABELS = {"cold": "cold start", "warm_up": "fresh server,\nwarmed up", "kept": "kept alive",
          "follow_up": "follow-up turn", "other_folder": "kept, new folder"}


def warm_start(plt: Any, warm: dict[str, Any]) -> Path:
    """`warm_start.png`: time to the first token of a new session per case, with the share of
    its first prompt served from the cache."""
    cases = [c for c in LABELS if c in warm["cases"]]
    rows = [warm["cases"][c] for c in cases]
    figure, axis = plt.subplots(figsize=(8, 3.6))
    seconds = [r["to_first_token_s"] for r in rows]
    axis.bar([LABELS[c] for c in cases], seconds,
             color=["#999999", "#5b8def", "#d97757", "#bbbbbb", "#cccccc"][: len(cases)])
    for x, row in enumerate(rows):
        axis.text(x, row["to_first_token_s"], f"{row['to_first_token_s']:.1f} s\n"
                  f"{row['cached_share']:.0%} cached", ha="center", va="bottom", fontsize=8)
    axis.set_yscale("log")
    axis.set_ylim(top=max(seconds) * 4)
    axis.set_ylabel("s, log scale")
    axis.set_title(f"Time to the first token of a session (`anyclaude -p`, Claude Code "
                   f"{warm['claude_code']},\n~{rows[0]['prompt_tokens']:,}-token first prompt, "
                   "real mlx-lm server on 2 CPU cores)", fontsize=10)
    figure.tight_layout()
    out = RESULTS / "warm_start.png"
    figure.savefig(out, dpi=110)
    return out


if __name__ == "__main__":
    main()
