"""The real Claude Code CLI through the proxy, in front of the real mlx-lm server running the
project's tiny scripted model: a text reply, a Bash tool round trip, a multi-turn session
whose backend prompts stay prefix-stable (so mlx-lm's cache serves every follow-up), and a
context overflow that Claude Code reports without retrying in a loop. The first two run
against every tested Claude Code version (the oldest and the newest)."""

from __future__ import annotations

import io
import itertools
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from transformers import AutoTokenizer

from anyclaude.hub import find_tokenizer
from anyclaude.proxy.tokens import TokenCounter
from anyclaude.proxy.trace import Tracer
from tests.support.claude_code import (
    CLAUDE_VERSION,
    CLAUDE_VERSIONS,
    claude_path,
    headless_env,
)
from tests.support.mlx_server import MlxServer, running_mlx_server
from tests.support.proxy import TOKEN, ThreadedProxy, running_proxy
from tests.support.tiny_model import DEFAULT_SENTENCE, build_scripted_model, default_models_dir

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def mlx() -> Iterator[MlxServer]:
    model = build_scripted_model(default_models_dir() / "scripted")
    with running_mlx_server(model) as server:
        yield server


def claude(proxy: ThreadedProxy, cwd: Path, *args: str, billing_header: bool = False,
           timeout: float = 180, version: str = CLAUDE_VERSION) -> dict[str, Any]:
    """Run `claude -p ... --output-format json` against the proxy; its JSON result."""
    # Model names pinned as the launcher pins them (else Claude Code's default model, and with
    # it its system prompt, can change between runs).
    extra = {"ANTHROPIC_BASE_URL": proxy.url, "ANTHROPIC_API_KEY": TOKEN,
             "ANTHROPIC_MODEL": "tiny", "ANTHROPIC_DEFAULT_OPUS_MODEL": "tiny",
             "ANTHROPIC_DEFAULT_SONNET_MODEL": "tiny",
             "ANTHROPIC_DEFAULT_HAIKU_MODEL": "anyclaude-background"}
    if not billing_header:
        extra["CLAUDE_CODE_ATTRIBUTION_HEADER"] = "0"
    env = headless_env(cwd.parent / "home", cwd, api_key=TOKEN, extra=extra)
    done = subprocess.run([str(claude_path(version)), "-p", *args, "--output-format", "json"], cwd=cwd,
                          env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=timeout)
    assert done.stdout.strip(), f"no output; stderr: {done.stderr[-2000:]}"
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    result["exit_code"] = done.returncode
    return result


def workdir(tmp_path: Path) -> Path:
    cwd = tmp_path / "project"
    cwd.mkdir()
    return cwd


def traced(trace: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in trace.read_text().splitlines()]


@pytest.mark.parametrize("version", CLAUDE_VERSIONS)
def test_text_reply(mlx: MlxServer, tmp_path: Path, version: str) -> None:
    with running_proxy("mlx-lm", mlx.base_url, mlx.model) as proxy:
        result = claude(proxy, workdir(tmp_path), "say hi", "--tools", "", version=version)
    assert result["exit_code"] == 0 and result["is_error"] is False
    assert result["result"] == DEFAULT_SENTENCE


@pytest.mark.parametrize("version", CLAUDE_VERSIONS)
def test_bash_tool_round_trip_then_a_follow_up_turn_reuse_the_prompt_cache(
        mlx: MlxServer, tmp_path: Path, version: str) -> None:
    cwd = workdir(tmp_path)
    trace = tmp_path / "trace.jsonl"
    tracer = Tracer(3, io.StringIO(), trace, secrets=(TOKEN,))
    counter = TokenCounter(find_tokenizer(mlx.model))
    with running_proxy("mlx-lm", mlx.base_url, mlx.model, tracer=tracer, tokens=counter) as proxy:
        first = claude(proxy, cwd, "create the marker file", "--allowedTools", "Bash",
                       billing_header=True, version=version)
        second = claude(proxy, cwd, "--continue", "thanks, anything else?", "--allowedTools",
                        "Bash", billing_header=True, version=version)
    tracer.close()
    # The tool round trip: the model asked for Bash, Claude Code ran it, the model answered.
    assert first["exit_code"] == 0 and first["is_error"] is False, first
    assert (cwd / "anyclaude-e2e.txt").read_text().strip() == "anyclaude-e2e"
    assert first["result"] == DEFAULT_SENTENCE and first["num_turns"] == 2
    assert second["exit_code"] == 0 and second["result"] == DEFAULT_SENTENCE

    entries = traced(trace)
    upstream = [e["data"]["body"] for e in entries if e["step"] == "upstream_request"
                and e["data"]["body"].get("tools")]
    client = [e["data"]["body"] for e in entries if e["step"] == "client_request"
              and e["data"]["body"].get("tools")]
    answers = [e["data"] for e in entries if e["step"] == "answer"
               and e["request_id"] in {x["request_id"] for x in entries
                                       if x["step"] == "upstream_request"
                                       and x["data"]["body"].get("tools")}]
    assert len(upstream) == 3, [len(u["messages"]) for u in upstream]
    # Claude Code sent a different billing header each time; the backend never saw one.
    headers = {c["system"][0]["text"] for c in client}
    assert all(h.startswith("x-anthropic-billing-header:") for h in headers)
    assert all("x-anthropic-billing-header" not in json.dumps(u) for u in upstream)
    # Prefix stability: each request starts with exactly the messages of the one before,
    # with the same tools and the same serialisation.
    for before, after in itertools.pairwise(upstream):
        assert after["tools"] == before["tools"]
        assert after["messages"][: len(before["messages"])] == before["messages"]
    # ...and so does the prompt the model's chat template renders.
    tokenizer = AutoTokenizer.from_pretrained(mlx.model)
    rendered = [tokenizer.apply_chat_template(u["messages"], tools=u["tools"], tokenize=False)
                for u in upstream]
    for before, after in itertools.pairwise(rendered):
        assert after.startswith(before)
    # mlx-lm served every follow-up from its prompt cache.
    for answer in answers[1:]:
        usage = answer["usage"]
        prompt = usage["input_tokens"] + usage["cache_read_input_tokens"]
        assert usage["cache_read_input_tokens"] >= 0.95 * prompt, usage


def test_context_overflow_is_reported_without_a_retry_loop(mlx: MlxServer,
                                                           tmp_path: Path) -> None:
    with running_proxy("mlx-lm", mlx.base_url, mlx.model, context_window=2000) as proxy:
        result = claude(proxy, workdir(tmp_path), "say hi")
        served = list(proxy.server.config.stats.records)
    assert result["exit_code"] != 0 and result["is_error"] is True
    assert "prompt is too long" in result["result"].lower()
    assert len(served) <= 3, [r.error for r in served]
    assert all(r.status == 400 for r in served)
