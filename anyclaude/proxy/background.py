"""Background requests must not cost the main conversation its prompt cache or its speed.

Claude Code sends side requests next to the main loop: session titles, `max_tokens: 1`
probes, anything addressed to the Haiku alias (the launcher points
`ANTHROPIC_DEFAULT_HAIKU_MODEL` at `BACKGROUND_MODEL`), and its subagents' requests;
`translate/plan.classify` and the subagent header tell them apart. On a local server they
compete with the main request for the one GPU and, on single-slot servers (LM Studio,
llama.cpp), overwrite its KV cache. So: probes are answered here without the backend; other
side work goes to the small model (`anyclaude.routing`: its own server, or a name on the main
one), and what stays on the main server waits here until no main request is running.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from anyclaude.translate.plan import BACKGROUND_MODEL as BACKGROUND_MODEL

MAX_WAIT = 120.0
"""A background request waits at most this long for the main conversation to pause."""


class Gate:
    """Main requests run at once; background requests wait for a moment without any."""

    def __init__(self) -> None:
        self._main = 0
        self._idle: asyncio.Event | None = None

    def _event(self) -> asyncio.Event:
        if self._idle is None:
            self._idle = asyncio.Event()
            self._idle.set()
        return self._idle

    @contextlib.asynccontextmanager
    async def hold(self, background: bool, max_wait: float = MAX_WAIT) -> AsyncIterator[None]:
        idle = self._event()
        if background:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(idle.wait(), max_wait)
            yield
            return
        self._main += 1
        idle.clear()
        try:
            yield
        finally:
            self._main -= 1
            if self._main == 0:
                idle.set()
