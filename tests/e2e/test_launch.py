"""anyclaude as users run it: `python -m anyclaude`, the REAL mlx-lm server started by
anyclaude itself on the tiny scripted model, the REAL Claude Code (or a stand-in `claude` for
signal and crash cases), and every way out. After each run no process anyclaude started
survives and the backend port is closed; a server that was already running is left alone.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import anthropic
import httpx
import psutil
import pytest
from aiohttp import web

from tests.support.claude_code import (
    CLAUDE_VERSIONS,
    ProcessWatch,
    claude_path,
    headless_env,
    write_fake_claude,
)
from tests.support.mlx_server import OPENBLAS, free_port, port_open, running_mlx_server
from tests.support.scripted import Reply, ScriptedBackend
from tests.support.tiny_model import (
    DEFAULT_SENTENCE,
    build_scripted_model,
    default_models_dir,
)

pytestmark = pytest.mark.e2e

TOKEN = "anyclaude-e2e-token-0123456789abcdef"
URL_LINE = re.compile(r"^\[anyclaude\] Proxy URL: (http://127\.0\.0\.1:\d+)$")
SCRIPTED_TEXT = "Hello! I am the tiny scripted test model."


@pytest.fixture(scope="module")
def tiny_model() -> Path:
    return build_scripted_model(default_models_dir() / "scripted")


class Run:
    """`python -m anyclaude ARGS` in its own process group, output collected line by line,
    its descendants recorded while it runs."""

    def __init__(self, args: Sequence[str], env: Mapping[str, str], cwd: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "anyclaude", *args], env=dict(env), cwd=cwd,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, start_new_session=True)
        self.watch = ProcessWatch(self.proc.pid)
        self.out: list[str] = []
        self.err: list[str] = []
        self._readers = [threading.Thread(target=self._read, args=(stream, lines), daemon=True)
                         for stream, lines in ((self.proc.stdout, self.out),
                                               (self.proc.stderr, self.err))]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _read(stream: Any, lines: list[str]) -> None:
        for line in stream:
            lines.append(line.rstrip("\n"))

    @property
    def stdout(self) -> str:
        return "\n".join(self.out)

    @property
    def stderr(self) -> str:
        return "\n".join(self.err)

    def wait_for(self, what: str, predicate: Callable[[], Any], timeout: float = 120) -> Any:
        deadline = time.monotonic() + timeout
        while not (found := predicate()):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"gave up waiting for {what}; exit {self.proc.poll()}\n"
                            f"stdout:\n{self.stdout}\nstderr:\n{self.stderr}")
            time.sleep(0.05)
        return found

    def proxy_url(self) -> str:
        """The URL from the first stdout line, which must be exactly the URL line."""
        self.wait_for("the proxy URL line", lambda: self.out)
        match = URL_LINE.match(self.out[0])
        assert match, self.out[0]
        return match.group(1)

    def finish(self, timeout: float = 120) -> int:
        try:
            code = self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
            for reader in self._readers:
                reader.join(10)
        return code

    def assert_nothing_left(self, *ports: int) -> None:
        survivors = self.watch.survivors()
        assert not survivors, f"still running: {[p.pid for p in survivors]}\n{self.stderr}"
        for port in ports:  # a killed process's last threads may still be closing its files
            deadline = time.monotonic() + 10
            while port_open("127.0.0.1", port) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert not port_open("127.0.0.1", port), f"port {port} still open"


@pytest.fixture
def started() -> Iterator[list[Run]]:
    """Runs a test started; killed at the end whatever happened."""
    runs: list[Run] = []
    yield runs
    for run in runs:
        if run.proc.poll() is None:
            os.killpg(run.proc.pid, signal.SIGKILL)
            run.proc.wait(10)
        run.watch.survivors(timeout=1)


@pytest.fixture
def launch(tmp_path: Path, started: list[Run]) -> Callable[..., Run]:
    def start(args: Sequence[str], env: Mapping[str, str]) -> Run:
        run = Run(args, env, tmp_path / "project")
        started.append(run)
        return run

    (tmp_path / "project").mkdir()
    return start


def run_env(tmp_path: Path, mode: str, **extra: str) -> dict[str, str]:
    """A headless environment for `anyclaude` in `mode`, with the fixed test token."""
    project = tmp_path / "project"
    project.mkdir(exist_ok=True)
    return headless_env(tmp_path / "home", project, api_key=TOKEN, extra={
        "ANYCLAUDE_MODE": mode, "ANYCLAUDE_PROXY_TOKEN": TOKEN,
        "ANYCLAUDE_STATE_DIR": str(tmp_path / "state"), **extra})


def mlx_env(tmp_path: Path, model: Path | str, port: int, claude: Path | None = None,
            **extra: str) -> dict[str, str]:
    return run_env(tmp_path, "mlx-lm", MLX_LM_MODEL=str(model),
                   MLX_LM_URL=f"http://127.0.0.1:{port}/v1",
                   ANYCLAUDE_CLAUDE_PATH=str(claude or claude_path()), **extra)


def started_mlx(run: Run) -> list[psutil.Process]:
    return run.watch.matching("mlx_lm")


# -- the real thing -------------------------------------------------------------------------


def test_print_mode_goes_from_nothing_to_the_answer_and_back_to_nothing(
        tmp_path: Path, tiny_model: Path, launch: Callable[..., Run]) -> None:
    port = free_port()
    run = launch(["-p", "say hi", "--output-format", "json", "--tools", ""],
                 mlx_env(tmp_path, tiny_model, port))
    assert run.finish() == 0, run.stderr
    result = json.loads(run.out[-1])
    assert (result["is_error"], result["result"]) == (False, DEFAULT_SENTENCE)
    assert run.watch.seen, "anyclaude's children were observed"
    log = tmp_path / "state" / "logs" / f"mlx-lm-{port}.log"
    assert f"[anyclaude] Starting the mlx-lm server (log: {log})." in run.err
    assert log.read_text().splitlines()[0] == (
        f"$ {sys.executable} -m mlx_lm server --model {tiny_model} --host 127.0.0.1 --port {port}")
    assert "POST /v1/chat/completions" in log.read_text()
    assert "anyclaude session" in run.stderr, "the exit summary"
    run.assert_nothing_left(port)


@pytest.mark.parametrize("version", CLAUDE_VERSIONS)
def test_a_tool_round_trip_runs_bash_in_the_project(
        tmp_path: Path, tiny_model: Path, launch: Callable[..., Run], version: str) -> None:
    port = free_port()
    run = launch(["-p", "create the marker file", "--output-format", "json",
                  "--tools", "Bash", "--allowedTools", "Bash"],
                 mlx_env(tmp_path, tiny_model, port, claude_path(version)))
    assert run.finish() == 0, run.stderr
    result = json.loads(run.out[-1])
    assert result["result"] == DEFAULT_SENTENCE and result["num_turns"] == 2
    assert (tmp_path / "project" / "anyclaude-e2e.txt").read_text() == "anyclaude-e2e\n"
    run.assert_nothing_left(port)


def test_a_server_already_running_is_reused_and_left_running(
        tmp_path: Path, tiny_model: Path, launch: Callable[..., Run]) -> None:
    with running_mlx_server(tiny_model) as server:
        run = launch(["-p", "say hi", "--output-format", "json", "--tools", ""],
                     mlx_env(tmp_path, tiny_model, server.port))
        assert run.finish() == 0, run.stderr
        assert json.loads(run.out[-1])["result"] == DEFAULT_SENTENCE
        assert "Using the mlx-lm server already running" in run.stderr
        assert not (tmp_path / "state" / "logs").exists(), "nothing was started"
        run.assert_nothing_left()
        assert server.process.poll() is None
        assert httpx.get(f"http://127.0.0.1:{server.port}/health").status_code == 200


def test_interactive_claude_code_answers_without_a_key_dialog_and_ctrl_c_quits(
        tmp_path: Path, tiny_model: Path) -> None:
    """The TUI in a real terminal (tmux): no "Do you want to use this API key?" dialog for
    the run's new token, an answer, then Ctrl-C twice quits Claude Code and anyclaude."""
    tmux = shutil.which("tmux")
    assert tmux, "tmux is needed for the interactive test; install it (apt-get install tmux)"
    port = free_port()
    env = mlx_env(tmp_path, tiny_model, port, ANYCLAUDE_PROXY_TOKEN="")  # a new random token
    command = f"{sys.executable} -m anyclaude --tools ''; echo $? > {tmp_path / 'exit-code'}"
    server = ["tmux", "-L", f"anyclaude-test-{os.getpid()}"]
    subprocess.run([*server, "new-session", "-d", "-x", "150", "-y", "40", "-c",
                    str(tmp_path / "project"), command], env=env, check=True)
    try:
        pane_pid = int(subprocess.run([*server, "display", "-p", "#{pane_pid}"],
                                      capture_output=True, text=True, check=True).stdout)
        watch = ProcessWatch(pane_pid)

        def screen() -> str:
            return subprocess.run([*server, "capture-pane", "-p"], capture_output=True,
                                  text=True).stdout

        def wait_screen(text: str) -> None:
            deadline = time.monotonic() + 90
            while text not in (shown := screen()):
                assert "Do you want to use this API key" not in shown, shown
                assert time.monotonic() < deadline, f"no {text!r} on screen:\n{shown}"
                time.sleep(0.2)

        wait_screen("? for shortcuts")
        subprocess.run([*server, "send-keys", "say hi", "Enter"], check=True)
        wait_screen(DEFAULT_SENTENCE)
        for _ in range(2):
            subprocess.run([*server, "send-keys", "C-c"], check=True)
            time.sleep(0.5)
        deadline = time.monotonic() + 60
        while not (tmp_path / "exit-code").exists():
            assert time.monotonic() < deadline, screen()
            time.sleep(0.1)
        assert (tmp_path / "exit-code").read_text().strip() == "0"
        assert not watch.survivors()
        assert not port_open("127.0.0.1", port)
    finally:
        subprocess.run([*server, "kill-server"], check=False)


