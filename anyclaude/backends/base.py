"""What a backend is: its quirks declared as data, read by the translator and the supervisor.

Nothing outside `anyclaude/backends/` branches on a mode name: the translator reads a
`Dialect`, the supervisor reads a `Backend`. Adding a backend means adding one module that
builds a `Backend` and registers it (see `anyclaude/backends/__init__.py`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

ModelField = Literal["omit", "configured", "request"]
"""How the `model` field is filled upstream: left out, the configured model name, or the
name Claude Code sent (only for servers that route by name)."""

ToolCalls = Literal["native", "text"]
"""Native OpenAI `tool_calls`, or calls parsed out of the text by `translate.textcalls`."""

ModelSwitching = Literal["reload", "by-name", "fixed"]
"""How one server serves several models: see `Backend.model_switching`."""

SchemaProfile = Literal["minimal", "grammar", "strict", "outlines"]
Protocol = Literal["openai", "anthropic"]


@dataclass(frozen=True)
class Dialect:
    """How one server family wants its OpenAI Chat Completions requests, and what it sends back."""

    max_tokens_param: str = "max_tokens"
    model_field: ModelField = "configured"
    content_parts: Literal["text", "vision"] = "vision"
    """`text`: list content must be text only (mlx-lm answers 404 to any other part)."""
    tool_calls: ToolCalls = "native"
    text_tool_formats: tuple[str, ...] = ("hermes", "qwen3_coder")
    """Formats `TextCallParser` looks for when `tool_calls == "text"`."""
    start_in_thinking: bool = False
    """The chat template opens `<think>` itself, so output starts inside the reasoning."""
    parse_inline_think: bool = True
    """Split a leading `<think>...</think>` out of `content` into a thinking block."""
    stream_with_tools: bool = True
    """False: the server loses tool calls while streaming, ask non-streaming and stream ourselves."""
    text_with_tool_calls: bool = True
    """False: an assistant message may not carry both text and tool calls (mlx-textgen)."""
    schema_profile: SchemaProfile = "minimal"
    max_tool_name_length: int | None = 64
    send_stop: bool = False
    """Pass `stop` upstream as well as matching it in the proxy (only harmless when the
    server stops on exact strings)."""
    include_usage: bool = True
    """Send `stream_options.include_usage` (mlx-lm and LM Studio send no usage without it)."""
    send_reasoning_effort: bool = False
    thinking_template_kwarg: bool = False
    """Pass `chat_template_kwargs.enable_thinking` from the request's `thinking` setting."""
    send_top_k: bool = True
    tool_choice: bool = True
    """False: the server ignores or rejects `tool_choice`; leave it out."""
    response_format: bool = True
    """Pass Claude Code's structured-output requests (`output_config.format`, e.g. session
    titles) as `response_format` json_schema, which guided-decoding servers honour."""
    extra_body: Mapping[str, object] = field(default_factory=dict)
    send_tools: bool = True
    """False: the server rejects OpenAI `tools` (FastMLX answers 422), so the tools are
    described in the system prompt, Hermes style, past calls and results travel as text, and
    calls are parsed out of the answer's text."""
    stops_short_by: int = 0
    """The server ends `max_tokens` this many tokens early and still says `stop`
    (MLX-Omni-Server: 1); a `stop` that close to the limit is reported as `max_tokens`."""
    chunk_is_token: bool = False
    """No usage is reported, but each streamed content chunk is one token (FastMLX): count
    them to tell a cut answer from a finished one."""
    model_name: Literal["as-set", "folder-name"] = "as-set"
    """`folder-name`: a local model folder is served under its base name (mlx-textgen), so
    that is the `model` sent."""


def upstream_model(dialect: Dialect, model: str | None) -> str | None:
    """The `model` field for a configured model setting, as the server names it."""
    if model and dialect.model_name == "folder-name":
        folder = Path(model).expanduser()
        if folder.is_dir():
            return folder.resolve().name
    return model


@dataclass(frozen=True)
class Endpoint:
    """Where a backend lives, resolved from settings."""

    url: str
    """Base URL including `/v1` for OpenAI servers, the API root for Anthropic servers."""
    model: str | None
    api_key: str | None = None


