"""Benchmark: side work next to the main conversation, with and without the small model's own
server (two real mlx-lm servers on random-weight tiny models built by the project).

A Claude-Code-shaped session of main turns (long system prompt, 24 tools, a growing history)
runs through the proxy. While each main turn is generating, side work arrives at once: a
session title (the Haiku alias, no tools, a JSON output format) and a subagent turn (the
`x-claude-code-agent-id` header, its own system prompt and tools, a history of its own).
Per main follow-up: the share of its prompt served from the main server's cache. Per side
request: how long it took, and whether it was answered before the main turn it arrived next
to had finished. Run twice: with `small_model` on its own server, and without (side work then
queues behind the conversation on the main server).

    .venv/bin/python -m bench.side_work [--turns 5] [--size 30000] [--answer 400]
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import time
from typing import Any

import httpx

from anyclaude import backends
from anyclaude.backends.base import Endpoint
from anyclaude.hub import find_tokenizer
from anyclaude.proxy.config import ProxyConfig
from anyclaude.proxy.tokens import TokenCounter
from anyclaude.routing import AGENT_HEADER, build
from bench.common import median, save
from bench.prompt_cache import next_turn
from bench.workload import claude_code_request
from tests.support.mlx_server import MlxServer, running_mlx_server
from tests.support.proxy import TOKEN, ThreadedProxy
from tests.support.tiny_model import build_random_model, default_models_dir

HEADERS = {"x-api-key": TOKEN}
TITLE_FORMAT = {"format": {"type": "json_schema", "schema": {
    "type": "object", "properties": {"title": {"type": "string"}}, "required": ["title"]}}}


async def send(client: httpx.AsyncClient, url: str, body: dict[str, Any],
               headers: dict[str, str]) -> dict[str, Any]:
    """One streamed request: when it started and ended (monotonic) and its final usage."""
    started = time.monotonic()
    usage: dict[str, Any] = {}
    async with client.stream("POST", url, json=body, headers={**HEADERS, **headers}) as reply:
        reply.raise_for_status()
        async for line in reply.aiter_lines():
            if line.startswith("data: "):
                data = json.loads(line[6:])
                if data.get("type") == "message_delta":
                    usage = data["usage"]
    prompt = usage.get("input_tokens", 0) + usage.get("cache_read_input_tokens", 0)
    return {"started": started, "ended": time.monotonic(), "prompt_tokens": prompt,
            "cached_tokens": usage.get("cache_read_input_tokens", 0)}


def title(turn: int) -> dict[str, Any]:
    return {"model": "anyclaude-background", "max_tokens": 32, "stream": True,
            "system": [{"type": "text", "text": "Write a short title for this session."}],
            "messages": [{"role": "user", "content": f"Session {turn}: fix the build."}],
            "output_config": TITLE_FORMAT}


def subagent(size: int, turns: int, answer: int) -> list[dict[str, Any]]:
    """A subagent's requests: its own (smaller) prompt and tools, inheriting the main model."""
    first = claude_code_request(size // 2, seed=11, max_tokens=answer)
    requests = [first]
    for turn in range(1, turns):
        requests.append(next_turn(requests[-1], turn, f"Looked at part {turn}."))
    return requests


async def session(proxy_url: str, turns: int, size: int, answer: int) -> dict[str, Any]:
    main = [claude_code_request(size, max_tokens=answer)]
    for turn in range(1, turns):
        main.append(next_turn(main[-1], turn, f"Answer {turn}."))
    agent = subagent(size, turns, answer // 4)
    url = proxy_url + "/v1/messages"
    rows, side = [], []
    async with httpx.AsyncClient(timeout=600) as client:
        for turn, request in enumerate(main):
            conversation = asyncio.create_task(send(client, url, request, {}))
            await asyncio.sleep(0.2)  # the main turn has started
            extras = await asyncio.gather(
                send(client, url, title(turn), {}),
                send(client, url, copy.deepcopy(agent[turn]), {AGENT_HEADER: "a0bench"}))
            done = await conversation
            share = done["cached_tokens"] / done["prompt_tokens"] if done["prompt_tokens"] else 0
            rows.append({"turn": turn, "seconds": done["ended"] - done["started"],
                         "prompt_tokens": done["prompt_tokens"],
                         "cached_tokens": done["cached_tokens"], "cached_share": share})
            for kind, extra in zip(("title", "subagent"), extras, strict=True):
                side.append({"turn": turn, "kind": kind,
                             "seconds": extra["ended"] - extra["started"],
                             "before_main_ended": extra["ended"] < done["ended"]})
            print(f"turn {turn}: main {rows[-1]['seconds']:.2f} s, cached {share:.1%}; side "
                  + ", ".join(f"{s['kind']} {s['seconds']:.2f} s" for s in side[-2:]),
                  flush=True)
    return {"main": rows, "side": side,
            "min_followup_cached_share": min(r["cached_share"] for r in rows[1:]),
            "side_median_s": median([s["seconds"] for s in side]),
            "side_answered_before_main_ended": sum(s["before_main_ended"] for s in side),
            "side_requests": len(side)}


def proxy(main: MlxServer, small: MlxServer | None) -> ThreadedProxy:
    backend = backends.get("mlx-lm")
    assert backend is not None
    endpoint = Endpoint(main.base_url, main.model)
    routes = build(backend, endpoint, small_model=small.model if small else None,
                   small_url=small.base_url if small else None)
    return ThreadedProxy(ProxyConfig(backend=backend, endpoint=endpoint, token=TOKEN,
                                     routes=routes,
                                     tokens=TokenCounter(find_tokenizer(main.model))))


def run(turns: int, size: int, answer: int) -> dict[str, Any]:
    big = build_random_model(default_models_dir() / "random")
    little = build_random_model(default_models_dir() / "random-small", layers=2, hidden=128,
                                heads=4)
    results = {}
    for name, with_small in (("small_server", True), ("queued_on_main", False)):
        print(f"-- {name}", flush=True)
        with running_mlx_server(big) as main, running_mlx_server(little) as small, \
                proxy(main, small if with_small else None) as served:
            results[name] = asyncio.run(session(served.url, turns, size, answer))
    return {"benchmark": "side work", "turns": turns, "request_bytes": size,
            "answer_tokens": answer, "main_model": "random tiny llama (defaults)",
            "small_model": "random tiny llama (2 layers, hidden 128)", **results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--turns", type=int, default=5)
    parser.add_argument("--size", type=int, default=30_000)
    parser.add_argument("--answer", type=int, default=400)
    args = parser.parse_args()
    data = run(args.turns, args.size, args.answer)
    path = save("side_work", data)
    for name in ("small_server", "queued_on_main"):
        r = data[name]
        print(f"{name}: main follow-ups >= {r['min_followup_cached_share']:.1%} cached; side "
              f"median {r['side_median_s']:.2f} s, {r['side_answered_before_main_ended']}/"
              f"{r['side_requests']} answered before the main turn ended -> {path}")


if __name__ == "__main__":
    main()
