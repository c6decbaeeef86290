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

PIECE_CHARS = 256 * 1024
"""Text is counted in pieces of about this size, so a count whose client went away stops
within a fraction of a second instead of running for minutes."""


def pieces(text: str, at_least: int = PIECE_CHARS) -> list[str]:
    """`text` cut after single newlines between non-space characters: no pre-tokenizer
    joins such a newline with its neighbours, so the pieces' counts add up to the whole's
    (byte-level BPE as in Qwen, Llama 3, GPT; a SentencePiece model may differ by a token
    per piece)."""
    out, start = [], 0
    cut = text.find("\n", start + at_least)
    while cut != -1 and cut + 1 < len(text):
        if cut == start or text[cut - 1].isspace() or text[cut + 1].isspace():
            cut = text.find("\n", cut + 1)
            continue
        out.append(text[start:cut + 1])
        start = cut + 1
        cut = text.find("\n", start + at_least)
    out.append(text[start:])
    return out


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
                    # One thread per count (the backend needs the cores), and no warning
                    # from tokenizers in the terminal when anyclaude later starts a process.
                    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
                    try:
                        from tokenizers import Tokenizer

                        self._tokenizer = Tokenizer.from_file(str(self._path))
                    except Exception:  # a broken file falls back to estimates
                        self._load_failed = True
        return self._tokenizer

    def estimate(self, body: Mapping[str, Any]) -> int:
        """Fast estimate from characters (calibrated), for the hot path."""
        return size.estimate(body, self.chars_per_token)

    def count(self, body: Mapping[str, Any], stop: threading.Event | None = None) -> int:
        """Exact with the model's tokenizer when available, else the estimate.

        Blocking, and seconds per megabyte: run it in an executor. `encode_batch` releases
        the GIL while it works (`encode` holds it), so the event loop keeps serving
        meanwhile. Once `stop` is set (the caller has gone) it returns what it counted."""
        tokenizer = self._load()
        if tokenizer is None:
            return self.estimate(body)
        total = size.overhead(body)
        for piece in pieces(size.prompt_text(body)):
            if stop is not None and stop.is_set():
                break
            [encoding] = tokenizer.encode_batch([piece], add_special_tokens=False)
            total += len(encoding.ids)
        return total

    def calibrate(self, body: Mapping[str, Any], prompt_tokens: int) -> None:
        """Learn the chars-per-token ratio from a backend's real prompt size."""
        self.chars_per_token = size.calibrated(self.chars_per_token, body, prompt_tokens)
