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


def reference(stops: list[str], text: str) -> tuple[str, str | None]:
    """Where a server would stop: at the first position where some stop sequence ends (the
    longest, if several end there); the text before that stop."""
    for end in range(1, len(text) + 1):
        ending = [s for s in stops if s and text[:end].endswith(s)]
        if ending:
            hit = max(ending, key=len)
            return text[:end - len(hit)], hit
    return text, None


@given(st.lists(st.text("ab", min_size=1, max_size=5), min_size=1, max_size=4),
       st.text("abc", max_size=40), st.lists(st.integers(1, 6), max_size=20))
def test_overlapping_stops_stop_where_the_first_one_ends_whatever_the_chunking(
        stops: list[str], text: str, cuts: list[int]) -> None:
    matcher, out, at = StopMatcher(stops), "", 0
    for size in [*cuts, len(text)]:
        out += matcher.feed(text[at:at + size])
        at += size
    out += matcher.flush()
    assert (out, matcher.matched) == reference(stops, text)


def test_a_stop_inside_a_longer_one_that_is_still_open_wins() -> None:
    matcher = StopMatcher(["abcdef", "cd"])
    assert matcher.feed("xxabcd") == "xxab" and matcher.matched == "cd"


def test_only_the_tail_that_can_still_become_a_stop_is_held_back() -> None:
    stop = "a" * 5000 + "b"
    matcher = StopMatcher([stop, "\n\nHuman:"])
    assert matcher.feed("x" * 100 + "a" * 30) == "x" * 100
    assert matcher.feed("c") == "a" * 30 + "c"
    assert matcher.feed("\n\nHu") == "" and matcher.feed("man: hi") == ""
    assert matcher.matched == "\n\nHuman:"


def test_many_long_stops_over_a_long_answer_cost_linear_work() -> None:
    """16 stops of 6,000 characters, all sharing prefixes with the answer, fed one
    character at a time: the work per character stays constant (counted, not timed)."""
    stops = ["ab" * 2999 + str(i) for i in range(16)]
    matcher = StopMatcher(stops)
    text = "ab" * 20000
    calls = 0
    original = matcher.feed

    def counted(piece: str) -> str:
        nonlocal calls
        calls += 1
        return original(piece)

    out = "".join(counted(c) for c in text) + matcher.flush()
    assert out == text and matcher.matched is None and calls == len(text)
    assert len(matcher._held) == 0  # flushed
