"""One anyclaude run: the backend (reused or started), the proxy in this process's event loop,
and Claude Code as a child process with the environment that points it at the proxy.

Signals: while Claude Code runs, Ctrl-C is its business (anyclaude keeps serving), and
SIGTERM/SIGHUP are passed on to it; before it starts, or in proxy-only mode, any of them
stops the run. Every way out goes through one `finally` that stops the proxy and whatever
the supervisor started. anyclaude exits with Claude Code's exit code.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shlex
import shutil
import signal
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from rich.console import Console

from anyclaude import discovery, model_servers, processes, resume, summary, timeouts, warmup
from anyclaude.claude_code import INSTALL_COMMAND
from anyclaude.compaction import compaction_env, model_name
from anyclaude.errors import UserError
from anyclaude.hub import find_tokenizer
from anyclaude.proxy.app import TOKEN_HEADER
from anyclaude.proxy.background import BACKGROUND_MODEL as BACKGROUND_MODEL
from anyclaude.proxy.config import ProxyConfig
from anyclaude.proxy.server import ProxyServer
from anyclaude.proxy.tokens import TokenCounter
from anyclaude.proxy.trace import Tracer
from anyclaude.redact import RedactingFormatter, Redactor, private_dir, private_file
from anyclaude.routing import Routes, picker_labels
from anyclaude.settings import Settings
from anyclaude.supervisor import Supervisor, note

INSTALL_HINT = f"install it with `{INSTALL_COMMAND}`"
MAX_OUTPUT_CAP = 32000
MODEL_VARS = ("ANTHROPIC_MODEL", "ANTHROPIC_DEFAULT_OPUS_MODEL", "ANTHROPIC_DEFAULT_SONNET_MODEL")
HAIKU_VAR = "ANTHROPIC_DEFAULT_HAIKU_MODEL"
DISCOVERY_VAR = "CLAUDE_CODE_ENABLE_GATEWAY_MODEL_DISCOVERY"
"""Makes Claude Code (2.1.129+) list the proxy's `/v1/models` in its /model picker. 2.1.197
skips it while CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC is set; 2.1.332 does not."""
TOKEN_VAR = "ANTHROPIC_AUTH_TOKEN"
"""How Claude Code gets the run's token (sent as `Authorization: Bearer`). Not
ANTHROPIC_API_KEY: interactive Claude Code asks "Do you want to use this API key?" for every
new key, defaulting to No (then "Not logged in"), and the token is new every run."""
HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class LaunchError(UserError):
    """Claude Code or the proxy could not be started; the message is for the user."""


def find_claude(configured: str | None, environ: Mapping[str, str]) -> str:
    """The `claude` executable: the setting (a path or a name on PATH), else PATH."""
    search = environ.get("PATH", os.defpath)
    if configured:
        candidate = Path(configured).expanduser()
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
        found = shutil.which(configured, path=search)
        if found:
            return found
        raise LaunchError(f"ANYCLAUDE_CLAUDE_PATH (claude_path) is {configured!r}, which is not "
                          f"an executable; fix it, or unset it and {INSTALL_HINT}.")
    found = shutil.which("claude", path=search)
    if not found:
        raise LaunchError(f"Claude Code (`claude`) is not on PATH; {INSTALL_HINT}, or set "
                          "ANYCLAUDE_CLAUDE_PATH to its path.")
    return found


def max_output_tokens(configured: int | None, window: int | None) -> int | None:
    """The setting, else a quarter of the window (at most 32000), else unknown."""
    if configured:
        return configured
    return min(MAX_OUTPUT_CAP, window // 4) if window else None


def claude_env(settings: Settings, proxy_url: str, window: int | None,
               environ: Mapping[str, str]) -> dict[str, str]:
    """Claude Code's environment: the user's, pointed at the proxy, sized to the model."""
    env = dict(environ)
    env["ANTHROPIC_BASE_URL"] = proxy_url
    token = settings.proxy_token
    if settings.backend.passthrough:
        headers = [line for line in env.get("ANTHROPIC_CUSTOM_HEADERS", "").splitlines()
                   if line.strip() and not line.lower().startswith(TOKEN_HEADER + ":")]
        env["ANTHROPIC_CUSTOM_HEADERS"] = "\n".join([*headers, f"{TOKEN_HEADER}: {token}"])
    else:
        env[TOKEN_VAR] = token
        env.pop("ANTHROPIC_API_KEY", None)  # the user's own key has no business here
        model = model_name(settings.endpoint.model, settings.mode)
        ours = {var: (model if var in MODEL_VARS else BACKGROUND_MODEL)
                for var in (*MODEL_VARS, HAIKU_VAR) if not env.get(var)}
        env.update(ours)  # the proxy routes Haiku-tier work by BACKGROUND_MODEL
        if settings.models or settings.small_model:  # the /model picker's own entries
            labels = picker_labels(settings.mode, settings.endpoint.model, settings.small_model)
            env.update({f"{var}_{part}": text for var in ours
                        for part, text in labels[var == HAIKU_VAR].items()})
        if settings.models:  # the /model picker asks the proxy for them
            env.setdefault(DISCOVERY_VAR, "1")
    env.setdefault("CLAUDE_CODE_ATTRIBUTION_HEADER", "0")
    env.setdefault("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
    env.setdefault("API_TIMEOUT_MS", timeouts.CLAUDE_API_MS)
    output = max_output_tokens(settings.max_output_tokens, window)
    if output:
        env["CLAUDE_CODE_MAX_OUTPUT_TOKENS"] = str(output)
    if window and output:
        env.update(compaction_env(window, output))
    return env


def proxy_config(settings: Settings, window: int | None, tracer: Tracer | None = None,
                 routes: Routes | None = None,
                 notify: Callable[[str], None] | None = None) -> ProxyConfig:
    """What the proxy serves this run; the model folder's tokenizer, when there is one,
    makes count_tokens exact."""
    endpoint = settings.endpoint
    tokenizer = find_tokenizer(endpoint.model) if settings.backend.model_files \
        or discovery.local_folder(endpoint.model) else None
    return ProxyConfig(backend=settings.backend, endpoint=endpoint, token=settings.proxy_token,
                       context_window=window, max_output_tokens=settings.max_output_tokens,
                       tool_calls=settings.tool_calls, small_model=settings.small_model,
                       routes=routes, notify=notify, tokens=TokenCounter(tokenizer),
                       tracer=tracer, idle_timeout=settings.idle_timeout,
                       answer_timeout=settings.answer_timeout)


def connection_lines(settings: Settings, url: str) -> list[str]:
    """What proxy-only mode prints on stdout: the URL line first, then how to use it."""
    token = settings.proxy_token
    if settings.backend.passthrough:
        credentials = "ANTHROPIC_CUSTOM_HEADERS=" + shlex.quote(f"{TOKEN_HEADER}: {token}")
    else:
        credentials = f"{TOKEN_VAR}=" + shlex.quote(token)
    return [f"[anyclaude] Proxy URL: {url}", f"[anyclaude] Token: {token}",
            f"export ANTHROPIC_BASE_URL={url} {credentials}"]


def start_warmup(settings: Settings, config: ProxyConfig, console: Console) -> warmup.WarmUp | None:
    """Replay this folder's recorded first-request prefix into the backend, when there is one
    and the backend caches prefixes (see `anyclaude.warmup`)."""
    if not settings.warm_up or not settings.backend.prefix_cache or settings.backend.passthrough:
        return None
    path = warmup.store_path(settings.state_dir, settings.backend.name, settings.endpoint.model,
                             os.getcwd())
    warm = warmup.WarmUp(path, config.upstream, settings.backend.dialect.max_tokens_param,
                         config.gate, config.tokens.estimate, settings.answer_timeout)
    config.warmup = warm
    tokens = warm.start()
    if tokens:
        note(console, f"Warming the prompt cache: ~{tokens:,} tokens of this folder's last "
                      "first request.")
    return warm


class _Signals:
    """SIGINT/SIGTERM/SIGHUP for the whole run (see the module docstring)."""

    def __init__(self, task: asyncio.Task[Any]) -> None:
        self.loop = asyncio.get_running_loop()
        self.task = task
        self.child: asyncio.subprocess.Process | None = None
        self.received: int | None = None
        self.serving = False
        self.leaving = False

    def __enter__(self) -> _Signals:
        for sig in HANDLED_SIGNALS:
            self.loop.add_signal_handler(sig, self._on, sig)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig in HANDLED_SIGNALS:
            self.loop.remove_signal_handler(sig)

    def _on(self, sig: int) -> None:
        child = self.child
        if child is not None:
            if sig != signal.SIGINT and child.returncode is None:
                child.send_signal(sig)
                self.loop.call_later(timeouts.STOP_GRACE_S, _kill, child)
            return
        if not self.leaving and self.received is None:
            self.received = sig
            self.task.cancel()


def _kill(child: asyncio.subprocess.Process) -> None:
    if child.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            child.kill()


def _exit_code(code: int) -> int:
    return 128 - code if code < 0 else code


async def _run_claude(claude: str, args: Sequence[str], env: Mapping[str, str],
                      signals: _Signals) -> int:
    """Claude Code on the user's terminal; returns its exit code (128+N for signal N)."""
    try:
        # On the user's terminal (not a session of its own): Ctrl-C is Claude Code's business.
        child = await processes.start([claude, *args], env=dict(env), new_session=False,
                                      parent_death=signal.SIGTERM)
    except OSError as exc:
        raise LaunchError(f"Could not run Claude Code at {claude} ({exc.strerror}); "
                          f"{INSTALL_HINT}, or set ANYCLAUDE_CLAUDE_PATH.") from exc
    signals.child = child
    try:
        return _exit_code(await child.wait())
    finally:
        if child.returncode is None:  # anyclaude is leaving first
            await processes.stop_soon(child.pid)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(child.wait(), timeouts.STOP_GRACE_S)


