"""The `anyclaude` command: a few options of its own, everything else for Claude Code.

anyclaude's options use names Claude Code does not have, so anything else on the command
line (and everything after `--`) reaches `claude` unchanged and in order. The one
subcommand, `anyclaude doctor`, is picked off before parsing: a group would take Claude
Code's prompt (`anyclaude "fix the bug"`) for a subcommand name. `COMMANDS` is the whole
command line's definition; `scripts/gen-completions` builds the shell completions from it.

Output: `[anyclaude]` lines in one accent colour, warnings yellow, errors red; nothing at
all when there is nothing to say. A user error is one sentence, never a traceback (unless
ANYCLAUDE_DEBUG≥1).

Imports: `--help`, `--version` and completions load only this module, typer/rich and the
backend declarations; the settings, the launcher (aiohttp, the proxy) and doctor are imported
inside the commands that use them (`tests/test_startup.py` holds this).
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Annotated, ClassVar

import typer
from rich.console import Console
from rich.highlighter import RegexHighlighter
from rich.markup import escape
from rich.theme import Theme

from anyclaude import __version__, backends
from anyclaude.errors import UserError
from anyclaude.redact import scrub

if TYPE_CHECKING:
    from anyclaude.settings import Settings

HELP = """Run Claude Code on a local or alternative model.

anyclaude starts the backend server if it is not running (and stops it again), serves an Anthropic-compatible proxy on 127.0.0.1, and runs Claude Code pointed at it. Options not listed here, and everything after --, go to Claude Code unchanged and in order.
"""

EPILOG = """[bold]Examples[/]
  anyclaude                               # Claude Code on mlx-lm
  anyclaude -p "say hi" --output-format json
  anyclaude --mode lmstudio --backend-model qwen/qwen3-coder-30b
  anyclaude --proxy-only --port 8082      # the proxy for another shell
  anyclaude -- --help                     # Claude Code's own help
  anyclaude doctor \\[--json]               # check the set-up

Settings: these flags, then the environment (ANYCLAUDE_MODE, MLX_LM_MODEL, ...), then TOML files (the user config folder's config.toml, then the project's .anyclaude.toml), then defaults. `anyclaude doctor` shows the settings in effect.
"""

DOCTOR_HELP = """Check the set-up and say what to fix.