# -- every way out --------------------------------------------------------------------------


def waiting_claude(tmp_path: Path) -> tuple[Path, Path]:
    return write_fake_claude(tmp_path / "claude"), tmp_path / "claude-ready"


def test_ctrl_c_belongs_to_claude_code_while_anyclaude_keeps_serving(
        tmp_path: Path, tiny_model: Path, launch: Callable[..., Run]) -> None:
    port = free_port()
    fake, ready = waiting_claude(tmp_path)
    run = launch([], mlx_env(tmp_path, tiny_model, port, fake, FAKE_CLAUDE_READY=str(ready)))
    run.wait_for("claude to start", ready.exists)
    os.killpg(run.proc.pid, signal.SIGINT)  # what the terminal does on Ctrl-C
    assert run.finish() == 130, run.stderr
    after = json.loads(Path(f"{ready}.sigint").read_text())
    assert after.get("status") == 200, after
    assert after["body"]["content"][0]["text"] == DEFAULT_SENTENCE
    run.assert_nothing_left(port)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_and_sighup_are_passed_to_claude_code_then_everything_stops(
        tmp_path: Path, tiny_model: Path, launch: Callable[..., Run],
        sig: signal.Signals) -> None:
    port = free_port()
    fake, ready = waiting_claude(tmp_path)
    run = launch([], mlx_env(tmp_path, tiny_model, port, fake, FAKE_CLAUDE_READY=str(ready)))
    run.wait_for("claude to start", ready.exists)
    assert started_mlx(run), "the backend is running"
    run.proc.send_signal(sig)
    assert run.finish() == 128 + sig, run.stderr
    assert json.loads(Path(f"{ready}.signal").read_text()) == sig.name
    run.assert_nothing_left(port)


