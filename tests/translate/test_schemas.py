"""clean_schema and ToolNameMap: what local servers accept, deterministic for prompt caches."""

from __future__ import annotations

import copy
import json
import re
from typing import Any, get_args

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from anyclaude.translate.schemas import Profile, ToolNameMap, clean_schema

PROFILES: tuple[Profile, ...] = get_args(Profile)

# Shaped like Claude Code's WebFetch / Grep schemas, with the keywords servers choke on.
CLAUDE_LIKE: dict[str, Any] = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "type": "object",
    "properties": {
        "url": {"type": "string", "format": "uri", "description": "URL"},
        "when": {"type": "string", "format": "date-time"},
        "pattern": {"type": "string", "pattern": "^[a-z]+$", "minLength": 1, "maxLength": 9},
        "format": {"type": "string", "default": "json", "$comment": "a property named format"},
        "paths": {
            "type": "array",
            "items": {"type": "string", "format": "uri", "$id": "#item"},
            "minItems": 1,
            "maxItems": 5,
        },
        "headers": {
            "type": "object",
            "propertyNames": {"pattern": "^[A-Z]"},
            "additionalProperties": {"type": "string", "pattern": "x", "$schema": "s"},
        },
        "mode": {
            "anyOf": [{"type": "string", "format": "email"}, {"$ref": "#/$defs/Mode"}],
            "default": "x",
        },
        "point": {"type": "array", "prefixItems": [{"type": "number", "$comment": "c"}]},
        "nested": {"type": "object", "properties": {"deep": {"type": "integer"}}, "required": None},
    },
    "required": ["url"],
    "additionalProperties": False,
    "$defs": {"Mode": {"type": "string", "enum": ["a", "b"], "$id": "mode"}},
    "definitions": {"Old": {"oneOf": [{"type": "integer", "$comment": "c"}], "allOf": []}},
}

PROPS_MINIMAL = {
    "url": {"type": "string", "format": "uri", "description": "URL"},
    "when": {"type": "string", "format": "date-time"},
    "pattern": {"type": "string", "pattern": "^[a-z]+$", "minLength": 1, "maxLength": 9},
    "format": {"type": "string", "default": "json"},
    "paths": {
        "type": "array",
        "items": {"type": "string", "format": "uri"},
        "minItems": 1,
        "maxItems": 5,
    },
    "headers": {
        "type": "object",
        "propertyNames": {"pattern": "^[A-Z]"},
        "additionalProperties": {"type": "string", "pattern": "x"},
    },
    "mode": {
        "anyOf": [{"type": "string", "format": "email"}, {"$ref": "#/$defs/Mode"}],
        "default": "x",
    },
    "point": {"type": "array", "prefixItems": [{"type": "number"}]},
    "nested": {"type": "object", "properties": {"deep": {"type": "integer"}}},
}
PROPS_GRAMMAR = {
    "url": {"type": "string", "description": "URL"},
    "when": {"type": "string"},
    "pattern": {"type": "string"},
    "format": {"type": "string", "default": "json"},
    "paths": {"type": "array", "items": {"type": "string"}},
    "headers": {"type": "object", "additionalProperties": {"type": "string"}},
    "mode": {"anyOf": [{"type": "string"}, {"$ref": "#/$defs/Mode"}], "default": "x"},
    "point": {"type": "array", "prefixItems": [{"type": "number"}]},
    "nested": {"type": "object", "properties": {"deep": {"type": "integer"}}},
}
PROPS_STRICT = {
    "url": {"type": "string", "description": "URL"},
    "when": {"type": "string", "format": "date-time"},
    "pattern": {"type": "string", "minLength": 1, "maxLength": 9},
    "format": {"type": "string"},
    "paths": {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 5},
    "headers": {
        "type": "object",
        "propertyNames": {},
        "additionalProperties": {"type": "string"},
    },
    "mode": {"anyOf": [{"type": "string", "format": "email"}, {"$ref": "#/$defs/Mode"}]},
    "point": {"type": "array", "prefixItems": [{"type": "number"}]},
    "nested": {"type": "object", "properties": {"deep": {"type": "integer"}}},
}


