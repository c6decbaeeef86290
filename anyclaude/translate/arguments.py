"""Tool-call arguments: repair what local models emit and coerce it to the tool's schema.

Local models hand back arguments as broken JSON, double-encoded JSON, fenced code or
(Qwen3-Coder XML) a dict of raw strings. Claude Code needs a JSON object whose values
have the schema's types, and upstream servers ``json.loads`` the arguments we send back
(mlx-lm answers invalid JSON with 404), so every argument goes through this module.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

from json_repair import loads as _repair_loads

__all__ = ["REPAIR_LIMIT", "dumps_arguments", "loads_lenient", "repair_arguments",
           "strip_code_fence", "unclosed"]

# Bounds that keep hostile or pathological input from recursing without end.
_MAX_UNWRAP = 3
_MAX_DEPTH = 64
_MAX_BRANCH_DEPTH = 8

REPAIR_LIMIT = 16 * 1024
"""Characters above which broken JSON is not repaired but treated as unrepairable.

json_repair is pure Python at about 5 µs a character, and the translator runs on the
proxy's event loop, one call per answer: 256 KB of broken arguments held every other
request (even /health) for seconds. A pure translator cannot move the work elsewhere, so
it bounds it: 16 KiB costs well under 0.1 s, valid JSON of any size still parses (strictly,
in C), and a huge broken call becomes a text note the model can act on."""

_LANG_TAG = re.compile(r"[A-Za-z0-9_+.-]*")
_INT = re.compile(r"[+-]?\d+")
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")


def repair_arguments(
    raw: str | dict[str, object] | None, schema: Mapping[str, object] | None
) -> dict[str, object] | None:
    """Turn raw tool arguments into a JSON object typed by ``schema``.

    Returns ``None`` when nothing object-like can be recovered: the caller then shows the
    model's text instead of a call (or drops a call cut off by ``max_tokens``).
    Never raises, whatever the model sent and whatever the schema says: every step checks
    the types it reads and bounds its depth (the property tests hold it to that), so a
    bug shows up as a failing test instead of a silently uncoerced call.
    """
    obj = _to_object(raw)
    if obj is None or not isinstance(schema, Mapping):
        return obj
    return _coerce_dict(obj, _branches(schema, 0), 0)


def dumps_arguments(obj: Mapping[str, object]) -> str:
    """Canonical argument JSON sent upstream: key order kept, byte-stable for prompt caches."""
    data = obj if isinstance(obj, dict) else dict(obj)
    return json.dumps(data, ensure_ascii=False, separators=(", ", ": "))


# -- decoding -------------------------------------------------------------------------


def _to_object(raw: object) -> dict[str, object] | None:
    if raw is None:
        return {}
    if isinstance(raw, Mapping):
        return {str(k): v for k, v in raw.items()}
    if not isinstance(raw, str):
        return None
    return _decode(raw, 0)


def _decode(text: str, depth: int) -> dict[str, object] | None:
    text = strip_code_fence(text.strip())
    if not text:
        return {}
    value = loads_lenient(text)
    if isinstance(value, dict):
        return value
    if value is None and text == "null":
        return {}  # some servers send "null" for calls without arguments
    # Double encoding: a JSON string whose content is itself the arguments object.
    if isinstance(value, str) and text[0] in "\"'" and depth < _MAX_UNWRAP:
        return _decode(value, depth + 1)
    return None


def loads_lenient(text: str) -> Any:
    """Strict JSON first (fast, exact), ``json_repair`` only for broken text; None if hopeless."""
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        pass
    if len(text) > REPAIR_LIMIT:
        return None
    try:
        return _repair_loads(text)
    except (ValueError, RecursionError):  # json_repair gives up, or the nesting is too deep
        return None


_JSON_TOKEN = re.compile(r'[\\"{}\[\]]')


def unclosed(raw: str | Mapping[str, object] | None) -> bool:
    """Whether raw arguments stop before their JSON does: nothing at all, inside a string,
    or with an object or array still open. That is what a cut at max_tokens leaves, and
    repairing it would close a truncated command or file as if it were complete."""
    if not isinstance(raw, str):
        return False
    text = strip_code_fence(raw.strip())
    if not text:
        return True
    try:
        json.loads(text)
        return False
    except (ValueError, RecursionError):
        pass
    depth, inside, pos = 0, False, 0
    while (match := _JSON_TOKEN.search(text, pos)) is not None:
        token, pos = match.group(), match.end()
        if token == '"':
            inside = not inside
        elif token == "\\":
            pos += 1 if inside else 0  # in a string, a backslash escapes the next character
        elif not inside:
            depth += 1 if token in "{[" else -1
    return inside or depth > 0


def strip_code_fence(text: str) -> str:
    """Remove a Markdown code fence (```json ... ```) around ``text``, also an unclosed one."""
    if not text.startswith("```"):
        return text
    body = text[3:]
    newline = body.find("\n")
    if newline >= 0 and _LANG_TAG.fullmatch(body[:newline].strip()):
        body = body[newline + 1 :]
    body = body.rstrip()
    if body.endswith("```"):
        body = body[:-3]
    return body.strip()


# -- schema coercion ------------------------------------------------------------------


def _branches(schema: Mapping[str, object], depth: int) -> list[Mapping[str, Any]]:
    """The schema plus its anyOf/oneOf/allOf alternatives, flattened."""
    found: list[Mapping[str, Any]] = [schema]
    if depth >= _MAX_BRANCH_DEPTH:
        return found
    for key in ("anyOf", "oneOf", "allOf"):
        options = schema.get(key)
        if isinstance(options, list):
            for option in options:
                if isinstance(option, Mapping):
                    found.extend(_branches(option, depth + 1))
    return found


def _types(branches: list[Mapping[str, Any]]) -> set[str]:
    types: set[str] = set()
    for branch in branches:
        declared = branch.get("type")
        if isinstance(declared, str):
            types.add(declared)
        elif isinstance(declared, list):
            types.update(t for t in declared if isinstance(t, str))
        elif declared is None:
            if isinstance(branch.get("properties"), Mapping):
                types.add("object")
            elif isinstance(branch.get("items"), Mapping):
                types.add("array")
    return types


def _coerce(value: object, schema: object, depth: int) -> object:
    if depth > _MAX_DEPTH or not isinstance(schema, Mapping):
        return value
    branches = _branches(schema, 0)
    if isinstance(value, str):
        types = _types(branches)
        if types and "string" not in types:
            value = _convert(value, types)
    if isinstance(value, dict):
        return _coerce_dict(value, branches, depth)
    if isinstance(value, list):
        return _coerce_list(value, branches, depth)
    return value


def _coerce_dict(
    value: Mapping[str, object], branches: list[Mapping[str, Any]], depth: int
) -> dict[str, object]:
    props: dict[str, object] = {}
    extra: object = None
    for branch in branches:
        declared = branch.get("properties")
        if isinstance(declared, Mapping):
            for key, sub in declared.items():
                props.setdefault(key, sub)
        additional = branch.get("additionalProperties")
        if extra is None and isinstance(additional, Mapping):
            extra = additional
    return {key: _coerce(item, props.get(key, extra), depth + 1) for key, item in value.items()}


def _coerce_list(
    value: list[object], branches: list[Mapping[str, Any]], depth: int
) -> list[object]:
    items: object = None
    prefix: list[object] = []
    for branch in branches:
        declared = branch.get("items")
        if items is None and isinstance(declared, Mapping):
            items = declared
        if not prefix:
            positional = branch.get("prefixItems", declared)
            if isinstance(positional, list):
                prefix = positional
    return [
        _coerce(item, prefix[i] if i < len(prefix) else items, depth + 1)
        for i, item in enumerate(value)
    ]


def _convert(text: str, types: set[str]) -> object:
    """Convert a string the schema says is not a string; unchanged when it does not fit."""
    s = text.strip()
    lowered = s.lower()
    if "boolean" in types and lowered in ("true", "false"):
        return lowered == "true"
    if "integer" in types:
        number = _as_number(s)
        if isinstance(number, int) or (isinstance(number, float) and number.is_integer()):
            return int(number)
    if "number" in types:
        number = _as_number(s)
        if number is not None:
            return number
    if "null" in types and lowered == "null":
        return None
    if s[:1] in ("[", "{") and types & {"array", "object"}:
        parsed = loads_lenient(s)
        if isinstance(parsed, list) and "array" in types:
            return parsed
        if isinstance(parsed, dict) and "object" in types:
            return parsed
    return text


def _as_number(s: str) -> int | float | None:
    try:
        if _INT.fullmatch(s):
            return int(s)
        if _NUMBER.fullmatch(s):
            number = float(s)
            return number if math.isfinite(number) else None
    except ValueError:  # e.g. more digits than int() accepts
        return None
    return None
