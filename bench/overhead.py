"""Benchmark 1: what the proxy adds to a Claude-Code-sized request.

Time to first token and total time, through `anyclaude --proxy-only` (Anthropic in) vs
straight to the same fast scripted backend (the translated OpenAI request), interleaved
in one run so both see the same machine state.

    .venv/bin/python -m bench.overhead [--samples 50] [--size 85000]
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import httpx

from anyclaude import backends
from anyclaude.translate.request import to_openai
from bench.common import TOKEN, anyclaude_proxy, fast_backend, median, save
from bench.workload import claude_code_request

ANSWER_TOKENS = 16


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


def run(samples: int, size: int) -> dict[str, Any]:
    request = claude_code_request(size, max_tokens=ANSWER_TOKENS)
    anthropic_body = json.dumps(request).encode()
    dialect = backends.get("openai").dialect  # type: ignore[union-attr]
    openai_body = json.dumps(to_openai(request, dialect, model="bench").body).encode()
    results: dict[str, dict[str, list[float]]] = {
        "direct": {"ttft": [], "total": []}, "proxied": {"ttft": [], "total": []}}
    with fast_backend() as backend_url, anyclaude_proxy({
            "ANYCLAUDE_MODE": "openai", "ANYCLAUDE_OPENAI_URL": backend_url,
            "ANYCLAUDE_OPENAI_MODEL": "bench"}) as (proxy_url, _), httpx.Client(timeout=60) as client:
        targets = {
            "direct": (backend_url + "/chat/completions", openai_body,
                       {"Content-Type": "application/json"}, b'"content":"tok'),
            "proxied": (proxy_url + "/v1/messages", anthropic_body,
                        {"Content-Type": "application/json", "x-api-key": TOKEN},
                        b"text_delta"),
        }
        for _ in range(5):  # warm up both paths
            for url, body, headers, marker in targets.values():
                timed_stream(client, url, body, headers, marker)
        for _ in range(samples):
            for name, (url, body, headers, marker) in targets.items():
                ttft, total = timed_stream(client, url, body, headers, marker)
                results[name]["ttft"].append(ttft)
                results[name]["total"].append(total)
    summary = {}
    for metric in ("ttft", "total"):
        direct = median(results["direct"][metric])
        proxied = median(results["proxied"][metric])
        summary[metric] = {"direct_ms": direct * 1000, "proxied_ms": proxied * 1000,
                           "added_ms": (proxied - direct) * 1000, "ratio": proxied / direct}
    return {"benchmark": "proxy overhead", "samples": samples, "request_bytes": len(anthropic_body),
            "answer_tokens": ANSWER_TOKENS, "summary": summary, "raw": results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--samples", type=int, default=50)
    parser.add_argument("--size", type=int, default=85_000)
    args = parser.parse_args()
    data = run(args.samples, args.size)
    path = save("overhead", data)
    for metric, row in data["summary"].items():
        print(f"{metric:5}: direct {row['direct_ms']:.2f} ms, proxied {row['proxied_ms']:.2f} ms, "
              f"added {row['added_ms']:.2f} ms (x{row['ratio']:.2f})")
    print(f"request {data['request_bytes']} bytes, {args.samples} samples each -> {path}")


if __name__ == "__main__":
    main()
