"""Tool schemas and tool names as local servers can take them.

Claude Code's tool schemas carry keywords that strict validators and grammar compilers
reject (``$schema``, ``format: uri``, ``propertyNames``, ``required: null``), and MCP tool
names can exceed the 64 characters OpenAI-style servers allow. Both rewrites are pure and
deterministic: the same input gives byte-identical output, which keeps prompt caches warm.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from typing import Any, Literal

__all__ = ["STRICT_FORMATS", "Profile", "ToolNameMap", "clean_schema"]

Profile = Literal["minimal", "grammar", "strict", "outlines"]

_ALWAYS = frozenset({"$schema", "$id", "$comment"})
_DROP: dict[str, frozenset[str]] = {
    # mlx-lm: the schema only goes into the prompt text.
    "minimal": _ALWAYS,
    # LM Studio / llama.cpp compile schemas into a GBNF grammar and choke on these.
    "grammar": _ALWAYS
    | {"pattern", "format", "minLength", "maxLength", "minItems", "maxItems", "propertyNames"},
    # OpenAI-strict style validators and guided decoding.
    "strict": _ALWAYS | {"default", "pattern"},
    # outlines (mlx-textgen's tool-call grammar): no `format` ("Format uri is not supported"),
    # and every property needs a type (see `_typed`).
    "outlines": _ALWAYS
    | {"pattern", "format", "minLength", "maxLength", "minItems", "maxItems", "propertyNames"},
}
_SAYS_WHAT = frozenset({"type", "anyOf", "oneOf", "allOf", "enum", "const", "$ref"})
_ANY_JSON: tuple[dict[str, object], ...] = tuple(
    {"type": kind} for kind in ("string", "number", "boolean", "object", "array", "null"))
STRICT_FORMATS = frozenset({"date-time", "date", "time", "email", "uuid"})

# Keywords whose values are subschemas (everything else is copied as data).
_ONE = frozenset(
    {
        "items",
        "additionalProperties",
        "additionalItems",
        "unevaluatedProperties",
        "unevaluatedItems",
        "contains",
        "not",
        "if",
        "then",
        "else",
        "propertyNames",
    }
)
_LIST = frozenset({"anyOf", "oneOf", "allOf", "prefixItems", "items"})
_NAMED = frozenset({"properties", "$defs", "definitions", "patternProperties", "dependentSchemas"})


def clean_schema(schema: object, profile: Profile) -> dict[str, object]:
    """A cleaned copy of a tool's ``input_schema``; the input is never mutated.

    The top level always becomes ``{"type": "object", "properties": {...}, ...}``, since
    mlx-textgen (pydantic) and most servers require exactly that shape.
    """
    if profile not in _DROP:
        raise ValueError(f"unknown schema profile: {profile!r}")
    root = (
        _clean(schema, _DROP[profile], profile == "strict") if isinstance(schema, Mapping) else {}
    )
    if profile == "outlines":
        root = _typed(root)
    out: dict[str, object] = {}
    if "type" not in root:
        out["type"] = "object"
        if "properties" not in root:
            out["properties"] = {}
    for key, value in root.items():
        if key == "type":
            out["type"] = "object"
            if "properties" not in root:
                out["properties"] = {}
        elif key == "properties":
            out[key] = value if isinstance(value, dict) else {}
        else:
            out[key] = value
    return out


def _clean(node: Mapping[Any, Any], drop: frozenset[str], strict: bool) -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in node.items():
        if key in drop:
            continue
        if key == "format" and strict and not (isinstance(value, str) and value in STRICT_FORMATS):
            continue
        if key == "required" and not (isinstance(value, list) and value):
            continue
        if key in _NAMED and isinstance(value, Mapping):
            out[key] = {name: _sub(sub, drop, strict) for name, sub in value.items()}
        elif key in _LIST and isinstance(value, list):
            out[key] = [_sub(sub, drop, strict) for sub in value]
        elif key in _ONE:
            out[key] = _sub(value, drop, strict)
        else:
            out[key] = _copy(value)
    return out


def _typed(node: dict[str, object]) -> dict[str, object]:
    """Give every property and item schema that says nothing about its values (a bare
    description) an explicit "any JSON value", which outlines can compile."""
    out = dict(node)
    properties = out.get("properties")
    if isinstance(properties, dict):
        out["properties"] = {name: _typed_value(sub) for name, sub in properties.items()}
    for key in ("items", "additionalProperties"):
        if isinstance(out.get(key), dict):
            out[key] = _typed_value(out[key])
    for key in ("anyOf", "oneOf", "allOf"):
        value = out.get(key)
        if isinstance(value, list):
            out[key] = [_typed(v) if isinstance(v, dict) else v for v in value]
    return out


def _typed_value(sub: object) -> object:
    if not isinstance(sub, dict):
        return sub
    if _SAYS_WHAT.isdisjoint(sub):  # its own items and properties get the same treatment
        return _typed({**sub, "anyOf": [dict(kind) for kind in _ANY_JSON]})
    return _typed(sub)


def _sub(value: object, drop: frozenset[str], strict: bool) -> object:
    """A subschema: cleaned when it is an object; booleans and the like copied as is."""
    return _clean(value, drop, strict) if isinstance(value, Mapping) else _copy(value)


def _copy(value: object) -> object:
    """Deep copy of JSON data (enum, const, default, examples), so output never aliases input."""
    if isinstance(value, Mapping):
        return {key: _copy(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_copy(item) for item in value]
    return value


# -- tool names -------------------------------------------------------------------------

_HASH_LEN = 8
_MIN_LIMIT = 16
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


class ToolNameMap:
    """Shortens tool names over a server's length limit, and maps them back.

    A long name becomes ``<sanitised prefix>_<8 hex of sha256>``: readable, stable across
    requests (it depends only on the name unless a collision forces a salt) and made of
    ``[A-Za-z0-9_-]`` only. Names within the limit pass through unchanged.
    """

    def __init__(self, names: Iterable[str], max_length: int | None = 64) -> None:
        if max_length is not None and max_length < _MIN_LIMIT:
            raise ValueError(f"max_length must be at least {_MIN_LIMIT} or None")
        self._limit = max_length
        self._up: dict[str, str] = {}
        self._down: dict[str, str] = {}
        unique = list(dict.fromkeys(names))
        self._kept = frozenset(n for n in unique if not self._too_long(n))
        for name in sorted(n for n in unique if self._too_long(n)):
            self._register(name)

    def to_upstream(self, name: str) -> str:
        """The name to send upstream; long names not offered (e.g. in history) map too."""
        alias = self._up.get(name)
        if alias is not None:
            return alias
        if not self._too_long(name):
            return name
        return self._register(name)

    def from_upstream(self, name: str) -> str:
        """The original name for an upstream name; unknown names come back unchanged."""
        return self._down.get(name, name)

    def _too_long(self, name: str) -> bool:
        return self._limit is not None and len(name) > self._limit

    def _register(self, name: str) -> str:
        assert self._limit is not None
        prefix = _UNSAFE.sub("_", name)[: self._limit - _HASH_LEN - 1]
        salt = 0
        while True:
            seed = name if salt == 0 else f"{name}\x00{salt}"
            digest = hashlib.sha256(seed.encode("utf-8", "surrogatepass")).hexdigest()
            alias = f"{prefix}_{digest[:_HASH_LEN]}"
            if alias not in self._kept and alias not in self._down:
                break
            salt += 1
        self._up[name] = alias
        self._down[alias] = name
        return alias
