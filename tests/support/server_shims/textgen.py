"""Starts mlx-textgen 0.2.1 on Linux with mlx's CPU build (tests only).

Two things stop every generation there: it sizes its wired-memory limit from a key only
Metal's device info has, and it runs non-streaming generations in a worker thread while
mlx 0.32 keeps its streams per thread ("There is no Stream(cpu, 0) in current thread").
So the key is supplied, and `asyncio.to_thread` runs the call in the event loop's thread,
as the streaming path already does (a request then blocks the loop while it runs).
"""

import asyncio
import sys
from collections.abc import Callable
from typing import Any

import mlx.core as mx

_device_info = mx.device_info


def _with_working_set() -> dict[str, Any]:
    return {**_device_info(), "max_recommended_working_set_size": 16 * 2**30}


async def _in_this_thread(func: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
    return func(*args, **kwargs)


mx.metal.device_info = _with_working_set
asyncio.to_thread = _in_this_thread

from mlx_textgen.cli import main  # type: ignore[import-not-found]  # noqa: E402

sys.argv[0] = "mlx_textgen"
main()
