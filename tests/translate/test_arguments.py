"""repair_arguments / dumps_arguments: valid, typed JSON objects from whatever models emit."""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from anyclaude.translate.arguments import (
    REPAIR_LIMIT,
    dumps_arguments,
    loads_lenient,
    repair_arguments,
)

REPAIR_CASES: list[tuple[str, str | dict[str, object] | None, dict[str, object] | None]] = [
    ("none_is_empty_object", None, {}),
    ("empty_string_is_empty_object", "", {}),
    ("whitespace_is_empty_object", " \n\t ", {}),
    ("json_null_is_empty_object", "null", {}),
    ("valid_object", '{"file_path": "/a", "limit": 5}', {"file_path": "/a", "limit": 5}),
    ("surrounding_whitespace", '\n  {"a": 1}\n', {"a": 1}),
    ("double_encoded", json.dumps(json.dumps({"a": 1, "b": [1, 2]})), {"a": 1, "b": [1, 2]}),
    ("triple_encoded", json.dumps(json.dumps(json.dumps({"a": 1}))), {"a": 1}),
    ("code_fence_with_language", '```json\n{"a": 1}\n```', {"a": 1}),
    ("code_fence_without_language", '```\n{"a": 1}\n```', {"a": 1}),
    ("code_fence_single_line", '```{"a": 1}```', {"a": 1}),
    ("unclosed_code_fence", '```json\n{"a": 1}', {"a": 1}),
    ("trailing_comma", '{"a": 1, "b": 2,}', {"a": 1, "b": 2}),
    ("missing_closing_brace", '{"a": {"b": 1}', {"a": {"b": 1}}),
    ("missing_closing_quote_and_brace", '{"command": "ls -la', {"command": "ls -la"}),
    ("single_quotes", "{'a': 'x', 'b': 2}", {"a": "x", "b": 2}),
    ("unicode_kept", '{"text": "héllo ✓"}', {"text": "héllo ✓"}),
    ("array_is_unrepairable", "[1, 2, 3]", None),
    ("number_is_unrepairable", "42", None),
    ("prose_is_unrepairable", "I cannot call this tool", None),
    ("plain_string_is_unrepairable", '"just text"', None),
    ("dict_used_as_is", {"a": "x", "b": 2}, {"a": "x", "b": 2}),
]


@pytest.mark.parametrize(
    ("raw", "expected"), [c[1:] for c in REPAIR_CASES], ids=[c[0] for c in REPAIR_CASES]
)
def test_repair_gives_an_object_or_none(
    raw: str | dict[str, object] | None, expected: dict[str, object] | None
) -> None:
    assert repair_arguments(raw, None) == expected


SCHEMA: dict[str, object] = {
    "type": "object",
    "properties": {
        "count": {"type": "integer"},
        "ratio": {"type": "number"},
        "flag": {"type": "boolean"},
        "tags": {"type": "array", "items": {"type": "integer"}},
        "options": {
            "type": "object",
            "properties": {"depth": {"type": "integer"}, "name": {"type": "string"}},
            "additionalProperties": {"type": "boolean"},
        },
        "nothing": {"type": "null"},
        "maybe": {"type": ["integer", "null"]},
        "either": {"anyOf": [{"type": "number"}, {"type": "boolean"}]},
        "text": {"type": "string"},
        "loose": {"type": ["string", "integer"]},
        "pair": {"type": "array", "prefixItems": [{"type": "integer"}, {"type": "boolean"}]},
        "untyped": {},
    },
}

