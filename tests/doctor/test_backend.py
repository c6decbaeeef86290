"""What anyclaude needs to start and size the backend: the package or app, the model, the
context window and the proxy's port."""

from __future__ import annotations

import shutil
import socket
import sys
from pathlib import Path

import pytest

from anyclaude import hub
from anyclaude.doctor.backend import (
    CLAUDE_CODE_FIRST_PROMPT_TOKENS,
    COMFORTABLE_CONTEXT_TOKENS,
    context_check,
    model_check,
    package_check,
    proxy_port_check,
)
from tests.doctor.helpers import closed_port, context, one, python_without_mlx, run, script
from tests.support.hub_cache import cache_model
from tests.support.scripted import ScriptedBackend
from tests.support.tiny_model import build_scripted_model, default_models_dir


@pytest.fixture(scope="module")
def tiny_model() -> Path:
    return build_scripted_model(default_models_dir() / "scripted")


def down(port: int | None = None) -> str:
    return f"http://127.0.0.1:{port or closed_port()}/v1"


# -- the package ----------------------------------------------------------------------------

def test_mlx_lm_installed_in_the_configured_python_passes(environ: dict[str, str]) -> None:
    result = one(package_check, context(environ, **{"mlx-lm.url": down(),
                                                    "mlx-lm.python": sys.executable}))
    assert result.status == "ok" and result.found == f"mlx-lm is installed in {sys.executable}"


def test_the_package_is_looked_up_without_importing_it(environ: dict[str, str],
                                                       tmp_path: Path) -> None:
    """Importing these stand-ins would fail: the check finds them without importing them."""
    site = tmp_path / "site"
    for name in ("mlx_lm", "mlx", "mlx/core"):
        (site / name).mkdir(parents=True, exist_ok=True)
        (site / name / "__init__.py").write_text("raise SystemExit('imported')\n")
    (site / "mlx" / "__init__.py").write_text("")
    environ["PYTHONPATH"] = str(site)
    python = python_without_mlx(tmp_path / "venv")
    result = one(package_check, context(environ, **{"mlx-lm.url": down(),
                                                    "mlx-lm.python": str(python)}))
    assert result.status == "ok" and result.found == f"mlx-lm is installed in {python}"


def test_a_python_without_mlx_lm_fails_with_the_pip_command(environ: dict[str, str],
                                                            tmp_path: Path) -> None:
    python = python_without_mlx(tmp_path / "venv")
    result = one(package_check, context(environ, **{"mlx-lm.url": down(),
                                                    "mlx-lm.python": str(python)}))
    assert result.status == "fail" and "No module named 'mlx" in result.found
    assert result.fix.startswith(f"Install it: `{python} -m pip install ")
    assert "MLX_LM_PYTHON" in result.fix


def test_a_missing_mlx_lm_is_a_warning_when_a_server_already_runs(
        environ: dict[str, str], tmp_path: Path) -> None:
    python = python_without_mlx(tmp_path / "venv")
    with ScriptedBackend("mlx-lm") as be:
        result = one(package_check, context(environ, **{"mlx-lm.url": be.url,
                                                        "mlx-lm.python": str(python)}))
    assert result.status == "warn" and "the running server does not need it" in result.found


def test_an_mlx_lm_python_that_does_not_exist_fails(environ: dict[str, str],
                                                    tmp_path: Path) -> None:
    result = one(package_check, context(environ, **{"mlx-lm.url": down(),
                                                    "mlx-lm.python": str(tmp_path / "py")}))
    assert result.status == "fail" and "MLX_LM_PYTHON is" in result.found


def test_mlx_textgen_and_lms_must_be_on_path(environ: dict[str, str], tmp_path: Path) -> None:
    for mode, command, setting in (("mlx-textgen", "mlx_textgen", "MLX_TEXTGEN_EXECUTABLE"),
                                   ("lmstudio", "lms", "npx lmstudio install-cli")):
        missing = one(package_check, context(environ, mode=mode, **{f"{mode}.url": down()}))
        assert missing.status == "fail" and missing.found == f"`{command}` is not on PATH"
        assert setting in missing.fix
        tool = script(tmp_path / "bin" / command, "exit 0\n")
        found = one(package_check, context({**environ, "PATH": str(tool.parent)}, mode=mode,
                                           **{f"{mode}.url": down()}))
        assert found.status == "ok" and found.found == f"{command} at {tool}"


def test_lms_installed_by_lm_studio_but_not_on_path_is_pointed_at(
        environ: dict[str, str]) -> None:
    bundled = script(Path(environ["HOME"]) / ".lmstudio" / "bin" / "lms", "exit 0\n")
    result = one(package_check, context(environ, mode="lmstudio", **{"lmstudio.url": down()}))
    assert result.status == "fail" and f"LMSTUDIO_LMS={bundled}" in result.fix


def test_a_missing_lms_is_a_warning_when_lm_studio_s_server_runs(
        environ: dict[str, str]) -> None:
    with ScriptedBackend("lmstudio") as be:
        result = one(package_check, context(environ, mode="lmstudio",
                                            **{"lmstudio.url": be.url}))
    assert result.status == "warn"


def test_modes_without_a_package_have_no_package_row(environ: dict[str, str]) -> None:
    assert run(package_check, context(environ, mode="openai")) == []
    assert run(package_check, context(environ, mode="claude")) == []


# -- the model ------------------------------------------------------------------------------

def test_a_real_model_folder_passes(environ: dict[str, str], tiny_model: Path) -> None:
    result = one(model_check, context(environ, **{"mlx-lm.model": str(tiny_model)}))
    assert result.status == "ok" and result.found == f"model folder {tiny_model}"


