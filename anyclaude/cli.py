"""The `anyclaude` command: a few options of its own, everything else for Claude Code.

anyclaude's options use names Claude Code does not have, so anything else on the command
line (and everything after `--`) reaches `claude` unchanged and in order. The one
subcommand, `anyclaude doctor`, is picked off before parsing: a group would take Claude
Code's prompt (`anyclaude "fix the bug"`) for a subcommand name.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from anyclaude import __version__, backends, launcher
from anyclaude import settings as settings_mod
from anyclaude.settings import Settings, SettingsError
from anyclaude.supervisor import BackendError, note

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

Settings: these flags, then the environment (ANYCLAUDE_MODE, MLX_LM_MODEL, ...), then TOML files (the user config folder's config.toml, then the project's .anyclaude.toml), then defaults. `anyclaude doctor` lists every setting.
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

PASSTHROUGH = {"allow_extra_args": True, "ignore_unknown_options": True,
               "allow_interspersed_args": True, "help_option_names": ["--help"]}

stderr = Console(stderr=True, highlight=False, soft_wrap=True)


def debug_level(environ: Mapping[str, str] | None = None) -> int:
    """ANYCLAUDE_DEBUG read leniently: it decides whether a traceback may be shown even
    when the settings themselves are broken."""
    try:
        return int((environ or os.environ).get("ANYCLAUDE_DEBUG") or 0)
    except ValueError:
        return 0


def error(message: str, detail: str = "") -> None:
    stderr.print(f"[bold red]anyclaude:[/] {escape(message)}")
    if detail:
        stderr.print(escape(detail), style="dim")


def load_settings(options: Mapping[str, Any], environ: Mapping[str, str] | None = None,
                  cwd: Path | None = None) -> Settings:
    """Settings with the command-line options on top. `--backend-url`/`--backend-model`
    belong to whichever mode wins, so the mode is resolved first."""
    flags = {key: options.get(key) for key in
             ("mode", "port", "context_window", "startup_timeout", "proxy_only")}
    resolved = settings_mod.load(flags, environ, cwd)
    backend = resolved.backend
    extra: dict[str, Any] = {}
    if options.get("backend_url") is not None:
        extra[f"{backend.name}.url"] = options["backend_url"]
    if options.get("backend_model") is not None:
        if backend.model_setting is None:
            raise SettingsError(f"--backend-model does not apply to {backend.name} mode, which "
                                "has no model setting; remove it.")
        extra[f"{backend.name}.model"] = options["backend_model"]
    return settings_mod.load({**flags, **extra}, environ, cwd) if extra else resolved


def warn_unknown_keys(settings: Settings) -> None:
    for path in settings.files:
        unknown = settings_mod.unknown_keys(settings_mod.read_config(path))
        if unknown:
            note(stderr, f"Ignoring unknown setting(s) {', '.join(unknown)} in {path}; "
                 "`anyclaude doctor` lists the known ones.")


def guarded(action: Callable[[], int]) -> int:
    """Run `action`, turning every user-facing error into one sentence and an exit code;
    a traceback only with ANYCLAUDE_DEBUG≥1."""
    try:
        return action()
    except SettingsError as exc:
        error(str(exc))
        return 2
    except (BackendError, launcher.LaunchError) as exc:
        error(str(exc), getattr(exc, "log_tail", ""))
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
    version: Annotated[bool, typer.Option(
        "--version", is_eager=True, callback=_version,
        help="Show anyclaude's version (Claude Code's: anyclaude -- --version).")] = False,
) -> None:
    options = dict(mode=mode, proxy_only=proxy_only or None, port=port,
                   backend_url=backend_url, backend_model=backend_model,
                   context_window=context_window, startup_timeout=startup_timeout)
    claude_args = list(ctx.args)

    def action() -> int:
        settings = load_settings(options)
        warn_unknown_keys(settings)
        return asyncio.run(launcher.run(settings, claude_args, console=stderr))

    raise typer.Exit(guarded(action))


doctor_app = typer.Typer(add_completion=False, rich_markup_mode="rich",
                         pretty_exceptions_show_locals=False)


@doctor_app.command(help="Check the set-up (backend, model, Claude Code, settings) and say "
                    "what to fix.", context_settings={"help_option_names": ["--help"]})
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
        settings = load_settings(options)
        try:
            module = importlib.import_module("anyclaude.doctor")
        except ModuleNotFoundError as exc:
            if exc.name != "anyclaude.doctor":
                raise
            error("anyclaude doctor is not available in this installation; update anyclaude.")
            return 1
        return int(module.run(settings, as_json))

    raise typer.Exit(guarded(action))


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point (`anyclaude`, `python -m anyclaude`)."""
    args = list(sys.argv[1:] if argv is None else argv)
    app, name = (doctor_app, "anyclaude doctor") if args[:1] == ["doctor"] else \
        (launch_app, "anyclaude")
    if app is doctor_app:
        args = args[1:]
    command = typer.main.get_command(app)
    command.main(args=args, prog_name=name, standalone_mode=True)
