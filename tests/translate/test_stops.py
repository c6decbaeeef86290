"""Stop sequences matched in the proxy, across chunk boundaries."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from anyclaude.translate.stops import StopMatcher


def test_match_inside_one_chunk_cuts_the_text_before_it() -> None:
    matcher = StopMatcher(["END"])
    assert matcher.feed("abc END def") == "abc " and matcher.matched == "END"
    assert matcher.feed("more") == ""


def test_match_split_across_chunks() -> None:
    matcher = StopMatcher(["</answer>"])
    assert matcher.feed("yes </ans") == "yes "
    assert matcher.feed("wer> tail") == "" and matcher.matched == "</answer>"


def test_earliest_of_several_stop_sequences_wins() -> None:
    matcher = StopMatcher(["zz", "b"])
    assert matcher.feed("a b zz") == "a " and matcher.matched == "b"


def test_held_back_prefix_is_released_when_it_cannot_match() -> None:
    matcher = StopMatcher(["STOP"])
    assert matcher.feed("a ST") == "a "
    assert matcher.feed("ART") == "START" and matcher.matched is None
    assert matcher.feed("x ST") == "x " and matcher.flush() == "ST"


def test_no_stop_sequences_pass_text_straight_through() -> None:
    matcher = StopMatcher([])
    assert matcher.feed("anything") == "anything" and matcher.flush() == ""


@given(st.text("abS TOP", max_size=40), st.lists(st.integers(1, 6), max_size=20))
def test_result_is_independent_of_chunking(text: str, cuts: list[int]) -> None:
    whole = StopMatcher(["STOP", "ab"])
    expected = whole.feed(text) + whole.flush()
    matcher, out, at = StopMatcher(["STOP", "ab"]), "", 0
    for size in cuts:
        out += matcher.feed(text[at:at + size])
        at += size
    out += matcher.feed(text[at:]) + matcher.flush()
    assert out == expected and matcher.matched == whole.matched
    if whole.matched is None:
        assert out == text
