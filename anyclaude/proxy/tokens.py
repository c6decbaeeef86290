"""Prompt sizes: counted with the model's own tokenizer when anyclaude can load it,
otherwise estimated (`translate/size.py` says what is counted and how it is estimated).

- Exact: `tokenizer.json` in the model folder (a local `MLX_LM_MODEL` path, or the Hub id
  already in the Hugging Face cache), loaded with the `tokenizers` package. The count covers
  the text the chat template will see but not the template's own markup, so it runs a few
  tokens short per message. It takes seconds for megabytes of text: callers run it in an
  executor, and only when `translate/plan.py` says it is worth it.
- Estimate: characters divided by a chars-per-token ratio, calibrated on the backend's real
  `prompt_tokens` after every answer.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from anyclaude.translate import size


def find_tokenizer(model: str | None) -> Path | None:
    """`tokenizer.json` for a local model folder or a Hub id already in the HF cache."""
    if not model:
        return None
    local = Path(model).expanduser()
    if (local / "tokenizer.json").is_file():
        return local / "tokenizer.json"
    if "/" not in model or local.exists():
        return None
    hub = Path(os.environ.get("HF_HUB_CACHE") or Path(
        os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface")) / "hub")
    snapshots = hub / ("models--" + model.replace("/", "--")) / "snapshots"
    if snapshots.is_dir():
        for snapshot in sorted(snapshots.iterdir()):
            if (snapshot / "tokenizer.json").is_file():
                return snapshot / "tokenizer.json"
    return None


class TokenCounter:
    def __init__(self, tokenizer_path: Path | None = None) -> None:
        self._path = tokenizer_path
        self._tokenizer: Any = None
        self._load_failed = False
        self._lock = threading.Lock()
        self.chars_per_token = size.DEFAULT_CHARS_PER_TOKEN

    @property
    def exact(self) -> bool:
        return self._path is not None and not self._load_failed

    def _load(self) -> Any:
        if self._tokenizer is None and self._path is not None and not self._load_failed:
            with self._lock:
                if self._tokenizer is None:
                    try:
                        from tokenizers import Tokenizer

                        self._tokenizer = Tokenizer.from_file(str(self._path))
                    except Exception:  # a broken file falls back to estimates
                        self._load_failed = True
        return self._tokenizer

    def estimate(self, body: Mapping[str, Any]) -> int:
        """Fast estimate from characters (calibrated), for the hot path."""
        return size.estimate(body, self.chars_per_token)

    def count(self, body: Mapping[str, Any]) -> int:
        """Exact with the model's tokenizer when available, else the estimate. Blocking and
        slow for big prompts: run it in an executor. `encode_batch` releases the GIL while
        it works (`encode` holds it), so the event loop keeps running meanwhile."""
        tokenizer = self._load()
        if tokenizer is None:
            return self.estimate(body)
        [encoding] = tokenizer.encode_batch([size.prompt_text(body)], add_special_tokens=False)
        return len(encoding.ids) + size.overhead(body)

    def calibrate(self, body: Mapping[str, Any], prompt_tokens: int) -> None:
        """Learn the chars-per-token ratio from a backend's real prompt size."""
        self.chars_per_token = size.calibrated(self.chars_per_token, body, prompt_tokens)
