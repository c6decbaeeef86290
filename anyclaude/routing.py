"""Which server and which model answer each request, and what Claude Code's /model picker lists.

Three kinds of route: the main model (the backend's own), the small model (side work:
Haiku-tier requests, session titles, subagents), and the models a user listed to choose
from (`models`). The small model runs on a server of its own where the backend loads one
model per server (mlx-lm and the other servers anyclaude starts), else it is a model name
on the main server (LM Studio, `openai`). A chosen model is a name on the main server:
mlx-lm unloads the loaded model to load it, LM Studio loads it on demand, an `openai`
server passes the name on.

Claude Code learns the choices from `GET /v1/models` (gateway model discovery) and keeps
only ids containing `claude` or `anthropic` (2.1.197: starting with them), so every route
gets an id `anthropic/<name>`: it passes both filters, and Claude Code does not take it for
one of its own models (measured with `claude -p /context`, see `compaction.py`).
Side requests are told apart by `classify` (Haiku alias, titles) and by the header Claude
Code puts on every request of a subagent (`x-claude-code-agent-id`).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from anyclaude.backends.base import Backend, Dialect, Endpoint
from anyclaude.compaction import claude_would_take, model_name

PICKER_PREFIX = "anthropic/"
"""Starts every id the picker gets: Claude Code 2.1.197 lists ids that start with `claude` or
`anthropic`, 2.1.332 ids that contain either; `claude-...` would be taken for Claude's own."""
AGENT_HEADER = "x-claude-code-agent-id"
"""Set by Claude Code (2.1.197 and 2.1.332) on every request a subagent makes, never on the
main conversation's."""

Role = Literal["main", "small", "choice"]
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class Route:
    """One model the proxy can send a request to."""

    role: Role
    id: str
    """What the picker lists and sends back."""
    model: str | None
    """The model as the server knows it (None: the main server's own, found out at need)."""
    url: str
    """The base URL of the server that answers."""
    display: str
    description: str
    names: frozenset[str] = frozenset()
    """Every `model` value that means this route (the id, the setting, its short name)."""
    send_model: bool = False
    """Name the model upstream even where the dialect leaves `model` out (mlx-lm then loads it)."""
    window: int | None = None
    """The model's context window, when known (None: the main model's)."""

    def dialect(self, base: Dialect) -> Dialect:
        """The dialect requests on this route are translated with."""
        if self.send_model and base.model_field == "omit":
            return replace(base, model_field="configured")
        return base


def short_name(model: str) -> str:
    """The readable part of a model setting: a folder's or a Hub repo's last part."""
    return model.rstrip("/").rsplit("/", 1)[-1] or model


def located(model: str) -> str:
    """A model setting as the server should get it: a local folder by its absolute path (a
    kept server may have been started in another folder), anything else as it is."""
    folder = Path(model).expanduser()
    return str(folder.resolve()) if folder.is_dir() else model


def picker_ids(names: Sequence[str]) -> list[str]:
    """`anthropic/<name>` for each short name, unique, and never one Claude Code would take
    for its own model (`anthropic/model-2` then)."""
    ids: list[str] = []
    for index, name in enumerate(names, 1):
        candidate = PICKER_PREFIX + (_UNSAFE.sub("-", name).strip("-") or "model")
        if claude_would_take(candidate) or candidate in ids:
            candidate = f"{PICKER_PREFIX}model-{index}"
        ids.append(candidate)
    return ids


@dataclass
class Routes:
    """The run's routes and the choice for each request."""

    main: Route
    small: Route | None = None
    choices: tuple[Route, ...] = ()
    refused: tuple[str, ...] = ()
    """Models in `models` the backend cannot switch to (it serves one model per server)."""
    switching: bool = False
    """The main server unloads its model to load another (`reload`): switches are serialised
    and announced."""
    small_listed: bool = False
    """The small model is also one of `models`: the picker lists it too."""
    server: str = "the server"
    """The main server, as the loading notice names it."""
    loaded: dict[str, Slot] = field(default_factory=dict)

    @property
    def all(self) -> list[Route]:
        extra = [self.small] if self.small is not None else []
        return [self.main, *self.choices, *extra]

    def find(self, name: str) -> Route | None:
        """The route a `model` value names, if any (Claude's own names and the background
        alias name none)."""
        return next((route for route in self.all if name in route.names), None)

    def pick(self, name: str, *, side: bool) -> Route:
        """The route for one request: side work goes to the small model when there is one,
        else to the model the main server has loaded (never a switch for it); anything else
        to the model it names, else the main model."""
        if side and self.small is not None:
            return self.small
        named = self.find(name)
        if side and self.switching:
            return self.slot(self.main.url).route or self.main
        return named or self.main

    def listing(self) -> list[Route]:
        """What `/v1/models` lists: the models to choose from (the picker has the main model
        already, as its Opus and Sonnet entries), or the main model when there are none."""
        small = [self.small] if self.small is not None and self.small_listed else []
        return [*self.choices, *small] or [self.main]

    def slot(self, url: str) -> Slot:
        return self.loaded.setdefault(url, Slot())

    @contextlib.asynccontextmanager
    async def use(self, route: Route, notify: Callable[[str], None]) -> AsyncIterator[None]:
        """Hold the route's server for one request; on a server that switches models by
        reloading, wait for the requests of another model to finish first, and say when a
        model is being loaded."""
        if not self.switching or route.url != self.main.url:
            yield
            return
        async with self.slot(route.url).hold(route, self.main, self.server, notify):
            yield


