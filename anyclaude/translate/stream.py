"""OpenAI chunks -> Anthropic events: the one explicit state machine of the proxy.

Grammar it guarantees (the one Anthropic's SDK and Claude Code rely on; checked by
`tests/support/grammar.py`), whatever the upstream sends:

    message_start  ping*  (content_block_start  delta*  content_block_stop)*
    message_delta  message_stop            -- or an `error` event in place of the tail

Block indices count up from 0 with one block open at a time; deltas match their block's
type; thinking blocks end with a signature; tool_use blocks carry a fresh `toolu_` id and
one complete JSON object. Tool calls are buffered until the answer ends (fragments may
interleave by index, and arguments must be repaired as a whole), then emitted in order.
Non-streaming answers go through the same machine (recast as one chunk by
`chunks.response_chunk`), so both modes behave identically.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

import orjson

from anyclaude.translate import ids
from anyclaude.translate.arguments import repair_arguments, unclosed
from anyclaude.translate.errors import AnthropicError
from anyclaude.translate.protocol import BlockDelta, ContentBlock
from anyclaude.translate.protocol import Usage as AnthropicUsage
from anyclaude.translate.request import Plan
from anyclaude.translate.sse import Event
from anyclaude.translate.stops import StopMatcher
from anyclaude.translate.textcalls import TextCallParser
from anyclaude.translate.usage import Usage

SIGNATURE = "anyclaude-local-reasoning"
"""Placeholder signature: Claude Code drops thinking blocks without one."""

STOP_REASONS: dict[str | None, str] = {
    "length": "max_tokens",
    "max_tokens": "max_tokens",
    "content_filter": "refusal",
    "tool_calls": "tool_use",
    "tool_call": "tool_use",
    "function_call": "tool_use",
}
"""Upstream finish_reason -> stop_reason; anything else is end_turn (or tool_use when
tool calls were emitted: several servers say `stop` although they sent calls)."""

REASONING_FIELDS = ("reasoning", "reasoning_content")


@dataclass
class _Call:
    upstream_id: str | None = None
    name: str = ""
    arguments: str | dict[str, Any] = ""
    fragments: list[str] = field(default_factory=list)
    """Streamed argument text, joined once at the end (appending to one string copied it
    all for every fragment: quadratic in the size of a call)."""
    from_text: bool = False
    cut: bool = False
    """A text-printed call whose close marker never came."""


class TokenCounts(NamedTuple):
    prompt: int
    """Prompt tokens, cached ones included."""
    cached: int
    output: int


@dataclass
class StreamTranslator:
    plan: Plan
    message_id: str = field(default_factory=ids.message_id)

    def __post_init__(self) -> None:
        self._index = 0
        self._open: str | None = None
        self._calls: list[_Call] = []
        self._slots: dict[int, _Call] = {}
        self._stops = StopMatcher(self.plan.stop_sequences)
        formats = list(self.plan.text_formats)
        upstream_names = [self.plan.names.to_upstream(n) for n in self.plan.schemas]
        self._parser = TextCallParser(formats, upstream_names,
                                      start_in_thinking=self.plan.start_in_thinking) \
            if formats else None
        self.finish_reason: str | None = None
        self.usage: Usage | None = None
        self.stop_sequence: str | None = None
        self.stopped = False
        """A stop sequence matched: the caller should close the upstream request."""
        self.ended = False
        self.failed = False
        """The answer ended with an `error` event."""
        self.blocks = 0
        self.output_chars = 0
        self.tool_uses = 0
        self.chunks = 0
        """Content chunks received (one token each where `plan.chunk_is_token`)."""
        self.pieces = 0
        """Chunks that carried any of the answer (text, reasoning, a tool-call piece, a
        finish reason): the backend's progress, which empty deltas are not."""

    # -- public API ---------------------------------------------------------------------
    def start(self) -> list[Event]:
        usage: AnthropicUsage = {"input_tokens": max(1, self.plan.prompt_tokens),
                                 "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
                                 "output_tokens": 1}
        return [("message_start", {"type": "message_start", "message": {
            "id": self.message_id, "type": "message", "role": "assistant",
            "model": self.plan.requested_model, "content": [], "stop_reason": None,
            "stop_sequence": None, "usage": usage}})]

    def ping(self) -> list[Event]:
        return [] if self.ended else [("ping", {"type": "ping"})]

    def feed(self, chunk: object) -> list[Event]:
        """One parsed upstream chunk (`chat.completion.chunk`, or a usage-only chunk)."""
        if not isinstance(chunk, dict):
            return []
        usage = Usage.parse(chunk.get("usage"))
        if usage is not None:
            self.usage = usage
        if self.ended or self.stopped:
            return []
        choices = chunk.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            return []
        choice = choices[0]
        delta = choice.get("delta")
        if not isinstance(delta, dict):
            message = choice.get("message")
            delta = message if isinstance(message, dict) else {}
        out: list[Event] = []
        reasoning = _reasoning_text(delta)
        if reasoning:
            self._thinking(reasoning, out)
        content = delta.get("content")
        if isinstance(content, str) and content:
            self.chunks += 1
            self._content(content, out)
        calls = delta.get("tool_calls")
        if isinstance(calls, list):
            self._native_calls(calls)
        reason = choice.get("finish_reason")
        if isinstance(reason, str) and reason:
            self.finish_reason = reason
        if reasoning or content or calls or reason:
            self.pieces += 1
        return out

    def finish(self) -> list[Event]:
        """The upstream answer is complete: flush, emit tool calls, close the message."""
        if self.ended:
            return []
        out: list[Event] = []
        if self._parser is not None:
            for segment in self._parser.finish(cut=self.truncated):
                self._segment(segment, out)
        self._emit_text(self._stops.flush(), out)
        self._emit_calls(out)
        self._close(out)
        if self.blocks == 0:
            out.append(("content_block_start", {"type": "content_block_start", "index": 0,
                                                "content_block": {"type": "text", "text": ""}}))
            out.append(("content_block_stop", {"type": "content_block_stop", "index": 0}))
            self.blocks = 1
        out.append(("message_delta", {"type": "message_delta", "delta": {
            "stop_reason": self.stop_reason(), "stop_sequence": self.stop_sequence},
            "usage": self.final_usage()}))
        out.append(("message_stop", {"type": "message_stop"}))
        self.ended = True
        return out

    def fail(self, error: AnthropicError) -> list[Event]:
        """The upstream broke: an `error` event, never a `message_stop` that would make a
        truncated answer look complete."""
        if self.ended:
            return []
        self.ended = self.failed = True
        return [("error", error.body())]

    @property
    def truncated(self) -> bool:
        """The backend stopped the answer at its token limit (the output may end mid-word,
        mid-string, mid-call)."""
        return STOP_REASONS.get(self.finish_reason) == "max_tokens"

    def stop_reason(self) -> str:
        if self.stop_sequence is not None:
            return "stop_sequence"
        mapped = STOP_REASONS.get(self.finish_reason)
        if mapped in ("max_tokens", "refusal"):
            return mapped
        if self.tool_uses:
            return "tool_use"
        return "max_tokens" if self._at_limit() else "end_turn"

    def _at_limit(self) -> bool:
        """Several servers say `stop` when `max_tokens` cut the answer: an answer as long
        as the limit (less the tokens the dialect says its server stops short) was cut."""
        output = self.usage.completion_tokens if self.usage else None
        if output is None and self.plan.chunk_is_token:
            output = self.chunks
        return output is not None and output >= self.plan.max_tokens - self.plan.stops_short_by

    def final_usage(self) -> AnthropicUsage:
        usage = self.usage or Usage()
        prompt = usage.prompt_tokens if usage.prompt_tokens is not None else self.plan.prompt_tokens
        cached = min(usage.cached_tokens, prompt)
        output = usage.completion_tokens
        if output is None:
            output = max(1, self.output_chars // 4)
        return {"input_tokens": max(0, prompt - cached), "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": cached, "output_tokens": output}

    def counts(self) -> TokenCounts:
        """The answer's token counts for stats and debug lines."""
        usage = self.final_usage()
        cached = usage["cache_read_input_tokens"]
        return TokenCounts(usage["input_tokens"] + cached, cached, usage["output_tokens"])

    # -- content channels ---------------------------------------------------------------
    def _content(self, text: str, out: list[Event]) -> None:
        if self._parser is None:
            self._text(text, out)
            return
        for segment in self._parser.feed(text):
            self._segment(segment, out)

    def _segment(self, segment: Any, out: list[Event]) -> None:
        if segment.kind == "text":
            self._text(segment.text, out)
        elif segment.kind == "thinking":
            self._thinking(segment.text, out)
        elif not self.stopped:
            self._calls.append(_Call(name=segment.name, arguments=segment.arguments,
                                     from_text=True, cut=segment.kind == "cut_call"))

    def _text(self, text: str, out: list[Event]) -> None:
        if self.stopped:
            return
        safe = self._stops.feed(text)
        if self._stops.matched is not None:
            self.stop_sequence = self._stops.matched
            self.stopped = True
        self._emit_text(safe, out)

    def _emit_text(self, text: str, out: list[Event]) -> None:
        self._emit("text", text, out)

    def _thinking(self, text: str, out: list[Event]) -> None:
        self.output_chars += len(text)
        if self.plan.emit_thinking and not self.stopped:
            self._emit("thinking", text, out, count=False)

    def _emit(self, kind: str, text: str, out: list[Event], count: bool = True) -> None:
        if not text:
            return
        if count:
            self.output_chars += len(text)
        if self._open != kind:
            # A block never starts with whitespace; whitespace alone opens nothing.
            text = text.lstrip()
            if not text:
                return
            self._close(out)
            block: ContentBlock = {"type": "text", "text": ""} if kind == "text" else {
                "type": "thinking", "thinking": "", "signature": SIGNATURE}
            out.append(("content_block_start", {"type": "content_block_start",
                                                "index": self._index, "content_block": block}))
            self._open = kind
            self.blocks += 1
        delta: BlockDelta = {"type": "text_delta", "text": text} if kind == "text" else {
            "type": "thinking_delta", "thinking": text}
        out.append(("content_block_delta", {"type": "content_block_delta",
                                            "index": self._index, "delta": delta}))

    def _close(self, out: list[Event]) -> None:
        if self._open is None:
            return
        if self._open == "thinking":
            out.append(("content_block_delta", {"type": "content_block_delta", "index": self._index,
                                                "delta": {"type": "signature_delta",
                                                          "signature": SIGNATURE}}))
        out.append(("content_block_stop", {"type": "content_block_stop", "index": self._index}))
        self._open = None
        self._index += 1

    # -- tool calls ---------------------------------------------------------------------
    def _native_calls(self, entries: list[Any]) -> None:
        for position, entry in enumerate(entries):
            if not isinstance(entry, dict):
                continue
            index = entry.get("index")
            key = index if isinstance(index, int) and not isinstance(index, bool) else position
            raw_function = entry.get("function")
            function: dict[str, Any] = raw_function if isinstance(raw_function, dict) else {}
            name, arguments = function.get("name"), function.get("arguments")
            call_id = entry.get("id") if isinstance(entry.get("id"), str) else None
            slot = self._slots.get(key)
            if slot is None or (call_id and slot.upstream_id and call_id != slot.upstream_id) \
                    or (name and slot.name and not call_id):
                # mlx-textgen puts every call at index 0; older servers send no ids.
                slot = _Call(upstream_id=call_id)
                self._slots[key] = slot
                self._calls.append(slot)
            if isinstance(name, str) and name and not slot.name:
                slot.name = name
            if slot.upstream_id is None:
                slot.upstream_id = call_id
            if isinstance(arguments, str):
                if isinstance(slot.arguments, str):
                    slot.fragments.append(arguments)
            elif isinstance(arguments, dict):
                slot.arguments = arguments

    def _emit_calls(self, out: list[Event]) -> None:
        """Buffered calls as tool_use blocks. At max_tokens, a call whose arguments stop
        before their JSON closes (or whose close marker never came) was cut: repairing it
        would run a truncated command or write a truncated file, so it becomes a note."""
        for call in self._calls:
            if call.fragments and isinstance(call.arguments, str):
                call.arguments += "".join(call.fragments)
            self.output_chars += len(call.name) + len(str(call.arguments))
            name = self.plan.names.from_upstream(call.name) if call.name else ""
            if call.cut or (self.truncated and call.name and unclosed(call.arguments)):
                self._emit_text(f"\n\n[anyclaude: the answer reached max_tokens in the middle "
                                f"of a call to {f'the tool {name}' if name else 'a tool'}; "
                                "the incomplete call was dropped, not run.]", out)
                continue
            if not call.name:
                continue  # a call whose name never arrived cannot be run
            arguments = repair_arguments(call.arguments, self.plan.schemas.get(name))
            if arguments is None:
                self._emit_text(f"\n\n[anyclaude: the model called the tool {name} with "
                                f"arguments that are not valid JSON: "
                                f"{str(call.arguments)[:300]}]", out)
                continue
            self._close(out)
            index = self._index
            out.append(("content_block_start", {"type": "content_block_start", "index": index,
                                                "content_block": {"type": "tool_use",
                                                                  "id": ids.tool_use_id(),
                                                                  "name": name, "input": {}}}))
            out.append(("content_block_delta", {"type": "content_block_delta", "index": index,
                                                "delta": {"type": "input_json_delta",
                                                          "partial_json": orjson.dumps(
                                                              arguments).decode()}}))
            out.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
            self._index += 1
            self.blocks += 1
            self.tool_uses += 1
        self._calls = []


def _reasoning_text(delta: dict[str, Any]) -> str:
    for key in REASONING_FIELDS:
        value = delta.get(key)
        if isinstance(value, str) and value:
            return value
    details = delta.get("reasoning_details")
    if isinstance(details, list):
        return "".join(d.get("text", "") for d in details
                       if isinstance(d, dict) and isinstance(d.get("text"), str))
    return ""
