"""The model's context window: sizes Claude Code's auto-compaction and output budget.

Order: the setting; what the server reports (LM Studio's native API, vLLM's `/v1/models`,
llama.cpp's `/props`, all asked at once since an `openai` endpoint can be any of them);
the local model folder's `config.json`; the backend declaration's default; else unknown.
Every request is bounded (`timeouts.PROBE_S`), so a silent server never holds up the launch.
doctor shows the same answer with its source (`find`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from anyclaude import hub, probes
from anyclaude.backends.base import Backend, Endpoint
from anyclaude.backends.net import server_root


@dataclass(frozen=True)
class Window:
    """A context window and where it came from, in words doctor shows."""

    tokens: int | None
    source: str


async def find(backend: Backend, endpoint: Endpoint, configured: int | None) -> Window:
    """The context window and its source; `tokens` is None when nothing says."""
    if configured:
        return Window(configured, "ANYCLAUDE_CONTEXT_WINDOW")
    if backend.protocol == "openai":
        found = await from_server(endpoint)
        if found:
            return Window(found, "reported by the server")
    if backend.model_files or local_folder(endpoint.model):
        found = from_model_folder(endpoint.model)
        if found:
            return Window(found, "from the model's config")
    return Window(backend.context_window, f"the {backend.name} default")


async def context_window(backend: Backend, endpoint: Endpoint,
                         configured: int | None) -> int | None:
    """The context window in tokens, or None when nothing says."""
    return (await find(backend, endpoint, configured)).tokens


def _positive(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _entry(data: Any, model: str | None) -> dict[str, Any]:
    """The `data` entry for `model`, else the first loaded one, else the first ({} if none)."""
    listed = data.get("data") if isinstance(data, dict) else None
    entries = [e for e in listed if isinstance(e, dict)] if isinstance(listed, list) else []
    ranked = [e for e in entries if model and e.get("id") == model]
    ranked += [e for e in entries if e.get("state") == "loaded"] + entries
    return ranked[0] if ranked else {}


def _lmstudio(data: Any, model: str | None) -> int | None:
    entry = _entry(data, model)
    return _positive(entry.get("loaded_context_length")) or \
        _positive(entry.get("max_context_length"))


def _vllm(data: Any, model: str | None) -> int | None:
    return _positive(_entry(data, model).get("max_model_len"))


def _llamacpp(data: Any, model: str | None) -> int | None:
    if not isinstance(data, dict):
        return None
    settings = data.get("default_generation_settings")
    nested = settings.get("n_ctx") if isinstance(settings, dict) else None
    return _positive(nested) or _positive(data.get("n_ctx"))


async def from_server(endpoint: Endpoint) -> int | None:
    """Ask the server, in the shapes the servers we know use; the first answer wins in the
    order LM Studio, vLLM, llama.cpp."""
    root, base = server_root(endpoint.url), endpoint.url.rstrip("/")
    readers: list[tuple[str, Callable[[Any, str | None], int | None]]] = [
        (root + "/api/v0/models", _lmstudio),
        (base + "/models", _vllm),
        (root + "/props", _llamacpp),
    ]
    async with probes.session(endpoint) as session:
        answers = await asyncio.gather(*(probes.ask(session, url) for url, _ in readers))
    found = (read(answer.body, endpoint.model) for (_, read), answer in
             zip(readers, answers, strict=True) if answer.status == 200)
    return next((tokens for tokens in found if tokens), None)


def local_folder(model: str | None) -> bool:
    """The model setting names a local model folder (any mode: servers that load a model
    by path, in `openai` mode too)."""
    return bool(model) and (Path(str(model)).expanduser() / "config.json").is_file()


def from_model_folder(model: str | None) -> int | None:
    """`max_position_embeddings` from a local model folder's (or cached Hub model's)
    `config.json`, also inside `text_config` (multimodal models)."""
    config = hub.model_config(model)
    if config is None:
        return None
    text = config.get("text_config")
    nested = text.get("max_position_embeddings") if isinstance(text, dict) else None
    return _positive(config.get("max_position_embeddings")) or _positive(nested)
