"""doctor's output: a table of checks and the settings in effect, or JSON for scripts."""

from __future__ import annotations

import json
from collections.abc import Sequence

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from anyclaude import __version__
from anyclaude import settings as settings_mod
from anyclaude.doctor.result import Result, Status
from anyclaude.redact import scrub
from anyclaude.settings import Settings

COLOURS: dict[Status, str] = {"ok": "green", "warn": "yellow", "fail": "bold red"}
SECRET_SUFFIXES = ("token", ".key")


def to_json(results: Sequence[Result]) -> str:
    return scrub(json.dumps([r.as_json() for r in results], indent=2, ensure_ascii=False))


def checks_table(results: Sequence[Result]) -> Table:
    """One row per check: the symbol, the check, what was found and, beneath it, the fix
    (two lines rather than four columns, so nothing is cut at 80 columns)."""
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    table.add_column("", no_wrap=True)
    table.add_column("Check", style="bold", no_wrap=True)
    table.add_column("Found (and the fix)", overflow="fold")
    for r in results:
        cell = Text(scrub(r.found))  # a URL's password, before the table folds it
        if r.fix:
            cell.append("\n→ " + scrub(r.fix), style=COLOURS[r.status])
        table.add_row(Text(r.symbol, style=COLOURS[r.status]), r.check, cell)
    return table


def _count(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def verdict(results: Sequence[Result]) -> Text:
    failed = sum(r.status == "fail" for r in results)
    warned = sum(r.status == "warn" for r in results)
    if failed:
        also = f", and {_count(warned, 'warning')}" if warned else ""
        return Text(f"✗ {_count(failed, 'problem')} to fix before anyclaude can run{also}.",
                    style=COLOURS["fail"])
    if warned:
        return Text(f"! anyclaude can run; see the {_count(warned, 'warning')} above.",
                    style=COLOURS["warn"])
    return Text("✓ Everything anyclaude needs is in place.", style=COLOURS["ok"])


def settings_table(settings: Settings) -> Table:
    """Every setting of this mode: TOML key, environment variable, value, where it came from."""
    mode = settings.mode
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False,
                  title=f"Settings (mode {mode})", title_justify="left", title_style="bold")
    table.add_column("Setting (TOML)", no_wrap=True)
    table.add_column("Environment", no_wrap=True)
    table.add_column("Value", overflow="fold", ratio=3)
    table.add_column("From", overflow="fold", ratio=2)
    for row in settings_mod.table():
        scope, _, _ = row.key.rpartition(".")
        if scope and scope != mode:
            continue
        source = settings.sources.get(row.key, "default").removeprefix("the ")
        value = None if row.derive and source == "default" else settings.value(row.key)
        shown = "(not set)" if value is None or value == () else \
            ", ".join(value) if isinstance(value, tuple) else scrub(str(value))
        if value is not None and row.key.endswith(SECRET_SUFFIXES):
            shown = "(set)"
        table.add_row(row.key, row.env, Text(shown, style="dim" if source == "default" else ""),
                      Text(source, style="dim"))
    return table


def render(results: Sequence[Result], settings: Settings, console: Console) -> None:
    with console.capture() as captured:
        console.print(Text(f"anyclaude {__version__} doctor · mode {settings.mode}",
                           style="bold"))
        console.print(checks_table(results))
        console.print(verdict(results))
        console.print()
        console.print(settings_table(settings))
    # Tables pad every cell; without the trailing blanks the output pastes and greps cleanly.
    console.file.write("\n".join(line.rstrip() for line in captured.get().splitlines()) + "\n")
    console.file.flush()
