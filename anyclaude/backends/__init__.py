"""The backend registry: built-in modules plus plugins from the `anyclaude.backends`
entry-point group (a plugin module exposes `BACKEND`, like the built-ins)."""

from __future__ import annotations

from importlib import metadata

from anyclaude.backends import (
    claude,
    fastmlx,
    lmstudio,
    mlx_lm,
    mlx_omni_server,
    mlx_openai_server,
    mlx_textgen,
    openai,
)
from anyclaude.backends.base import Backend

_REGISTRY: dict[str, Backend] = {}


def register(backend: Backend) -> None:
    """Add a backend; a later registration of the same name replaces the earlier one."""
    _REGISTRY[backend.name] = backend


for _module in (mlx_lm, mlx_textgen, mlx_openai_server, mlx_omni_server, fastmlx, lmstudio,
                openai, claude):
    register(_module.BACKEND)


def _load_plugins() -> None:
    for entry in metadata.entry_points(group="anyclaude.backends"):
        try:
            backend = entry.load()
        except Exception:  # a broken plugin must not break anyclaude
            continue
        if isinstance(backend, Backend):
            register(backend)


_load_plugins()


def names() -> list[str]:
    """Mode names in registration order (mlx-lm, the default, first)."""
    return list(_REGISTRY)


def get(name: str) -> Backend | None:
    return _REGISTRY.get(name)