@dataclass(frozen=True)
class Option:
    """A backend-specific setting: TOML key `[<mode>] <key>`, environment variable `env`."""

    key: str
    env: str
    default: str | None
    help: str
    parse: Callable[[str], str] | None = None
    """Checks and normalises the text (a TOML list arrives comma-joined); raises ValueError
    with what was expected. None: any text."""


@dataclass(frozen=True)
class LaunchPlan:
    """How to bring a server up: a long-running process anyclaude owns, and/or one-shot
    commands for servers managed by their own daemon (LM Studio's `lms`)."""

    argv: Sequence[str] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    setup_commands: Sequence[Sequence[str]] = ()
    stop_commands: Sequence[Sequence[str]] = ()
    description: str = ""
    """What is started, said in the start-up line and by `anyclaude status` (`on 2 ranks
    (...), tensor parallel`); empty for a plain server."""


@dataclass(frozen=True)
class Requirement:
    """The software anyclaude runs to start this server, so `anyclaude doctor` can check it
    is installed: a Python module (imported by the interpreter named by `option`, default
    anyclaude's own) or an executable (named by `option`, default `name` on PATH)."""

    kind: Literal["python-module", "executable"]
    name: str
    """Comma-separated modules to import, or the command."""
    option: str
    """The backend option (see `Backend.options`) that overrides the interpreter or command."""
    install: str
    """How to install it, one sentence; `{python}` is replaced by the interpreter."""
    bundled: str | None = None
    """Where an app installs the command outside PATH (`~/.lmstudio/bin/lms`)."""


StartCommand = Callable[[Endpoint, Mapping[str, str | None]], LaunchPlan | None]
"""Builds the launch plan from the endpoint and the backend's options, or None when
anyclaude cannot start this server here (say why in `start_hint`)."""


@dataclass(frozen=True)
class Backend:
    """A backend declaration: one per mode."""

    name: str
    description: str
    protocol: Protocol
    url_setting: str
    model_setting: str | None
    default_url: str
    dialect: Dialect = field(default_factory=Dialect)
    key_setting: str | None = None
    health_path: str = "/models"
    """Path below the base URL answering 200 when the server is up."""
    health_is_absolute: bool = False
    """`health_path` is relative to the server root (mlx-lm's `/health`), not to the base URL."""
    confirm_with_generation: bool = False
    """The health URL answers before the model is loaded: confirm with a 1-token request."""
    start: StartCommand | None = None
    start_hint: str = ""
    """One sentence telling the user how to start the server by hand."""
    context_window: int | None = None
    """Default context window when neither the settings nor the server say."""
    local: bool = True
    """False for remote services (claude): never started, never health-gated at launch."""
    options: tuple[Option, ...] = ()
    requirement: Requirement | None = None
    needs_mlx: bool = False
    """The server runs on MLX: Apple Silicon, or mlx's (slow) CPU build on Linux."""
    reload_hint: str = ""
    """How to give the model a larger context in this server; `{model}` and `{size}` are
    filled in (`lms load {model} --context-length {size}`)."""
    prefix_cache: bool = True
    """The server reuses the longest cached prefix of a prompt, so a cache warm-up pays off."""
    model_files: bool = True
    """The model setting names the model's files (a local folder, or a Hub id in the Hugging
    Face cache) rather than a name the server knows: anyclaude then reads its tokenizer (exact
    count_tokens) and `config.json` (the context window), and doctor checks it is there."""
    model_required: bool = False
    """Every request must name a model (the server loads it per request): warn at start
    when the model setting is empty."""
    model_switching: ModelSwitching = "by-name"
    """How the server serves a model other than its main one (`small_model`, `models`):
    `reload` unloads the loaded model to load the one a request names (mlx-lm), `by-name`
    serves each under its name side by side (LM Studio loads on demand; an `openai` server
    passes the name on), `fixed` only ever the model it started with. Where it is not
    `by-name` and anyclaude can start the server, the small model gets a server of its own."""

    @property
    def passthrough(self) -> bool:
        """Anthropic-speaking upstreams get the user's own credentials and model names."""
        return self.protocol == "anthropic"
