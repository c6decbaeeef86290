"""Shell completions: generated from the CLI definition by scripts/gen-completions, committed
in completions/, and really loadable by bash, zsh and fish (each run non-interactively).

The shells are part of the test set-up (./scripts/test installs zsh and fish); a missing one
fails the test rather than skipping it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import typer

from anyclaude import backends, cli

ROOT = Path(__file__).resolve().parents[1]
COMPLETIONS = ROOT / "completions"
GENERATOR = ROOT / "scripts" / "gen-completions"
FILES = ("anyclaude.bash", "_anyclaude", "anyclaude.fish")
MODES = backends.names()


def shell(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed; ./scripts/test installs it (apt install {name}).",
                    pytrace=False)
    return path


def generate(out: Path) -> None:
    subprocess.run([sys.executable, str(GENERATOR), str(out)], check=True, capture_output=True,
                   timeout=60)


def options(command: str) -> list[str]:
    """The long options of a command, read from the CLI definition itself."""
    cmd = typer.main.get_command(cli.COMMANDS[command])
    context = cmd.context_class(cmd)
    return [p.opts[0] for p in cmd.get_params(context) if p.opts[0].startswith("--")]


def test_the_committed_completions_are_what_the_generator_makes_now(tmp_path: Path) -> None:
    generate(tmp_path)
    for name in FILES:
        assert (tmp_path / name).read_bytes() == (COMPLETIONS / name).read_bytes(), \
            f"completions/{name} is stale: run `.venv/bin/python scripts/gen-completions`"


def test_generating_twice_gives_byte_identical_files(tmp_path: Path) -> None:
    generate(tmp_path / "a")
    generate(tmp_path / "b")
    for name in FILES:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_every_command_option_and_mode_is_in_every_file() -> None:
    for name in FILES:
        text = (COMPLETIONS / name).read_text()
        for command in cli.COMMANDS:
            assert command in text
            for option in options(command):
                assert option.removeprefix("--") in text, (name, option)
        for mode in MODES:
            assert mode in text, (name, mode)
    assert "--json" in options("doctor") and "--version" in options("")


BASH_COMPLETE = """
source "$1"
complete -p anyclaude
words() {
  COMP_WORDS=("$@"); COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); COMPREPLY=()
  _anyclaude
  echo "${COMPREPLY[*]}"
}
words anyclaude --mode ""
words anyclaude --mode ml
words anyclaude --mode = ""
words anyclaude --mo
words anyclaude ""
words anyclaude doctor --j
words anyclaude -p hi --proxy
words anyclaude -- --mo
"""


def test_bash_loads_the_completion_and_completes_options_and_modes() -> None:
    result = subprocess.run([shell("bash"), "--norc", "--noprofile", "-c", BASH_COMPLETE, "x",
                             str(COMPLETIONS / "anyclaude.bash")], capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "complete -o default -F _anyclaude anyclaude",
        " ".join(MODES),
        " ".join(m for m in MODES if m.startswith("mlx")),
        " ".join(MODES),  # --mode=<TAB>
        "--mode",
        "doctor status stop",
        "--json",
        "--proxy-only",
        "",  # after --, Claude Code's arguments: file names
    ]


def fish_complete(line: str) -> list[str]:
    script = f"source {COMPLETIONS / 'anyclaude.fish'}; complete -C {line!r}"
    result = subprocess.run([shell("fish"), "--no-config", "-c", script], capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    return [entry.split("\t")[0] for entry in result.stdout.splitlines()]


def test_fish_loads_the_completion_and_completes_options_and_modes() -> None:
    assert fish_complete("anyclaude --mo") == ["--mode"]
    assert sorted(fish_complete("anyclaude --mode ")) == sorted(MODES)
    assert fish_complete("anyclaude doc") == ["doctor"]
    assert "--json" in fish_complete("anyclaude doctor --")
    assert "--json" not in fish_complete("anyclaude --")
    assert "--version" not in fish_complete("anyclaude doctor --")


def zsh_env(tmp_path: Path) -> dict[str, str]:
    zdotdir = tmp_path / "zdotdir"
    zdotdir.mkdir(exist_ok=True)
    return {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), "ZDOTDIR": str(zdotdir),
            "TERM": "dumb"}


def test_zsh_loads_the_completion_with_compinit(tmp_path: Path) -> None:
    script = textwrap.dedent(f"""
        fpath=({COMPLETIONS} $fpath)
        autoload -Uz compinit && compinit -u -d "$ZDOTDIR/.zcompdump"
        print -r -- "$_comps[anyclaude]"
        autoload +X _anyclaude && whence -w _anyclaude
    """)
    result = subprocess.run([shell("zsh"), "-f", "-c", script], env=zsh_env(tmp_path),
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["_anyclaude", "_anyclaude: function"]


ZSH_TYPE = r"""
zmodload zsh/zpty
zpty z zsh -f -i
zpty -w z "PS1='%% '; fpath=($1 \$fpath); autoload -Uz compinit; compinit -u -d \$ZDOTDIR/.zcompdump; unsetopt beep"
zpty -w -n z "$2"$'\t'
local out chunk
integer i
for (( i = 0; i < 100; i++ )); do
  zpty -r -t z chunk && out+=$chunk
  [[ $out == *openai* ]] && break
  sleep 0.1
done
zpty -d z
print -r -- $out
"""


def test_zsh_completes_the_mode_names(tmp_path: Path) -> None:
    result = subprocess.run([shell("zsh"), "-f", "-c", ZSH_TYPE, "x", str(COMPLETIONS),
                             "anyclaude --mode "], env=zsh_env(tmp_path), capture_output=True,
                            text=True, timeout=60)
    listed = result.stdout.partition("anyclaude --mode")[2]  # what follows the typed line
    for mode in MODES:
        assert mode in listed, result.stdout[-500:]
