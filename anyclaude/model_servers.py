"""The run's models beyond the main one: the small model's own server (where it listens, its
supervisor, started next to the main one) and the routes over all of them, sized.

The small model's server is a second server of the same backend, started (or reused, or
kept alive) exactly as the main one is, so it has the same guarantees: progress lines, a
health check, its own log, keep-alive under its own keeper, and nothing left behind. It
listens on `small_port`, else on the first port after the main server's that is free or
already runs this small model for anyclaude (so a kept one is found again). When it cannot
start, side work falls back to the main model and the run goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from urllib.parse import urlsplit, urlunsplit

from rich.console import Console

from anyclaude import discovery, routing
from anyclaude.backends.base import Endpoint
from anyclaude.backends.net import LOOPBACK, host_port, port_in_use
from anyclaude.keep import state
from anyclaude.settings import Settings
from anyclaude.supervisor import BackendError, Supervisor, note

PORT_SEARCH = 20
"""How many ports after the main server's the small model's server may take."""
SMALL_ROLE = "small model"


def with_port(url: str, host: str, port: int) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=f"{host}:{port}"))


def small_url(settings: Settings) -> str | None:
    """Where the small model's own server listens, when it gets one (see the module doc)."""
    backend, model = settings.backend, settings.small_model
    if not model or backend.passthrough or not routing.small_on_own_server(backend):
        return None
    host, main_port = host_port(settings.endpoint.url)
    host = host if host in LOOPBACK else "127.0.0.1"
    if settings.small_port:
        return with_port(settings.endpoint.url, host, settings.small_port)
    wanted = routing.located(model)
    free = None
    for port in range(main_port + 1, min(main_port + 1 + PORT_SEARCH, 65536)):
        url = with_port(settings.endpoint.url, host, port)
        record = state.read(state.record_path(settings.state_dir, url))
        if record is not None and record.mode == backend.name and record.model == wanted:
            return url  # this small model, kept by an earlier run
        if free is None and record is None and not port_in_use(host, port):
            free = url
    return free


def small_supervisor(settings: Settings, url: str, console: Console) -> Supervisor:
    """The small model's server, managed like the main one (no live progress line: the main
    server's has the screen)."""
    assert settings.small_model is not None
    endpoint = Endpoint(url, routing.located(settings.small_model), settings.endpoint.api_key)
    return Supervisor(settings.backend, endpoint, settings.backend_options(),
                      log_dir=settings.state_dir / "logs",
                      startup_timeout=settings.startup_timeout, console=console,
                      keep_alive=settings.keep_alive, state_dir=settings.state_dir,
                      role=SMALL_ROLE, model_setting="ANYCLAUDE_SMALL_MODEL", progress=False)


async def start_servers(main: Supervisor, small: Supervisor | None, console: Console) -> bool:
    """Both servers at once; True when the small one is up. A main server that fails stops
    the run (the small one's start is cancelled); a small one that fails is a warning."""
    task = asyncio.create_task(small.ensure()) if small is not None else None
    try:
        await main.ensure()
    except BaseException:
        if task is not None:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        raise
    if task is None:
        return False
    try:
        await task
    except BackendError as exc:
        note(console, f"Warning: {exc} Side work goes to the main model instead.")
        if exc.log_tail:
            console.print(exc.log_tail, markup=False, style="dim")
        return False
    return True


async def routes(settings: Settings, small: str | None) -> routing.Routes:
    """The routes of the run, each with its model's context window where one is found."""
    backend, endpoint = settings.backend, settings.endpoint
    others: Sequence[str] = [*settings.models, *([settings.small_model] if settings.small_model
                                                 else [])]

    async def window(model: str) -> int | None:
        url = small if small is not None and model == settings.small_model else endpoint.url
        return await discovery.context_window(backend, Endpoint(url, model, endpoint.api_key),
                                              None)

    sizes = dict(zip(others, await asyncio.gather(*(window(m) for m in others)), strict=True))
    return routing.build(backend, endpoint, small_model=settings.small_model, small_url=small,
                         models=settings.models, windows=sizes)


def announce(table: routing.Routes, settings: Settings, say: Callable[[str], None], *,
             small_failed: bool = False) -> None:
    """One line each for what the user asked and cannot have, and for what they can pick
    (a small server that failed to start has said so already)."""
    if settings.backend.passthrough:
        return
    if table.refused:
        say(f"Warning: {settings.backend.description} serves only the model it started with, so "
            f"{', '.join(table.refused)} cannot be chosen; use mlx-lm, LM Studio or an openai "
            "server for `models`.")
    if settings.small_model and table.small is None and not small_failed:
        say(f"Warning: {settings.small_model} (small_model) has no server of its own here; "
            "side work goes to the main model, after the conversation's requests.")
    if table.choices:
        say("Models to choose from with /model or --model: "
            + ", ".join(route.display for route in table.choices) + ".")
