"""What the scripted backend saw: requests, connections, dropped models, its own errors.

Written on the server's loop, read from tests on any thread or loop: a condition guards it,
and waits come in two kinds, blocking (`wait_for_*`, for sync tests against a threaded
backend) and awaitable (`until_*`, for tests sharing the backend's loop).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import replace

from tests.support.scripted.data import ConnectionRecord, Request
from tests.support.scripted.wire import Closer


class Recorder:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._requests: list[Request] = []
        self._connections: list[ConnectionRecord] = []
        self._dropped: list[str] = []
        self._errors: list[str] = []
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []

    # reading -----------------------------------------------------------------------
    @property
    def requests(self) -> list[Request]:
        with self._cond:
            return list(self._requests)

    @property
    def connections(self) -> list[ConnectionRecord]:
        with self._cond:
            return list(self._connections)

    @property
    def dropped_models(self) -> list[str]:
        """Model names that made mlx-lm unload its model (the next request reloads it)."""
        with self._cond:
            return list(self._dropped)

    @property
    def errors(self) -> list[str]:
        """Internal errors of the double itself (a test may assert this stays empty)."""
        with self._cond:
            return list(self._errors)

    def open_connections(self) -> int:
        with self._cond:
            return sum(1 for c in self._connections if c.closed_at is None)

    # waiting -----------------------------------------------------------------------
    def _wait(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        with self._cond:
            if not self._cond.wait_for(predicate, timeout):
                raise TimeoutError(f"scripted backend: timed out after {timeout}s waiting for {what}")

    async def _until(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        changed = asyncio.Event()
        waiter = (asyncio.get_running_loop(), changed)
        deadline = time.monotonic() + timeout
        with self._cond:
            self._waiters.append(waiter)
        try:
            while True:
                with self._cond:
                    if predicate():
                        return
                changed.clear()
                try:
                    await asyncio.wait_for(changed.wait(), max(0.0, deadline - time.monotonic()))
                except TimeoutError:
                    raise TimeoutError(f"scripted backend: timed out after {timeout}s waiting "
                                       f"for {what}") from None
        finally:
            with self._cond:
                self._waiters.remove(waiter)

    def _has_request(self, n: int) -> Callable[[], bool]:
        return lambda: len(self._requests) >= n

    def _has_connection(self, n: int) -> Callable[[], bool]:
        return lambda: len(self._connections) >= n

    def _is_closed(self, i: int) -> Callable[[], bool]:
        return lambda: bool(self._connections) and self._connections[i].closed_at is not None

    def wait_for_request(self, n: int = 1, timeout: float = 5.0) -> Request:
        """Wait until `n` requests have arrived; return the n-th (1-based)."""
        self._wait(self._has_request(n), timeout, f"request #{n}")
        return self.requests[n - 1]

    def wait_for_connections(self, n: int = 1, timeout: float = 5.0) -> ConnectionRecord:
        """Wait until `n` connections were opened; return the n-th (1-based)."""
        self._wait(self._has_connection(n), timeout, f"connection #{n}")
        return self.connections[n - 1]

    def wait_closed(self, i: int = -1, timeout: float = 5.0) -> ConnectionRecord:
        """Wait until connection `i` (0-based index, -1: the latest) is closed."""
        self._wait(self._is_closed(i), timeout, f"connection {i} to close")
        return self.connections[i]

    async def until_request(self, n: int = 1, timeout: float = 5.0) -> Request:
        """`wait_for_request` for a test on the backend's own loop."""
        await self._until(self._has_request(n), timeout, f"request #{n}")
        return self.requests[n - 1]

    async def until_closed(self, i: int = -1, timeout: float = 5.0) -> ConnectionRecord:
        """`wait_closed` for a test on the backend's own loop."""
        await self._until(self._is_closed(i), timeout, f"connection {i} to close")
        return self.connections[i]

    # writing (on the server's loop) --------------------------------------------------
    def _changed(self) -> None:
        self._cond.notify_all()
        for loop, event in self._waiters:
            loop.call_soon_threadsafe(event.set)

    def note_opened(self) -> int:
        with self._cond:
            index = len(self._connections)
            self._connections.append(ConnectionRecord(index=index, opened_at=time.monotonic()))
            self._changed()
            return index

    def note_closed(self, index: int, by: Closer, early: bool) -> None:
        with self._cond:
            rec = self._connections[index]
            self._connections[index] = replace(
                rec, closed_at=time.monotonic(), closed_by=by, peer_closed_early=early)
            self._changed()

    def note_request(self, req: Request) -> None:
        with self._cond:
            self._requests.append(req)
            rec = self._connections[req.connection]
            self._connections[req.connection] = replace(rec, requests=(*rec.requests, req.index))
            self._changed()

    def next_index(self) -> int:
        with self._cond:
            return len(self._requests)

    def note_response_done(self, index: int) -> None:
        with self._cond:
            rec = self._connections[index]
            self._connections[index] = replace(
                rec, responses_completed=rec.responses_completed + 1)
            self._changed()

    def note_dropped(self, name: str) -> None:
        with self._cond:
            self._dropped.append(name)

    def note_error(self, message: str) -> None:
        with self._cond:
            self._errors.append(message)
