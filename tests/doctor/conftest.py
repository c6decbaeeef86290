"""Doctor tests run each check on real settings (loaded from an environment and folder the
test makes), against real files, processes and servers, never on stubs of anyclaude."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from huggingface_hub import constants

from tests.doctor.helpers import SYSTEM_PATH
from tests.support.claude_code import no_new_children


@pytest.fixture(autouse=True)
def _no_leftovers() -> Iterator[None]:
    with no_new_children():
        yield


@pytest.fixture
def environ(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A user with an empty HOME: no config file, no Hugging Face cache, no `claude`."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))  # platformdirs reads os.environ
    # huggingface_hub read the environment when it was imported (tests/test_hub.py checks that
    # anyclaude follows its rule); here the cache is the empty HOME's.
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(home / ".cache" / "huggingface" / "hub"))
    monkeypatch.chdir(tmp_path)
    return {"HOME": str(home), "PATH": f"{Path(sys.executable).parent}:{SYSTEM_PATH}",
            "LANG": "C.UTF-8", "XDG_CONFIG_HOME": str(home / ".config"),
            "XDG_CACHE_HOME": str(home / ".cache")}