def test_a_model_path_that_does_not_exist_fails(environ: dict[str, str],
                                                tmp_path: Path) -> None:
    missing = tmp_path / "models" / "qwen"
    result = one(model_check, context(environ, **{"mlx-lm.model": str(missing)}))
    assert result.status == "fail"
    assert result.found == f"MLX_LM_MODEL names {missing}, which is not a folder"
    assert result.fix == "Point MLX_LM_MODEL at a model folder or a Hugging Face id (owner/name)."


def test_a_folder_without_weights_is_not_a_model_folder(environ: dict[str, str],
                                                        tmp_path: Path, tiny_model: Path) -> None:
    folder = tmp_path / "half"
    folder.mkdir()
    for name in ("config.json", "tokenizer.json"):
        shutil.copy(tiny_model / name, folder / name)
    result = one(model_check, context(environ, **{"mlx-lm.model": str(folder)}))
    assert result.status == "fail" and "has no weights (*.safetensors)" in result.found


def test_a_hub_id_in_the_hugging_face_cache_passes_and_one_not_cached_warns(
        environ: dict[str, str], tmp_path: Path, tiny_model: Path) -> None:
    snapshot = cache_model(hub.cache_dir(), "mlx-community/Tiny-4bit", tiny_model)
    cached = one(model_check, context(environ, **{"mlx-lm.model": "mlx-community/Tiny-4bit"}))
    assert cached.status == "ok" and str(snapshot) in cached.found
    absent = one(model_check, context(environ, **{"mlx-lm.model": "mlx-community/Other-4bit"}))
    assert absent.status == "warn" and "the first start downloads it" in absent.found
    assert "`hf download mlx-community/Other-4bit`" in absent.fix


def test_an_incomplete_snapshot_is_not_a_cached_model(environ: dict[str, str],
                                                      tiny_model: Path) -> None:
    snapshot = cache_model(hub.cache_dir(), "o/m", tiny_model)
    for weights in snapshot.glob("*.safetensors"):
        weights.unlink()
    result = one(model_check, context(environ, **{"mlx-lm.model": "o/m"}))
    assert result.status == "warn" and "is not in the Hugging Face cache" in result.found


def test_no_model_fails_unless_a_server_already_runs(environ: dict[str, str]) -> None:
    result = one(model_check, context(environ, **{"mlx-lm.url": down()}))
    assert result.status == "fail" and result.found.startswith("MLX_LM_MODEL is not set")
    with ScriptedBackend("mlx-lm") as be:
        running = one(model_check, context(environ, **{"mlx-lm.url": be.url}))
    assert running.status == "ok"


# -- the context window ---------------------------------------------------------------------

@pytest.mark.parametrize("dialect", ["lmstudio", "vllm"])
def test_a_server_reporting_a_small_context_fails(environ: dict[str, str],
                                                  dialect: str) -> None:
    mode = "lmstudio" if dialect == "lmstudio" else "openai"
    with ScriptedBackend(dialect, context_length=8192) as be:  # type: ignore[arg-type]
        result = one(context_check, context(environ, mode=mode, **{f"{mode}.url": be.url,
                                                                   f"{mode}.model": "scripted"}))
    assert result.status == "fail"
    assert result.found == "8192 tokens (reported by the server) is smaller than Claude " \
        f"Code's first prompt (~{CLAUDE_CODE_FIRST_PROMPT_TOKENS} tokens)"
    expected = "`lms load scripted --context-length 32768`" if mode == "lmstudio" else \
        "--max-model-len 32768"
    assert expected in result.fix


def test_a_tight_context_warns_and_a_big_one_passes(environ: dict[str, str]) -> None:
    with ScriptedBackend("vllm", context_length=24576) as be:
        tight = one(context_check, context(environ, mode="openai", **{"openai.url": be.url}))
    assert tight.status == "warn" and "leaves little room" in tight.found
    with ScriptedBackend("vllm", context_length=131072) as be:
        big = one(context_check, context(environ, mode="openai", **{"openai.url": be.url}))
    assert big.status == "ok" and big.found == "131072 tokens (reported by the server)"


def test_the_context_comes_from_the_setting_or_the_model_folder(
        environ: dict[str, str], tiny_model: Path) -> None:
    small = one(context_check, context(environ, context_window=16384,
                                       **{"mlx-lm.url": down()}))
    assert small.status == "fail" and "Raise ANYCLAUDE_CONTEXT_WINDOW" in small.fix
    folder = one(context_check, context(environ, **{"mlx-lm.url": down(),
                                                    "mlx-lm.model": str(tiny_model)}))
    assert folder.status == "ok" and folder.found == "131072 tokens (from the model's config)"
    assert COMFORTABLE_CONTEXT_TOKENS <= 131072


def test_an_unknown_context_warns_with_the_setting_to_use(environ: dict[str, str]) -> None:
    result = one(context_check, context(environ, mode="lmstudio", **{"lmstudio.url": down()}))
    assert result.status == "warn" and result.found.startswith("unknown")
    assert "ANYCLAUDE_CONTEXT_WINDOW" in result.fix


# -- the proxy port -------------------------------------------------------------------------

def test_any_free_port_and_a_free_fixed_port_pass() -> None:
    assert proxy_port_check(0).status == "ok"
    assert proxy_port_check(closed_port()).status == "ok"


def test_a_port_in_use_fails_with_the_options_to_change_it() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = proxy_port_check(port)
    assert result.status == "fail" and result.found == f"127.0.0.1:{port} is not available " \
        "(in use)"
    assert result.fix == "Choose another --port (ANYCLAUDE_PORT), or 0 for any free port."
