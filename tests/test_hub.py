"""A model setting's files: a local folder, or a Hub id in the Hugging Face cache, found where
huggingface_hub (and so mlx-lm) looks for it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from huggingface_hub import constants

from anyclaude import discovery, hub
from tests.support.hub_cache import cache_model
from tests.support.tiny_model import build_scripted_model, default_models_dir


@pytest.fixture(scope="module")
def tiny_model() -> Path:
    return build_scripted_model(default_models_dir() / "scripted")


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "hub"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(folder))
    return folder


def test_a_local_folder_s_files_are_found_without_the_cache(cache: Path,
                                                           tiny_model: Path) -> None:
    assert hub.find_tokenizer(str(tiny_model)) == tiny_model / "tokenizer.json"
    assert hub.model_file(str(tiny_model), "missing.json") is None
    assert hub.find_tokenizer(None) is None


def test_a_cached_hub_id_resolves_to_the_snapshot_main_points_at(cache: Path,
                                                                 tiny_model: Path) -> None:
    snapshot = cache_model(cache, "o/m", tiny_model)
    assert hub.find_tokenizer("o/m") == snapshot / "tokenizer.json"
    assert discovery.from_model_folder("o/m") == 131072
    assert hub.find_tokenizer("o/other") is None
    assert hub.find_tokenizer("not a/valid id!") is None


def test_a_snapshot_main_does_not_point_at_is_not_used(cache: Path, tiny_model: Path) -> None:
    repo = cache_model(cache, "o/m", tiny_model).parent.parent
    (repo / "refs" / "main").write_text("fedcba9")
    assert hub.find_tokenizer("o/m") is None


@pytest.mark.parametrize("variable", ["HF_HOME", "XDG_CACHE_HOME", "HF_HUB_CACHE"])
def test_the_cache_is_where_the_environment_puts_it(tmp_path: Path, tiny_model: Path,
                                                    variable: str) -> None:
    """In a fresh process, as anyclaude runs: count_tokens, discovery and doctor all look
    where huggingface_hub does."""
    root = tmp_path / "somewhere"
    cache = {"HF_HOME": root / "hub", "XDG_CACHE_HOME": root / "huggingface" / "hub",
             "HF_HUB_CACHE": root}[variable]
    snapshot = cache_model(cache, "o/m", tiny_model)
    env = {k: v for k, v in os.environ.items()
           if k not in ("HF_HOME", "XDG_CACHE_HOME", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE")}
    env[variable] = str(root)
    code = ("from anyclaude import hub; from anyclaude.doctor.backend import hub_snapshot; "
            "print(hub.find_tokenizer('o/m')); print(hub_snapshot('o/m'))")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=120, check=True).stdout.split()
    assert out == [str(snapshot / "tokenizer.json"), str(snapshot)]
