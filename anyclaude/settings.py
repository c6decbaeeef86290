"""Settings: command-line flags > environment > TOML config files > defaults, validated once.

Every setting is one row of `TABLE` (its TOML key, environment variable, parser and help), so
`doctor`, `--help` and the README are all built from the same facts. A bad value produces one
`SettingsError` sentence that names the setting, where it came from, and the fix.
"""

from __future__ import annotations

import os
import secrets
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import platformdirs

from anyclaude import backends
from anyclaude.backends.base import Backend, Endpoint
from anyclaude.keep.state import parse_duration


class SettingsError(ValueError):
    """A setting is invalid; the message is one sentence for the user."""


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


@dataclass(frozen=True)
class Setting:
    key: str
    """TOML key: top level (`mode`) or `<mode>.<name>` (`mlx-lm.model`)."""
    env: str
    parse: Parser
    default: Any
    help: str


def _global_settings() -> list[Setting]:
    return [
        Setting("mode", "ANYCLAUDE_MODE", _mode, "mlx-lm",
                "Backend: " + ", ".join(backends.names()) + "."),
        Setting("port", "ANYCLAUDE_PORT", _port, 0, "Proxy port (0: any free port)."),
        Setting("proxy_token", "ANYCLAUDE_PROXY_TOKEN", str, None,
                "Token clients must send (default: a random one per run)."),
        Setting("claude_path", "ANYCLAUDE_CLAUDE_PATH", str, None,
                "The `claude` executable (default: found on PATH)."),
        Setting("proxy_only", "PROXY_ONLY", _bool, False,
                "Serve the proxy only; do not launch Claude Code."),
        Setting("debug", "ANYCLAUDE_DEBUG", _debug, 0,
                "1: a line per request; 2: request summaries; 3: JSONL traces."),
        Setting("startup_timeout", "ANYCLAUDE_STARTUP_TIMEOUT", _positive_float, 300.0,
                "Seconds to wait for a backend to load its model."),
        Setting("context_window", "ANYCLAUDE_CONTEXT_WINDOW", _positive_int, None,
                "The model's context window in tokens (default: from the server or model)."),
        Setting("max_output_tokens", "ANYCLAUDE_MAX_OUTPUT_TOKENS", _positive_int, None,
                "Cap on tokens per answer (default: what fits the context window)."),
        Setting("tool_calls", "ANYCLAUDE_TOOL_CALLS", _choice("native", "text"), None,
                "Override the backend's tool-call handling: native or text (parsed)."),
        Setting("small_model", "ANYCLAUDE_SMALL_MODEL", str, None,
                "Model for background requests (titles, probes) so they keep the main "
                "model's prompt cache; default: answered by the main model, queued."),
        Setting("keep_alive", "ANYCLAUDE_KEEP_ALIVE", parse_duration, 300.0,
                "How long a server anyclaude started stays up after the last session using "
                "it ends (30s, 10m, 1h; 0: stop it on exit)."),
        Setting("warm_up", "ANYCLAUDE_WARM_UP", _bool, True,
                "Replay the start of this folder's last first request into a server that does "
                "not have it cached, while Claude Code starts."),
        Setting("state_dir", "ANYCLAUDE_STATE_DIR", str, None,
                "Folder for logs and traces (default: the user state folder)."),
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
        rows.append(Setting(f"{backend.name}.{option.key}", option.env, str, option.default,
                            option.help))
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


@dataclass
class Settings:
    """Resolved settings; `values[key]` is typed, `sources[key]` says where it came from."""

    values: dict[str, Any]
    sources: dict[str, str] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)

    def __getitem__(self, key: str) -> Any:
        return self.values.get(key)

    @property
    def mode(self) -> str:
        return str(self.values["mode"])

    @property
    def backend(self) -> Backend:
        backend = backends.get(self.mode)
        assert backend is not None
        return backend

    @property
    def endpoint(self) -> Endpoint:
        name = self.mode
        return Endpoint(url=self.values[f"{name}.url"], model=self.values.get(f"{name}.model"),
                        api_key=self.values.get(f"{name}.key"))

    def backend_options(self) -> dict[str, str | None]:
        prefix = self.mode + "."
        return {k[len(prefix):]: v for k, v in self.values.items() if k.startswith(prefix)}

    @property
    def proxy_token(self) -> str:
        token = self.values.get("proxy_token")
        if not token:
            token = "anyclaude-" + secrets.token_urlsafe(24)
            self.values["proxy_token"] = token
            self.sources["proxy_token"] = "generated"
        return str(token)

    @property
    def state_dir(self) -> Path:
        configured = self.values.get("state_dir")
        return Path(configured) if configured else Path(platformdirs.user_state_dir("anyclaude"))


def load(flags: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None,
         cwd: Path | None = None) -> Settings:
    """Resolve every setting once. Flags are already typed by the CLI; everything else is
    parsed here so each bad value is reported the same way."""
    env = os.environ if environ is None else environ
    files = config_files(cwd, env)
    config: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for path in files:
        for key, value in read_config(path).items():
            config[key] = value
            origin[key] = str(path)
    settings = Settings(values={}, files=files)
    for row in table():
        raw: Any = row.default
        source = "default"
        if row.key in config:
            raw, source = config[row.key], f"the config file {origin[row.key]}"
        if row.env in env and env[row.env] != "":
            raw, source = env[row.env], "the environment"
        if flags and flags.get(row.key) is not None:
            raw, source = flags[row.key], "the command line"
        if raw is not None and source != "default":
            raw = parse_value(row, raw, source)
        settings.values[row.key] = raw
        settings.sources[row.key] = source
    return settings


def parse_value(row: Setting, raw: Any, source: str) -> Any:
    """One raw value (text, or TOML-typed) as the setting's type; SettingsError when invalid."""
    text = str(raw).lower() if isinstance(raw, bool) else str(raw)
    try:
        return row.parse(text)
    except ValueError as exc:
        reason = str(exc)
        if "invalid literal" in reason or "could not convert" in reason:
            reason = "expected a number"
        raise SettingsError(f"{row.env} ({row.key}) from {source} is {text!r}, but {reason}; "
                            f"fix or remove it.") from exc
