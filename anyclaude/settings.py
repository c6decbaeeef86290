"""Settings: command-line flags > environment > TOML config files > defaults, resolved once.

Every setting is one row of `table()` (its TOML key, environment variable, parser and help),
so `doctor`, `--help` and the README are all built from the same facts. One resolver, two
ways in: `load` for a run (the first bad value is one `SettingsError` sentence naming the
setting, where it came from, and the fix) and `load_lenient` for doctor (each bad value set
aside and kept as that sentence, the next source down used instead). The result is a typed,
frozen `Settings`: `settings.port` is an int, and a misspelt name fails mypy.
"""

from __future__ import annotations

import os
import secrets
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import platformdirs

from anyclaude import backends, timeouts
from anyclaude.backends.base import Backend, Endpoint, ToolCalls
from anyclaude.errors import UserError
from anyclaude.keep.state import parse_duration


class SettingsError(UserError, ValueError):
    """A setting is invalid; the message is one sentence for the user."""

    exit_code = 2


Parser = Callable[[str], Any]


def _bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("expected true or false")


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise ValueError("expected a port number between 0 and 65535")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise ValueError("expected a positive whole number")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise ValueError("expected a positive number of seconds")
    return value


def _debug(text: str) -> int:
    value = int(text or "0")
    if not 0 <= value <= 3:
        raise ValueError("expected 0, 1, 2 or 3")
    return value


