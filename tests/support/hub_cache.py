"""A Hugging Face cache entry laid out the way `hf download` leaves it (a snapshot folder named
by its commit, `refs/main` naming that commit), so tests need no network."""

from __future__ import annotations

import shutil
from pathlib import Path


def cache_model(cache: Path, repo_id: str, files: Path, commit: str = "0123abc") -> Path:
    """Copy the model folder `files` into `cache` as `repo_id`'s `main`; its snapshot folder."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / commit
    shutil.copytree(files, snapshot)
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(commit, encoding="utf-8")
    return snapshot
