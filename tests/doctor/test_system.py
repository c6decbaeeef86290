"""The machine: Python, the platform MLX needs (OpenBLAS on Linux), Claude Code and Node."""

from __future__ import annotations

import platform
import sys
import time
from pathlib import Path

import pytest

from anyclaude.backends.mlx_lm import openblas_path
from anyclaude.doctor.system import (
    MIN_CLAUDE_CODE,
    UPDATE_CLAUDE,
    claude_check,
    node_check,
    platform_check,
    python_check,
)
from anyclaude.launcher import INSTALL_HINT
from anyclaude.timeouts import VERSION_S
from tests.doctor.helpers import SYSTEM_PATH, context, one, script
from tests.support.claude_code import CLAUDE_VERSION, claude_path


def test_python_3_11_or_newer_passes_and_older_fails() -> None:
    assert python_check().status == "ok"
    assert sys.version.split()[0] in python_check().found
    old = python_check((3, 10, 12), "/usr/bin/python3.10")
    assert old.status == "fail" and "3.10.12 is older than 3.11" in old.found
    assert "Install Python 3.11" in old.fix


DEBIAN_OPENBLAS = Path("/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so.0")


@pytest.mark.skipif(sys.platform != "linux" or platform.machine() != "x86_64",
                    reason="Debian's OpenBLAS path is for x86_64 Linux")
def test_mlx_on_linux_with_debian_s_openblas_passes() -> None:
    assert DEBIAN_OPENBLAS.exists(), "install it: sudo apt install libopenblas0-pthread " \
        "(./scripts/test does)"
    result = platform_check("mlx-lm", "Linux", "x86_64")
    assert result.status == "ok" and str(DEBIAN_OPENBLAS) in result.found


def test_mlx_on_linux_without_openblas_warns_with_the_apt_command(tmp_path: Path) -> None:
    result = platform_check("mlx-lm", "Linux", "x86_64", lib_root=tmp_path)
    assert result.status == "warn" and "OpenBLAS" in result.found
    assert result.fix == "Install it: `sudo apt install libopenblas0-pthread`."


def test_openblas_is_looked_for_in_the_machine_s_multiarch_folder(tmp_path: Path) -> None:
    assert openblas_path("aarch64", tmp_path) == \
        tmp_path / "aarch64-linux-gnu/openblas-pthread/libopenblas.so.0"
    library = openblas_path("aarch64", tmp_path)
    library.parent.mkdir(parents=True)
    library.touch()
    assert platform_check("mlx-textgen", "Linux", "aarch64", tmp_path).status == "ok"


def test_mlx_needs_apple_silicon_on_a_mac() -> None:
    assert platform_check("mlx-lm", "Darwin", "arm64").status == "ok"
    intel = platform_check("mlx-lm", "Darwin", "x86_64")
    assert intel.status == "fail" and "MLX needs Apple Silicon" in intel.found
    assert "--mode lmstudio" in intel.fix and "--mode openai" in intel.fix


def test_modes_without_mlx_run_anywhere() -> None:
    assert platform_check("lmstudio", "Darwin", "x86_64").status == "ok"
    assert platform_check("openai", "Windows", "AMD64").status == "ok"
    assert platform_check("mlx-lm", "Windows", "AMD64").status == "fail"


def test_the_real_claude_code_passes_with_its_version(environ: dict[str, str]) -> None:
    real = claude_path()
    result = one(claude_check, context(environ, claude_path=str(real)))
    assert result.status == "ok"
    assert result.found == f"Claude Code {CLAUDE_VERSION} ({real})"


def test_claude_code_on_path_is_found_like_the_launcher_finds_it(
        environ: dict[str, str]) -> None:
    environ["PATH"] = f"{claude_path().parent}:{environ['PATH']}"
    result = one(claude_check, context(environ))
    assert result.status == "ok" and CLAUDE_VERSION in result.found


def test_an_old_claude_code_fails_with_the_update_command(environ: dict[str, str],
                                                          tmp_path: Path) -> None:
    old = script(tmp_path / "bin" / "claude", 'echo "1.0.44 (Claude Code)"\n')
    environ["PATH"] = f"{old.parent}:{environ['PATH']}"
    result = one(claude_check, context(environ))
    assert result.status == "fail"
    assert result.found == f"Claude Code 1.0.44 ({old}) is older than " \
        f"{'.'.join(map(str, MIN_CLAUDE_CODE))}"
    assert result.fix == f"Update it: `{UPDATE_CLAUDE}`."


@pytest.mark.parametrize(("said", "status", "found"), [
    ("2.1.100 (Claude Code)", "warn", " is older than 2.1.197, the oldest version anyclaude is "
     "tested with"),
    ("2.1.197 (Claude Code)", "ok", ""),
    ("2.1.332 (Claude Code)", "ok", ""),
    ("2.2.5 (Claude Code)", "ok", ", newer than the newest tested (2.1.332)"),
])
def test_claude_code_older_than_the_oldest_tested_warns_with_the_update_command(
        environ: dict[str, str], tmp_path: Path, said: str, status: str, found: str) -> None:
    fake = script(tmp_path / "bin" / "claude", f'echo "{said}"\n')
    result = one(claude_check, context(environ, claude_path=str(fake)))
    assert result.status == status
    assert result.found == f"Claude Code {said.split()[0]} ({fake}){found}"
    if status == "warn":
        assert result.fix == "Update it: `npm install -g @anthropic-ai/claude-code@latest`."


def test_a_missing_claude_code_fails_with_the_install_command(environ: dict[str, str]) -> None:
    result = one(claude_check, context(environ))
    assert result.status == "fail" and result.found == "Claude Code (`claude`) is not on PATH"
    assert INSTALL_HINT.replace("install", "Install", 1) in result.fix


def test_a_missing_claude_code_is_only_a_warning_in_proxy_only_mode(
        environ: dict[str, str]) -> None:
    assert one(claude_check, context(environ, proxy_only=True)).status == "warn"


def test_a_wrong_claude_path_setting_is_named(environ: dict[str, str], tmp_path: Path) -> None:
    result = one(claude_check, context(environ, claude_path=str(tmp_path / "nope")))
    assert result.status == "fail" and "ANYCLAUDE_CLAUDE_PATH (claude_path)" in result.found


def test_a_claude_that_never_answers_is_a_warning_within_the_timeout(
        environ: dict[str, str], tmp_path: Path) -> None:
    stuck = script(tmp_path / "claude", "sleep 60\n")
    started = time.monotonic()
    result = one(claude_check, context(environ, claude_path=str(stuck)))
    assert time.monotonic() - started < VERSION_S + 3
    assert result.status == "warn" and "did not say a version (no answer within" in result.found


def test_node_on_path_passes_with_its_version(environ: dict[str, str]) -> None:
    result = one(node_check, context(environ))
    assert result.status == "ok" and result.found.startswith("Node.js ")


def test_a_missing_or_old_node_warns(environ: dict[str, str], tmp_path: Path) -> None:
    environ["PATH"] = str(tmp_path / "empty")
    missing = one(node_check, context(environ))
    assert missing.status == "warn" and "not on PATH" in missing.found
    assert "Node.js 18 or newer" in missing.fix
    old = script(tmp_path / "bin" / "node", 'echo "v16.20.2"\n')
    environ["PATH"] = f"{old.parent}:{SYSTEM_PATH}"
    result = one(node_check, context(environ))
    assert result.status == "warn" and "Node.js 16.20.2 is older than 18.0.0" in result.found
