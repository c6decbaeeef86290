"""Backend token counts as the translator passes them on (issue 11, class 9)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from anyclaude.translate.usage import Usage

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner,
                                                                 max_size=3), max_leaves=5)


@given(JSON_VALUES, JSON_VALUES, JSON_VALUES)
def test_every_parsed_count_is_an_int_in_range_or_missing(prompt: object, completion: object,
                                                          cached: object) -> None:
    usage = Usage.parse({"prompt_tokens": prompt, "completion_tokens": completion,
                         "prompt_tokens_details": {"cached_tokens": cached}})
    assert usage is not None
    for count in (usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens):
        assert count is None or (type(count) is int and 0 <= count < 2**31)


@pytest.mark.parametrize("value, expected", [
    (-3, 0), (7, 7), (7.0, 7), (2.5, None), (math.inf, None), (math.nan, None),
    (1e300, 2**31 - 1), (-1e300, 0), (True, None), ("12", None), (2**63 - 1, 2**31 - 1),
])
def test_counts_are_clamped_or_dropped(value: object, expected: int | None) -> None:
    usage = Usage.parse({"completion_tokens": value})
    assert usage is not None and usage.completion_tokens == expected
