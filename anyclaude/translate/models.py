"""Model listings, both ways: the one model the proxy serves, in Anthropic's `/v1/models`
shape, and the models an OpenAI-compatible backend lists (to find a loaded one)."""

from __future__ import annotations

from anyclaude.translate.protocol import ModelInfo, ModelPage

CREATED_AT = "2025-01-01T00:00:00Z"
"""A fixed date: Claude Code only needs the field to be there."""


def model_info(name: str, context_window: int | None, max_output_tokens: int | None, *,
               display: str | None = None, description: str | None = None) -> ModelInfo:
    """A served model; the limits let Claude Code size its context and answers, the display
    name and description label it in Claude Code's /model picker."""
    info: ModelInfo = {"type": "model", "id": name, "display_name": display or name,
                       "created_at": CREATED_AT}
    if description:
        info["description"] = description
    if context_window:
        info["max_input_tokens"] = context_window
    if max_output_tokens:
        info["max_tokens"] = max_output_tokens
    return info


def model_page(infos: list[ModelInfo]) -> ModelPage:
    return {"data": infos, "has_more": False, "first_id": infos[0]["id"],
            "last_id": infos[-1]["id"]}


def listed(data: object) -> list[dict[str, object]]:
    """The entries of a backend's model listing (`{"data": [...]}`); [] for anything else."""
    models = data.get("data") if isinstance(data, dict) else None
    return [m for m in models if isinstance(m, dict)] if isinstance(models, list) else []


def loaded(native: list[dict[str, object]]) -> list[dict[str, object]]:
    """The language models LM Studio's native listing (`/api/v0/models`) says are loaded
    (its OpenAI listing also names every downloaded model)."""
    return [m for m in native if m.get("state") == "loaded" and m.get("type") in (None, "llm", "vlm")]


def first_id(models: list[dict[str, object]]) -> str | None:
    first = models[0].get("id") if models else None
    return first if isinstance(first, str) else None