def _url(text: str) -> str:
    parts = urlsplit(text.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("expected an http:// or https:// URL")
    return text.strip().rstrip("/")


def _names(text: str) -> tuple[str, ...]:
    """A comma-separated list (a TOML list arrives joined the same way), blanks and repeats
    dropped, order kept."""
    names = (name.strip() for name in text.split(","))
    return tuple(dict.fromkeys(name for name in names if name))


def _choice(*choices: str) -> Parser:
    def parse(text: str) -> str:
        if text not in choices:
            raise ValueError("expected one of " + ", ".join(choices))
        return text

    return parse


def _mode(text: str) -> str:
    if backends.get(text) is None:
        raise ValueError("expected one of " + ", ".join(backends.names()))
    return text


def _new_token() -> str:
    return "anyclaude-" + secrets.token_urlsafe(24)


def _user_state_dir() -> Path:
    return Path(platformdirs.user_state_dir("anyclaude"))


@dataclass(frozen=True)
class Setting:
    key: str
    """TOML key: top level (`mode`, also the `Settings` attribute) or `<mode>.<name>`
    (`mlx-lm.model`)."""
    env: str
    parse: Parser
    default: Any
    help: str
    derive: Callable[[], Any] | None = None
    """Computes the value when nothing sets it (a fresh token per run); `default` is then
    None, which doctor shows as "not set"."""


def _global_settings() -> list[Setting]:
    return [
        Setting("mode", "ANYCLAUDE_MODE", _mode, "mlx-lm",
                "Backend: " + ", ".join(backends.names()) + "."),
        Setting("port", "ANYCLAUDE_PORT", _port, 0, "Proxy port (0: any free port)."),
        Setting("proxy_token", "ANYCLAUDE_PROXY_TOKEN", str, None,
                "Token clients must send (default: a random one per run).", _new_token),
        Setting("claude_path", "ANYCLAUDE_CLAUDE_PATH", str, None,
                "The `claude` executable (default: found on PATH)."),
        Setting("proxy_only", "PROXY_ONLY", _bool, False,
                "Serve the proxy only; do not launch Claude Code."),
        Setting("debug", "ANYCLAUDE_DEBUG", _debug, 0,
                "1: a line per request; 2: request summaries; 3: JSONL traces."),
        Setting("startup_timeout", "ANYCLAUDE_STARTUP_TIMEOUT", _positive_float,
                timeouts.STARTUP_S,
                "Seconds to wait for a backend to load its model."),
        Setting("idle_timeout", timeouts.IDLE_ENV, _positive_float, timeouts.IDLE_S,
                "Seconds a streaming backend may produce nothing (empty chunks do not "
                "count) before the answer fails."),
        Setting("answer_timeout", timeouts.ANSWER_ENV, _positive_float, timeouts.ANSWER_S,
                "Seconds an answer that arrives all at once may take (non-streaming "
                "requests, mlx-textgen with tools; in claude mode, any silence)."),
        Setting("context_window", "ANYCLAUDE_CONTEXT_WINDOW", _positive_int, None,
                "The model's context window in tokens (default: from the server or model)."),
        Setting("max_output_tokens", "ANYCLAUDE_MAX_OUTPUT_TOKENS", _positive_int, None,
                "Cap on tokens per answer (default: what fits the context window)."),
        Setting("tool_calls", "ANYCLAUDE_TOOL_CALLS", _choice("native", "text"), None,
                "Override the backend's tool-call handling: native or text (parsed)."),
        Setting("small_model", "ANYCLAUDE_SMALL_MODEL", str, None,
                "Model for side work (titles, summaries, Haiku-tier requests, subagents): "
                "its own server next to the main one (mlx-lm and the other servers anyclaude "
                "starts), or a model name on the same server (LM Studio, openai); default: "
                "the main model answers it, queued behind the conversation."),
        Setting("small_port", "ANYCLAUDE_SMALL_PORT", _port, 0,
                "Port of the small model's own server (0: the first free port after the "
                "main server's)."),
        Setting("models", "ANYCLAUDE_MODELS", _names, (),
                "More models to choose from in Claude Code's /model picker or with --model "
                "(a TOML list, or comma-separated in the environment)."),
        Setting("keep_alive", "ANYCLAUDE_KEEP_ALIVE", parse_duration, 300.0,
                "How long a server anyclaude started stays up after the last session using "
                "it ends (30s, 10m, 1h; 0: stop it on exit)."),
        Setting("warm_up", "ANYCLAUDE_WARM_UP", _bool, True,
                "Replay the start of this folder's last first request into a server that does "
                "not have it cached, while Claude Code starts."),
        Setting("state_dir", "ANYCLAUDE_STATE_DIR", Path, None,
                "Folder for logs and traces (default: the user state folder).", _user_state_dir),
    ]


def _backend_settings(backend: Backend) -> list[Setting]:
    rows = [Setting(f"{backend.name}.url", backend.url_setting, _url, backend.default_url,
                    f"{backend.description}: base URL.")]
    if backend.model_setting:
        rows.append(Setting(f"{backend.name}.model", backend.model_setting, str, None,
                            f"{backend.description}: model (local folder or Hub id)."))
    if backend.key_setting:
        rows.append(Setting(f"{backend.name}.key", backend.key_setting, str, None,
                            f"{backend.description}: API key."))
    for option in backend.options:
        rows.append(Setting(f"{backend.name}.{option.key}", option.env, option.parse or str,
                            option.default, option.help))
    return rows


def table() -> list[Setting]:
    """Every setting anyclaude reads, globals first, then each backend's."""
    rows = _global_settings()
    for name in backends.names():
        backend = backends.get(name)
        assert backend is not None
        rows.extend(_backend_settings(backend))
    return rows


def config_files(cwd: Path | None = None,
                 environ: Mapping[str, str] | None = None) -> list[Path]:
    """Config files in increasing priority: the user's, then the project's `.anyclaude.toml`
    (the nearest one in the current folder or a parent). `ANYCLAUDE_CONFIG` replaces the
    user file."""
    explicit = (os.environ if environ is None else environ).get("ANYCLAUDE_CONFIG")
    user = Path(explicit) if explicit else Path(platformdirs.user_config_dir("anyclaude")) / "config.toml"
    files = [user] if user.is_file() or explicit else []
    here = (cwd or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        candidate = folder / ".anyclaude.toml"
        if candidate.is_file():
            files.append(candidate)
            break
    return files


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def read_config(path: Path) -> dict[str, Any]:
    """A config file's settings as flat keys; raises SettingsError when it cannot be parsed."""
    try:
        with path.open("rb") as handle:
            return _flatten(tomllib.load(handle))
    except FileNotFoundError as exc:
        raise SettingsError(f"The config file {path} does not exist; create it or unset "
                            "ANYCLAUDE_CONFIG.") from exc
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"The config file {path} is not valid TOML ({exc}); fix or "
                            "remove it.") from exc


def unknown_keys(config: Mapping[str, Any]) -> list[str]:
    known = {row.key for row in table()}
    return sorted(key for key in config if key not in known)


@dataclass(frozen=True)
class Settings:
    """Resolved settings: one typed attribute per global setting (named by its key), the
    backends' settings by key, and where each value came from."""

    mode: str
    port: int
    proxy_token: str
    claude_path: str | None
    proxy_only: bool
    debug: int
    startup_timeout: float
    idle_timeout: float
    answer_timeout: float
    context_window: int | None
    max_output_tokens: int | None
    tool_calls: ToolCalls | None
    small_model: str | None
    small_port: int
    models: tuple[str, ...]
    keep_alive: float
    warm_up: bool
    state_dir: Path
    backend_values: Mapping[str, str | None]
    """`<mode>.<name>` settings of every backend (`lmstudio.url`)."""
    sources: Mapping[str, str]
    """Per key: `default`, `the command line`, `the environment` or `the config file X`."""
    files: tuple[Path, ...]
    """The config files read, lowest priority first."""
    unknown: Mapping[Path, tuple[str, ...]]
    """Keys in each config file that are not settings (ignored)."""

    def value(self, key: str) -> object:
        """Any setting by its table key, for code that walks the table (doctor's listing)."""
        return self.backend_values[key] if "." in key else getattr(self, key)

    @property
    def backend(self) -> Backend:
        backend = backends.get(self.mode)
        assert backend is not None
        return backend

    @property
    def endpoint(self) -> Endpoint:
        name = self.mode
        url = self.backend_values[f"{name}.url"]
        assert url is not None
        return Endpoint(url=url, model=self.backend_values.get(f"{name}.model"),
                        api_key=self.backend_values.get(f"{name}.key"))

    def backend_options(self) -> dict[str, str | None]:
        prefix = self.mode + "."
        return {k[len(prefix):]: v for k, v in self.backend_values.items()
                if k.startswith(prefix)}


BACKEND_FLAGS = {"backend_url": "url", "backend_model": "model"}
"""Command-line options that set one of the winning mode's own settings."""


def load(flags: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None,
         cwd: Path | None = None) -> Settings:
    """The settings for a run; the first invalid value raises its SettingsError sentence.
    `flags` are keyed like the table (`port`, `lmstudio.url`) plus `BACKEND_FLAGS`."""
    return _resolve(flags, environ, cwd, None)


def load_lenient(flags: Mapping[str, Any] | None = None,
                 environ: Mapping[str, str] | None = None,
                 cwd: Path | None = None) -> tuple[Settings, list[str]]:
    """The settings `load` would give, except that an invalid value is set aside (the next
    source down is used) and kept as the sentence a run would print, so doctor can check
    everything else. An unreadable config file is skipped: doctor's config check names it."""
    problems: list[str] = []
    return _resolve(flags, environ, cwd, problems), problems


def _resolve(flags: Mapping[str, Any] | None, environ: Mapping[str, str] | None,
             cwd: Path | None, problems: list[str] | None) -> Settings:
    """The one resolver; `problems` None means strict (raise), else collect into it."""
    env = os.environ if environ is None else environ

    def reject(exc: SettingsError) -> None:
        if problems is None:
            raise exc
        problems.append(str(exc))

    files: list[Path] = []
    config: dict[str, tuple[Any, str]] = {}
    unknown: dict[Path, tuple[str, ...]] = {}
    for path in config_files(cwd, env):
        try:
            found = read_config(path)
        except SettingsError:
            if problems is None:
                raise
            continue  # doctor's config check reports it
        files.append(path)
        unknown[path] = tuple(unknown_keys(found))
        config.update({key: (raw, f"the config file {path}") for key, raw in found.items()})

    given = dict(flags or {})
    rows = table()
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}

    def resolve(row: Setting) -> None:
        candidates = [(given.get(row.key), "the command line"),
                      (env.get(row.env) or None, "the environment"),
                      config.get(row.key, (None, ""))]
        for raw, source in candidates:
            if raw is not None:
                try:
                    values[row.key], sources[row.key] = parse_value(row, raw, source), source
                    return
                except SettingsError as exc:
                    reject(exc)
        values[row.key] = row.derive() if row.derive else row.default
        sources[row.key] = "default"

    resolve(rows[0])  # the mode first: --backend-url and --backend-model belong to it
    mode, keys = values["mode"], {row.key for row in rows}
    for flag, name in BACKEND_FLAGS.items():
        if given.get(flag) is not None:
            if f"{mode}.{name}" in keys:
                given[f"{mode}.{name}"] = given[flag]
            else:
                reject(SettingsError(f"--{flag.replace('_', '-')} does not apply to {mode} "
                                     f"mode, which has no {name} setting; remove it."))
    for row in rows[1:]:
        resolve(row)
    globals_ = {key: value for key, value in values.items() if "." not in key}
    return Settings(**globals_, sources=sources, files=tuple(files), unknown=unknown,
                    backend_values={k: v for k, v in values.items() if "." in k})


def parse_value(row: Setting, raw: Any, source: str) -> Any:
    """One raw value (text, or TOML-typed; a TOML list is comma-joined) as the setting's
    type; SettingsError when invalid."""
    if isinstance(raw, list | tuple):
        text = ",".join(str(item) for item in raw)
    else:
        text = str(raw).lower() if isinstance(raw, bool) else str(raw)
    try:
        return row.parse(text)
    except ValueError as exc:
        reason = str(exc)
        if "invalid literal" in reason or "could not convert" in reason:
            reason = "expected a number"
        raise SettingsError(f"{row.env} ({row.key}) from {source} is {text!r}, but {reason}; "
                            f"fix or remove it.") from exc