def expected(props: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": props,
        "required": ["url"],
        "additionalProperties": False,
        "$defs": {"Mode": {"type": "string", "enum": ["a", "b"]}},
        "definitions": {"Old": {"oneOf": [{"type": "integer"}], "allOf": []}},
    }


@pytest.mark.parametrize(
    ("profile", "props"),
    [("minimal", PROPS_MINIMAL), ("grammar", PROPS_GRAMMAR), ("strict", PROPS_STRICT)],
)
def test_each_profile_drops_exactly_its_keywords_everywhere(
    profile: Profile, props: dict[str, Any]
) -> None:
    cleaned = clean_schema(CLAUDE_LIKE, profile)
    assert cleaned == expected(props)
    assert list(cleaned) == list(expected(props))  # key order preserved
    assert list(cleaned["properties"]) == list(CLAUDE_LIKE["properties"])  # type: ignore[call-overload]


@pytest.mark.parametrize(
    ("schema", "result"),
    [
        ({}, {"type": "object", "properties": {}}),
        (None, {"type": "object", "properties": {}}),
        ("not a schema", {"type": "object", "properties": {}}),
        ({"properties": {"a": {}}}, {"type": "object", "properties": {"a": {}}}),
        ({"type": "object"}, {"type": "object", "properties": {}}),
        (
            {"description": "d", "type": "object", "required": ["a"]},
            {"description": "d", "type": "object", "properties": {}, "required": ["a"]},
        ),
        ({"type": ["object", "null"], "properties": None}, {"type": "object", "properties": {}}),
        (
            {"type": "object", "properties": {}, "required": None},
            {"type": "object", "properties": {}},
        ),
        (
            {"type": "object", "properties": {}, "required": []},
            {"type": "object", "properties": {}},
        ),
        (
            {"type": "object", "properties": {}, "required": "a"},
            {"type": "object", "properties": {}},
        ),
    ],
)
def test_top_level_becomes_an_object_with_properties_and_bad_required_is_dropped(
    schema: object, result: dict[str, object]
) -> None:
    for profile in PROFILES:
        if profile == "outlines":
            continue  # types an untyped property: tests/translate/test_server_dialects.py
        cleaned = clean_schema(schema, profile)
        assert cleaned == result
        assert list(cleaned)[:2] == ["type", "properties"] or "description" in cleaned


def test_boolean_subschemas_are_kept() -> None:
    schema = {"type": "object", "properties": {"a": True, "b": False}, "additionalProperties": True}
    assert clean_schema(schema, "grammar") == schema


def test_unknown_profile_is_rejected() -> None:
    with pytest.raises(ValueError, match="profile"):
        clean_schema({}, "gemini")  # type: ignore[arg-type]