def test_claude_code_s_exit_code_comes_back_and_the_backend_is_stopped(
        tmp_path: Path, tiny_model: Path, launch: Callable[..., Run]) -> None:
    port = free_port()
    fake = write_fake_claude(tmp_path / "claude")
    record = tmp_path / "record.json"
    run = launch(["--resume", "abc"], mlx_env(tmp_path, tiny_model, port, fake,
                                              FAKE_CLAUDE_EXIT="3",
                                              FAKE_CLAUDE_RECORD=str(record)))
    assert run.finish() == 3, run.stderr
    seen = json.loads(record.read_text())
    assert seen["argv"] == ["--resume", "abc"]
    assert seen["env"]["ANTHROPIC_AUTH_TOKEN"] == TOKEN
    assert seen["env"]["CLAUDE_CODE_MAX_CONTEXT_TOKENS"] == "137857", "from config.json's 131072"
    run.assert_nothing_left(port)


def broken_config(tmp_path: Path, tiny_model: Path) -> tuple[Path, dict[str, str]]:
    broken = tmp_path / "broken-model"
    shutil.copytree(tiny_model, broken)
    (broken / "config.json").write_text("{ this is not json")
    return broken, {}


def python_without_mlx(tmp_path: Path, tiny_model: Path) -> tuple[Path, dict[str, str]]:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    return tiny_model, {"MLX_LM_PYTHON": str(venv / "bin" / "python")}


