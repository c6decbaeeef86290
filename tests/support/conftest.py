"""Fixtures of the scripted backend's own tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.scripted import ScriptedBackend


@pytest.fixture
def mlx() -> Iterator[ScriptedBackend]:
    with ScriptedBackend("mlx-lm") as be:
        yield be
        assert be.errors == []
