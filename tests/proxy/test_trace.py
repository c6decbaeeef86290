"""ANYCLAUDE_DEBUG levels: a line per request, summaries, JSONL traces without secrets."""

from __future__ import annotations

import io
import json
from pathlib import Path

from anyclaude.proxy.trace import Tracer
from tests.support.proxy import TOKEN, serving
from tests.support.scripted import Reply, ScriptedBackend

TOOLS = [{"name": "Bash", "input_schema": {"type": "object",
                                           "properties": {"command": {"type": "string"}}}}]
BACKEND_KEY = "sk-backend-secret-key-42"


async def run(level: int, trace: Path | None = None) -> str:
    out = io.StringIO()
    tracer = Tracer(level, out, trace, secrets=(TOKEN, BACKEND_KEY))
    async with ScriptedBackend("vllm", model="m") as backend, \
            serving("openai", backend, model="m", tracer=tracer) as proxy:
        backend.reply(Reply(text="Let me check.", tool_calls=[("Bash", '{"command": "ls"}')]),
                      Reply(text="done"))
        async with proxy.sdk.messages.stream(
                model="claude-x", max_tokens=50, tools=TOOLS,  # type: ignore[arg-type]
                messages=[{"role": "user", "content": f"my key {BACKEND_KEY}"}]) as s:
            await s.get_final_message()
        await proxy.sdk.messages.create(model="claude-x", max_tokens=50,
                                        messages=[{"role": "user", "content": "again"}])
    tracer.close()
    return out.getvalue()


async def test_level_1_prints_one_line_per_request() -> None:
    lines = (await run(1)).splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("[anyclaude] openai claude-x stream: prompt ")
    assert "ttft" in lines[0] and lines[0].endswith("tool_use")
    assert lines[1].endswith("end_turn")


async def test_level_2_adds_request_and_answer_summaries() -> None:
    text = await run(2)
    assert "→ upstream: 1 messages (u), 1 tools" in text
    assert "← text(13 chars), tool_use Bash; stop_reason tool_use" in text


async def test_level_3_writes_jsonl_traces_without_credentials(tmp_path: Path) -> None:
    trace = tmp_path / "trace.jsonl"
    await run(3, trace)
    raw = trace.read_text()
    entries = [json.loads(line) for line in raw.splitlines()]
    steps = [e["step"] for e in entries]
    assert steps[:4] == ["client_request", "upstream_request", "upstream_response", "answer"]
    headers = {k.lower(): v for k, v in entries[0]["data"]["headers"].items()}
    secret_headers = [v for k, v in headers.items() if k in ("x-api-key", "authorization")]
    assert secret_headers and all(v == "[redacted]" for v in secret_headers)
    assert TOKEN not in raw and BACKEND_KEY not in raw
    assert "data: [DONE]" in entries[2]["data"]["body"]
