"""A tool call cut by max_tokens never becomes a runnable tool_use (issue 11, class 4).

Repairing `{"command": "rm -rf /tmp/build-` closes it into a command the model never
finished; a cut Write would write a truncated file. Cut calls become a text note, calls
completed before the cut are kept, and stop_reason stays max_tokens, streaming or not.
"""

from __future__ import annotations

import json
from typing import Any, cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from anyclaude.translate.arguments import unclosed
from anyclaude.translate.chunks import response_chunk
from anyclaude.translate.events import accumulate
from anyclaude.translate.protocol import MessagesRequest
from anyclaude.translate.request import Plan, to_openai
from anyclaude.translate.sse import Event
from anyclaude.translate.stream import StreamTranslator
from tests.support.grammar import check
from tests.translate.test_stream import OPENAI, delta

TOOLS = [
    {"name": "Bash", "input_schema": {"type": "object", "properties": {
        "command": {"type": "string"}}, "required": ["command"]}},
    {"name": "Write", "input_schema": {"type": "object", "properties": {
        "file_path": {"type": "string"}, "content": {"type": "string"}}}},
    {"name": "Edit", "input_schema": {"type": "object", "properties": {
        "file_path": {"type": "string"}, "old_string": {"type": "string"},
        "new_string": {"type": "string"}}}},
    {"name": "TodoWrite", "input_schema": {"type": "object", "properties": {
        "todos": {"type": "array", "items": {"type": "object"}}}}},
]
CUT_BASH = '{"command": "rm -rf /tmp/build-'
NOTE = "the incomplete call was dropped, not run"


def plan(*, text_tools: bool = False, stream: bool = True) -> Plan:
    request: dict[str, Any] = {"model": "claude-x", "max_tokens": 100, "stream": stream,
                               "tools": TOOLS,
                               "messages": [{"role": "user", "content": "clean up"}]}
    planned = to_openai(cast(MessagesRequest, request), OPENAI, model="m",
                        tool_calls="text" if text_tools else None)
    planned.prompt_tokens = 42
    return planned


def native(index: int, name: str | None, arguments: str, call_id: str | None = None) -> dict[str, Any]:
    function: dict[str, Any] = {"arguments": arguments}
    if name is not None:
        function["name"] = name
    entry: dict[str, Any] = {"index": index, "function": function}
    if call_id is not None:
        entry["id"] = call_id
    return entry


def streamed(chunks: list[Any], p: Plan | None = None) -> list[Event]:
    t = StreamTranslator(p or plan())
    events = t.start()
    for chunk in chunks:
        events += t.feed(chunk)
    return events + t.finish()


def whole(message: dict[str, Any], finish: str, p: Plan | None = None) -> dict[str, Any]:
    """A non-streaming OpenAI answer through the same machine, accumulated."""
    t = StreamTranslator(p or plan(stream=False))
    chunk = response_chunk({"choices": [{"index": 0, "message": message,
                                         "finish_reason": finish}]})
    return dict(accumulate(t.start() + t.feed(chunk) + t.finish()))


def uses(message: dict[str, Any]) -> list[tuple[str, Any]]:
    return [(b["name"], b["input"]) for b in message["content"] if b["type"] == "tool_use"]


def text_of(message: dict[str, Any]) -> str:
    return "".join(b["text"] for b in message["content"] if b["type"] == "text")


@pytest.mark.parametrize("finish", ["length", "max_tokens"])
def test_streamed_bash_call_cut_mid_command_is_dropped_with_a_note(finish: str) -> None:
    pieces = [CUT_BASH[i:i + 5] for i in range(0, len(CUT_BASH), 5)]
    chunks = [delta(content="Cleaning up."), delta(tool_calls=[native(0, "Bash", "", "c1")])]
    chunks += [delta(tool_calls=[native(0, None, p)]) for p in pieces] + [delta(finish)]
    summary = check(streamed(chunks), complete=True)
    assert summary["tools"] == []
    assert summary["stop_reason"] == "max_tokens"
    assert summary["text"].startswith("Cleaning up.")
    assert NOTE in summary["text"] and "Bash" in summary["text"]
    assert "rm -rf" not in summary["text"]


@pytest.mark.parametrize("name, arguments", [
    ("Bash", CUT_BASH),
    ("Write", '{"file_path": "/src/app.py", "content": "def main():\\n    print(\\"hel'),
    ("Write", '{"file_path": "/src/app.py", "content": "done"'),
    ("Edit", '{"file_path": "/a.py", "old_string": "x = 1", "new_string": "x = {\\"a\\": ['),
    ("TodoWrite", '{"todos": [{"content": "a"}, {"content": "b'),
    ("Bash", ""),
    ("Bash", '{"command": '),
    ("Bash", '"{\\"command\\": \\"rm -rf /tmp/b'),
    ("Bash", '```json\n{"command": "make cle'),
    ("Bash", "{'command': 'rm -rf /tmp/build-"),
])
def test_non_streaming_cut_calls_are_never_tool_uses(name: str, arguments: str) -> None:
    message = whole({"role": "assistant", "content": None, "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": name, "arguments": arguments}}]},
        "length")
    assert uses(message) == []
    assert message["stop_reason"] == "max_tokens"
    assert NOTE in text_of(message) and name in text_of(message)


