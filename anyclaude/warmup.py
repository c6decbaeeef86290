"""Cache warm-up: replay the start of this folder's last first request into the backend while
Claude Code starts, so the session's first answer comes from the server's prompt cache.

The prefix is recorded per backend + model + working folder (0600, under the state folder)
from the first main request of each run (`translate/warm.py` cuts the typed text off). The
replay is a `max_tokens: 1` request; it holds the proxy's gate like a main request, so side
requests wait for it. It never slows a real request: one that starts differently cancels it
at once (closing the connection stops mlx-lm), one that starts the same waits for it, since
the server would do that prefill anyway and then answers from the cache.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from anyclaude import timeouts
from anyclaude.proxy.background import Gate
from anyclaude.proxy.upstream import Upstream
from anyclaude.redact import write_private
from anyclaude.translate import warm
from anyclaude.translate.errors import AnthropicError
from anyclaude.translate.usage import Usage

log = logging.getLogger("anyclaude.warmup")
CHAT_PATH = "/chat/completions"


def store_path(state_dir: Path, backend: str, model: str | None, cwd: str) -> Path:
    key = hashlib.sha256(json.dumps([backend, model, cwd]).encode()).hexdigest()[:24]
    return state_dir / "warm" / f"{key}.json"


@dataclass
class Outcome:
    """How the warm-up went, for the exit summary."""

    state: str
    """`warm` (replayed), `cancelled` (the first request started differently), `failed`."""
    tokens: int = 0
    cached: int = 0
    seconds: float = 0.0
    detail: str = ""

    def describe(self) -> str:
        if self.state == "warm":
            already = f", {self.cached:,} already cached" if self.cached else ""
            return f"{self.tokens:,} prompt tokens in {self.seconds:.1f} s{already}"
        if self.state == "cancelled":
            return "cancelled: the first request started differently"
        return f"failed ({self.detail})"


class WarmUp:
    """One run's warm-up: `start()` after the server is up, `before(body)` from the proxy
    ahead of every main request, `record(body)` for the run's first main request."""

    def __init__(self, path: Path, upstream: Upstream, max_tokens_param: str, gate: Gate,
                 measure: Callable[[Mapping[str, Any]], int],
                 timeout: float = timeouts.ANSWER_S) -> None:
        self.path = path
        self.timeout = timeout
        """A replay that takes longer is given up (a real request may be waiting on it)."""
        self.upstream = upstream
        self.max_tokens_param = max_tokens_param
        self.gate = gate
        self.measure = measure
        self.prefix: dict[str, Any] | None = None
        self.task: asyncio.Task[None] | None = None
        self.outcome: Outcome | None = None
        self._recorded = False

    def start(self) -> int | None:
        """Replay the recorded prefix in the background; its estimated size in tokens, or
        None when there is nothing recorded for this folder yet."""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict) or not isinstance(data.get("body"), dict):
            return None
        self.prefix = data["body"]
        self.task = asyncio.create_task(self._replay(self.prefix))
        return self.measure(self.prefix)

    async def _replay(self, prefix: dict[str, Any]) -> None:
        started = time.monotonic()
        body = warm.replay_body(prefix, self.max_tokens_param)
        try:
            async with asyncio.timeout(self.timeout), self.gate.hold(background=False):
                response = await self.upstream.post_json(CHAT_PATH, body)
                try:
                    data = await response.read()
                finally:
                    response.close()
            if response.status >= 400:
                raise AnthropicError(response.status, "api_error",
                                     data[:200].decode("utf-8", "replace"))
            usage = Usage.parse(orjson.loads(data).get("usage")) or Usage()
            self.outcome = Outcome("warm", usage.prompt_tokens or self.measure(prefix),
                                   usage.cached_tokens, time.monotonic() - started)
        except asyncio.CancelledError:
            self.outcome = Outcome("cancelled", seconds=time.monotonic() - started)
            raise
        except (AnthropicError, aiohttp.ClientError, OSError, ValueError, AttributeError) as exc:
            detail = f"no answer within {self.timeout:g} s" if isinstance(exc, TimeoutError) \
                else str(exc)[:200]
            self.outcome = Outcome("failed", detail=detail)
            log.info("cache warm-up failed: %s", exc)

    async def before(self, body: Mapping[str, Any]) -> None:
        """Ahead of a main request: wait for a warm-up it can use, cancel one it cannot."""
        task, prefix = self.task, self.prefix
        if task is None or task.done() or prefix is None:
            return
        if warm.shares_prefix(prefix, body):
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(task)
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    def record(self, body: Mapping[str, Any]) -> None:
        """Keep the start of the run's first main request for the next session here."""
        if self._recorded:
            return
        prefix = warm.first_turn_prefix(body)
        if prefix is None:
            return
        self._recorded = True
        data = orjson.dumps({"saved": time.time(), "body": prefix})
        asyncio.get_running_loop().run_in_executor(None, write_private, self.path, data)

    async def close(self) -> None:
        if self.task is not None and not self.task.done():
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
