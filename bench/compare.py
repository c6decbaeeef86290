"""Benchmark 4: anyclaude side by side with LiteLLM's `/v1/messages`, same backend, same
requests, interleaved in one run (proxy overhead on a Claude-Code-sized request, and
streaming throughput on a long answer).

LiteLLM runs from its own virtualenv (it pins many packages):
    python3 -m venv .cache/bench-litellm && .cache/bench-litellm/bin/pip install 'litellm[proxy]'
    .venv/bin/python -m bench.compare [--samples 30]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from anyclaude import backends
from anyclaude.translate.request import to_openai
from bench.common import (
    ROOT,
    TOKEN,
    anyclaude_proxy,
    fast_backend,
    free_port,
    median,
    save,
    stop,
    wait_port,
)
from bench.overhead import timed_stream
from bench.throughput import drain
from bench.workload import claude_code_request

LITELLM_KEY = "sk-bench-litellm-0123456789abcdef0123456789abcdef"
LITELLM = Path(os.environ.get("LITELLM_BIN", ROOT / ".cache" / "bench-litellm" / "bin" / "litellm"))


@contextlib.contextmanager
def litellm_proxy(backend_url: str) -> Iterator[str]:
    port = free_port()
    config = {"model_list": [{"model_name": "claude-x", "litellm_params": {
        "model": "hosted_vllm/bench", "api_base": backend_url, "api_key": "dummy"}}],
        "litellm_settings": {"drop_params": True},
        "general_settings": {"master_key": LITELLM_KEY}}
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "config.yaml"
        path.write_text(json.dumps(config))  # JSON is valid YAML
        log = open(Path(folder) / "litellm.log", "w")  # noqa: SIM115
        process = subprocess.Popen([str(LITELLM), "--config", str(path), "--host", "127.0.0.1",
                                    "--port", str(port), "--num_workers", "1"],
                                   stdout=log, stderr=subprocess.STDOUT,
                                   env={**os.environ, "LITELLM_LOG": "ERROR"})
        try:
            wait_port(port, timeout=120)
            yield f"http://127.0.0.1:{port}"
        finally:
            stop(process)
            log.close()


def run(samples: int, tokens: int) -> dict[str, Any]:
    if not LITELLM.exists():
        raise SystemExit(f"LiteLLM is not installed at {LITELLM}; see this module's docstring.")
    request = {**claude_code_request(85_000, max_tokens=16), "model": "claude-x"}
    long_answer = {**claude_code_request(20_000, max_tokens=tokens), "model": "claude-x"}
    dialect = backends.get("openai").dialect  # type: ignore[union-attr]
    openai_body = json.dumps(to_openai(request, dialect, model="bench").body).encode()
    openai_long = json.dumps(to_openai(long_answer, dialect, model="bench").body).encode()
    anthropic_body, anthropic_long = json.dumps(request).encode(), json.dumps(long_answer).encode()
    ttft: dict[str, list[float]] = {"direct": [], "anyclaude": [], "litellm": []}
    stream_s: dict[str, list[float]] = {"direct": [], "anyclaude": [], "litellm": []}
    with fast_backend() as backend_url, anyclaude_proxy({
            "ANYCLAUDE_MODE": "openai", "ANYCLAUDE_OPENAI_URL": backend_url,
            "ANYCLAUDE_OPENAI_MODEL": "bench"}) as (ours, _), litellm_proxy(backend_url) as theirs, \
            httpx.Client(timeout=600) as client:
        anthropic_headers = {"Content-Type": "application/json", "x-api-key": TOKEN,
                             "anthropic-version": "2023-06-01"}
        litellm_headers = {**anthropic_headers, "x-api-key": LITELLM_KEY}
        targets = {
            "direct": (backend_url + "/chat/completions", openai_body, openai_long,
                       {"Content-Type": "application/json"}, b'"content":"tok'),
            "anyclaude": (ours + "/v1/messages", anthropic_body, anthropic_long,
                          anthropic_headers, b"text_delta"),
            "litellm": (theirs + "/v1/messages", anthropic_body, anthropic_long,
                        litellm_headers, b"text_delta"),
        }
        for _ in range(3):
            for url, body, _long, headers, marker in targets.values():
                timed_stream(client, url, body, headers, marker)
        for _ in range(samples):
            for name, (url, body, _long, headers, marker) in targets.items():
                ttft[name].append(timed_stream(client, url, body, headers, marker)[0])
        for _ in range(3):
            for name, (url, _body, long, headers, _marker) in targets.items():
                stream_s[name].append(drain(client, url, long, headers)[0])
    direct_ttft, direct_tps = median(ttft["direct"]), tokens / median(stream_s["direct"])
    summary = {name: {"ttft_ms": median(ttft[name]) * 1000,
                      "added_ms": (median(ttft[name]) - direct_ttft) * 1000,
                      "tokens_per_s": tokens / median(stream_s[name]),
                      "throughput_vs_direct": tokens / median(stream_s[name]) / direct_tps}
               for name in ttft}
    return {"benchmark": "anyclaude vs LiteLLM", "samples": samples, "answer_tokens": tokens,
            "litellm_version": subprocess.run([str(LITELLM), "--version"], capture_output=True,
                                              text=True).stdout.strip(),
            "summary": summary, "raw": {"ttft_s": ttft, "stream_s": stream_s}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--samples", type=int, default=30)
    parser.add_argument("--tokens", type=int, default=5000)
    args = parser.parse_args()
    data = run(args.samples, args.tokens)
    path = save("compare", data)
    for name, row in data["summary"].items():
        print(f"{name:9}: ttft {row['ttft_ms']:.1f} ms (+{row['added_ms']:.1f} ms), "
              f"{row['tokens_per_s']:.0f} tok/s (x{row['throughput_vs_direct']:.2f} of direct)")
    print(f"-> {path}")


if __name__ == "__main__":
    main()