@pytest.mark.parametrize(("setup", "first_line", "log_shows"), [
    (broken_config, r"The mlx-lm server failed a 1-token test request \(HTTP 404: .*generation "
     r"thread died.*\); its last log lines are below \(full log: .*\)\.", "JSONDecodeError"),
    (python_without_mlx, r"The mlx-lm server exited with code 1 while starting; its last log "
     r"lines are below \(full log: .*mlx-lm-\d+\.log\)\.", "No module named mlx_lm"),
])
def test_a_backend_that_fails_while_starting_shows_its_log_and_exits_1(
        tmp_path: Path, tiny_model: Path, launch: Callable[..., Run],
        setup: Callable[[Path, Path], tuple[Path, dict[str, str]]], first_line: str,
        log_shows: str) -> None:
    model, extra = setup(tmp_path, tiny_model)
    port = free_port()
    record = tmp_path / "record.json"
    run = launch(["-p", "hi"], mlx_env(tmp_path, model, port, write_fake_claude(
        tmp_path / "claude"), FAKE_CLAUDE_RECORD=str(record), **extra))
    assert run.finish() == 1
    errors = [line for line in run.err if line.startswith("anyclaude:")]
    assert len(errors) == 1 and re.fullmatch("anyclaude: " + first_line, errors[0]), run.stderr
    assert log_shows in run.stderr, "the server's own last lines are shown"
    assert "anyclaude/" not in run.stderr, "no traceback of anyclaude's own"
    assert not record.exists(), "Claude Code was not started"
    run.assert_nothing_left(port)


def test_a_failure_after_the_backend_started_still_stops_it(
        tmp_path: Path, tiny_model: Path, launch: Callable[..., Run]) -> None:
    port = free_port()
    with socket.socket() as busy:  # the proxy cannot listen: an error after the backend is up
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        run = launch(["--port", str(busy.getsockname()[1]), "-p", "hi"],
                     mlx_env(tmp_path, tiny_model, port))
        assert run.finish() == 1
    assert "The mlx-lm server is ready" in run.stderr
    assert run.err[-1].startswith("anyclaude: The proxy could not listen on 127.0.0.1:")
    assert started_mlx(run) == [] and run.watch.seen
    run.assert_nothing_left(port)