class Slot:
    """The model a reloading server has loaded, and the requests using it."""

    def __init__(self) -> None:
        self.route: Route | None = None
        self.active = 0
        self._changed = asyncio.Condition()

    @contextlib.asynccontextmanager
    async def hold(self, route: Route, main: Route, server: str,
                   notify: Callable[[str], None]) -> AsyncIterator[None]:
        async with self._changed:
            await self._changed.wait_for(lambda: self.active == 0 or self._same(route, main))
            if not self._same(route, main):
                before = self.route or main
                notify(f"Loading {route.display} on {server} in place of {before.display}; "
                       "its answers start once it is loaded.")
            self.route = route
            self.active += 1
        try:
            yield
        finally:
            async with self._changed:
                self.active -= 1
                self._changed.notify_all()

    def _same(self, route: Route, main: Route) -> bool:
        return (self.route or main).id == route.id


def picker_labels(mode: str, main_model: str | None,
                  small_model: str | None) -> tuple[dict[str, str], dict[str, str]]:
    """The names and descriptions Claude Code's /model picker shows for its own entries
    (the `_NAME` and `_DESCRIPTION` of its model variables): the main model's, then the
    Haiku tier's, which is side work."""
    main = short_name(main_model) if main_model else model_name(None, mode)
    side = short_name(small_model) if small_model else "side work"
    return ({"NAME": main, "DESCRIPTION": f"{main_model or main} ({mode}, main model)"},
            {"NAME": side, "DESCRIPTION": f"{small_model} (small model for side work)"
             if small_model else "side work on the main model"})


# -- building the routes from the settings ------------------------------------------------

def small_on_own_server(backend: Backend) -> bool:
    """Whether the small model gets a server of its own: the backend serves one model per
    server (or reloads to switch) and anyclaude can start it."""
    return backend.model_switching != "by-name" and backend.start is not None


def build(backend: Backend, endpoint: Endpoint, *, small_model: str | None = None,
          small_url: str | None = None, models: Sequence[str] = (),
          windows: dict[str, int | None] | None = None) -> Routes:
    """The routes for a run. `small_url`: the small model's own server, when it has one;
    without it, the small model is a name on the main server where the backend serves
    models by name, and there is none otherwise (side work then waits for the main model).
    `windows`: context windows by model setting."""
    sizes = windows or {}
    main_model = endpoint.model
    main_name = model_name(main_model, backend.name)
    wanted = [m for m in dict.fromkeys(models) if m not in (main_model, small_model)]
    switchable = backend.model_switching != "fixed"
    chosen = wanted if switchable else []
    shorts = [short_name(main_model) if main_model else main_name,
              *(short_name(m) for m in chosen)]
    ids = picker_ids(shorts)
    # The main model keeps the name it is served under: the picker has it already (its own
    # Opus and Sonnet entries), and it is listed only when there is nothing to choose.
    served = main_model or main_name
    main = Route("main", served, main_model, endpoint.url, shorts[0],
                 f"{main_model or 'the loaded model'} ({backend.name}, main model)",
                 frozenset({served, ids[0], main_name}))
    loads = "loads on first use" if backend.model_switching == "reload" else "by name"
    choices = tuple(
        Route("choice", route_id, located(model), endpoint.url, short,
              f"{model} ({backend.name}, {loads})",
              frozenset({route_id, model, located(model), short}), send_model=True,
              window=sizes.get(model))
        for route_id, model, short in zip(ids[1:], chosen, shorts[1:], strict=True))
    small = None
    if small_model and (small_url or backend.model_switching == "by-name"):
        short = short_name(small_model)
        small_id = picker_ids([*shorts, short])[-1]
        small = Route("small", small_id, located(small_model), small_url or endpoint.url,
                      short, f"{small_model} ({backend.name}, small model for side work)",
                      frozenset({small_id, small_model, located(small_model), short}),
                      send_model=small_url is None, window=sizes.get(small_model))
    return Routes(main=main, small=small, choices=choices,
                  refused=tuple(wanted if not switchable else ()),
                  switching=backend.model_switching == "reload" and bool(choices),
                  small_listed=small is not None and not small.names.isdisjoint(models),
                  server=f"the {backend.name} server")
