"""Starts MLX-Omni-Server 0.5.3 on Linux without its speech and image routes (tests only).

Importing `mlx_omni_server.main` sets up Kokoro text-to-speech, which downloads a spaCy
model (no network here) and, through its vocoder, builds a Metal kernel (no Metal on
Linux). The chat routes need neither, so the speech-to-text, text-to-speech and image
modules are replaced by empty routers and the grapheme-to-phoneme class by a no-op, before
the server module is imported. Its embeddings service fetches tiktoken encodings from the
internet at import (for token counts only): that lookup fails at once instead. Nothing on
the chat path is changed.
"""

import sys
import types

import tiktoken  # type: ignore[import-not-found]  # the server's venv
from fastapi import APIRouter  # type: ignore[import-not-found]


def _offline_encoding(name: str) -> tiktoken.Encoding:
    raise ValueError(f"tiktoken encoding {name} is not fetched in tests (offline)")


tiktoken.get_encoding = _offline_encoding


def _module(name: str, **attributes: object) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__dict__.update(attributes)
    sys.modules[name] = module
    return module


class _SilentG2P:
    def __init__(self, *args: object, **kwargs: object) -> None:
        pass


_module("misaki")
_module("misaki.en", G2P=_SilentG2P)
for _part in ("tts", "stt", "images"):
    _inner = _module(f"mlx_omni_server.{_part}.{_part}", router=APIRouter())
    _module(f"mlx_omni_server.{_part}", **{_part: _inner})

from mlx_omni_server.main import start  # type: ignore[import-not-found]  # noqa: E402

sys.argv[0] = "mlx-omni-server"
start()
