"""Backend servers: reuse a healthy one, else start it from its declaration's `LaunchPlan`,
wait until the model really answers, notice a crash, and stop everything anyclaude started.

A server anyclaude starts runs in its own session (the terminal's Ctrl-C belongs to Claude
Code, not to it) and, on Linux, with PR_SET_PDEATHSIG, so it dies with its owner even when
that is SIGKILLed. With `keep_alive` the owner is a keeper process (`anyclaude.keep`) that
outlives the run, so the next run finds the model loaded and its prompt cache warm; without
it, the owner is anyclaude itself. A server that was already running is never stopped.
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

from anyclaude import probes, processes, timeouts
from anyclaude.backends.base import Backend, Endpoint, LaunchPlan
from anyclaude.backends.net import LOOPBACK, host_port, port_in_use
from anyclaude.errors import UserError
from anyclaude.keep import client as keep
from anyclaude.keep.state import format_duration
from anyclaude.processes import describe_exit, tree
from anyclaude.redact import private_dir, private_file, scrub
from anyclaude.serverlog import log_note, log_tail
from anyclaude.translate.errors import backend_message

POLL_S = 0.2
KEEPER_GONE = -(10**6)
"""Exit code stand-in for a kept server whose keeper vanished (its code is unknown)."""
FAILED_GENERATIONS = 3
"""Consecutive HTTP 500 answers to the readiness request that mean every generation fails
(mlx-textgen on Linux), rather than a model still loading."""


class BackendError(UserError):
    """The backend could not be reached, started or confirmed; the message is for the user,
    `log_tail` (possibly empty) is shown beneath it."""


def missing_model_folder(model: str | None) -> Path | None:
    """The folder a model setting names when it looks like a local path that does not exist
    (a Hub id is `owner/name`: one slash, no leading `/`, `.` or `~`)."""
    if not model:
        return None
    looks_local = model.startswith(("/", ".", "~")) or model.count("/") > 1 or "\\" in model
    path = Path(model).expanduser()
    return path if looks_local and not path.is_dir() else None


def note(console: Console, message: str) -> None:
    """One `[anyclaude] ...` line on anyclaude's console (stderr), taken literally, with no
    URL password in it (a backend URL may carry one)."""
    console.print(f"[anyclaude] {scrub(message)}", markup=False)


class Supervisor:
    """One backend's lifecycle for one anyclaude run: `await ensure()`, `watch()`, `stop()`."""

    def __init__(self, backend: Backend, endpoint: Endpoint, options: Mapping[str, str | None],
                 *, log_dir: Path, startup_timeout: float, console: Console,
                 grace: float = timeouts.STOP_GRACE_S, keep_alive: float = 0.0,
                 state_dir: Path | None = None, role: str | None = None,
                 model_setting: str | None = None, progress: bool = True) -> None:
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
        self.keep_alive = keep_alive
        self.state_dir = state_dir
        self.lease: keep.Lease | None = None
        """Set when the server is a kept one (started by this run or an earlier one)."""
        self.ready = False
        self.role = role
        """What the server is for, in its name (`the mlx-lm server for the small model`)."""
        self.model_setting = model_setting or backend.model_setting
        """The setting that names this server's model, in messages."""
        self.progress = progress
        """Show a live progress line while it starts (one at a time: rich allows one)."""
        self._stop_commands: list[list[str]] = []
        self._known: dict[int, psutil.Process] = {}
        self._stopping = False
        self._log: IO[bytes] | None = None
        self._update: Callable[[str], None] = lambda phase: None
        self._phase = ""

    @property
    def name(self) -> str:
        return f"the {self.backend.name} server" + (f" for the {self.role}" if self.role else "")

    @property
    def health_url(self) -> str:
        return probes.health_url(self.backend, self.endpoint)

    def say(self, message: str) -> None:
        note(self.console, message)

    # -- start-up ---------------------------------------------------------------------------

    async def ensure(self) -> None:
        """Make sure a healthy backend answers at the endpoint, starting it when needed."""
        if not self.backend.local:
            return
        if self.backend.model_required and not self.endpoint.model:
            self.say(f"Warning: {self.model_setting} is not set and {self.name} loads "
                     "the model each request names, so every request will fail; set it to a "
                     "model folder or Hugging Face id.")
        async with probes.session(self.endpoint) as session:
            spec = self._keep_spec()
            if spec is not None:
                assert self.state_dir is not None
                try:
                    async with keep.slot(self.state_dir, self.endpoint.url,
                                         self.keep_alive) as slot:
                        await self._ensure_kept(session, slot, spec)
                except keep.KeepError as exc:
                    raise BackendError(str(exc)) from exc
            else:
                await self._ensure(session)
        self.ready = True

    async def _ensure(self, session: aiohttp.ClientSession) -> None:
        _, problem = await self._probe(session)
        if problem is None:
            self._reuse()
            await self._wait_ready(session, time.monotonic() + self.startup_timeout)
            return
        plan = self._plan(problem)
        deadline = time.monotonic() + self.startup_timeout
        await self._launch(plan, deadline)
        await self._wait_ready(session, deadline)

    def _reuse(self) -> None:
        self.reused = True
        self.say(f"Using {self.name} already running at {self.endpoint.url}.")

    def _keep_spec(self) -> keep.Spec | None:
        """What to keep running, when this run keeps the server it starts: a keep-alive is
        set and the plan is one process anyclaude owns (not a daemon's own commands)."""
        if not self.keep_alive or self.state_dir is None or not self.backend.start:
            return None
        if host_port(self.endpoint.url)[0] not in LOOPBACK:
            return None
        plan = self.backend.start(self.endpoint, self.options)
        if plan is None or not plan.argv or plan.setup_commands or plan.stop_commands:
            return None
        return keep.Spec(mode=self.backend.name, model=self.endpoint.model,
                         url=self.endpoint.url, argv=tuple(plan.argv), env=dict(plan.env),
                         description=plan.description)

    async def _ensure_kept(self, session: aiohttp.ClientSession, slot: keep.Slot,
                           spec: keep.Spec) -> None:
        """Lease the kept server at this address, or start one under a keeper (both while
        holding the address's lock, so two runs starting at once share one server)."""
        lease = await slot.reuse(spec)
        if lease is not None:
            self.lease, self.log_path = lease, Path(lease.record.log)
            idle = f"up {format_duration(time.time() - lease.record.started)}"
            self.say(f"Using {self.name} anyclaude kept running at {self.endpoint.url} "
                     f"({idle}).")
            await self._wait_ready(session, time.monotonic() + self.startup_timeout)
            return
        _, problem = await self._probe(session)
        if problem is None:
            self._reuse()
            await self._wait_ready(session, time.monotonic() + self.startup_timeout)
            return
        plan = self._plan(problem)  # the same checks as an unkept start (port, model folder)
        deadline = time.monotonic() + self.startup_timeout
        _, port = host_port(self.endpoint.url)
        self.log_path = private_dir(self.log_dir) / f"{self.backend.name}-{port}.log"
        os.close(private_file(self.log_path, truncate=True))
        self._say_starting(plan)
        self.lease = await slot.start(spec, self.log_path)
        await self._wait_ready(session, deadline)

    async def _probe(self, session: aiohttp.ClientSession) -> tuple[int, str | None]:
        """The health URL's HTTP status (0: no answer) and None when it is 200, else what
        went wrong, in a few words."""
        answer = await probes.ask(session, self.health_url)
        return answer.status, None if answer.status == 200 else answer.said

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
        if plan.argv and self.backend.model_files:
            missing = missing_model_folder(self.endpoint.model)
            if missing is not None:
                raise BackendError(f"{self.model_setting} names the folder {missing}, "
                                   "which does not exist; point it at a model folder or a "
                                   "Hugging Face model id.")
        return plan

    async def _launch(self, plan: LaunchPlan, deadline: float) -> None:
        _, port = host_port(self.endpoint.url)
        self.log_path = private_dir(self.log_dir) / f"{self.backend.name}-{port}.log"
        self._log = os.fdopen(private_file(self.log_path, truncate=True), "wb")
        self._say_starting(plan)
        self._stop_commands = [list(c) for c in plan.stop_commands]
        for command in plan.setup_commands:
            await self._run_setup(list(command), deadline)
        if plan.argv:
            argv = list(plan.argv)
            self._log.write(f"$ {shlex.join(argv)}\n".encode())
            self._log.flush()
            try:
                self.process = processes.spawn(
                    argv, stdout=self._log, stderr=subprocess.STDOUT,
                    env={"PYTHONUNBUFFERED": "1", **os.environ, **plan.env})
            except OSError as exc:
                raise BackendError(f"Could not run {argv[0]} to start {self.name} "
                                   f"({exc.strerror}); install it or fix the "
                                   f"{self.backend.name} settings.") from exc

    def _say_starting(self, plan: LaunchPlan) -> None:
        what = f"{self.name} {plan.description}" if plan.description else self.name
        self.say(f"Starting {what} (log: {self.log_path}).")

    async def _run_setup(self, command: list[str], deadline: float) -> None:
        assert self._log is not None
        self._log.write(f"$ {shlex.join(command)}\n".encode())
        self._log.flush()
        out = await processes.run_command(command, max(deadline - time.monotonic(), 0.1),
                                          log=self._log, grace=self.grace)
        if out.timed_out:
            raise self._timeout(f"`{shlex.join(command)}` still running")
        if out.code is None:
            raise BackendError(f"Could not run {command[0]} ({out.text}); "
                               f"{self.backend.start_hint}.")
        if out.code != 0:
            raise BackendError(f"`{shlex.join(command)}` failed with {describe_exit(out.code)}; "
                               f"its output is below (full log: {self.log_path}).",
                               self._tail())

    def _tail(self) -> str:
        return log_tail(self.log_path, noise="GET " + urlsplit(self.health_url).path)

    def _exit_code(self) -> int | None:
        """The started server's exit code once it has exited (KEEPER_GONE: a kept server
        whose keeper went away), else None."""
        if self.process is not None:
            polled: int | None = self.process.poll()
            return polled
        if self.lease is not None and self.lease.exited.done() \
                and not self.lease.exited.cancelled():
            code = self.lease.exited.result()
            return KEEPER_GONE if code is None else code
        return None

    @staticmethod
    def _describe(code: int) -> str:
        return "its keeper went away" if code == KEEPER_GONE else describe_exit(code)

    def _check_alive(self) -> None:
        if (code := self._exit_code()) is not None:
            name, note = self.name.capitalize(), log_note(self.log_path)
            head = f"{name} stopped while starting: {note}" if note else \
                f"{name} exited with {self._describe(code)} while starting"
            raise BackendError(f"{head}; its last log lines are below (full log: "
                               f"{self.log_path}).", self._tail())
        self._show()

    def _show(self, phase: str | None = None) -> None:
        """The progress line: the phase, and the latest note from the log, if any."""
        self._phase = phase or self._phase
        note = log_note(self.log_path)
        self._update(f"{self._phase}: {note}" if note else self._phase)

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
        with self._progress():
            self._show(f"Starting {self.name}")
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
                self._show("Loading the model (waiting for a 1-token answer)")
                await self._confirm(session, deadline)
        self.say(f"{self.name.capitalize()} is ready ({time.monotonic() - started:.1f} s).")

    @contextlib.contextmanager
    def _progress(self) -> Iterator[None]:
        """A spinner line that `_show` updates, on a terminal only (a log file, or a second
        server's supervisor, gets the start and ready lines only)."""
        if not self.console.is_terminal or not self.progress:
            yield
            return
        columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
        with Progress(*columns, console=self.console, transient=True) as progress:
            task = progress.add_task("", total=None)
            self._update = lambda phase: progress.update(task, description=phase)
            try:
                yield
            finally:
                self._update = lambda phase: None

    async def _confirm(self, session: aiohttp.ClientSession, deadline: float) -> None:
        """mlx-lm's /health answers before the model is loaded: wait for a real answer."""
        url, body = probes.one_token_request(self.backend, self.endpoint)
        last, errors = "no answer yet", 0
        while time.monotonic() < deadline:
            status, text = await self._attempt(session, url, body, deadline)
            if status == 200:
                return
            last = f"HTTP {status}: {backend_message(text.encode())[:200]}" if status else text
            errors = errors + 1 if status == 500 else 0
            if 400 <= status < 500 or errors >= FAILED_GENERATIONS:
                where = f"its last log lines are below (full log: {self.log_path})" \
                    if self.log_path else f"check {self.model_setting}"
                raise BackendError(f"{self.name.capitalize()} failed a 1-token test request "
                                   f"({last}); {where}.", self._tail())
            await asyncio.sleep(POLL_S)
        raise self._timeout(f"1-token test request: {last}")

    async def _attempt(self, session: aiohttp.ClientSession, url: str, body: dict[str, Any],
                       deadline: float) -> tuple[int, str]:
        """One 1-token request, watching the process meanwhile: (status, body), or (0, why)
        when no answer came in time."""
        limit = min(timeouts.ONE_TOKEN_S, max(deadline - time.monotonic(), POLL_S))
        request = asyncio.ensure_future(probes.ask(session, url, body, limit))
        try:
            while not request.done():
                await asyncio.wait({request}, timeout=POLL_S)
                self._check_alive()
            answer = request.result()
        finally:
            request.cancel()
        return answer.status, answer.text if answer.status else answer.problem

    def kept_note(self) -> str | None:
        """The exit line about a server kept running, if any."""
        if self.lease is None or not self.ready or self._exit_code() is not None:
            return None
        return (f"Keeping {self.name} running for {format_duration(self.keep_alive)} after "
                "the last session ends (`anyclaude stop` stops it now).")

    # -- running and stopping ---------------------------------------------------------------

    async def watch(self, notify: Callable[[str], None]) -> None:
        """Until the started server exits: remember its descendants (so `stop` finds them even
        after re-parenting); when it exits on its own, tell the user once."""
        if self.lease is not None:
            exited = await asyncio.shield(self.lease.exited)
            code = KEEPER_GONE if exited is None else exited
        elif self.process is None:
            return
        else:
            while (code := self.process.poll()) is None:
                for proc in tree(self.process)[1:]:
                    self._known.setdefault(proc.pid, proc)
                await asyncio.sleep(0.5)
        if not self._stopping:
            name, note = self.name.capitalize(), log_note(self.log_path)
            head = f"{name} stopped unexpectedly: {note}" if note else \
                f"{name} exited unexpectedly ({self._describe(code)})"
            notify(f"{head}; requests fail until anyclaude is restarted; log: {self.log_path}")

    async def stop(self) -> None:
        """Stop what this run started: the server's whole family (TERM, then KILL after the
        grace period, off the event loop), then the plan's stop commands. A reused server is
        left alone; a kept one is released to its keeper (or stopped, when it never became
        ready)."""
        self._stopping = True
        if self.lease is not None:
            if self.ready:
                self.lease.release()
            else:
                self.lease.stop_server()
        if self.process is not None:
            await processes.stop_soon(self.process.pid, self.grace, self._known.values())
        for command in self._stop_commands:
            if self._log is not None:
                self._log.write(f"$ {shlex.join(command)}\n".encode())
                self._log.flush()
            out = await processes.run_command(command, timeouts.STOP_COMMAND_S, log=self._log,
                                              grace=self.grace)
            if out.code is None:
                self.say(f"Could not run `{shlex.join(command)}` ({out.text}); stop {self.name} "
                         "by hand.")
        self._stop_commands = []
        if self._log is not None:
            self._log.close()
            self._log = None
