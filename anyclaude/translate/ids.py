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
    """`length` random base62 characters from one urandom call (ids are minted on the hot
    path; the slight modulo bias is irrelevant for opaque ids)."""
    return "".join([_ALPHABET[byte % 62] for byte in os.urandom(length)])


def message_id() -> str:
    return "msg_01" + _token(22)


def tool_use_id() -> str:
    return "toolu_01" + _token(22)


def request_id() -> str:
    return "req_01" + _token(22)
