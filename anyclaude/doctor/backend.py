"""What anyclaude needs to start and size the backend: its package or app, the model, the
context window, and a free port for the proxy."""

from __future__ import annotations

import errno
import os
import shutil
import socket
import sys
from collections.abc import Mapping
from pathlib import Path

from anyclaude import discovery
from anyclaude.backends.base import Backend, Requirement
from anyclaude.doctor.result import Context, Result, fail, ok, run_command, warn
from anyclaude.doctor.server import server_up
from anyclaude.supervisor import missing_model_folder

IMPORT_TIMEOUT_S = 10.0
"""`import mlx_lm` loads transformers: ~2 s warm, longer on a cold disk."""
CLAUDE_CODE_FIRST_PROMPT_TOKENS = 20000
"""Claude Code's first request with its default tools (~19k tokens with 2.1.197)."""
COMFORTABLE_CONTEXT_TOKENS = 32768
"""Room for the first prompt, a few files and answers before auto-compaction kicks in."""
EXAMPLE_MODEL = "mlx-community/Qwen3-Coder-30B-A3B-Instruct-4bit"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model")
PACKAGE = "backend-package"


# -- the backend's package or app ---------------------------------------------------------

async def package_check(ctx: Context) -> Result | None:
    """The software anyclaude runs to start the server (the backend's `requirement`).
    Missing is a failure only when no server is running already (then anyclaude needs it
    to start one)."""
    backend, options = ctx.settings.backend, ctx.settings.backend_options()
    need = backend.requirement
    if need is None:
        return None
    env_name = next((o.env for o in backend.options if o.key == need.option), need.option)
    if need.kind == "python-module":
        result = await _python_module(options.get(need.option) or sys.executable, need,
                                      env_name, ctx.environ)
    else:
        result = _on_path(options.get(need.option) or need.name, need, env_name, ctx)
    if result.status == "fail" and await server_up(ctx):
        return warn(result.check, result.found + " (the running server does not need it)",
                    result.fix)
    return result


async def _python_module(python: str, need: Requirement, env_name: str,
                         environ: Mapping[str, str]) -> Result:
    name = PACKAGE
    found = shutil.which(python, path=environ.get("PATH", os.defpath))
    if found is None:
        return fail(name, f"{env_name} is {python!r}, which is not an executable",
                    f"Point {env_name} at a Python that has it, or unset it.")
    modules = [m.strip() for m in need.name.split(",")]
    label = modules[0].replace("_", "-")
    out = await run_command([found, "-c", "import " + ", ".join(modules)], IMPORT_TIMEOUT_S,
                            environ)
    if out.code == 0:
        return ok(name, f"{label} imports in {found}")
    if out.code is None and "no answer" in out.text:
        return warn(name, f"importing {label} in {found} took over {IMPORT_TIMEOUT_S:g} s",
                    f"Run `{found} -c 'import {modules[0]}'` to see why it is slow.")
    last = out.text.splitlines()[-1] if out.text else f"exit code {out.code}"
    return fail(name, f"{found} cannot import {label} ({last})",
                need.install.replace("{python}", found))


def _on_path(command: str, need: Requirement, env_name: str, ctx: Context) -> Result:
    found = shutil.which(command, path=ctx.path)
    if found is not None:
        return ok(PACKAGE, f"{Path(command).name} at {found}")
    fix = need.install
    if need.bundled:
        bundled = ctx.home / Path(need.bundled.removeprefix("~/"))
        if bundled.is_file():
            fix = f"Add {bundled.parent} to PATH, or set {env_name}={bundled}."
    return fail(PACKAGE, f"`{command}` is not on PATH", fix)


# -- the model ------------------------------------------------------------------------------

async def model_check(ctx: Context) -> Result | None:
    """For backends anyclaude starts with a model folder or Hub id (mlx-lm, mlx-textgen);
    for the others the server check sees whether the server has the model."""
    backend, model = ctx.settings.backend, ctx.settings.endpoint.model
    setting = backend.model_setting
    if setting is None or not backend.tokenizer_hint:
        return None
    if model:
        return model_location(model, setting, ctx.environ, ctx.home)
    if await server_up(ctx):
        return ok("model", f"{setting} is not set; the running server uses its own model")
    return fail("model", f"{setting} is not set, so anyclaude cannot start {backend.name}",
                f"Set {setting} to a model folder or a Hugging Face id, e.g. {EXAMPLE_MODEL}.")


