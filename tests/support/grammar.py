"""A strict checker of Anthropic streaming event sequences.

Stricter than the SDK on purpose: it also checks that `event:` names equal `data.type`,
that thinking blocks end with a signature and tool inputs join into one JSON object.
"""

from __future__ import annotations

import json
from typing import Any

DELTA_FOR = {"text": "text_delta", "thinking": "thinking_delta", "tool_use": "input_json_delta"}
STOP_REASONS = {"end_turn", "max_tokens", "stop_sequence", "tool_use", "refusal", "pause_turn"}


def parse_sse(raw: bytes) -> list[tuple[str, dict[str, Any]]]:
    """Split an SSE body into (event, data) pairs, requiring an `event:` line for each."""
    events = []
    for block in raw.decode().split("\n\n"):
        if not block.strip():
            continue
        lines = block.split("\n")
        names = [line[7:] for line in lines if line.startswith("event: ")]
        datas = [line[6:] for line in lines if line.startswith("data: ")]
        assert len(names) == 1 and len(datas) == 1, f"malformed SSE event: {block!r}"
        events.append((names[0], json.loads(datas[0])))
    return events


def check(events: list[tuple[str, dict[str, Any]]], *, complete: bool | None = None) -> dict[str, Any]:
    """Assert the sequence is valid; return a summary (blocks, stop_reason, usage, error).

    `complete=True` requires message_stop, `False` requires an error ending.
    """
    assert events, "no events"
    name, data = events[0]
    assert name == "message_start", f"first event is {name}"
    message = data["message"]
    assert message["id"].startswith("msg_") and message["content"] == []
    assert message["usage"]["input_tokens"] > 0
    blocks: list[dict[str, Any]] = []
    open_index: int | None = None
    ended: str | None = None
    stop_reason = None
    usage: dict[str, Any] = {}
    error = None
    signed: set[int] = set()
    inputs: dict[int, str] = {}
    for name, data in events[1:]:
        assert ended is None or (ended == "delta" and name == "message_stop"), \
            f"{name} after the end ({ended})"
        assert data.get("type") == name, f"event {name} carries type {data.get('type')}"
        if name == "ping":
            continue
        if name == "error":
            assert data["error"]["type"] and data["error"]["message"]
            error = data["error"]
            ended = "error"
        elif name == "content_block_start":
            assert open_index is None, "a block started while another is open"
            assert data["index"] == len(blocks), f"index {data['index']} != {len(blocks)}"
            block = data["content_block"]
            assert block["type"] in DELTA_FOR
            if block["type"] == "tool_use":
                assert block["id"].startswith("toolu_") and block["input"] == {}
                assert block["name"]
                inputs[data["index"]] = ""
            blocks.append({"type": block["type"], "text": "", "name": block.get("name")})
            open_index = data["index"]
        elif name == "content_block_delta":
            assert data["index"] == open_index, "delta for a block that is not open"
            block = blocks[data["index"]]
            kind = data["delta"]["type"]
            if kind == "signature_delta":
                assert block["type"] == "thinking" and data["delta"]["signature"]
                signed.add(data["index"])
                continue
            assert kind == DELTA_FOR[block["type"]], f"{kind} in a {block['type']} block"
            if kind == "input_json_delta":
                inputs[data["index"]] += data["delta"]["partial_json"]
            else:
                piece = data["delta"]["text" if kind == "text_delta" else "thinking"]
                assert isinstance(piece, str)
                block["text"] += piece
        elif name == "content_block_stop":
            assert data["index"] == open_index, "stop for a block that is not open"
            block = blocks[data["index"]]
            if block["type"] == "thinking":
                assert data["index"] in signed, "thinking block without a signature"
            if block["type"] == "tool_use":
                parsed = json.loads(inputs[data["index"]])
                assert isinstance(parsed, dict), "tool input is not a JSON object"
                block["input"] = parsed
            open_index = None
        elif name == "message_delta":
            assert open_index is None, "message_delta while a block is open"
            stop_reason = data["delta"]["stop_reason"]
            assert stop_reason in STOP_REASONS
            usage = data["usage"]
            assert isinstance(usage["output_tokens"], int) and usage["output_tokens"] >= 0
            ended = "delta"
        elif name == "message_stop":
            assert ended == "delta", "message_stop without message_delta"
            ended = "stop"
        else:
            raise AssertionError(f"unknown event {name}")
    assert ended in ("stop", "error"), f"stream did not end properly ({ended})"
    if complete is True:
        assert ended == "stop", f"expected a complete message, got error {error}"
    if complete is False:
        assert ended == "error", "expected an error ending"
    if stop_reason == "tool_use":
        assert any(b["type"] == "tool_use" for b in blocks)
    return {"blocks": blocks, "stop_reason": stop_reason, "usage": usage, "error": error,
            "text": "".join(b["text"] for b in blocks if b["type"] == "text"),
            "thinking": "".join(b["text"] for b in blocks if b["type"] == "thinking"),
            "tools": [(b["name"], b.get("input")) for b in blocks if b["type"] == "tool_use"]}