COERCE_CASES: list[tuple[str, dict[str, object], dict[str, object]]] = [
    ("integer_string", {"count": "5"}, {"count": 5}),
    ("negative_integer_string", {"count": " -12 "}, {"count": -12}),
    ("integral_float_string_for_integer", {"count": "5.0"}, {"count": 5}),
    ("non_integral_for_integer_stays", {"count": "5.5"}, {"count": "5.5"}),
    ("number_string", {"ratio": "2.5"}, {"ratio": 2.5}),
    ("number_string_integral", {"ratio": "3"}, {"ratio": 3}),
    ("exponent_number", {"ratio": "1e3"}, {"ratio": 1000.0}),
    ("bool_true_any_case", {"flag": "TRUE"}, {"flag": True}),
    ("bool_false", {"flag": "false"}, {"flag": False}),
    ("bad_bool_stays", {"flag": "yes"}, {"flag": "yes"}),
    ("array_text", {"tags": "[1, 2]"}, {"tags": [1, 2]}),
    ("array_text_items_coerced", {"tags": '["1", "2"]'}, {"tags": [1, 2]}),
    ("broken_array_text_repaired", {"tags": "[1, 2,"}, {"tags": [1, 2]}),
    ("object_text", {"options": '{"depth": "3"}'}, {"options": {"depth": 3}}),
    (
        "nested_object_property",
        {"options": {"depth": "2", "name": "7"}},
        {"options": {"depth": 2, "name": "7"}},
    ),
    ("additional_properties_schema", {"options": {"extra": "true"}}, {"options": {"extra": True}}),
    ("null_text", {"nothing": "null"}, {"nothing": None}),
    ("type_list", {"maybe": "7"}, {"maybe": 7}),
    ("type_list_null", {"maybe": "NULL"}, {"maybe": None}),
    ("any_of", {"either": "true"}, {"either": True}),
    ("string_schema_keeps_string", {"text": "5"}, {"text": "5"}),
    ("string_in_type_list_keeps_string", {"loose": "5"}, {"loose": "5"}),
    ("prefix_items", {"pair": '["1", "false"]'}, {"pair": [1, False]}),
    ("unknown_property_untouched", {"other": "5"}, {"other": "5"}),
    ("untyped_property_untouched", {"untyped": "5"}, {"untyped": "5"}),
    ("failed_conversion_stays", {"count": "five"}, {"count": "five"}),
    ("nan_is_not_a_number", {"ratio": "nan"}, {"ratio": "nan"}),
    ("infinity_is_not_a_number", {"ratio": "1e999"}, {"ratio": "1e999"}),
    ("underscored_digits_stay", {"count": "1_000"}, {"count": "1_000"}),
    ("huge_integer_string", {"count": "9" * 5000}, {"count": "9" * 5000}),
    ("already_typed_untouched", {"count": 3, "flag": True}, {"count": 3, "flag": True}),
]


@pytest.mark.parametrize(
    ("raw", "expected"), [c[1:] for c in COERCE_CASES], ids=[c[0] for c in COERCE_CASES]
)
def test_string_values_are_coerced_to_the_schema_type(
    raw: dict[str, object], expected: dict[str, object]
) -> None:
    assert repair_arguments(raw, SCHEMA) == expected
    assert repair_arguments(json.dumps(raw), SCHEMA) == expected


def test_xml_style_raw_values_are_coerced() -> None:
    raw: dict[str, object] = {"count": "10", "text": "a < b\n", "flag": "True"}
    assert repair_arguments(raw, SCHEMA) == {"count": 10, "text": "a < b\n", "flag": True}


def test_input_dict_and_schema_are_not_mutated() -> None:
    raw: dict[str, object] = {"count": "1", "options": {"depth": "2"}, "tags": ["3"]}
    before_raw, before_schema = copy.deepcopy(raw), copy.deepcopy(SCHEMA)
    result = repair_arguments(raw, SCHEMA)
    assert result == {"count": 1, "options": {"depth": 2}, "tags": [3]}
    assert raw == before_raw
    assert before_schema == SCHEMA


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        ({"properties": None}, "[1]"),
        ({"properties": {"a": None}}, "[1]"),
        ({"properties": {"a": {"type": 5}}}, "[1]"),
        ({"properties": {"a": {"anyOf": "x"}}}, "[1]"),
        ({"properties": {"a": {"items": [1, "x"]}}}, "[1]"),
        ({"properties": {"a": {"type": ["array", 7], "prefixItems": "x"}}}, [1]),
        ({"properties": {"a": {"anyOf": [None, {"type": "array"}]}}}, [1]),
        ({"additionalProperties": {"type": "array", "items": 3}}, [1]),
        ({"type": "object", "properties": {"a": {"type": "array", "items": True}}}, [1]),
    ],
)
def test_malformed_schemas_never_raise(schema: dict[str, object], expected: object) -> None:
    """What a schema cannot say is ignored; what it can say still coerces."""
    assert repair_arguments('{"a": "[1]"}', schema) == {"a": expected}


