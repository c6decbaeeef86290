"""Backend servers: reuse a healthy one, else start it from its declaration's `LaunchPlan`,
wait until the model really answers, notice a crash, and stop everything anyclaude started.

A server anyclaude starts runs in its own session (the terminal's Ctrl-C belongs to Claude
Code, not to it) and, on Linux, with PR_SET_PDEATHSIG, so it dies with anyclaude even when
anyclaude is SIGKILLed. A server that was already running is never stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

import aiohttp
import psutil
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from anyclaude.backends.base import Backend, Endpoint, LaunchPlan, upstream_model
from anyclaude.backends.net import host_port, server_root
from anyclaude.processes import (
    GRACE_S,
    PROBE_TIMEOUT_S,
    describe_exit,
    die_with_parent,
    port_in_use,
    terminate,
    tree,
)
from anyclaude.translate.errors import backend_message

POLL_S = 0.2
TAIL_LINES = 15
CONFIRM_ATTEMPT_S = 5.0
FAILED_GENERATIONS = 3
"""Consecutive HTTP 500 answers to the readiness request that mean every generation fails
(mlx-textgen on Linux), rather than a model still loading."""
"""A 1-token request unanswered this long is sent again: mlx-lm never answers one queued
while its model failed to load, but answers the next at once (404)."""
COMMAND_TIMEOUT_S = 60.0
"""Limit for one-shot stop commands (`lms server stop`)."""
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})


class BackendError(Exception):
    """The backend could not be reached, started or confirmed; the message is for the user,
    `log_tail` (possibly empty) is shown beneath it."""

    exit_code = 1

    def __init__(self, message: str, log_tail: str = "") -> None:
        super().__init__(message)
        self.log_tail = log_tail


def missing_model_folder(model: str | None) -> Path | None:
    """The folder a model setting names when it looks like a local path that does not exist
    (a Hub id is `owner/name`: one slash, no leading `/`, `.` or `~`)."""
    if not model:
        return None
    looks_local = model.startswith(("/", ".", "~")) or model.count("/") > 1 or "\\" in model
    path = Path(model).expanduser()
    return path if looks_local and not path.is_dir() else None


def note(console: Console, message: str) -> None:
    """One `[anyclaude] ...` line on anyclaude's console (stderr), taken literally."""
    console.print(f"[anyclaude] {message}", markup=False)


def log_tail(path: Path | None, lines: int = TAIL_LINES, noise: str | None = None) -> str:
    """The last lines of a log, without the lines that contain `noise` (our health probes)."""
    if path is None:
        return ""
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(handle.tell() - 16384, 0))
            text = handle.read().decode("utf-8", "replace")
    except OSError:
        return ""
    kept = [line for line in text.rstrip().splitlines() if not noise or noise not in line]
    return "\n".join(kept[-lines:])


