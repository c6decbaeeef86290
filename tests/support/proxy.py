"""A proxy in front of a backend, in-process, for tests that use the real SDK as client."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import anthropic

from anyclaude import backends
from anyclaude.backends.base import Endpoint
from anyclaude.proxy.config import ProxyConfig
from anyclaude.proxy.server import ThreadedProxy

TOKEN = "test-token-0123456789"

MODE_FOR_DIALECT = {"mlx-lm": "mlx-lm", "lmstudio": "lmstudio", "mlx-textgen": "mlx-textgen",
                    "vllm": "openai", "llamacpp": "openai"}


def make_config(mode: str, url: str, model: str | None = None, **options: Any) -> ProxyConfig:
    backend = backends.get(mode)
    assert backend is not None
    return ProxyConfig(backend=backend, endpoint=Endpoint(url, model), token=TOKEN, **options)


@contextlib.contextmanager
def running_proxy(mode: str, url: str, model: str | None = None,
                  **options: Any) -> Iterator[ThreadedProxy]:
    with ThreadedProxy(make_config(mode, url, model, **options)) as proxy:
        yield proxy


def client(proxy: ThreadedProxy, **kw: Any) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=proxy.url, api_key=TOKEN, max_retries=0, **kw)
