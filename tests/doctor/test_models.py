"""doctor's `models` rows: the small model and every model to choose from exist where the
backend looks for them, and the backend can serve them."""

from __future__ import annotations

from pathlib import Path

from anyclaude.doctor.models import models_check
from tests.doctor.helpers import context, run
from tests.support.scripted import ScriptedBackend
from tests.support.tiny_model import build_scripted_model, default_models_dir


def test_nothing_to_check_without_extra_models(environ: dict[str, str]) -> None:
    assert run(models_check, context(environ)) == []


def test_model_folders_and_hub_ids_are_looked_up_like_the_main_model(
        environ: dict[str, str], tmp_path: Path) -> None:
    tiny = build_scripted_model(default_models_dir() / "scripted")
    missing = tmp_path / "models" / "gone"
    rows = run(models_check, context(environ, small_model=str(tiny),
                                     models=f"{missing},org/not-downloaded"))
    assert [(r.status, r.found) for r in rows] == [
        ("ok", f"small_model (ANYCLAUDE_SMALL_MODEL): model folder {tiny}"),
        ("fail", f"models (ANYCLAUDE_MODELS) names {missing}, which is not a folder"),
        ("warn", "models (ANYCLAUDE_MODELS): org/not-downloaded is not in the Hugging Face "
                 "cache; the first start downloads it")]


def test_lm_studio_models_must_be_listed_by_the_server(environ: dict[str, str]) -> None:
    with ScriptedBackend("lmstudio", model="qwen/small") as server:
        rows = run(models_check, context(environ, mode="lmstudio", small_model="qwen/small",
                                         models="qwen/other",
                                         **{"lmstudio.url": server.url,
                                            "lmstudio.model": "qwen/small"}))
    assert [(r.status, r.found) for r in rows] == [
        ("ok", "small_model (ANYCLAUDE_SMALL_MODEL): qwen/small (listed by the server)"),
        ("warn", "models (ANYCLAUDE_MODELS): the server does not list qwen/other")]
    assert rows[1].fix.startswith("Download qwen/other into the server")


def test_a_server_with_one_model_cannot_offer_models(environ: dict[str, str]) -> None:
    rows = run(models_check, context(environ, mode="mlx-textgen", models="org/other"))
    assert rows[0].status == "warn"
    assert rows[0].found == "mlx-textgen serves only the model it started with, so `models` " \
        "cannot be chosen"
