"""Prompt sizes: counted with the model's own tokenizer when anyclaude can load it,
otherwise estimated.

- Exact: `tokenizer.json` in the model folder (a local `MLX_LM_MODEL` path, or the Hub id
  already in the Hugging Face cache), loaded with the `tokenizers` package. The count covers
  the text the chat template will see (system, messages, tool definitions) but not the
  template's own markup, so it runs a few tokens short per message.
- Estimate: characters divided by a chars-per-token ratio, calibrated on the backend's real
  `prompt_tokens` after every answer (so it converges on the model's tokenizer).
The hot path (`/v1/messages`) only estimates (a few microseconds); exact counting is used for
`count_tokens` and when an estimate comes close to the context window.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson

DEFAULT_CHARS_PER_TOKEN = 3.6
"""Claude Code prompts are English prose plus JSON schemas: ~3.5-4.5 chars per token with
the tokenizers of Qwen-class models. Erring low overestimates, which is the safe side."""


def prompt_text(body: Mapping[str, Any]) -> str:
    """The text a chat template renders from an OpenAI request (without its markup)."""
    pieces: list[str] = []
    for message in body.get("messages") or []:
        content = message.get("content")
        if isinstance(content, str):
            pieces.append(content)
        elif isinstance(content, list):
            pieces.extend(p.get("text", "") for p in content if isinstance(p, dict))
        for call in message.get("tool_calls") or []:
            function = call.get("function") or {}
            pieces.append(str(function.get("name", "")) + str(function.get("arguments", "")))
    if body.get("tools"):
        pieces.append(orjson.dumps(body["tools"]).decode())
    return "\n".join(pieces)


_TOOL_CHARS: dict[int, tuple[object, int]] = {}


def _tool_chars(tools: object) -> int:
    """Serialised size of a tool list; the translator reuses one list object per distinct
    tool set, so this is computed once per set (the entry keeps the list alive)."""
    cached = _TOOL_CHARS.get(id(tools))
    if cached is not None and cached[0] is tools:
        return cached[1]
    size = len(orjson.dumps(tools))
    if len(_TOOL_CHARS) > 64:
        _TOOL_CHARS.clear()
    _TOOL_CHARS[id(tools)] = (tools, size)
    return size


def prompt_chars(body: Mapping[str, Any]) -> int:
    """len(prompt_text(body)) without building the text (the hot path only needs sizes)."""
    total = 0
    for message in body.get("messages") or []:
        content = message.get("content")
        if isinstance(content, str):
            total += len(content) + 1
        elif isinstance(content, list):
            total += sum(len(p.get("text", "")) + 1 for p in content if isinstance(p, dict))
        for call in message.get("tool_calls") or []:
            function = call.get("function") or {}
            total += len(str(function.get("name", ""))) + len(str(function.get("arguments", "")))
    if body.get("tools"):
        total += _tool_chars(body["tools"])
    return total


def image_count(body: Mapping[str, Any]) -> int:
    count = 0
    for message in body.get("messages") or []:
        content = message.get("content")
        if isinstance(content, list):
            count += sum(1 for p in content if isinstance(p, dict) and p.get("type") == "image_url")
    return count


IMAGE_TOKENS = 1000
"""A flat cost per image; vision models vary (256-1600)."""
MESSAGE_OVERHEAD = 4
"""Template markup per message (`<|im_start|>role\\n ... <|im_end|>\\n`)."""


class TokenCounter:
    def __init__(self, tokenizer_path: Path | None = None) -> None:
        self._path = tokenizer_path
        self._tokenizer: Any = None
        self._load_failed = False
        self._lock = threading.Lock()
        self.chars_per_token = DEFAULT_CHARS_PER_TOKEN

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

    def _overhead(self, body: Mapping[str, Any]) -> int:
        return MESSAGE_OVERHEAD * len(body.get("messages") or []) + IMAGE_TOKENS * image_count(body)

    def estimate(self, body: Mapping[str, Any]) -> int:
        """Fast estimate from characters (calibrated), for the hot path."""
        return int(prompt_chars(body) / self.chars_per_token) + self._overhead(body)

    def count(self, body: Mapping[str, Any]) -> int:
        """Exact with the model's tokenizer when available, else the estimate."""
        tokenizer = self._load()
        if tokenizer is None:
            return self.estimate(body)
        text = prompt_text(body)
        return len(tokenizer.encode(text, add_special_tokens=False).ids) + self._overhead(body)

    def calibrate(self, body: Mapping[str, Any], prompt_tokens: int) -> None:
        """Learn the chars-per-token ratio from a backend's real prompt size."""
        overhead = self._overhead(body)
        real = prompt_tokens - overhead
        chars = prompt_chars(body)
        if real > 50 and chars > 200:
            ratio = chars / real
            self.chars_per_token = 0.7 * self.chars_per_token + 0.3 * ratio
