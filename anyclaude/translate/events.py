"""Lists of Anthropic stream events: neighbouring deltas merged before they are written, and
the `Message` a list adds up to (the non-streaming answer, and debug traces)."""

from __future__ import annotations

import orjson

from anyclaude.translate.errors import AnthropicError
from anyclaude.translate.protocol import BlockDelta, ContentBlock, Message
from anyclaude.translate.sse import Event


def merge_deltas(events: list[Event]) -> list[Event]:
    """Join consecutive deltas of the same block and kind (one upstream read often holds
    dozens of one-token chunks): fewer, larger events for the client to parse."""
    out: list[Event] = []
    for name, data in events:
        if out and data["type"] == "content_block_delta":
            prev = out[-1][1]
            if prev["type"] == "content_block_delta" and prev["index"] == data["index"]:
                merged = _merged(prev["delta"], data["delta"])
                if merged is not None:
                    out[-1] = (name, {**prev, "delta": merged})
                    continue
        out.append((name, data))
    return out


def _merged(a: BlockDelta, b: BlockDelta) -> BlockDelta | None:
    if a["type"] == "text_delta" and b["type"] == "text_delta":
        return {"type": "text_delta", "text": a["text"] + b["text"]}
    if a["type"] == "thinking_delta" and b["type"] == "thinking_delta":
        return {"type": "thinking_delta", "thinking": a["thinking"] + b["thinking"]}
    if a["type"] == "input_json_delta" and b["type"] == "input_json_delta":
        return {"type": "input_json_delta", "partial_json": a["partial_json"] + b["partial_json"]}
    return None


def accumulate(events: list[Event]) -> Message:
    """The Anthropic `Message` a stream of events describes (for non-streaming answers)."""
    message: Message | None = None
    partial: dict[int, str] = {}
    for _, data in events:
        if data["type"] == "message_start":
            message = data["message"].copy()
            message["content"] = []
        elif data["type"] == "error":
            raise AnthropicError(500, data["error"]["type"], data["error"]["message"])
        elif message is None:
            continue
        elif data["type"] == "content_block_start":
            message["content"].append(data["content_block"].copy())
        elif data["type"] == "content_block_delta":
            _apply(message["content"][data["index"]], data["delta"], data["index"], partial)
        elif data["type"] == "content_block_stop" and data["index"] in partial:
            block = message["content"][data["index"]]
            if block["type"] == "tool_use":
                block["input"] = orjson.loads(partial.pop(data["index"]))
        elif data["type"] == "message_delta":
            message["stop_reason"] = data["delta"]["stop_reason"]
            message["stop_sequence"] = data["delta"]["stop_sequence"]
            message["usage"] = {**message["usage"], **data["usage"]}
    if message is None:
        raise AnthropicError(500, "api_error", "The answer had no message_start event.")
    return message


def _apply(block: ContentBlock, delta: BlockDelta, index: int, partial: dict[int, str]) -> None:
    if delta["type"] == "text_delta" and block["type"] == "text":
        block["text"] += delta["text"]
    elif delta["type"] == "thinking_delta" and block["type"] == "thinking":
        block["thinking"] += delta["thinking"]
    elif delta["type"] == "signature_delta" and block["type"] == "thinking":
        block["signature"] = delta["signature"]
    elif delta["type"] == "input_json_delta":
        partial[index] = partial.get(index, "") + delta["partial_json"]