class Supervisor:
    """One backend's lifecycle for one anyclaude run: `await ensure()`, `watch()`, `stop()`."""

    def __init__(self, backend: Backend, endpoint: Endpoint, options: Mapping[str, str | None],
                 *, log_dir: Path, startup_timeout: float, console: Console,
                 grace: float = GRACE_S) -> None:
        self.backend = backend
        self.endpoint = endpoint
        self.options = options
        self.log_dir = log_dir
        self.startup_timeout = startup_timeout
        self.console = console
        self.grace = grace
        self.process: psutil.Popen | None = None
        self.log_path: Path | None = None
        self.reused = False
        self._stop_commands: list[list[str]] = []
        self._known: dict[int, psutil.Process] = {}
        self._stopping = False
        self._log: IO[bytes] | None = None

    @property
    def name(self) -> str:
        return f"the {self.backend.name} server"

    @property
    def health_url(self) -> str:
        base = server_root(self.endpoint.url) if self.backend.health_is_absolute \
            else self.endpoint.url.rstrip("/")
        return base + self.backend.health_path

    def _headers(self) -> dict[str, str]:
        key = self.endpoint.api_key
        return {"Authorization": f"Bearer {key}"} if key else {}

    def say(self, message: str) -> None:
        note(self.console, message)

    # -- start-up ---------------------------------------------------------------------------

    async def ensure(self) -> None:
        """Make sure a healthy backend answers at the endpoint, starting it when needed."""
        if not self.backend.local:
            return
        if self.backend.model_required and not self.endpoint.model:
            self.say(f"Warning: {self.backend.model_setting} is not set and {self.name} loads "
                     "the model each request names, so every request will fail; set it to a "
                     "model folder or Hugging Face id.")
        async with aiohttp.ClientSession() as session:
            _, problem = await self._probe(session)
            if problem is None:
                self.reused = True
                self.say(f"Using {self.name} already running at {self.endpoint.url}.")
                await self._wait_ready(session, time.monotonic() + self.startup_timeout)
                return
            plan = self._plan(problem)
            deadline = time.monotonic() + self.startup_timeout
            await self._launch(plan, deadline)
            await self._wait_ready(session, deadline)

    async def _probe(self, session: aiohttp.ClientSession) -> tuple[int, str | None]:
        """The health URL's HTTP status (0: no answer) and None when it is 200, else what
        went wrong, in a few words."""
        try:
            async with session.get(self.health_url, headers=self._headers(),
                                   timeout=aiohttp.ClientTimeout(total=PROBE_TIMEOUT_S)) as resp:
                await resp.read()
                return resp.status, None if resp.status == 200 else f"HTTP {resp.status}"
        except TimeoutError:
            return 0, f"no answer within {PROBE_TIMEOUT_S:.0f} s"
        except (aiohttp.ClientError, OSError) as exc:
            return 0, "connection refused" if isinstance(exc, aiohttp.ClientConnectorError) \
                else type(exc).__name__

    def _plan(self, problem: str) -> LaunchPlan:
        """The launch plan for a server that is down, or the reason anyclaude cannot start it."""
        url, hint = self.endpoint.url, self.backend.start_hint
        plan = self.backend.start(self.endpoint, self.options) if self.backend.start else None
        host, port = host_port(url)
        if plan is None or host not in LOOPBACK:
            raise BackendError(f"{self.name.capitalize()} is not running at {url} "
                               f"({self.health_url}: {problem}); {hint}.")
        if problem != "connection refused" and port_in_use(host, port):
            raise BackendError(f"Port {port} is in use by something that is not a healthy "
                               f"{self.backend.name} server ({self.health_url}: {problem}); stop "
                               f"it or point {self.backend.url_setting} at a free port.")
        if plan.argv and self.backend.tokenizer_hint:
            missing = missing_model_folder(self.endpoint.model)
            if missing is not None:
                raise BackendError(f"{self.backend.model_setting} names the folder {missing}, "
                                   "which does not exist; point it at a model folder or a "
                                   "Hugging Face model id.")
        return plan

    async def _launch(self, plan: LaunchPlan, deadline: float) -> None:
        _, port = host_port(self.endpoint.url)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.log_dir / f"{self.backend.name}-{port}.log"
        self._log = self.log_path.open("wb")
        self.say(f"Starting {self.name} (log: {self.log_path}).")
        self._stop_commands = [list(c) for c in plan.stop_commands]
        for command in plan.setup_commands:
            await self._run_setup(list(command), deadline)
        if plan.argv:
            argv = list(plan.argv)
            self._log.write(f"$ {shlex.join(argv)}\n".encode())
            self._log.flush()
            try:
                self.process = psutil.Popen(
                    argv, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
                    env={"PYTHONUNBUFFERED": "1", **os.environ, **plan.env},
                    start_new_session=True,
                    preexec_fn=die_with_parent())
            except OSError as exc:
                raise BackendError(f"Could not run {argv[0]} to start {self.name} "
                                   f"({exc.strerror}); install it or fix the "
                                   f"{self.backend.name} settings.") from exc

    async def _run_setup(self, command: list[str], deadline: float) -> None:
        assert self._log is not None
        self._log.write(f"$ {shlex.join(command)}\n".encode())
        self._log.flush()
        try:
            proc = await asyncio.create_subprocess_exec(
                *command, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
                start_new_session=True)
        except OSError as exc:
            raise BackendError(f"Could not run {command[0]} ({exc.strerror}); "
                               f"{self.backend.start_hint}.") from exc
        try:
            code = await asyncio.wait_for(proc.wait(), max(deadline - time.monotonic(), 0.1))
        except TimeoutError as exc:
            raise self._timeout(f"`{shlex.join(command)}` still running") from exc
        finally:
            if proc.returncode is None:
                with contextlib.suppress(psutil.NoSuchProcess):
                    terminate(tree(psutil.Process(proc.pid)), self.grace)
        if code != 0:
            raise BackendError(f"`{shlex.join(command)}` failed with {describe_exit(code)}; its "
                               f"output is below (full log: {self.log_path}).",
                               self._tail())

    def _tail(self) -> str:
        return log_tail(self.log_path, noise="GET " + urlsplit(self.health_url).path)

    def _check_alive(self) -> None:
        if self.process is not None and (code := self.process.poll()) is not None:
            raise BackendError(f"{self.name.capitalize()} exited with {describe_exit(code)} "
                               f"while starting; its last log lines are below (full log: "
                               f"{self.log_path}).", self._tail())

    def _timeout(self, last: str) -> BackendError:
        where = f"see its log {self.log_path}" if self.log_path else f"check {self.endpoint.url}"
        return BackendError(f"{self.name.capitalize()} was not ready after "
                            f"{self.startup_timeout:g} s ({last}); {where}, or raise "
                            "ANYCLAUDE_STARTUP_TIMEOUT.", self._tail())

    async def _wait_ready(self, session: aiohttp.ClientSession, deadline: float) -> None:
        """Poll health (and, where the declaration asks, a 1-token completion) until the
        model answers, the process exits, or the deadline passes; show progress meanwhile."""
        owned = self.log_path is not None
        if not owned and not self.backend.confirm_with_generation:
            return
        confirm = self.backend.confirm_with_generation and self.backend.protocol == "openai"
        started, delay = time.monotonic(), 0.1
        with self._progress() as update:
            update(f"Starting {self.name}")
            while True:
                status, problem = await self._probe(session)
                # With a 1-token confirmation to come, any HTTP answer means the server is up
                # (mlx-lm's /health says 503 for good once loading the model failed).
                if problem is None or (confirm and status):
                    break
                self._check_alive()
                if time.monotonic() > deadline:
                    raise self._timeout(f"{self.health_url}: {problem}")
                await asyncio.sleep(delay)
                delay = min(delay * 1.5, 1.0)  # each probe is a line in the server's log
            if confirm:
                update("Loading the model (waiting for a 1-token answer)")
                await self._confirm(session, deadline)
        self.say(f"{self.name.capitalize()} is ready ({time.monotonic() - started:.1f} s).")

    @contextlib.contextmanager
    def _progress(self) -> Iterator[Callable[[str], None]]:
        if not self.console.is_terminal:  # a log file gets the start and ready lines only
            yield lambda phase: None
            return
        columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
        with Progress(*columns, console=self.console, transient=True) as progress:
            task = progress.add_task("", total=None)
            yield lambda phase: progress.update(task, description=phase)

    async def _confirm(self, session: aiohttp.ClientSession, deadline: float) -> None:
        """mlx-lm's /health answers before the model is loaded: wait for a real answer."""
        dialect = self.backend.dialect
        body: dict[str, Any] = {"messages": [{"role": "user", "content": "hi"}],
                                dialect.max_tokens_param: 1 + dialect.stops_short_by,
                                "stream": False}
        if dialect.model_field != "omit" and self.endpoint.model:
            body["model"] = upstream_model(dialect, self.endpoint.model)
        url = self.endpoint.url.rstrip("/") + "/chat/completions"
        last, errors = "no answer yet", 0
        while time.monotonic() < deadline:
            status, text = await self._attempt(session, url, body, deadline)
            if status == 200:
                return
            last = f"HTTP {status}: {backend_message(text.encode())[:200]}" if status else text
            errors = errors + 1 if status == 500 else 0
            if 400 <= status < 500 or errors >= FAILED_GENERATIONS:
                where = f"its last log lines are below (full log: {self.log_path})" \
                    if self.log_path else f"check {self.backend.model_setting}"
                raise BackendError(f"{self.name.capitalize()} failed a 1-token test request "
                                   f"({last}); {where}.", self._tail())
            await asyncio.sleep(POLL_S)
        raise self._timeout(f"1-token test request: {last}")

    async def _attempt(self, session: aiohttp.ClientSession, url: str, body: dict[str, Any],
                       deadline: float) -> tuple[int, str]:
        """One 1-token request, watching the process meanwhile: (status, body), or (0, why)
        when no answer came within CONFIRM_ATTEMPT_S."""
        request = asyncio.ensure_future(self._post(session, url, body))
        ends = min(time.monotonic() + CONFIRM_ATTEMPT_S, deadline)
        try:
            while not request.done():
                if time.monotonic() > ends:
                    return 0, f"no answer within {CONFIRM_ATTEMPT_S:g} s"
                await asyncio.wait({request}, timeout=POLL_S)
                self._check_alive()
            return request.result()
        except (aiohttp.ClientError, OSError) as exc:
            return 0, type(exc).__name__
        finally:
            request.cancel()

    async def _post(self, session: aiohttp.ClientSession, url: str,
                    body: dict[str, Any]) -> tuple[int, str]:
        async with session.post(url, json=body, headers=self._headers()) as resp:
            return resp.status, await resp.text(errors="replace")

    # -- running and stopping ---------------------------------------------------------------

    async def watch(self, notify: Callable[[str], None]) -> None:
        """Until the started server exits: remember its descendants (so `stop` finds them even
        after re-parenting); when it exits on its own, tell the user once."""
        if self.process is None:
            return
        while (code := self.process.poll()) is None:
            for proc in tree(self.process)[1:]:
                self._known.setdefault(proc.pid, proc)
            await asyncio.sleep(0.5)
        if not self._stopping:
            notify(f"{self.name.capitalize()} exited unexpectedly ({describe_exit(code)}); "
                   f"requests fail until anyclaude is restarted; log: {self.log_path}")

    def _group(self) -> list[psutil.Process]:
        """Every process in the started server's process group (daemonised children too)."""
        assert self.process is not None
        members = []
        for proc in psutil.process_iter():
            with contextlib.suppress(OSError, psutil.Error):
                if os.getpgid(proc.pid) == self.process.pid:
                    members.append(proc)
        return members

    def stop(self) -> None:
        """Stop what this run started: the server's whole tree (TERM, then KILL after the grace
        period), then the plan's stop commands. A reused server is left alone."""
        self._stopping = True
        if self.process is not None:
            procs = [*tree(self.process), *self._group(), *self._known.values()]
            terminate([p for p in procs if p.pid != os.getpid()], self.grace)
        for command in self._stop_commands:
            try:
                subprocess.run(command, stdin=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                               stdout=self._log or subprocess.DEVNULL,
                               timeout=COMMAND_TIMEOUT_S, check=False)
            except (OSError, subprocess.SubprocessError) as exc:
                self.say(f"Could not run `{shlex.join(command)}` ({exc}); stop {self.name} "
                         "by hand.")
        self._stop_commands = []
        if self._log is not None:
            self._log.close()
            self._log = None