def json_values(depth: int = 3) -> st.SearchStrategy[object]:
    scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
        max_leaves=12,
    )


schema_like = st.recursive(
    st.fixed_dictionaries(
        {},
        optional={
            "type": st.sampled_from(
                ["integer", "number", "boolean", "array", "object", "null", "string"]
            )
            | st.lists(st.sampled_from(["integer", "null", "array", "string"]), max_size=3),
        },
    ),
    lambda inner: st.fixed_dictionaries(
        {},
        optional={
            "type": st.sampled_from(["object", "array"]),
            "properties": st.dictionaries(st.sampled_from(["a", "b", "c"]), inner, max_size=3),
            "items": inner,
            "anyOf": st.lists(inner, max_size=3),
            "additionalProperties": inner | st.booleans(),
        },
    ),
    max_leaves=10,
)


def json_like_text() -> st.SearchStrategy[str]:
    """Text a model might send: JSON, cut JSON, JSON-ish punctuation soup, fenced JSON."""
    whole = json_values().map(json.dumps)
    return st.one_of(
        st.text(),
        whole,
        st.tuples(whole, st.integers(0, 30)).map(lambda t: t[0][: t[1]]),
        st.text(alphabet="{}[]\":,'` \n0123456789.-etrufalsn", max_size=30),
        whole.map(lambda t: f"```json\n{t}\n```"),
    )


@settings(max_examples=300, deadline=None)
@given(
    raw=st.none() | json_like_text()
    | st.dictionaries(st.sampled_from(["a", "b", "c"]), json_values()),
    schema=schema_like,
)
@example(raw="[" * 50_000, schema={})
@example(raw='{"a":' * 20_000, schema={})
@example(raw='"' + "[" * 50_000 + '"', schema={})
def test_repair_never_raises_and_returns_a_json_object_or_none(
    raw: str | dict[str, object] | None, schema: Mapping[str, object]
) -> None:
    result = repair_arguments(raw, schema)
    assert result is None or isinstance(result, dict)
    if result is not None:
        json.dumps(result)


def test_dumps_arguments_is_the_canonical_form() -> None:
    obj: dict[str, object] = {"z": 1, "a": {"k": [1, "é"]}, "m": None}
    assert dumps_arguments(obj) == '{"z": 1, "a": {"k": [1, "é"]}, "m": null}'


@settings(max_examples=200)
@given(obj=st.dictionaries(st.text(), json_values()))
def test_dumps_arguments_is_byte_stable_and_round_trips(obj: dict[str, object]) -> None:
    text = dumps_arguments(obj)
    assert text == dumps_arguments(copy.deepcopy(obj))
    assert json.loads(text) == obj
    assert dumps_arguments(json.loads(text)) == text


def test_repaired_arguments_dump_to_valid_json_for_upstream() -> None:
    repaired = repair_arguments("{'command': 'ls', 'timeout': '5',", SCHEMA)
    assert repaired is not None
    assert json.loads(dumps_arguments(repaired)) == {"command": "ls", "timeout": "5"}


def test_broken_json_beyond_the_repair_limit_is_unrepairable_not_slow() -> None:
    """json_repair runs on the event loop at ~5 µs a character: above REPAIR_LIMIT broken
    arguments are refused (the caller writes a note), valid ones of any size still parse."""
    def broken(size: int) -> str:
        return "{'content': '" + "x" * (size - 15) + "'}"

    assert len(broken(REPAIR_LIMIT)) == REPAIR_LIMIT
    assert repair_arguments(broken(REPAIR_LIMIT), None) == {"content": "x" * (REPAIR_LIMIT - 15)}
    assert loads_lenient(broken(REPAIR_LIMIT + 1)) is None
    assert repair_arguments(broken(4 * 1024 * 1024), None) is None
    big = json.dumps({"content": "y" * (4 * 1024 * 1024)})
    assert repair_arguments(big, None) == {"content": "y" * (4 * 1024 * 1024)}