def test_a_backend_crash_mid_session_is_reported_and_answered_with_529(
        tmp_path: Path, tiny_model: Path, launch: Callable[..., Run]) -> None:
    port = free_port()
    run = launch(["--proxy-only"], mlx_env(tmp_path, tiny_model, port))
    url = run.proxy_url()
    backend = started_mlx(run)
    assert len(backend) == 1
    if OPENBLAS.exists():
        assert backend[0].environ()["LD_PRELOAD"] == str(OPENBLAS), "mlx's CPU build ~50x faster"
    backend[0].kill()
    line = run.wait_for("the crash report", lambda: [
        e for e in run.err if "exited unexpectedly" in e])[0]
    assert line == (f"[anyclaude] The mlx-lm server exited unexpectedly (signal SIGKILL); "
                    f"requests fail until anyclaude is restarted; log: "
                    f"{tmp_path / 'state' / 'logs' / f'mlx-lm-{port}.log'}")
    client = anthropic.Anthropic(base_url=url, api_key=TOKEN, max_retries=0)
    with pytest.raises(anthropic.APIStatusError) as caught:
        client.messages.create(model="x", max_tokens=20,
                               messages=[{"role": "user", "content": "hi"}])
    assert caught.value.status_code == 529 and "not reachable" in caught.value.message
    assert run.proc.poll() is None, "anyclaude stays up"
    run.proc.send_signal(signal.SIGTERM)
    assert run.finish() == 0
    run.assert_nothing_left(port)


def test_the_backend_dies_with_anyclaude_even_when_anyclaude_is_sigkilled(
        tmp_path: Path, tiny_model: Path, launch: Callable[..., Run]) -> None:
    port = free_port()
    run = launch(["--proxy-only"], mlx_env(tmp_path, tiny_model, port))
    run.proxy_url()
    assert started_mlx(run)
    run.proc.kill()  # no clean-up code runs: the kernel's parent-death signal must do it
    assert run.finish() == -signal.SIGKILL
    run.assert_nothing_left(port)


# -- proxy-only mode and each mode's dialect ------------------------------------------------


def test_proxy_only_prints_the_url_line_then_serves_until_ctrl_c(
        tmp_path: Path, tiny_model: Path, launch: Callable[..., Run]) -> None:
    port = free_port()
    run = launch(["--proxy-only"], mlx_env(tmp_path, tiny_model, port))
    url = run.proxy_url()
    run.wait_for("the export line", lambda: len(run.out) >= 3)
    assert run.out[1:3] == [f"[anyclaude] Token: {TOKEN}",
                            f"export ANTHROPIC_BASE_URL={url} ANTHROPIC_AUTH_TOKEN={TOKEN}"]
    client = anthropic.Anthropic(base_url=url, api_key=TOKEN, max_retries=0)
    reply = client.messages.create(model="claude-x", max_tokens=50,
                                   messages=[{"role": "user", "content": "say hi"}])
    assert reply.content[0].type == "text" and reply.content[0].text == DEFAULT_SENTENCE
    with client.messages.stream(model="x", max_tokens=50,
                                messages=[{"role": "user", "content": "again"}]) as stream:
        assert stream.get_final_text() == DEFAULT_SENTENCE
    with pytest.raises(anthropic.AuthenticationError):
        anthropic.Anthropic(base_url=url, api_key="wrong", max_retries=0).messages.create(
            model="x", max_tokens=5, messages=[{"role": "user", "content": "hi"}])
    os.killpg(run.proc.pid, signal.SIGINT)
    assert run.finish() == 0
    run.assert_nothing_left(port)


