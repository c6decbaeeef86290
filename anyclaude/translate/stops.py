"""Stop sequences matched in the proxy.

Servers match stop strings at token level (mlx-lm scrubs a stop string that does not align
with token boundaries and keeps generating) and never say which one matched, so the proxy
holds back just enough text to see a match across chunk boundaries and reports it itself.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence


class StopMatcher:
    """Feed text, get back what is safe to emit; `matched` is set once a stop sequence hits.

    The stops are compiled into one Aho-Corasick automaton, so each character of output
    costs the same whatever the number and length of the stops (re-searching every stop in
    every chunk held the event loop for seconds with long stops), and the automaton's depth
    is exactly the tail that could still become a stop: only that is held back. The answer
    stops where the first stop sequence ends (the longest, if several end there), as a
    server stops generating, and the result does not depend on how the text was chunked.
    """

    def __init__(self, stops: Sequence[str]) -> None:
        self._stops = [s for s in dict.fromkeys(stops) if s]
        self._firsts = frozenset(s[0] for s in self._stops)
        self._next: list[dict[str, int]] = [{}]
        self._fail = [0]
        self._depth = [0]
        self._ends: list[str | None] = [None]
        """The longest stop that ends at each state."""
        for stop in self._stops:
            self._add(stop)
        self._link()
        self._state = 0
        self._held = ""
        self.matched: str | None = None

    def feed(self, text: str) -> str:
        if self.matched is not None:
            return ""
        if not self._stops or (self._state == 0 and self._firsts.isdisjoint(text)):
            return text
        state, nxt, fail, ends = self._state, self._next, self._fail, self._ends
        for at, char in enumerate(text):
            while state and char not in nxt[state]:
                state = fail[state]
            state = nxt[state].get(char, 0)
            hit = ends[state]
            if hit is not None:
                buffer = self._held + text[: at + 1]
                self.matched, self._held = hit, ""
                return buffer[: len(buffer) - len(hit)]
        self._state = state
        buffer = self._held + text
        keep = len(buffer) - self._depth[state]
        self._held = buffer[keep:]
        return buffer[:keep]

    def flush(self) -> str:
        """End of text: whatever was held back could not become a stop sequence."""
        held, self._held, self._state = self._held, "", 0
        return held

    def _add(self, stop: str) -> None:
        state = 0
        for char in stop:
            following = self._next[state].get(char)
            if following is None:
                following = len(self._next)
                self._next[state][char] = following
                self._next.append({})
                self._fail.append(0)
                self._depth.append(self._depth[state] + 1)
                self._ends.append(None)
            state = following
        self._ends[state] = stop

    def _link(self) -> None:
        """Failure links, breadth first: each state's longest proper suffix that is a state."""
        queue = deque(self._next[0].values())
        while queue:
            state = queue.popleft()
            for char, following in self._next[state].items():
                queue.append(following)
                fallback = self._fail[state]
                while fallback and char not in self._next[fallback]:
                    fallback = self._fail[fallback]
                target = self._next[fallback].get(char, 0)
                self._fail[following] = target
                if self._ends[following] is None:
                    self._ends[following] = self._ends[target]
