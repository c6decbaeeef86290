"""Benchmark: one model on 1, 2 and 3 ranks (mlx-lm through mlx.launch), side by side.

`anyclaude --proxy-only` as users run it, with `MLX_LM_HOSTS` listing this machine once per
rank (ring backend over loopback), on a random-weight 6-layer Qwen2 the project builds
(13M float32 parameters, every dimension divisible by 2 and 3; it talks until `max_tokens`, and splits over 1, 2 or 3 ranks
tensor-wise and pipeline-wise). Per configuration: seconds until the server answered its
first token, time to first token for a fresh ~2k-token prompt (prefill) and for a short
one, and decode speed (tokens per second after the first) for a 200-token answer, all
through the proxy's Anthropic stream. Medians of `--runs`.

On one CPU-only machine every rank competes for the same cores and the ranks talk over
loopback, so the figures show what distribution costs, not what it gains: on real Macs the
point is memory (a model bigger than one Mac), and tensor parallelism over Thunderbolt
also adds compute.

    .venv/bin/python -m bench.cluster [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from typing import Any

import httpx

from bench.common import TOKEN, anyclaude_proxy, median, save
from tests.support.mlx_server import free_port
from tests.support.tiny_model import default_models_dir
from tests.support.tiny_sharded import build_random_qwen2

CONFIGS: list[tuple[str, int, str | None]] = [
    ("1 process", 1, None),
    ("2 ranks, tensor", 2, "tensor"),
    ("2 ranks, pipeline", 2, "pipeline"),
    ("3 ranks, tensor", 3, "tensor"),
    ("3 ranks, pipeline", 3, "pipeline"),
]
ANSWER_TOKENS = 200
PROMPT_WORDS = 1500


def stream(client: httpx.Client, url: str, text: str, max_tokens: int) -> dict[str, float]:
    """One streamed answer: seconds to the first text, output tokens, seconds in all."""
    started = time.perf_counter()
    first = None
    tokens = 0
    with client.stream("POST", url + "/v1/messages", headers={"x-api-key": TOKEN}, json={
            "model": "bench", "max_tokens": max_tokens, "stream": True,
            "messages": [{"role": "user", "content": text}]}) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if not line.startswith("data: "):
                continue
            data = json.loads(line[6:])
            if data["type"] == "content_block_delta" and first is None:
                first = time.perf_counter() - started
            elif data["type"] == "message_delta":
                tokens = data["usage"]["output_tokens"]
            elif data["type"] == "error":
                raise RuntimeError(data["error"]["message"])
    total = time.perf_counter() - started
    return {"ttft_s": first if first is not None else total, "tokens": tokens, "total_s": total}


def fresh_prompt(rng: random.Random) -> str:
    """~2k tokens nobody has sent before (so nothing comes from the prompt cache)."""
    words = ["alpha", "branch", "commit", "delta", "module", "return", "value", "yield"]
    return f"{rng.random()} " + " ".join(rng.choice(words) for _ in range(PROMPT_WORDS))


def measure(name: str, ranks: int, parallel: str | None, runs: int) -> dict[str, Any]:
    model = build_random_qwen2(default_models_dir() / "random-qwen2-6")
    env = {"ANYCLAUDE_MODE": "mlx-lm", "MLX_LM_MODEL": str(model),
           "MLX_LM_URL": f"http://127.0.0.1:{free_port()}/v1", "ANYCLAUDE_KEEP_ALIVE": "0",
           "ANYCLAUDE_WARM_UP": "0", "ANYCLAUDE_STATE_DIR": tempfile.mkdtemp(prefix="bench-"),
           "HF_HUB_OFFLINE": "1"}
    if parallel:
        env.update({"MLX_LM_HOSTS": ",".join(["127.0.0.1"] * ranks),
                    "MLX_LM_PARALLEL": parallel,
                    "MLX_LM_DISTRIBUTED_PORT": str(free_port())})
    rng = random.Random(ranks * 10 + len(parallel or ""))
    started = time.perf_counter()
    with anyclaude_proxy(env) as (url, _), httpx.Client(timeout=600) as client:
        ready = time.perf_counter() - started
        stream(client, url, "hello", 8)  # the first request also loads the tokenizer's caches
        # max_tokens 2: the proxy answers `max_tokens: 1` probes itself
        prefill = [stream(client, url, fresh_prompt(rng), 2)["ttft_s"] for _ in range(runs)]
        short = [stream(client, url, f"hello {i}", 2)["ttft_s"] for i in range(runs)]
        decode = []
        for i in range(runs):
            answer = stream(client, url, f"tell me a story {i}", ANSWER_TOKENS)
            decode.append((answer["tokens"] - 1) / (answer["total_s"] - answer["ttft_s"]))
    row = {"config": name, "ranks": ranks, "parallel": parallel or "-",
           "ready_s": ready, "prefill_ttft_s": median(prefill), "short_ttft_s": median(short),
           "decode_tokens_per_s": median(decode)}
    print(f"{name:20} ready {ready:5.1f} s  ttft ~2k-token prompt {row['prefill_ttft_s']:6.2f} s"
          f"  ttft short {row['short_ttft_s']:5.3f} s  decode "
          f"{row['decode_tokens_per_s']:6.1f} tok/s", flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    rows = [measure(name, ranks, parallel, args.runs) for name, ranks, parallel in CONFIGS]
    base = rows[0]
    for row in rows:
        row["decode_vs_1_process"] = row["decode_tokens_per_s"] / base["decode_tokens_per_s"]
        row["prefill_vs_1_process"] = row["prefill_ttft_s"] / base["prefill_ttft_s"]
    path = save("cluster", {
        "benchmark": "cluster", "runs": args.runs, "answer_tokens": ANSWER_TOKENS,
        "model": "random 6-layer Qwen2, hidden 384, 6 heads, intermediate 1056",
        "backend": "mlx.launch ring over loopback, every rank on this machine",
        "rows": rows})
    print(f"saved {path}")


if __name__ == "__main__":
    main()