@pytest.mark.parametrize(("mode", "dialect", "url_var", "model_var", "reports_window"), [
    ("openai", "vllm", "ANYCLAUDE_OPENAI_URL", "ANYCLAUDE_OPENAI_MODEL", True),
    ("lmstudio", "lmstudio", "LMSTUDIO_URL", "LMSTUDIO_MODEL", True),
    ("mlx-textgen", "mlx-textgen", "MLX_TEXTGEN_URL", "MLX_TEXTGEN_MODEL", False),
])
def test_each_openai_mode_serves_its_dialect_through_proxy_only(
        tmp_path: Path, launch: Callable[..., Run], mode: str, dialect: Any, url_var: str,
        model_var: str, reports_window: bool) -> None:
    with ScriptedBackend(dialect, model="scripted", context_length=12288) as double:
        env = run_env(tmp_path, mode, **{url_var: double.url, model_var: "scripted"})
        run = launch(["--proxy-only"], env)
        url = run.proxy_url()
        client = anthropic.Anthropic(base_url=url, api_key=TOKEN, max_retries=0)
        reply = client.messages.create(model="claude-x", max_tokens=100,
                                       messages=[{"role": "user", "content": "hi"}])
        assert reply.content[0].type == "text" and reply.content[0].text == SCRIPTED_TEXT
        chat = [r for r in double.requests if r.path.endswith("/chat/completions")]
        assert chat and chat[-1].model == "scripted"
        models = httpx.get(url + "/v1/models", headers={"x-api-key": TOKEN}).json()
        assert models["data"][0]["id"] == "scripted"
        if reports_window:
            assert models["data"][0]["max_input_tokens"] == 12288, "discovered at launch"
        run.proc.send_signal(signal.SIGTERM)
        assert run.finish() == 0
        run.assert_nothing_left()


def test_debug_lines_go_to_stderr_in_proxy_only_mode_and_traces_to_a_file(
        tmp_path: Path, launch: Callable[..., Run]) -> None:
    with ScriptedBackend("vllm", model="scripted") as double:
        env = run_env(tmp_path, "openai", ANYCLAUDE_OPENAI_URL=double.url, ANYCLAUDE_DEBUG="3")
        run = launch(["--proxy-only"], env)
        client = anthropic.Anthropic(base_url=run.proxy_url(), api_key=TOKEN, max_retries=0)
        client.messages.create(model="x", max_tokens=50,
                               messages=[{"role": "user", "content": "hi"}])
        line = run.wait_for("the request line", lambda: [
            e for e in run.err if e.startswith("[anyclaude] openai x once: prompt ")])
        assert line[0].endswith("end_turn")
        trace = Path(run.wait_for("the trace path", lambda: [
            e.removeprefix("[anyclaude] Traces: ") for e in run.err if "Traces: " in e])[0])
        run.proc.send_signal(signal.SIGTERM)
        assert run.finish() == 0
        steps = [json.loads(entry)["step"] for entry in trace.read_text().splitlines()]
        assert "upstream_request" in steps and "answer" in steps
        assert TOKEN not in trace.read_text(), "the token is redacted"
        run.assert_nothing_left()


def test_stopping_proxy_only_does_not_wait_for_a_request_in_flight(
        tmp_path: Path, launch: Callable[..., Run]) -> None:
    with ScriptedBackend("vllm", model="scripted") as double:
        double.reply(Reply(text="x" * 10000, chunk_size=1, chunk_delay=0.5))  # ~80 minutes
        env = run_env(tmp_path, "openai", ANYCLAUDE_OPENAI_URL=double.url)
        run = launch(["--proxy-only"], env)
        url = run.proxy_url()
        body = {"model": "x", "max_tokens": 20000, "stream": True,
                "messages": [{"role": "user", "content": "hi"}]}
        with httpx.stream("POST", url + "/v1/messages", json=body, timeout=60,
                          headers={"x-api-key": TOKEN}) as response:
            chunks = response.iter_raw()
            assert b"message_start" in next(chunks)
            os.killpg(run.proc.pid, signal.SIGINT)
            assert run.finish(timeout=60) == 0, "stopped long before the answer would end"
            with pytest.raises(httpx.RemoteProtocolError):
                for _ in chunks:
                    pass
        run.assert_nothing_left()


