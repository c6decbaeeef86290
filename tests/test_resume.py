"""The resume line printed after an interactive session: the session Claude Code saved
during the run, and the backend flags that did not come from a config file."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from anyclaude import settings
from anyclaude.resume import (
    backend_flags,
    is_print_mode,
    project_folder,
    resume_command,
    resume_lines,
    session_written,
)

ID_OLD = "0cd86976-b197-480a-b46b-d4b28f8ce753"
ID_NEW = "ccc2c901-0fb6-48fb-a5c0-e4e4cf8b53ef"


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.delenv("ANYCLAUDE_CONFIG", raising=False)
    yield


def saved(folder: Path, name: str, mtime: float) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.jsonl"
    path.write_text("{}\n")
    os.utime(path, (mtime, mtime))


def test_the_project_folder_is_claude_code_s_slug_of_the_path() -> None:
    home = {"HOME": "/home/dev"}
    assert project_folder(Path("/tmp/ccexp/proj-2.1.197"), home) == Path(
        "/home/dev/.claude/projects/-tmp-ccexp-proj-2-1-197")
    assert project_folder(Path("/w/a_b c"), {**home, "CLAUDE_CONFIG_DIR": "/cfg"}) == Path(
        "/cfg/projects/-w-a-b-c")


def test_the_newest_session_saved_during_the_run_is_found(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path)}
    cwd = Path("/work/project")
    folder = project_folder(cwd, env)
    now = time.time()
    assert session_written(cwd, env, now - 10) is None, "no folder yet"
    saved(folder, ID_OLD, now - 3600)
    assert session_written(cwd, env, now - 10) is None, "only an older session"
    saved(folder, ID_NEW, now - 5)
    saved(folder, "not-a-session", now)
    assert session_written(cwd, env, now - 10) == ID_NEW
    saved(folder, ID_OLD, now - 1)  # resumed: the old session was written again, last
    assert session_written(cwd, env, now - 10) == ID_OLD


@pytest.mark.parametrize(("args", "printing"), [
    ([], False), (["--resume", ID_OLD], False), (["fix the bug"], False),
    (["-p", "hi"], True), (["--print", "hi"], True), (["--model", "x", "--print=hi"], True)])
def test_print_mode_is_recognised(args: list[str], printing: bool) -> None:
    assert is_print_mode(args) is printing


def test_flags_are_added_for_settings_from_the_command_line_or_environment(
        tmp_path: Path) -> None:
    (tmp_path / ".anyclaude.toml").write_text('mode = "lmstudio"\n[lmstudio]\n'
                                              'model = "qwen/qwen3-coder"\n')
    from_file = settings.load({}, {}, tmp_path)
    assert backend_flags(from_file) == []
    assert resume_command(ID_NEW, from_file) == f"anyclaude --resume {ID_NEW}"
    explicit = settings.load({"mode": "openai", "context_window": 8192},
                             {"ANYCLAUDE_OPENAI_URL": "http://127.0.0.1:9000/v1",
                              "ANYCLAUDE_OPENAI_MODEL": "my model"}, tmp_path)
    assert resume_command(ID_NEW, explicit) == (
        "anyclaude --mode openai --backend-url http://127.0.0.1:9000/v1 --backend-model "
        f"'my model' --context-window 8192 --resume {ID_NEW}")


def test_the_lines_come_only_after_an_interactive_session_that_was_saved(
        tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path)}
    config = settings.load({}, env, tmp_path)
    now = time.time()
    assert resume_lines(config, [], tmp_path, env, now - 10) == []
    saved(project_folder(tmp_path, env), ID_NEW, now)
    assert resume_lines(config, ["-p", "hi"], tmp_path, env, now - 10) == []
    assert resume_lines(config, [], tmp_path, env, now - 10) == [
        "[anyclaude] Resume this session through anyclaude with:",
        f"anyclaude --resume {ID_NEW}"]
