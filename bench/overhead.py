"""Benchmark 1: what the proxy adds to Claude Code's real requests.

The main request of each tested Claude Code version is captured now (`bench.capture`: the
real `claude -p` against a recording server), then sent through `anyclaude --proxy-only`
(Anthropic in) and, for comparison, straight to the same fast backend (the translated
OpenAI request), interleaved so both see the same machine state. Two backend framings: one
like mlx-lm (HTTP/1.0, a `: keepalive` comment first, close-delimited, so every request
opens a connection) with the proxy in mlx-lm mode, and a keep-alive HTTP/1.1 one with the
proxy in openai mode. Time to first token and total time, medians of N samples.

    .venv/bin/python -m bench.overhead [--samples 50]
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import httpx
import orjson

from anyclaude import backends
from anyclaude.translate.plan import Limits, apply_limits, draft
from bench.capture import main_request
from bench.common import TOKEN, anyclaude_proxy, fast_backend, median, save
from tests.support.claude_code import CLAUDE_VERSIONS

ANSWER_TOKENS = 16

FRAMINGS: dict[str, tuple[str, dict[str, str]]] = {
    "mlx": ("mlx-lm", {"ANYCLAUDE_MODE": "mlx-lm", "MLX_LM_URL": "{url}"}),
    "keepalive": ("openai", {"ANYCLAUDE_MODE": "openai", "ANYCLAUDE_OPENAI_URL": "{url}",
                             "ANYCLAUDE_OPENAI_MODEL": "bench"}),
}
"""Backend framing -> the anyclaude mode that talks to it, and its settings."""


def timed_stream(client: httpx.Client, url: str, body: bytes, headers: dict[str, str],
                 first_marker: bytes) -> tuple[float, float]:
    """(seconds to the first content chunk, seconds to the end of the body)."""
    started = time.perf_counter()
    first = None
    with client.stream("POST", url, content=body, headers=headers) as response:
        response.raise_for_status()
        for chunk in response.iter_raw():
            if first is None and first_marker in chunk:
                first = time.perf_counter() - started
    total = time.perf_counter() - started
    assert first is not None, "no content in the answer"
    return first, total


def upstream_body(request: dict[str, Any], mode: str) -> bytes:
    """What the proxy sends the backend for `request` (the direct path sends it too)."""
    dialect = backends.get(mode).dialect  # type: ignore[union-attr]
    plan = draft(request, dialect, model="bench", tool_calls=None, chars_per_token=3.6)  # type: ignore[arg-type]
    apply_limits(plan, Limits())
    return orjson.dumps(plan.body)


def measure(client: httpx.Client, backend_url: str, proxy_url: str, request: dict[str, Any],
            mode: str, samples: int) -> dict[str, Any]:
    targets = {
        "direct": (backend_url + "/chat/completions", upstream_body(request, mode),
                   {"Content-Type": "application/json"}, b'"content":"tok'),
        "proxied": (proxy_url + "/v1/messages", orjson.dumps(request),
                    {"Content-Type": "application/json", "x-api-key": TOKEN}, b"text_delta"),
    }
    raw: dict[str, dict[str, list[float]]] = {
        name: {"ttft": [], "total": []} for name in targets}
    for _ in range(5):  # warm up both paths
        for url, body, headers, marker in targets.values():
            timed_stream(client, url, body, headers, marker)
    for _ in range(samples):
        for name, (url, body, headers, marker) in targets.items():
            ttft, total = timed_stream(client, url, body, headers, marker)
            raw[name]["ttft"].append(ttft)
            raw[name]["total"].append(total)
    summary = {}
    for metric in ("ttft", "total"):
        direct, proxied = median(raw["direct"][metric]), median(raw["proxied"][metric])
        summary[metric] = {"direct_ms": direct * 1000, "proxied_ms": proxied * 1000,
                           "added_ms": (proxied - direct) * 1000}
    return {"request_bytes": len(targets["proxied"][1]), "tools": len(request["tools"]),
            "summary": summary, "raw": raw}


def run(samples: int, versions: tuple[str, ...]) -> dict[str, Any]:
    requests = {v: {**main_request(v), "max_tokens": ANSWER_TOKENS} for v in versions}
    runs: list[dict[str, Any]] = []
    for framing, (mode, settings) in FRAMINGS.items():
        with fast_backend(framing) as backend_url:
            env = {key: value.format(url=backend_url) for key, value in settings.items()}
            with anyclaude_proxy(env) as (proxy_url, _), httpx.Client(timeout=60) as client:
                for version, request in requests.items():
                    result = measure(client, backend_url, proxy_url, request, mode, samples)
                    runs.append({"claude_code": version, "framing": framing, "mode": mode,
                                 **result})
    return {"benchmark": "proxy overhead", "samples": samples,
            "answer_tokens": ANSWER_TOKENS, "runs": runs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--samples", type=int, default=50)
    args = parser.parse_args()
    data = run(args.samples, CLAUDE_VERSIONS)
    path = save("overhead", data)
    print("Claude Code  framing    request          TTFT direct / proxied / added   "
          "total added")
    for run_ in data["runs"]:
        ttft, total = run_["summary"]["ttft"], run_["summary"]["total"]
        print(f"{run_['claude_code']:11}  {run_['framing']:9}  {run_['request_bytes'] // 1000:3} KB "
              f"{run_['tools']:2} tools  {ttft['direct_ms']:6.2f} / {ttft['proxied_ms']:6.2f} / "
              f"{ttft['added_ms']:+5.2f} ms   {total['added_ms']:+5.2f} ms")
    print(f"{args.samples} samples each -> {path}")


if __name__ == "__main__":
    main()
