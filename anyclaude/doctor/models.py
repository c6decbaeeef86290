"""The models beyond the main one: `small_model` and each of `models` must exist where the
backend will look for them, and the backend must be able to serve them (see
`anyclaude.routing`)."""

from __future__ import annotations

from dataclasses import replace

from anyclaude import routing
from anyclaude.doctor.backend import model_location
from anyclaude.doctor.result import Context, Result, ok, warn
from anyclaude.doctor.server import shared_probe

NAME = "models"


async def models_check(ctx: Context) -> list[Result] | None:
    """One row per extra model: its files (model-folder backends) or the server's listing
    (LM Studio, openai); plus a warning when `models` cannot be switched to at all."""
    settings = ctx.settings
    backend, small = settings.backend, settings.small_model
    wanted = list(dict.fromkeys([*([small] if small else []), *settings.models]))
    if not wanted or backend.passthrough:
        return None
    rows: list[Result] = []
    if settings.models and backend.model_switching == "fixed":
        rows.append(warn(NAME, f"{backend.name} serves only the model it started with, so "
                         "`models` cannot be chosen", "Use mlx-lm, LM Studio or an openai "
                         "server for `models`, or remove the setting."))
    listed = None
    if not backend.model_files:
        found = await shared_probe(ctx)
        listed = found.models if found.up else None
    for model in wanted:
        key = "small_model (ANYCLAUDE_SMALL_MODEL)" if model == small \
            else "models (ANYCLAUDE_MODELS)"
        rows.append(_one(model, key, listed, backend.model_files))
    if small and not routing.small_on_own_server(backend) and backend.model_switching != "by-name":
        rows.append(warn(NAME, f"{backend.name} cannot run {small} next to the main model",
                         "Remove small_model; side work then waits for the main model."))
    return rows


def _one(model: str, key: str, listed: list[str] | None, files: bool) -> Result:
    if files:
        found = model_location(model, key)
        said = found.found if found.found.startswith(key) else f"{key}: {found.found}"
        return replace(found, check=NAME, found=said)
    if listed is None:
        return warn(NAME, f"{key}: {model} not checked: the server is not running",
                    "Start the server and run `anyclaude doctor` again.")
    if model in listed:
        return ok(NAME, f"{key}: {model} (listed by the server)")
    return warn(NAME, f"{key}: the server does not list {model}",
                f"Download {model} into the server (LM Studio: `lms get {model}`), or fix "
                "the name.")
