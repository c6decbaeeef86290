"""Benchmark 2: streaming throughput through the proxy vs straight to the backend.

A fast scripted backend streams an N-token answer (one SSE chunk, one socket write per
token, as real servers do). Measured side by side, interleaved: tokens per second at the
client, direct vs through `anyclaude --proxy-only`, and the proxy's CPU time per token.

    .venv/bin/python -m bench.throughput [--tokens 8000] [--runs 7]
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import httpx
import psutil

from anyclaude import backends
from anyclaude.translate.request import to_openai
from bench.common import TOKEN, anyclaude_proxy, fast_backend, median, save
from bench.workload import claude_code_request


def drain(client: httpx.Client, url: str, body: bytes, headers: dict[str, str]) -> tuple[float, int]:
    started = time.perf_counter()
    received = 0
    with client.stream("POST", url, content=body, headers=headers) as response:
        response.raise_for_status()
        for chunk in response.iter_raw():
            received += len(chunk)
    return time.perf_counter() - started, received


def run(tokens: int, runs: int) -> dict[str, Any]:
    request = claude_code_request(20_000, max_tokens=tokens)
    anthropic_body = json.dumps(request).encode()
    dialect = backends.get("openai").dialect  # type: ignore[union-attr]
    openai_body = json.dumps(to_openai(request, dialect, model="bench").body).encode()
    seconds: dict[str, list[float]] = {"direct": [], "proxied": []}
    cpu_per_token: list[float] = []
    with fast_backend() as backend_url, anyclaude_proxy({
            "ANYCLAUDE_MODE": "openai", "ANYCLAUDE_OPENAI_URL": backend_url,
            "ANYCLAUDE_OPENAI_MODEL": "bench"}) as (proxy_url, process), \
            httpx.Client(timeout=300) as client:
        proxy = psutil.Process(process.pid)
        direct = (backend_url + "/chat/completions", openai_body,
                  {"Content-Type": "application/json"})
        proxied = (proxy_url + "/v1/messages", anthropic_body,
                   {"Content-Type": "application/json", "x-api-key": TOKEN})
        drain(client, *direct)
        drain(client, *proxied)
        for _ in range(runs):
            seconds["direct"].append(drain(client, *direct)[0])
            before = sum(proxy.cpu_times()[:2])
            seconds["proxied"].append(drain(client, *proxied)[0])
            cpu_per_token.append((sum(proxy.cpu_times()[:2]) - before) / tokens)
    direct_tps = tokens / median(seconds["direct"])
    proxied_tps = tokens / median(seconds["proxied"])
    return {"benchmark": "streaming throughput", "tokens": tokens, "runs": runs,
            "summary": {"direct_tokens_per_s": direct_tps, "proxied_tokens_per_s": proxied_tps,
                        "ratio": proxied_tps / direct_tps,
                        "proxy_cpu_us_per_token": median(cpu_per_token) * 1e6},
            "raw": {"seconds": seconds, "cpu_s_per_token": cpu_per_token}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tokens", type=int, default=8000)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    data = run(args.tokens, args.runs)
    path = save("throughput", data)
    s = data["summary"]
    print(f"direct {s['direct_tokens_per_s']:.0f} tok/s, proxied {s['proxied_tokens_per_s']:.0f} "
          f"tok/s (x{s['ratio']:.2f}), proxy CPU {s['proxy_cpu_us_per_token']:.1f} us/token -> {path}")


if __name__ == "__main__":
    main()