def test_complete_calls_before_the_cut_are_kept() -> None:
    first = native(0, "Bash", '{"command": "ls"}', "c1")
    second = native(1, "Write", '{"file_path": "/a", "content": "par', "c2")
    summary = check(streamed([delta(tool_calls=[first]), delta(tool_calls=[second]),
                              delta("length")]), complete=True)
    assert summary["tools"] == [("Bash", {"command": "ls"})]
    assert NOTE in summary["text"] and "Write" in summary["text"]
    assert summary["stop_reason"] == "max_tokens"


def test_interleaved_fragments_drop_only_the_unfinished_call() -> None:
    chunks = [delta(tool_calls=[native(0, "Bash", '{"comm', "a"), native(1, "Bash", '{"comm', "b")]),
              delta(tool_calls=[native(0, None, 'and": "pwd"}')]),
              delta(tool_calls=[native(1, None, 'and": "rm -r')]), delta("length")]
    summary = check(streamed(chunks), complete=True)
    assert summary["tools"] == [("Bash", {"command": "pwd"})]


@pytest.mark.parametrize("finish", ["tool_calls", "stop"])
def test_without_a_cut_broken_arguments_are_still_repaired(finish: str) -> None:
    summary = check(streamed([delta(tool_calls=[native(0, "Bash", '{"command": "ls -la', "c")]),
                              delta(finish)]), complete=True)
    assert summary["tools"] == [("Bash", {"command": "ls -la"})]


@pytest.mark.parametrize("printed", [
    '<tool_call>\n{"name": "Bash", "arguments": {"command": "rm -rf /tmp/build-',
    '<tool_call>\n{"name": "Bash", "arguments": {"command": "ls"}}\n',
    '<tool_call>\n<function=Bash>\n<parameter=command>\nrm -rf /tmp/build-',
    '<tool_call>\n<function=Write>\n<parameter=file_path>\n/a\n</parameter>\n'
    '<parameter=content>\nhalf a fi',
    '<tool_call>\n{"name": "Write", "arguments": {"content": "quoting </tool_call> then mo',
    "<tool_call>",
])
def test_text_printed_call_without_its_close_marker_is_dropped(printed: str) -> None:
    p = plan(text_tools=True)
    pieces = [printed[i:i + 7] for i in range(0, len(printed), 7)]
    summary = check(streamed([delta(content="On it.\n")] + [delta(content=x) for x in pieces]
                             + [delta("length")], p), complete=True)
    assert summary["tools"] == []
    assert summary["text"].startswith("On it.") and NOTE in summary["text"]
    assert "<tool_call>" not in summary["text"] and "<function=" not in summary["text"]
    assert summary["stop_reason"] == "max_tokens"


def test_text_printed_call_that_closed_before_the_cut_is_kept() -> None:
    p = plan(text_tools=True)
    printed = ('<tool_call>\n{"name": "Bash", "arguments": {"command": "ls"}}\n</tool_call>\n'
               '<tool_call>\n{"name": "Bash", "arguments": {"command": "rm -')
    summary = check(streamed([delta(content=printed), delta("length")], p), complete=True)
    assert summary["tools"] == [("Bash", {"command": "ls"})]
    assert NOTE in summary["text"]


def test_plain_text_cut_at_max_tokens_is_kept_as_it_is() -> None:
    p = plan(text_tools=True)
    summary = check(streamed([delta(content="a sentence cut in the mid"), delta("length")], p),
                    complete=True)
    assert summary["text"] == "a sentence cut in the mid" and summary["tools"] == []


def test_non_streaming_text_printed_cut_call_is_dropped() -> None:
    message = whole({"role": "assistant",
                     "content": 'Sure.\n<tool_call>\n{"name": "Bash", "arguments": '
                                '{"command": "rm -rf /tmp/build-'}, "length",
                    plan(text_tools=True, stream=False))
    assert uses(message) == [] and NOTE in text_of(message)
    assert "<tool_call>" not in text_of(message)


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=1, max_size=40), st.data())
def test_no_prefix_of_a_call_is_ever_run(command: str, data: st.DataObject) -> None:
    """Whatever the command and wherever the cut falls inside its JSON, at max_tokens the
    call is either the whole call or no call."""
    full = json.dumps({"command": command})
    cut = data.draw(st.integers(min_value=0, max_value=len(full) - 1))
    summary = check(streamed([delta(tool_calls=[native(0, "Bash", full[:cut], "c")]),
                              delta("length")]), complete=True)
    assert summary["tools"] == []
    assert unclosed(full[:cut]) and not unclosed(full)