async def _start_proxy(proxy: ProxyServer) -> str:
    try:
        return await proxy.start()
    except OSError as exc:
        raise LaunchError(f"The proxy could not listen on 127.0.0.1:{proxy.port} "
                          f"({exc.strerror}); choose another --port (ANYCLAUDE_PORT), or 0 for "
                          "any free port.") from exc


@contextlib.contextmanager
def debug_output(settings: Settings, console: Console) -> Iterator[Tracer | None]:
    """ANYCLAUDE_DEBUG≥1: the proxy's debug lines (at 3 also JSONL traces) and anyclaude's
    log, on stderr in proxy-only mode, else in a file so they do not scribble over Claude
    Code's screen (where, without debugging, log records are dropped for the same reason)."""
    level, proxy_only = settings.debug, settings.proxy_only
    logger = logging.getLogger("anyclaude")
    with contextlib.ExitStack() as stack:
        endpoint = settings.endpoint
        secrets = (settings.proxy_token, endpoint.api_key, endpoint.url)
        if level < 1:
            # Without a terminal of its own nothing may print (NullHandler: also keeps
            # logging's last-resort stderr away); in proxy-only mode warnings do, redacted.
            handler: logging.Handler = logging.NullHandler() if not proxy_only else \
                logging.StreamHandler(sys.stderr)
            handler.setLevel(logging.WARNING)
            handler.setFormatter(RedactingFormatter(Redactor(secrets)))
            logger.addHandler(handler)
            stack.callback(logger.removeHandler, handler)
            if not proxy_only:
                logger.propagate = False
                stack.callback(setattr, logger, "propagate", True)
            yield None
            return
        log_dir, stamp = private_dir(settings.state_dir / "logs"), time.strftime("%Y%m%d-%H%M%S")
        stream: TextIO = sys.stderr
        if not proxy_only:
            path = log_dir / f"debug-{stamp}.log"
            stream = stack.enter_context(os.fdopen(private_file(path), "a", encoding="utf-8"))
            note(console, f"Debug output: {path}")
        trace = log_dir / f"trace-{stamp}.jsonl" if level >= 3 else None
        if trace is not None:
            note(console, f"Traces: {trace}")
        tracer = Tracer(level, stream, trace, secrets=secrets)
        stack.callback(tracer.close)
        handler = logging.StreamHandler(stream)
        handler.setFormatter(RedactingFormatter(tracer.redactor))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO if level == 1 else logging.DEBUG)
        stack.callback(logger.removeHandler, handler)
        yield tracer