def model_location(model: str, setting: str, environ: Mapping[str, str],
                   home: Path | None = None) -> Result:
    """A local folder must hold a model; a Hub id should already be downloaded."""
    folder = Path(model).expanduser()
    point = f"Point {setting} at a model folder or a Hugging Face id (owner/name)."
    if folder.is_dir():
        missing = missing_parts(folder)
        if missing:
            return fail("model", f"{folder} has no {' or '.join(missing)}, so it is not a "
                        "model folder", f"Point {setting} at a folder with config.json, "
                        "*.safetensors weights and tokenizer files.")
        return ok("model", f"model folder {folder}")
    if missing_model_folder(model) is not None or folder.exists():
        return fail("model", f"{setting} names {folder}, which is not a folder", point)
    if model.count("/") != 1:
        return warn("model", f"{model} is neither a folder here nor a Hugging Face id", point)
    snapshot = hub_snapshot(model, environ, home or Path.home())
    if snapshot is not None:
        return ok("model", f"{model} (in the Hugging Face cache: {snapshot})")
    return warn("model", f"{model} is not in the Hugging Face cache; the first start "
                "downloads it", "Let the first start download it (it needs the network), or "
                f"fetch it now: `hf download {model}`.")


def missing_parts(folder: Path) -> list[str]:
    parts = []
    if not (folder / "config.json").is_file():
        parts.append("config.json")
    if not any(folder.glob("*.safetensors")):
        parts.append("weights (*.safetensors)")
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        parts.append("tokenizer (tokenizer.json)")
    return parts


def hub_cache(environ: Mapping[str, str], home: Path) -> Path:
    """huggingface_hub's rule: HF_HUB_CACHE, else $HF_HOME/hub, else
    ${XDG_CACHE_HOME:-~/.cache}/huggingface/hub."""
    if environ.get("HF_HUB_CACHE"):
        return Path(environ["HF_HUB_CACHE"]).expanduser()
    cache = Path(environ.get("XDG_CACHE_HOME") or home / ".cache")
    return Path(environ.get("HF_HOME") or cache / "huggingface").expanduser() / "hub"


def hub_snapshot(model: str, environ: Mapping[str, str], home: Path) -> Path | None:
    """A complete downloaded snapshot of a Hub model, or None."""
    snapshots = hub_cache(environ, home) / ("models--" + model.replace("/", "--")) / "snapshots"
    if not snapshots.is_dir():
        return None
    return next((s for s in sorted(snapshots.iterdir()) if not missing_parts(s)), None)


# -- the context window ---------------------------------------------------------------------

async def context_check(ctx: Context) -> Result | None:
    """The window Claude Code will be sized to, found the way `discovery` finds it."""
    backend, endpoint = ctx.settings.backend, ctx.settings.endpoint
    if backend.protocol != "openai":
        return None
    window, source = ctx.settings["context_window"], "ANYCLAUDE_CONTEXT_WINDOW"
    if not window:
        window, source = await discovery.from_server(endpoint), "reported by the server"
    if not window and (backend.tokenizer_hint or discovery.local_folder(endpoint.model)):
        window, source = discovery.from_model_folder(endpoint.model), "from the model's config"
    if not window:
        window, source = backend.context_window, f"the {backend.name} default"
    return judge_context(window, source, backend, endpoint.model)


def judge_context(window: int | None, source: str, backend: Backend,
                  model: str | None = None) -> Result:
    name, first = "context-window", CLAUDE_CODE_FIRST_PROMPT_TOKENS
    if window is None:
        return warn(name, "unknown: neither the settings, the server nor the model says",
                    "Set ANYCLAUDE_CONTEXT_WINDOW (or --context-window) to the model's "
                    "context length.")
    found = f"{window} tokens ({source})"
    if window < first:
        return fail(name, f"{found} is smaller than Claude Code's first prompt (~{first} "
                    "tokens)", _larger(source, backend, model))
    if window < COMFORTABLE_CONTEXT_TOKENS:
        return warn(name, f"{found} leaves little room after Claude Code's ~{first}-token "
                    "first prompt", _larger(source, backend, model))
    return ok(name, found)


def _larger(source: str, backend: Backend, model: str | None) -> str:
    size = COMFORTABLE_CONTEXT_TOKENS
    if source.startswith("ANYCLAUDE"):
        return f"Raise ANYCLAUDE_CONTEXT_WINDOW to {size} or more if the model supports it."
    if "server" not in source:
        return f"Use a model with a context window of {size} tokens or more."
    if backend.reload_hint:
        command = backend.reload_hint.format(model=model or "MODEL", size=size)
        return f"Reload the model with a larger context: {command}."
    return f"Restart the server with a context of {size} tokens or more (vLLM: " \
        f"--max-model-len {size}; llama.cpp: -c {size})."


# -- the proxy's port -----------------------------------------------------------------------

def proxy_port_check(port: int) -> Result:
    name = "proxy-port"
    if port == 0:
        return ok(name, "any free port (ANYCLAUDE_PORT is 0)")
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the proxy binds
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as exc:
            why = "in use" if exc.errno == errno.EADDRINUSE else exc.strerror
            return fail(name, f"127.0.0.1:{port} is not available ({why})",
                        "Choose another --port (ANYCLAUDE_PORT), or 0 for any free port.")
    return ok(name, f"127.0.0.1:{port} is free")
