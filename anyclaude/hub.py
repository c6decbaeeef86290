"""A model setting's files on disk: a local folder, or a Hugging Face Hub id already in the
local cache.

The cache is found and read by `huggingface_hub` itself (HF_HUB_CACHE, HF_HOME,
XDG_CACHE_HOME, refs/main), so anyclaude sees the snapshot mlx-lm would load offline, and
`count_tokens`, context-window discovery and doctor all agree on what is there.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

TOKENIZER = "tokenizer.json"


def cache_dir() -> Path:
    """The Hub cache folder for this process's environment."""
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def model_file(model: str | None, filename: str) -> Path | None:
    """`filename` in a local model folder, or in the cached snapshot of a Hub id's `main`
    revision; None when neither has it (nothing is downloaded)."""
    if not model:
        return None
    local = Path(model).expanduser()
    if (local / filename).is_file():
        return local / filename
    if "/" not in model or local.exists():
        return None
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(model, filename, cache_dir=cache_dir())
    except ValueError:  # not a valid Hub id
        return None
    return Path(found) if isinstance(found, str) else None


def find_tokenizer(model: str | None) -> Path | None:
    """The model's `tokenizer.json` (for exact token counts), or None."""
    return model_file(model, TOKENIZER)


def model_config(model: str | None) -> dict[str, Any] | None:
    """The model's `config.json` (local folder or cached snapshot) as a dict; None when it is
    not there or not a JSON object."""
    path = model_file(model, "config.json")
    if path is None:
        return None
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return config if isinstance(config, dict) else None
