"""Stop sequences matched in the proxy.

Servers match stop strings at token level (mlx-lm scrubs a stop string that does not align
with token boundaries and keeps generating) and never say which one matched, so the proxy
holds back just enough text to see a match across chunk boundaries and reports it itself.
"""

from __future__ import annotations

from collections.abc import Sequence


class StopMatcher:
    """Feed text, get back what is safe to emit; `matched` is set once a stop sequence hits."""

    def __init__(self, stops: Sequence[str]) -> None:
        self._stops = [s for s in dict.fromkeys(stops) if s]
        self._held = ""
        self.matched: str | None = None

    def feed(self, text: str) -> str:
        if self.matched is not None:
            return ""
        if not self._stops:
            return text
        buffer = self._held + text
        hit_at, hit = len(buffer) + 1, None
        for stop in self._stops:
            at = buffer.find(stop)
            if at != -1 and at < hit_at:
                hit_at, hit = at, stop
        if hit is not None:
            self.matched = hit
            self._held = ""
            return buffer[:hit_at]
        keep = self._partial_suffix(buffer)
        self._held = buffer[len(buffer) - keep:] if keep else ""
        return buffer[: len(buffer) - keep]

    def flush(self) -> str:
        """End of text: whatever was held back could not become a stop sequence."""
        held, self._held = self._held, ""
        return held

    def _partial_suffix(self, buffer: str) -> int:
        """Length of the longest suffix of `buffer` that starts some stop sequence."""
        best = 0
        for stop in self._stops:
            for length in range(min(len(stop) - 1, len(buffer)), best, -1):
                if buffer.endswith(stop[:length]):
                    best = length
                    break
        return best