async def run(settings: Settings, claude_args: Sequence[str],
              environ: Mapping[str, str] | None = None, console: Console | None = None) -> int:
    """The whole run; returns the process exit code."""
    env = dict(os.environ if environ is None else environ)
    console = console or Console(stderr=True, highlight=False, soft_wrap=True)
    proxy_only = settings.proxy_only
    claude = None if proxy_only else find_claude(settings.claude_path, env)
    supervisor = Supervisor(settings.backend, settings.endpoint, settings.backend_options(),
                            log_dir=settings.state_dir / "logs",
                            startup_timeout=settings.startup_timeout, console=console,
                            keep_alive=settings.keep_alive, state_dir=settings.state_dir)
    small_at = model_servers.small_url(settings)
    small = model_servers.small_supervisor(settings, small_at, console) if small_at else None
    task = asyncio.current_task()
    assert task is not None
    proxy: ProxyServer | None = None
    watchers: list[asyncio.Task[None]] = []
    warm: warmup.WarmUp | None = None
    with debug_output(settings, console) as tracer, _Signals(task) as signals:
        try:
            small_up = await model_servers.start_servers(supervisor, small, console)
            window = await discovery.context_window(settings.backend, settings.endpoint,
                                                    settings.context_window)
            routes = await model_servers.routes(settings, small_at if small_up else None)
            model_servers.announce(routes, settings, lambda line: note(console, line),
                                   small_failed=small is not None and not small_up)
            proxy = ProxyServer(proxy_config(settings, window, tracer, routes,
                                             lambda line: note(console, line)), settings.port)
            url = await _start_proxy(proxy)
            warm = start_warmup(settings, proxy.config, console)
            watchers = [asyncio.create_task(server.watch(lambda line: note(console, line)))
                        for server in (supervisor, small) if server is not None]
            if claude is None:
                for line in connection_lines(settings, url):
                    print(line, flush=True)
                note(console, "Serving until Ctrl-C.")
                signals.serving = True
                await asyncio.Event().wait()
            assert claude is not None
            started = time.time() - 1  # a coarse file-system clock may round mtimes down
            code = await _run_claude(claude, claude_args, claude_env(settings, url, window, env),
                                     signals)
            for line in resume.resume_lines(settings, claude_args, None, env, started):
                console.print(line, markup=False)
            return code
        except asyncio.CancelledError:
            if signals.received is None:
                raise
            task.uncancel()
            return 0 if signals.serving else 128 + signals.received
        finally:
            signals.leaving = True
            try:
                if warm is not None:
                    await warm.close()
                for watcher in watchers:
                    watcher.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await watcher
                if proxy is not None:
                    await proxy.stop()
            finally:
                try:
                    if small is not None:
                        await small.stop()
                finally:
                    await supervisor.stop()
            if proxy is not None:
                summary.render(proxy.config.stats, console)
            if warm is not None and warm.outcome is not None:
                note(console, f"Cache warm-up: {warm.outcome.describe()}.")
            for server in (supervisor, small):
                if server is not None and (kept := server.kept_note()) is not None:
                    note(console, kept)