UPSTREAM_SSE = [
    b'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_1","type":'
    b'"message","role":"assistant","model":"claude-x","content":[],"stop_reason":null,'
    b'"stop_sequence":null,"usage":{"input_tokens":3,"output_tokens":1}}}\n\n',
    b'event: content_block_start\ndata: {"type":"content_block_start","index":0,'
    b'"content_block":{"type":"text","text":""}}\n\n',
    b'event: ping\ndata: {"type": "ping"}\n\n',
    b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":'
    b'{"type":"text_delta","text":"Straight from "}}\n\n',
    b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":'
    b'{"type":"text_delta","text":"upstream."}}\n\n',
    b'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n',
    b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn",'
    b'"stop_sequence":null},"usage":{"output_tokens":4}}\n\n',
    b'event: message_stop\ndata: {"type":"message_stop"}\n\n',
]


class AnthropicUpstream:
    """A local Anthropic-speaking server (aiohttp, own thread) that records what it gets and
    streams UPSTREAM_SSE in several writes."""

    def __init__(self) -> None:
        self.headers: list[dict[str, str]] = []
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def messages(self, request: web.Request) -> web.StreamResponse:
        self.headers.append({k.lower(): v for k, v in request.headers.items()})
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                               "request-id": "req_upstream"})
        await response.prepare(request)
        for event in UPSTREAM_SSE:
            await response.write(event)
            await asyncio.sleep(0.01)
        await response.write_eof()
        return response

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/messages", self.messages)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self.runner.addresses[0][1]}"

    def __enter__(self) -> AnthropicUpstream:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.runner is not None
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


def test_claude_mode_passes_the_stream_through_byte_for_byte_with_the_user_s_key_only(
        tmp_path: Path, launch: Callable[..., Run]) -> None:
    with AnthropicUpstream() as upstream:
        env = run_env(tmp_path, "claude", ANTHROPIC_UPSTREAM_URL=upstream.url)
        run = launch(["--proxy-only"], env)
        url = run.proxy_url()
        run.wait_for("the export line", lambda: len(run.out) >= 3)
        assert run.out[2] == (f"export ANTHROPIC_BASE_URL={url} "
                              f"ANTHROPIC_CUSTOM_HEADERS='x-anyclaude-token: {TOKEN}'")
        body = {"model": "claude-x", "max_tokens": 10, "stream": True,
                "messages": [{"role": "user", "content": "hi"}]}
        headers = {"x-api-key": "sk-ant-user-key", "x-anyclaude-token": TOKEN,
                   "anthropic-version": "2023-06-01"}
        with httpx.stream("POST", url + "/v1/messages?beta=true", json=body,
                          headers=headers) as response:
            assert response.status_code == 200
            raw = b"".join(response.iter_raw())
        assert raw == b"".join(UPSTREAM_SSE)
        client = anthropic.Anthropic(base_url=url, api_key="sk-ant-user-key", max_retries=0,
                                     default_headers={"x-anyclaude-token": TOKEN})
        with client.messages.stream(model="claude-x", max_tokens=10,
                                    messages=[{"role": "user", "content": "hi"}]) as stream:
            assert stream.get_final_text() == "Straight from upstream."
        assert len(upstream.headers) == 2
        for seen in upstream.headers:  # httpx sent x-api-key, this SDK sends a Bearer token
            assert "sk-ant-user-key" in (seen.get("x-api-key"),
                                         seen.get("authorization", "").removeprefix("Bearer "))
            assert "x-anyclaude-token" not in seen
            assert not any(TOKEN in value for value in seen.values()), "token never forwarded"
        with pytest.raises(anthropic.AuthenticationError):
            anthropic.Anthropic(base_url=url, api_key="sk-ant-user-key", max_retries=0) \
                .messages.create(model="x", max_tokens=5,
                                 messages=[{"role": "user", "content": "hi"}])
        assert len(upstream.headers) == 2, "nothing forwarded without the run's token"
        run.proc.send_signal(signal.SIGTERM)
        assert run.finish() == 0
        run.assert_nothing_left()
