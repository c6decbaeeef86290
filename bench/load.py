"""Load and soak: many concurrent streams, then many sequential requests, through
`anyclaude --proxy-only` in front of the fast scripted backend.

Checks, not just numbers: every stream completes with a valid event sequence and its own
content (each request carries a tag the backend echoes), and afterwards the proxy holds no
more sockets or file descriptors than before; memory is sampled throughout.

    .venv/bin/python -m bench.load [--concurrency 200] [--soak 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

import aiohttp
import psutil

from anyclaude.proxy.upstream import KEEPALIVE_S
from bench.common import TOKEN, anyclaude_proxy, fast_backend, save
from tests.support.grammar import check, parse_sse


def body(tag: str, stream: bool = True, tokens: int = 64) -> dict[str, Any]:
    return {"model": "claude-x", "max_tokens": tokens, "stream": stream,
            "system": "You are a load test.",
            "messages": [{"role": "user", "content": f"please answer [[tag:{tag}]]"}]}


async def one(session: aiohttp.ClientSession, url: str, tag: str) -> float:
    started = time.perf_counter()
    async with session.post(url + "/v1/messages", json=body(tag),
                            headers={"x-api-key": TOKEN}) as response:
        raw = await response.read()
    assert response.status == 200, raw[:200]
    summary = check(parse_sse(raw), complete=True)
    assert summary["text"].endswith(f"[[tag:{tag}]]"), "cross-talk or lost content"
    return time.perf_counter() - started


def footprint(process: psutil.Process) -> dict[str, int]:
    return {"rss": process.memory_info().rss, "fds": process.num_fds(),
            "sockets": len(process.net_connections(kind="tcp"))}


async def settle(process: psutil.Process, baseline: dict[str, int]) -> dict[str, int]:
    """Wait for closed sockets and idle pooled backend connections (kept alive for
    `KEEPALIVE_S`) to go away, then report the footprint."""
    for _ in range(int((KEEPALIVE_S + 5) * 10)):
        now = footprint(process)
        if now["fds"] <= baseline["fds"] and now["sockets"] <= baseline["sockets"]:
            return now
        await asyncio.sleep(0.1)
    return footprint(process)


async def concurrent(url: str, process: psutil.Process, n: int) -> dict[str, Any]:
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session:
        await one(session, url, "warm")
        baseline = await settle(process, footprint(process))
        started = time.perf_counter()
        latencies = await asyncio.gather(*(one(session, url, f"c{i}") for i in range(n)))
        elapsed = time.perf_counter() - started
        peak = footprint(process)
    after = await settle(process, baseline)
    return {"requests": n, "seconds": elapsed, "requests_per_s": n / elapsed,
            "latency_median_s": sorted(latencies)[n // 2], "latency_max_s": max(latencies),
            "baseline": baseline, "peak": peak, "after": after,
            "leaked_fds": after["fds"] - baseline["fds"],
            "leaked_sockets": after["sockets"] - baseline["sockets"]}


async def soak(url: str, process: psutil.Process, n: int) -> dict[str, Any]:
    samples = []
    async with aiohttp.ClientSession() as session:
        started = time.perf_counter()
        for i in range(n):
            await one(session, url, f"s{i}")
            if i % max(1, n // 10) == 0:
                samples.append({"request": i, "rss": process.memory_info().rss})
        elapsed = time.perf_counter() - started
    samples.append({"request": n, "rss": process.memory_info().rss})
    settled = samples[len(samples) // 3:]  # after warm-up (caches, allocator arenas)
    return {"requests": n, "seconds": elapsed, "requests_per_s": n / elapsed,
            "rss_samples": samples,
            "rss_growth_after_warmup_bytes": settled[-1]["rss"] - settled[0]["rss"]}


def run(concurrency: int, soak_requests: int) -> dict[str, Any]:
    with fast_backend() as backend_url, anyclaude_proxy({
            "ANYCLAUDE_MODE": "openai", "ANYCLAUDE_OPENAI_URL": backend_url,
            "ANYCLAUDE_OPENAI_MODEL": "bench"}) as (proxy_url, proc):
        process = psutil.Process(proc.pid)
        burst = asyncio.run(concurrent(proxy_url, process, concurrency))
        long = asyncio.run(soak(proxy_url, process, soak_requests)) if soak_requests else None
    return {"benchmark": "load and soak", "concurrency": burst, "soak": long}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--soak", type=int, default=10_000)
    args = parser.parse_args()
    data = run(args.concurrency, args.soak)
    path = save("load", data)
    burst = data["concurrency"]
    print(f"{burst['requests']} concurrent streams: all complete with their own content, "
          f"{burst['requests_per_s']:.0f} req/s, peak RSS {burst['peak']['rss'] / 2**20:.0f} MiB, "
          f"leaked fds {burst['leaked_fds']}, leaked sockets {burst['leaked_sockets']}")
    if data["soak"]:
        s = data["soak"]
        print(f"soak {s['requests']} sequential: {s['requests_per_s']:.0f} req/s, RSS growth "
              f"after warm-up {s['rss_growth_after_warmup_bytes'] / 2**20:.1f} MiB")
    print(json.dumps({"saved": str(path)}))


if __name__ == "__main__":
    main()
