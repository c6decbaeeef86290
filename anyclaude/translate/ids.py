"""Anthropic-style ids: `msg_`, `toolu_`, `req_` followed by 24 base62 characters.

Upstream ids are never reused: mlx-lm sends UUIDs, LM Studio numbers, mlx-textgen repeats
`call_xxxxxxxx` at index 0, older servers send null. Minting our own guarantees format and
uniqueness.
"""

from __future__ import annotations

import os
import string

_ALPHABET = string.ascii_letters + string.digits


def _token(length: int = 24) -> str:
    """`length` random base62 characters (one urandom call: ids are minted per event)."""
    number = int.from_bytes(os.urandom(length), "big")
    chars = []
    for _ in range(length):
        number, digit = divmod(number, 62)
        chars.append(_ALPHABET[digit])
    return "".join(chars)


def message_id() -> str:
    return "msg_01" + _token(22)


def tool_use_id() -> str:
    return "toolu_01" + _token(22)


def request_id() -> str:
    return "req_01" + _token(22)
