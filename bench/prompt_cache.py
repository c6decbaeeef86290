"""Benchmark 3: the backend's prompt cache through the proxy, with the real mlx-lm server.

A multi-turn session shaped like Claude Code's (long system prompt, 24 tools, a growing
history with tool calls and results, the billing header changing every turn) against a
random-weight tiny model built by the project. Per turn: time to first token and the share
of the prompt served from mlx-lm's cache (its `cached_tokens`, which the proxy reports as
`cache_read_input_tokens`). For contrast, the same turns sent with the billing header kept
(what a proxy that does not strip it sends) are measured straight against the server.

    .venv/bin/python -m bench.prompt_cache [--turns 5] [--size 30000]
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from typing import Any

import httpx

from anyclaude import backends
from anyclaude.hub import find_tokenizer
from anyclaude.proxy.tokens import TokenCounter
from anyclaude.translate.request import to_openai
from bench.common import median, save
from bench.workload import claude_code_request
from tests.support.mlx_server import running_mlx_server
from tests.support.proxy import TOKEN, running_proxy
from tests.support.tiny_model import build_random_model, default_models_dir

ANSWER_TOKENS = 24


def first_token(client: httpx.Client, url: str, body: dict[str, Any],
                headers: dict[str, str]) -> tuple[float, dict[str, Any]]:
    """Stream one request: (seconds to the first content event, final usage)."""
    started = time.perf_counter()
    ttft = None
    usage: dict[str, Any] = {}
    with client.stream("POST", url, json=body, headers=headers) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            data = json.loads(line[6:])
            choices = data.get("choices") or [{}]
            content = data.get("type") == "content_block_delta" or bool(
                (choices[0].get("delta") or {}).get("content"))
            if ttft is None and content:
                ttft = time.perf_counter() - started
            if data.get("type") == "message_delta" or data.get("usage"):
                usage = data["usage"]
    return (ttft if ttft is not None else time.perf_counter() - started), usage


def next_turn(request: dict[str, Any], turn: int, answer: str) -> dict[str, Any]:
    """Claude Code's next request: the answer plus a tool call, its result, a reminder."""
    request = copy.deepcopy(request)
    request["system"][0]["text"] = (f"x-anthropic-billing-header: cc_version=2.1.197; "
                                    f"cc_entrypoint=cli; cch={turn:05x};")
    tool_id = f"toolu_bench{turn:04d}"
    request["messages"] += [
        {"role": "assistant", "content": [
            {"type": "text", "text": answer or "Working on it."},
            {"type": "tool_use", "id": tool_id, "name": "Tool00",
             "input": {"param_0": f"step {turn}"}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": tool_id, "content": f"result of step {turn}"},
            {"type": "text", "text": "<system-reminder>keep going</system-reminder>"}]},
    ]
    return request


def session(turns: int, size: int) -> list[dict[str, Any]]:
    request = claude_code_request(size, max_tokens=ANSWER_TOKENS)
    requests = [request]
    for turn in range(1, turns):
        requests.append(next_turn(requests[-1], turn, f"Answer {turn}."))
    return requests


def run(turns: int, size: int) -> dict[str, Any]:
    model = build_random_model(default_models_dir() / "random")
    requests = session(turns, size)
    rows: list[dict[str, Any]] = []
    naive: list[dict[str, Any]] = []
    dialect = backends.get("mlx-lm").dialect  # type: ignore[union-attr]
    with running_mlx_server(model) as server, httpx.Client(timeout=600) as client:
        counter = TokenCounter(find_tokenizer(server.model))
        with running_proxy("mlx-lm", server.base_url, server.model, tokens=counter) as proxy:
            for turn, request in enumerate(requests):
                ttft, usage = first_token(client, proxy.url + "/v1/messages", request,
                                          {"x-api-key": TOKEN})
                prompt = usage["input_tokens"] + usage["cache_read_input_tokens"]
                rows.append({"turn": turn, "ttft_s": ttft, "prompt_tokens": prompt,
                             "cached_tokens": usage["cache_read_input_tokens"],
                             "cached_share": usage["cache_read_input_tokens"] / prompt})
                print(f"proxied turn {turn}: ttft {ttft:.2f} s, prompt {prompt}, "
                      f"cached {rows[-1]['cached_share']:.1%}", flush=True)
        # Contrast: the same turns with the billing header left in (a naive proxy).
        for turn, request in enumerate(requests[: min(2, turns)]):
            body = to_openai(request, dialect, model=None).body
            header = request["system"][0]["text"]
            body["messages"][0]["content"] = header + "\n" + body["messages"][0]["content"]
            body["max_tokens"] = ANSWER_TOKENS
            ttft, usage = first_token(client, server.base_url + "/chat/completions", body, {})
            cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens", 0)
            naive.append({"turn": turn, "ttft_s": ttft, "prompt_tokens": usage["prompt_tokens"],
                          "cached_tokens": cached,
                          "cached_share": cached / usage["prompt_tokens"]})
            print(f"naive turn {turn}: ttft {ttft:.2f} s, cached {naive[-1]['cached_share']:.1%}",
                  flush=True)
    warm = [r["ttft_s"] for r in rows[1:]]
    return {"benchmark": "prompt cache", "turns": turns, "request_bytes": size,
            "model": "random tiny llama (build_random_model defaults)",
            "summary": {"cold_ttft_s": rows[0]["ttft_s"], "warm_ttft_median_s": median(warm),
                        "cold_over_warm": rows[0]["ttft_s"] / median(warm),
                        "min_followup_cached_share": min(r["cached_share"] for r in rows[1:]),
                        "naive_followup_cached_share": max(
                            (r["cached_share"] for r in naive[1:]), default=None)},
            "turns_detail": rows, "naive_detail": naive}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--turns", type=int, default=5)
    parser.add_argument("--size", type=int, default=30_000)
    args = parser.parse_args()
    data = run(args.turns, args.size)
    path = save("prompt_cache", data)
    s = data["summary"]
    print(f"cold {s['cold_ttft_s']:.2f} s, warm median {s['warm_ttft_median_s']:.3f} s "
          f"(x{s['cold_over_warm']:.0f}); every follow-up served "
          f">= {s['min_followup_cached_share']:.1%} from cache -> {path}")


if __name__ == "__main__":
    main()
