"""Suite-wide defaults."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _no_keep_alive(monkeypatch: pytest.MonkeyPatch) -> None:
    """Servers started by tests stop when the test's run ends, as with `keep_alive = 0`;
    the keep-alive tests ask for it explicitly."""
    monkeypatch.setenv("ANYCLAUDE_KEEP_ALIVE", "0")
