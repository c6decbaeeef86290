"""TextCallParser: tool calls and reasoning printed as text, parsed while streaming."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from anyclaude.translate.arguments import repair_arguments
from anyclaude.translate.textcalls import Segment, TextCallParser, parse_complete

TOOLS = ("Read", "Bash", "Write", "mcp__srv__do")
ALL = ("think", "hermes", "qwen3_coder")
CALLS = ("hermes", "qwen3_coder")


def text(value: str) -> Segment:
    return Segment("text", text=value)


def thinking(value: str) -> Segment:
    return Segment("thinking", text=value)


def call(name: str, arguments: str | dict[str, object]) -> Segment:
    return Segment("tool_call", name=name, arguments=arguments)


def merge(segments: Sequence[Segment]) -> list[Segment]:
    out: list[Segment] = []
    for seg in segments:
        if out and seg.kind != "tool_call" and out[-1].kind == seg.kind:
            seg = Segment(seg.kind, text=out.pop().text + seg.text)
        out.append(seg)
    return out


def run(
    chunks: Sequence[str],
    formats: Sequence[str] = ALL,
    tools: Sequence[str] = TOOLS,
    *,
    start_in_thinking: bool = False,
) -> list[Segment]:
    parser = TextCallParser(formats, tools, start_in_thinking=start_in_thinking)
    out: list[Segment] = []
    for chunk in chunks:
        out.extend(parser.feed(chunk))
    out.extend(parser.finish())
    return merge(out)


QWEN_EDIT = (
    "<tool_call>\n<function=Write>\n<parameter=file_path>\n/tmp/a.html\n</parameter>\n"
    "<parameter=content>\n<div>\n  if (a < b && c > d) { x(); }\n</div>\n\n</parameter>\n"
    "</function>\n</tool_call>"
)

# (id, input, formats, start_in_thinking, expected segments)
CASES: list[tuple[str, str, tuple[str, ...], bool, list[Segment]]] = [
    ("plain_text", "Hello, world. 1 < 2 > 0", ALL, False, [text("Hello, world. 1 < 2 > 0")]),
    (
        "hermes_with_text_around",
        'Let me read it.\n<tool_call>\n{"name": "Read", "arguments": {"file_path": "/a"}}\n'
        "</tool_call>\nDone.",
        ALL,
        False,
        [text("Let me read it.\n"), call("Read", '{"file_path": "/a"}'), text("\nDone.")],
    ),
    (
        "hermes_arguments_as_json_string",
        '<tool_call>{"name": "Read", "arguments": "{\\"file_path\\": \\"/a\\"}"}</tool_call>',
        CALLS,
        False,
        [call("Read", '{"file_path": "/a"}')],
    ),
    (
        "hermes_parameters_key",
        '<tool_call>{"name": "Bash", "parameters": {"command": "ls"}}</tool_call>',
        CALLS,
        False,
        [call("Bash", '{"command": "ls"}')],
    ),
    (
        "hermes_without_arguments",
        '<tool_call>{"name": "Read"}</tool_call>',
        CALLS,
        False,
        [call("Read", "{}")],
    ),
    (
        "hermes_nested_json_with_braces_and_marker_in_strings",
        '<tool_call>{"name": "Write", "arguments": {"content": "}} </tool_call> {{", '
        '"meta": {"a": [1, {"b": "}"}]}}}</tool_call>',
        CALLS,
        False,
        [call("Write", '{"content": "}} </tool_call> {{", "meta": {"a": [1, {"b": "}"}]}}')],
    ),
    (
        "hermes_code_with_lt_in_arguments",
        '<tool_call>{"name": "Bash", "arguments": {"command": "test 1 < 2 && echo <ok>"}}'
        "</tool_call>",
        CALLS,
        False,
        [call("Bash", '{"command": "test 1 < 2 && echo <ok>"}')],
    ),
    (
        "two_hermes_calls_with_text_between",
        'A<tool_call>{"name": "Read", "arguments": {"file_path": "/a"}}</tool_call>B'
        '<tool_call>{"name": "Read", "arguments": {"file_path": "/b"}}</tool_call>C',
        CALLS,
        False,
        [
            text("A"),
            call("Read", '{"file_path": "/a"}'),
            text("B"),
            call("Read", '{"file_path": "/b"}'),
            text("C"),
        ],
    ),
    (
        "hermes_broken_json_is_repaired",
        '<tool_call>{"name": "Read", "arguments": {"file_path": "/a"}</tool_call>',
        CALLS,
        False,
        [call("Read", '{"file_path": "/a"}')],
    ),
    (
        "hermes_code_fence_inside_call",
        '<tool_call>\n```json\n{"name": "Read", "arguments": {}}\n```\n</tool_call>',
        CALLS,
        False,
        [call("Read", "{}")],
    ),
    (
        "hermes_list_of_calls",
        '<tool_call>[{"name": "Read", "arguments": {}}, {"name": "Bash", "arguments": {}}]'
        "</tool_call>",
        CALLS,
        False,
        [call("Read", "{}"), call("Bash", "{}")],
    ),
    (
        "hermes_openai_shaped_function",
        '<tool_call>{"type": "function", "function": {"name": "Read", "arguments": {}}}'
        "</tool_call>",
        CALLS,
        False,
        [call("Read", "{}")],
    ),
    (
        "unknown_tool_name_stays_text",
        'x <tool_call>{"name": "Evil", "arguments": {}}</tool_call> y',
        ALL,
        False,
        [text('x <tool_call>{"name": "Evil", "arguments": {}}</tool_call> y')],
    ),
    (
        "call_without_name_stays_text",
        '<tool_call>{"arguments": {}}</tool_call>',
        ALL,
        False,
        [text('<tool_call>{"arguments": {}}</tool_call>')],
    ),
    (
        "unterminated_call_at_finish_stays_text",
        'Sure <tool_call>{"name": "Read", "arguments": {"file_pa',
        ALL,
        False,
        [text('Sure <tool_call>{"name": "Read", "arguments": {"file_pa')],
    ),
    (
        "unterminated_string_at_finish_is_recovered_leniently",
        '<tool_call>{"name": "Read", "arguments": {"file_path": "/a}</tool_call>',
        CALLS,
        False,
        [call("Read", '{"file_path": "/a"}')],
    ),
    (
        "marker_followed_by_prose_is_text_and_later_call_still_found",
        'Use <tool_call> tags. <tool_call>{"name": "Read", "arguments": {}}</tool_call>',
        CALLS,
        False,
        [text("Use <tool_call> tags. "), call("Read", "{}")],
    ),
    (
        "trailing_partial_marker_at_finish_is_text",
        "see <tool_ca",
        ALL,
        False,
        [text("see <tool_ca")],
    ),
    (
        "think_prefix_then_tool_call",
        '\n<think>\nI should read.\n</think>\n\n<tool_call>\n{"name": "Read", "arguments": {}}\n'
        "</tool_call>",
        ALL,
        False,
        [thinking("I should read."), call("Read", "{}")],
    ),
    (
        "think_prefix_then_text",
        "<think>hmm</think>\n\nAnswer.",
        ALL,
        False,
        [thinking("hmm"), text("Answer.")],
    ),
    (
        "think_not_at_start_stays_text",
        "Hi <think>x</think>",
        ALL,
        False,
        [text("Hi <think>x</think>")],
    ),
    (
        "think_ignored_when_format_not_enabled",
        "<think>x</think>y",
        CALLS,
        False,
        [text("<think>x</think>y")],
    ),
    (
        "unclosed_think_at_finish_is_thinking",
        "<think>still going",
        ALL,
        False,
        [thinking("still going")],
    ),
    (
        "start_in_thinking",
        "Let me think.\n</think>\n\nHello <tool_call>\n<function=Read>\n<parameter=file_path>\n"
        "/a\n</parameter>\n</function>\n</tool_call>",
        ALL,
        True,
        [thinking("Let me think."), text("Hello "), call("Read", {"file_path": "/a"})],
    ),
    (
        "start_in_thinking_with_repeated_open_marker",
        "<think>\nplan\n</think>ok",
        ALL,
        True,
        [thinking("plan"), text("ok")],
    ),
    (
        "start_in_thinking_truncated_is_all_thinking",
        "a <tool_call> b",
        ALL,
        True,
        [thinking("a <tool_call> b")],
    ),
    (
        "qwen3_coder_multiline_values_with_lt",
        QWEN_EDIT,
        ALL,
        False,
        [
            call(
                "Write",
                {
                    "file_path": "/tmp/a.html",
                    "content": "<div>\n  if (a < b && c > d) { x(); }\n</div>\n",
                },
            )
        ],
    ),
    (
        "qwen3_coder_no_parameters",
        "<tool_call>\n<function=Read>\n</function>\n</tool_call>",
        ALL,
        False,
        [call("Read", {})],
    ),
    (
        "qwen3_coder_missing_parameter_close_is_tolerated",
        "<tool_call>\n<function=Bash>\n<parameter=command>\nls\n<parameter=timeout>\n5\n"
        "</function>\n</tool_call>",
        ALL,
        False,
        [call("Bash", {"command": "ls", "timeout": "5"})],
    ),
    (
        "qwen3_coder_close_marker_inside_value",
        "<tool_call>\n<function=Write>\n<parameter=content>\nprint('</tool_call>')\n"
        "</parameter>\n</function>\n</tool_call>",
        ALL,
        False,
        [call("Write", {"content": "print('</tool_call>')"})],
    ),
    (
        "qwen3_coder_parameter_close_text_inside_value",
        "<tool_call>\n<function=Write>\n<parameter=content>\na</parameter>b\n</parameter>\n"
        "</function>\n</tool_call>",
        ALL,
        False,
        [call("Write", {"content": "a</parameter>b"})],
    ),
    (
        "qwen3_coder_unknown_tool_stays_text",
        "<tool_call>\n<function=Nope>\n</function>\n</tool_call>",
        ALL,
        False,
        [text("<tool_call>\n<function=Nope>\n</function>\n</tool_call>")],
    ),
    (
        "qwen3_coder_not_enabled_stays_text",
        "<tool_call>\n<function=Read>\n</function>\n</tool_call>",
        ("hermes",),
        False,
        [text("<tool_call>\n<function=Read>\n</function>\n</tool_call>")],
    ),
    (
        "hermes_not_enabled_stays_text",
        '<tool_call>{"name": "Read"}</tool_call>',
        ("qwen3_coder",),
        False,
        [text('<tool_call>{"name": "Read"}</tool_call>')],
    ),
    (
        "hermes_and_qwen3_coder_in_one_message",
        '<tool_call>{"name": "Read", "arguments": {}}</tool_call>\n<tool_call>\n<function=Bash>\n'
        "<parameter=command>\nls\n</parameter>\n</function>\n</tool_call>",
        ALL,
        False,
        [call("Read", "{}"), text("\n"), call("Bash", {"command": "ls"})],
    ),
]

IDS = [case[0] for case in CASES]


@pytest.mark.parametrize(
    ("source", "formats", "in_thinking", "expected"), [c[1:] for c in CASES], ids=IDS
)
def test_whole_input_gives_expected_segments(
    source: str, formats: tuple[str, ...], in_thinking: bool, expected: list[Segment]
) -> None:
    assert run([source], formats, start_in_thinking=in_thinking) == expected
    assert parse_complete(source, formats, TOOLS, start_in_thinking=in_thinking) == expected


@pytest.mark.parametrize(
    ("source", "formats", "in_thinking", "expected"), [c[1:] for c in CASES], ids=IDS
)
def test_marker_split_across_chunks_at_every_position_gives_same_segments(
    source: str, formats: tuple[str, ...], in_thinking: bool, expected: list[Segment]
) -> None:
    for cut in range(len(source) + 1):
        chunks = [source[:cut], source[cut:]]
        assert run(chunks, formats, start_in_thinking=in_thinking) == expected, cut


@pytest.mark.parametrize(
    ("source", "formats", "in_thinking", "expected"), [c[1:] for c in CASES], ids=IDS
)
def test_single_character_feeding_gives_same_segments(
    source: str, formats: tuple[str, ...], in_thinking: bool, expected: list[Segment]
) -> None:
    assert run(list(source), formats, start_in_thinking=in_thinking) == expected


@pytest.mark.parametrize(
    ("chunk", "shown"),
    [
        ("Hello <", "Hello "),
        ("Hello <tool", "Hello "),
        ("Hello <tool_ca", "Hello "),
        ("a <b> c", "a <b> c"),
        ("x </tool_call", "x </tool_call"),
        ("1 << 2", "1 << 2"),
        ("tail <tool_call><", "tail "),
    ],
)
def test_possible_marker_prefix_is_held_back_and_the_rest_released_at_once(
    chunk: str, shown: str
) -> None:
    parser = TextCallParser(CALLS, TOOLS)
    assert merge(parser.feed(chunk)) == ([text(shown)] if shown else [])


def test_held_back_prefix_is_released_when_it_turns_out_not_to_be_a_marker() -> None:
    parser = TextCallParser(CALLS, TOOLS)
    assert parser.feed("a <tool") == [text("a ")]
    assert parser.feed("box>") == [text("<toolbox>")]
    assert parser.finish() == []


def test_think_prefix_at_start_is_held_until_decided() -> None:
    parser = TextCallParser(ALL, TOOLS)
    assert parser.feed("  <thi") == []
    assert parser.feed("s is text") == [text("  <this is text")]


def test_reasoning_streams_before_the_close_marker_arrives() -> None:
    parser = TextCallParser(ALL, TOOLS)
    assert parser.feed("<think>\nstep one ") == [thinking("step one")]
    assert parser.feed("and two\n</thi") == [thinking(" and two")]
    assert parser.feed("nk>\n\nAnswer") == [text("Answer")]


def test_hold_back_is_bounded_for_long_text_without_markers() -> None:
    parser = TextCallParser(ALL, TOOLS)
    shown = ""
    for _ in range(200):
        shown += "".join(s.text for s in parser.feed("lorem <ipsum> dolor < sit "))
    assert len(shown) == 200 * len("lorem <ipsum> dolor < sit ")


def test_text_after_a_complete_call_is_released_without_waiting_for_finish() -> None:
    parser = TextCallParser(CALLS, TOOLS)
    out = parser.feed('<tool_call>{"name": "Read", "arguments": {}}</tool_call> next')
    assert out == [call("Read", "{}"), text(" next")]


def test_call_is_not_shown_before_it_is_complete() -> None:
    parser = TextCallParser(CALLS, TOOLS)
    assert parser.feed('ok <tool_call>{"name": "Read", "arguments": {"file_path": "/a"') == [
        text("ok ")
    ]
    assert parser.feed("}}</tool_call>") == [call("Read", '{"file_path": "/a"}')]


def test_qwen3_coder_values_coerce_through_the_tool_schema() -> None:
    segments = parse_complete(
        "<tool_call>\n<function=Bash>\n<parameter=command>\nls\n</parameter>\n"
        "<parameter=timeout>\n5000\n</parameter>\n</function>\n</tool_call>",
        ALL,
        TOOLS,
    )
    schema = {"properties": {"command": {"type": "string"}, "timeout": {"type": "number"}}}
    assert repair_arguments(segments[0].arguments, schema) == {"command": "ls", "timeout": 5000}


def test_unknown_format_is_rejected() -> None:
    with pytest.raises(ValueError, match="pythonic"):
        TextCallParser(["hermes", "pythonic"], TOOLS)


# -- properties -------------------------------------------------------------------------

FRAGMENTS = [
    "<tool_call>",
    "</tool_call>",
    "<tool_",
    "</tool",
    "<think>",
    "</think>",
    "<thi",
    "<function=Read>",
    "<function=",
    "<parameter=file_path>",
    "</parameter>",
    "</function>",
    '{"name": "Read", "arguments": {}}',
    '{"name": "Read", "arguments": {"a": "</tool_call>',
    "```json",
    "<",
    "</",
    "{",
    '"',
    "\n",
    " ",
]
noise = st.lists(
    st.sampled_from(FRAGMENTS) | st.text(alphabet='ab <>/{}"\n=_', max_size=6), max_size=25
).map("".join)


def split(data: st.DataObject, source: str) -> list[str]:
    cuts = data.draw(st.lists(st.integers(0, len(source)), max_size=12).map(sorted))
    bounds = [0, *cuts, len(source)]
    return [source[a:b] for a, b in itertools.pairwise(bounds)]


@settings(max_examples=400, deadline=None)
@given(
    source=noise, data=st.data(), formats=st.sampled_from([CALLS, ("hermes",), ("qwen3_coder",)])
)
def test_without_a_valid_call_output_text_equals_input_for_any_chunking(
    source: str, data: st.DataObject, formats: tuple[str, ...]
) -> None:
    segments = run(split(data, source), formats, tools=())
    assert all(s.kind == "text" for s in segments)
    assert "".join(s.text for s in segments) == source


@settings(max_examples=200, deadline=None)
@given(source=noise, data=st.data())
def test_with_think_format_text_is_kept_unless_output_opens_with_think(
    source: str, data: st.DataObject
) -> None:
    assume(not source.lstrip().startswith("<think>"))
    segments = run(split(data, source), ALL, tools=())
    assert "".join(s.text for s in segments) == source


VALID_CALLS = [
    '<tool_call>{"name": "Read", "arguments": {"file_path": "/a"}}</tool_call>',
    '<tool_call>\n{"name": "Bash", "arguments": {"command": "a < b"}}\n</tool_call>',
    "<tool_call>\n<function=Bash>\n<parameter=command>\nx < y\n</parameter>\n</function>\n"
    "</tool_call>",
    '<tool_call>{"name": "Unknown", "arguments": {}}</tool_call>',
]


@settings(max_examples=300, deadline=None)
@given(
    parts=st.lists(st.sampled_from(VALID_CALLS) | noise, max_size=6),
    data=st.data(),
    in_thinking=st.booleans(),
)
def test_segments_do_not_depend_on_chunking(
    parts: list[str], data: st.DataObject, in_thinking: bool
) -> None:
    source = "".join(parts)
    whole = parse_complete(source, ALL, TOOLS, start_in_thinking=in_thinking)
    assert run(split(data, source), ALL, start_in_thinking=in_thinking) == whole
    assert run(list(source), ALL, start_in_thinking=in_thinking) == whole