One row per check (settings and config files, Python, the platform, Claude Code, Node, the backend's package, the model, the server and its URL, the context window, the proxy port): ✓ fine, ! a warning, ✗ a problem, each ! and ✗ with a one-line fix. The checks run at once, each bounded by a short timeout, so doctor answers within seconds.
"""

DOCTOR_EPILOG = """[bold]Examples[/]
  anyclaude doctor                        # the configured mode
  anyclaude doctor --mode lmstudio        # another mode, without changing settings
  anyclaude doctor --backend-url http://127.0.0.1:8081/v1
  anyclaude doctor --json | jq '.[] | select(.status != "ok")'

Exit status: 0 when the configured mode can work (warnings allowed), 1 when a check failed. --json prints a list of {check, status (ok, warn, fail), symbol, found, fix}.
"""

ModeOption = Annotated[str | None, typer.Option(
    "--mode", metavar="MODE", show_default=False,
    help="Backend: " + ", ".join(backends.names()) + " (ANYCLAUDE_MODE; default mlx-lm).")]
PortOption = Annotated[str | None, typer.Option(
    "--port", metavar="PORT", show_default=False,
    help="Proxy port on 127.0.0.1; 0 picks a free one (ANYCLAUDE_PORT).")]
UrlOption = Annotated[str | None, typer.Option(
    "--backend-url", metavar="URL", show_default=False,
    help="The backend's base URL, e.g. http://127.0.0.1:8081/v1 (MLX_LM_URL, LMSTUDIO_URL...).")]
ModelOption = Annotated[str | None, typer.Option(
    "--backend-model", metavar="MODEL", show_default=False,
    help="The backend's model: a local folder or model id (MLX_LM_MODEL, LMSTUDIO_MODEL...).")]
WindowOption = Annotated[str | None, typer.Option(
    "--context-window", metavar="TOKENS", show_default=False,
    help="The model's context window (ANYCLAUDE_CONTEXT_WINDOW; default: discovered).")]
TimeoutOption = Annotated[str | None, typer.Option(
    "--startup-timeout", metavar="SECONDS", show_default=False,
    help="How long the backend may take to load its model (ANYCLAUDE_STARTUP_TIMEOUT; 300).")]

KeepAliveOption = Annotated[str | None, typer.Option(
    "--keep-alive", metavar="DURATION", show_default=False,
    help="How long a server anyclaude started stays up after the last session, e.g. 10m; "
    "0 stops it on exit (ANYCLAUDE_KEEP_ALIVE; 5m).")]

PASSTHROUGH = {"allow_extra_args": True, "ignore_unknown_options": True,
               "allow_interspersed_args": True, "help_option_names": ["--help"]}


class _Highlighter(RegexHighlighter):
    """Colours the `[anyclaude]` prefix of status lines wherever they are printed from."""

    base_style = "anyclaude."
    highlights: ClassVar[list[str]] = [r"^(?P<prefix>\[anyclaude\])"]


THEME = Theme({"anyclaude.prefix": "bold cyan", "anyclaude.warning": "yellow",
               "anyclaude.error": "bold red"})
stderr = Console(stderr=True, soft_wrap=True, highlighter=_Highlighter(), theme=THEME)


def debug_level(environ: Mapping[str, str] | None = None) -> int:
    """ANYCLAUDE_DEBUG read leniently: it decides whether a traceback may be shown even
    when the settings themselves are broken."""
    try:
        return int((environ or os.environ).get("ANYCLAUDE_DEBUG") or 0)
    except ValueError:
        return 0


def error(message: str, detail: str = "") -> None:
    """A user-facing error (URL passwords removed: messages often name the backend URL)."""
    stderr.print(f"[anyclaude.error]anyclaude:[/] {escape(scrub(message))}", highlight=False)
    if detail:
        stderr.print(escape(scrub(detail)), style="dim", highlight=False)


def warning(message: str) -> None:
    stderr.print(f"[anyclaude] {scrub(message)}", style="anyclaude.warning", markup=False)


def warn_unknown_keys(settings: Settings) -> None:
    for path, unknown in settings.unknown.items():
        if unknown:
            warning(f"Ignoring unknown setting(s) {', '.join(unknown)} in {path}; "
                    "`anyclaude doctor` suggests the right names.")


def guarded(action: Callable[[], int]) -> int:
    """Run `action`, turning every user-facing error into one sentence and an exit code;
    a traceback only with ANYCLAUDE_DEBUG≥1."""
    try:
        return action()
    except UserError as exc:
        error(str(exc), exc.log_tail)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if debug_level() >= 1:
            raise
        error(f"anyclaude failed unexpectedly ({type(exc).__name__}: {exc}); run it again "
              "with ANYCLAUDE_DEBUG=1 to see the traceback, and please report it.")
        return 1


def _version(value: bool) -> None:
    if value:
        print(f"anyclaude {__version__}")
        raise typer.Exit()


launch_app = typer.Typer(add_completion=False, rich_markup_mode="rich",
                         pretty_exceptions_show_locals=False)


@launch_app.command(help=HELP, epilog=EPILOG, context_settings=PASSTHROUGH)
def launch(
    ctx: typer.Context,
    mode: ModeOption = None,
    proxy_only: Annotated[bool, typer.Option(
        "--proxy-only", help="Serve the proxy only (and the backend); print its URL and token "
        "for another shell (PROXY_ONLY=true).")] = False,
    port: PortOption = None,
    backend_url: UrlOption = None,
    backend_model: ModelOption = None,
    context_window: WindowOption = None,
    startup_timeout: TimeoutOption = None,
    keep_alive: KeepAliveOption = None,
    version: Annotated[bool, typer.Option(
        "--version", is_eager=True, callback=_version,
        help="Show anyclaude's version (Claude Code's: anyclaude -- --version).")] = False,
) -> None:
    options = dict(mode=mode, proxy_only=proxy_only or None, port=port,
                   backend_url=backend_url, backend_model=backend_model,
                   context_window=context_window, startup_timeout=startup_timeout,
                   keep_alive=keep_alive)
    claude_args = list(ctx.args)

    def action() -> int:
        import asyncio

        from anyclaude import launcher, settings

        resolved = settings.load(options)
        warn_unknown_keys(resolved)
        return asyncio.run(launcher.run(resolved, claude_args, console=stderr))

    raise typer.Exit(guarded(action))


doctor_app = typer.Typer(add_completion=False, rich_markup_mode="rich",
                         pretty_exceptions_show_locals=False)


@doctor_app.command(help=DOCTOR_HELP, epilog=DOCTOR_EPILOG,
                    context_settings={"help_option_names": ["--help"]})
def doctor(
    as_json: Annotated[bool, typer.Option("--json", help="Print the checks as JSON.")] = False,
    mode: ModeOption = None,
    port: PortOption = None,
    backend_url: UrlOption = None,
    backend_model: ModelOption = None,
    context_window: WindowOption = None,
    startup_timeout: TimeoutOption = None,
) -> None:
    options = dict(mode=mode, port=port, backend_url=backend_url, backend_model=backend_model,
                   context_window=context_window, startup_timeout=startup_timeout)

    def action() -> int:
        try:
            module = importlib.import_module("anyclaude.doctor")
        except ModuleNotFoundError as exc:
            if exc.name != "anyclaude.doctor":
                raise
            error("anyclaude doctor is not available in this installation; update anyclaude.")
            return 1
        from anyclaude import settings

        # Invalid values are failed checks among the others, not the end of doctor.
        resolved, problems = settings.load_lenient(options)
        return int(module.run(resolved, as_json, problems=problems))

    raise typer.Exit(guarded(action))


status_app = typer.Typer(add_completion=False, rich_markup_mode="rich",
                         pretty_exceptions_show_locals=False)


@status_app.command(help="List the servers anyclaude keeps running after its sessions "
                    "(mode, model, URL, pid, memory, idle time, time left).",
                    context_settings={"help_option_names": ["--help"]})
def status() -> None:
    def action() -> int:
        from anyclaude import settings
        from anyclaude.keep import client, state

        for record in state.load_all(settings.load().state_dir):
            shown = client.describe(record)
            if shown["sessions"]:
                use = f"in use by {shown['sessions']} session(s)"
            elif shown["idle_s"] is not None:
                use = (f"idle {state.format_duration(shown['idle_s'])}, stops in "
                       f"{state.format_duration(shown['left_s'] or 0)}")
            else:
                use = "state unknown"
            where = f"{record.url} {record.description}" if record.description else record.url
            print(f"{record.mode}  {record.model or '-'}  {where}  pid {record.server_pid}  "
                  f"{shown['memory_bytes'] / 2**20:,.0f} MB  {use}", flush=True)
        return 0

    raise typer.Exit(guarded(action))


stop_app = typer.Typer(add_completion=False, rich_markup_mode="rich",
                       pretty_exceptions_show_locals=False)


@stop_app.command(help="Stop every server anyclaude keeps running, now.",
                  context_settings={"help_option_names": ["--help"]})
def stop() -> None:
    def action() -> int:
        from anyclaude import settings
        from anyclaude.keep import client

        for record in client.stop_all(settings.load().state_dir):
            stderr.print(f"[anyclaude] Stopped the {record.mode} server at {record.url} "
                         f"(pid {record.server_pid}).", markup=False)
        return 0

    raise typer.Exit(guarded(action))


COMMANDS: dict[str, typer.Typer] = {"": launch_app, "doctor": doctor_app,
                                    "status": status_app, "stop": stop_app}
"""The command line: `anyclaude [OPTIONS] [CLAUDE CODE ARGS]` and its subcommands."""


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point (`anyclaude`, `python -m anyclaude`)."""
    args = list(sys.argv[1:] if argv is None else argv)
    sub = args[0] if args and args[0] in COMMANDS and args[0] else ""
    command = typer.main.get_command(COMMANDS[sub])
    command.main(args=args[1:] if sub else args, prog_name=f"anyclaude {sub}".strip(),
                 standalone_mode=True)