json_leaf = st.none() | st.booleans() | st.integers() | st.text(max_size=5)
KEYWORDS = [
    "type", "properties", "items", "anyOf", "required", "format", "pattern", "default",
    "$schema", "$id", "$comment", "minLength", "propertyNames", "additionalProperties",
    "$defs", "enum", "description", "prefixItems",
]  # fmt: skip
schemas = st.recursive(
    st.dictionaries(st.sampled_from(KEYWORDS), json_leaf, max_size=4),
    lambda inner: st.dictionaries(
        st.sampled_from(KEYWORDS),
        inner
        | st.lists(inner, max_size=3)
        | st.dictionaries(st.text(max_size=4), inner, max_size=3),
        max_size=5,
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(schema=schemas, profile=st.sampled_from(PROFILES))
@example(schema={"items": {"items": {}}}, profile="outlines")  # found by hypothesis once
def test_cleaning_is_deterministic_and_never_mutates_or_aliases_the_input(
    schema: dict[str, Any], profile: Profile
) -> None:
    before = copy.deepcopy(schema)
    first = clean_schema(schema, profile)
    second = clean_schema(copy.deepcopy(schema), profile)
    assert json.dumps(first) == json.dumps(second)
    assert schema == before
    assert first["type"] == "object" and isinstance(first["properties"], dict)
    # Mutating the output must not reach the input.
    for value in first.values():
        if isinstance(value, dict | list):
            value.clear()
    assert schema == before
    # Cleaning is idempotent.
    assert clean_schema(second, profile) == second


# -- tool names ---------------------------------------------------------------------------

SAFE = re.compile(r"[A-Za-z0-9_-]+")
LONG = "mcp__claude-in-chrome__" + "very_long_tool_name_" * 4


def test_names_within_the_limit_pass_through() -> None:
    names = ToolNameMap(["Read", "mcp__srv__x"], 64)
    assert names.to_upstream("Read") == "Read"
    assert names.from_upstream("Read") == "Read"


def test_long_name_is_shortened_readably_and_round_trips() -> None:
    names = ToolNameMap(["Read", LONG], 64)
    alias = names.to_upstream(LONG)
    assert len(alias) <= 64
    assert SAFE.fullmatch(alias)
    assert alias.startswith("mcp__claude-in-chrome__very_long")
    assert names.from_upstream(alias) == LONG


def test_shortening_is_stable_across_instances_and_tool_order() -> None:
    other = LONG + "_other"
    a = ToolNameMap([LONG, other, "Read"], 64)
    b = ToolNameMap(["Read", other, LONG], 64)
    assert a.to_upstream(LONG) == b.to_upstream(LONG) == ToolNameMap([LONG], 64).to_upstream(LONG)
    assert a.to_upstream(other) == b.to_upstream(other)


def test_unlimited_length_keeps_every_name() -> None:
    names = ToolNameMap([LONG], None)
    assert names.to_upstream(LONG) == LONG
    assert names.from_upstream(LONG) == LONG


def test_unknown_upstream_names_come_back_unchanged() -> None:
    assert ToolNameMap([LONG], 64).from_upstream("Hallucinated") == "Hallucinated"


def test_long_name_not_offered_still_maps_both_ways() -> None:
    names = ToolNameMap(["Read"], 64)
    alias = names.to_upstream(LONG)
    assert len(alias) <= 64 and names.from_upstream(alias) == LONG
    assert names.to_upstream(LONG) == alias


def test_alias_never_collides_with_an_offered_short_name() -> None:
    taken = ToolNameMap([LONG], 64).to_upstream(LONG)
    names = ToolNameMap([LONG, taken], 64)
    assert names.to_upstream(taken) == taken
    assert names.to_upstream(LONG) != taken
    assert names.from_upstream(names.to_upstream(LONG)) == LONG


def test_unsafe_characters_are_replaced_in_aliases() -> None:
    name = "mcp__srv.with.dots__tool/with/slashes ünïcode " + "x" * 60
    alias = ToolNameMap([name], 64).to_upstream(name)
    assert SAFE.fullmatch(alias) and len(alias) <= 64


def test_too_small_limit_is_rejected() -> None:
    with pytest.raises(ValueError):
        ToolNameMap([], 8)


@settings(max_examples=300, deadline=None)
@given(
    names=st.lists(
        st.text(min_size=1, max_size=90)
        | st.builds(lambda tail: LONG[:50] + tail, st.text(max_size=30)),
        max_size=20,
        unique=True,
    ),
    limit=st.integers(16, 70),
)
def test_aliases_are_unique_bounded_safe_and_round_trip(names: list[str], limit: int) -> None:
    mapping = ToolNameMap(names, limit)
    upstream = [mapping.to_upstream(n) for n in names]
    assert len(set(upstream)) == len(names)
    for name, alias in zip(names, upstream, strict=True):
        assert mapping.from_upstream(alias) == name
        if len(name) > limit:
            assert len(alias) <= limit and SAFE.fullmatch(alias)
        else:
            assert alias == name
