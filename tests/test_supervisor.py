"""The supervisor against real processes: a small HTTP server script that spawns a child (which
spawns a grandchild), started through a backend declaration like the built-in ones."""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import psutil
import pytest
from rich.console import Console

from anyclaude.backends import lmstudio, mlx_lm, openai
from anyclaude.backends.base import Backend, Endpoint, LaunchPlan
from anyclaude.processes import die_with_parent, tree
from anyclaude.supervisor import BackendError, Supervisor
from tests.support.claude_code import REPO_ROOT, no_new_children
from tests.support.mlx_server import free_port, port_open

TREE_SERVER = textwrap.dedent('''
    """A stand-in backend: answers /health, /v1/models and chat completions; spawns a tree."""
    import json, os, signal, subprocess, sys
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    port, flags = int(sys.argv[1]), sys.argv[2:]
    if "--ignore-term" in flags:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    print("tree server starting", flush=True)
    if "--crash" in flags:
        for i in range(1, 31):
            print(f"log line {i}", flush=True)
        sys.exit(7)
    if "--no-child" not in flags:
        grandchild = "import time; time.sleep(600)"
        child = f"import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', {grandchild!r}]); time.sleep(600)"
        subprocess.Popen([sys.executable, "-c", child])
    fail_first = int(flags[flags.index("--fail-first") + 1]) if "--fail-first" in flags else 0
    chats = []

    class Handler(BaseHTTPRequestHandler):
        def send(self, status, body):
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            if self.path in ("/health", "/v1/models"):
                self.send(503 if "--never-ready" in flags else 200, {"status": "ok", "data": []})
            else:
                self.send(404, {"error": "not found"})

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            chats.append(body)
            with open(os.environ["TREE_RECORD"], "a") as record:
                record.write(json.dumps(body) + "\\n")
            if len(chats) <= fail_first:
                self.send(503, {"error": "model still loading"})
            else:
                self.send(200, {"choices": [{"message": {"role": "assistant", "content": "h"}}]})

        def log_message(self, fmt, *args):
            print(fmt % args, flush=True)

    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
''')


@pytest.fixture(autouse=True)
def _no_leftovers() -> Iterator[None]:
    with no_new_children():
        yield


@pytest.fixture
def script(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "tree_server.py"
    path.write_text(TREE_SERVER, encoding="utf-8")
    monkeypatch.setenv("TREE_RECORD", str(tmp_path / "chats.jsonl"))
    return path


def tree_backend(script: Path, port: int, *flags: str, confirm: bool = False) -> Backend:
    def start(endpoint: Endpoint, options: object) -> LaunchPlan:
        return LaunchPlan(argv=[sys.executable, str(script), str(port), *flags])

    return Backend(name="tree", description="a test server", protocol="openai",
                   url_setting="TREE_URL", model_setting=None,
                   default_url=f"http://127.0.0.1:{port}/v1", health_path="/health",
                   health_is_absolute=True, confirm_with_generation=confirm, start=start,
                   start_hint="start the tree server by hand")


def supervisor(backend: Backend, tmp_path: Path, *, url: str | None = None,
               model: str | None = None, options: dict[str, str | None] | None = None,
               timeout: float = 60.0) -> tuple[Supervisor, io.StringIO]:
    out = io.StringIO()
    sup = Supervisor(backend, Endpoint(url or backend.default_url, model), options or {},
                     log_dir=tmp_path / "logs", startup_timeout=timeout,
                     console=Console(file=out, width=200), grace=2.0)
    return sup, out


def ensure(sup: Supervisor) -> None:
    """`ensure()`, stopping what it started when it fails (as the launcher's finally does)."""
    try:
        asyncio.run(sup.ensure())
    except BaseException:
        asyncio.run(sup.stop())
        raise


def alive(proc: psutil.Process) -> bool:
    return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE


def test_stop_kills_the_whole_started_tree_and_closes_the_port(script: Path,
                                                               tmp_path: Path) -> None:
    port = free_port()
    sup, out = supervisor(tree_backend(script, port), tmp_path)
    ensure(sup)
    assert sup.process is not None and not sup.reused
    deadline = time.monotonic() + 30
    while len(tree(sup.process)) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    procs = tree(sup.process)
    assert len(procs) == 3, "server, child and grandchild"
    assert os.getpgid(sup.process.pid) == sup.process.pid, "its own process group"
    assert os.getsid(sup.process.pid) == sup.process.pid, "its own session"
    asyncio.run(sup.stop())
    assert not [p for p in procs if alive(p)]
    assert not port_open("127.0.0.1", port)
    assert sup.log_path is not None and "tree server starting" in sup.log_path.read_text()
    assert f"log: {sup.log_path}" in out.getvalue()


def test_the_event_loop_keeps_running_while_a_stubborn_server_is_stopped(
        script: Path, tmp_path: Path) -> None:
    """The grace period before SIGKILL is waited out in a worker thread, so the proxy keeps
    serving meanwhile. Here the loop itself ends the wait: it kills the server that ignores
    SIGTERM, which it could not do if `stop` held it for the 60 s grace period."""
    backend = tree_backend(script, free_port(), "--no-child", "--ignore-term")
    sup = Supervisor(backend, Endpoint(backend.default_url, None), {}, log_dir=tmp_path,
                     startup_timeout=60, console=Console(file=io.StringIO()), grace=60)
    ensure(sup)
    assert sup.process is not None
    server = sup.process

    async def stop_while_ticking() -> int:
        stopping, ticks = asyncio.create_task(sup.stop()), 0
        while not stopping.done():
            await asyncio.sleep(0.05)
            ticks += 1
            if ticks == 5:
                server.kill()
        await stopping
        return ticks

    assert asyncio.run(stop_while_ticking()) >= 5
    assert server.poll() is not None


def test_a_healthy_server_already_running_is_reused_and_never_stopped(script: Path,
                                                                      tmp_path: Path) -> None:
    port = free_port()
    server = psutil.Popen([sys.executable, str(script), str(port), "--no-child"],
                          stdout=subprocess.DEVNULL)
    try:
        while not port_open("127.0.0.1", port):
            assert server.poll() is None
            time.sleep(0.05)
        sup, out = supervisor(tree_backend(script, port), tmp_path)
        ensure(sup)
        assert sup.reused and sup.process is None and sup.log_path is None
        assert "already running" in out.getvalue()
        asyncio.run(sup.stop())
        assert server.poll() is None and port_open("127.0.0.1", port)
    finally:
        server.terminate()
        server.wait(10)


def test_a_server_that_exits_while_starting_shows_its_last_log_lines(script: Path,
                                                                     tmp_path: Path) -> None:
    sup, _ = supervisor(tree_backend(script, free_port(), "--crash"), tmp_path)
    with pytest.raises(BackendError) as caught:
        ensure(sup)
    message = str(caught.value)
    assert "exited with code 7 while starting" in message
    assert str(sup.log_path) in message
    lines = caught.value.log_tail.splitlines()
    assert lines[-1] == "log line 30" and "log line 1" not in lines


def test_a_server_that_never_becomes_healthy_times_out_and_is_stopped(script: Path,
                                                                      tmp_path: Path) -> None:
    port = free_port()
    sup, _ = supervisor(tree_backend(script, port, "--never-ready", "--no-child"), tmp_path,
                        timeout=1.0)
    with pytest.raises(BackendError, match=r"was not ready after 1 s \(.*HTTP 503\)"):
        ensure(sup)
    assert sup.process is not None and sup.process.poll() is not None
    assert not port_open("127.0.0.1", port)


def test_generation_confirms_the_model_is_loaded_before_start_up_ends(script: Path,
                                                                      tmp_path: Path) -> None:
    sup, _ = supervisor(tree_backend(script, free_port(), "--fail-first", "2", "--no-child",
                                     confirm=True), tmp_path)
    terminal = io.StringIO()
    sup.console = Console(file=terminal, force_terminal=True, width=120)
    ensure(sup)
    asyncio.run(sup.stop())
    chats = [json.loads(line) for line in (tmp_path / "chats.jsonl").read_text().splitlines()]
    assert len(chats) == 3, "two 503 answers while loading, then the 200 that ends start-up"
    assert all(c["max_tokens"] == 1 and c["stream"] is False and "model" not in c
               for c in chats)
    shown = terminal.getvalue()
    assert "Loading the model (waiting for a 1-token answer)" in shown, "the phase"
    assert re.search(r"\d:\d\d:\d\d", shown), "the elapsed time"
    assert "The tree server is ready" in shown


def test_something_else_on_the_port_is_reported_not_started(script: Path,
                                                            tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        sup, _ = supervisor(tree_backend(script, port), tmp_path)
        with pytest.raises(BackendError, match=f"Port {port} is in use by something that is "
                                               "not a healthy tree server"):
            ensure(sup)
    assert sup.process is None


def test_a_missing_model_folder_is_reported_before_starting(tmp_path: Path) -> None:
    missing = tmp_path / "models" / "nope"
    sup, _ = supervisor(mlx_lm.BACKEND, tmp_path, url=f"http://127.0.0.1:{free_port()}/v1",
                        model=str(missing))
    with pytest.raises(BackendError, match=f"MLX_LM_MODEL names the folder {missing}, which "
                                           "does not exist"):
        ensure(sup)
    assert sup.process is None and not (tmp_path / "logs").exists()


def test_a_server_anyclaude_cannot_start_says_how_to_start_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    sup, _ = supervisor(openai.BACKEND, tmp_path, url=url)
    with pytest.raises(BackendError, match=r"not running at .*connection refused.*vllm serve"):
        ensure(sup)
    monkeypatch.setenv("PATH", str(tmp_path))  # no `lms` CLI
    sup, _ = supervisor(lmstudio.BACKEND, tmp_path, url=url, options={"lms": None})
    with pytest.raises(BackendError, match="open LM Studio and start its server"):
        ensure(sup)


def test_a_crash_after_start_up_is_reported_once_with_the_log(script: Path,
                                                              tmp_path: Path) -> None:
    sup, _ = supervisor(tree_backend(script, free_port(), "--no-child"), tmp_path)
    ensure(sup)
    notes: list[str] = []
    assert sup.process is not None
    sup.process.kill()
    asyncio.run(asyncio.wait_for(sup.watch(notes.append), 30))
    asyncio.run(sup.stop())
    assert len(notes) == 1
    assert "exited unexpectedly (signal SIGKILL)" in notes[0] and str(sup.log_path) in notes[0]


def test_a_deliberate_stop_is_not_reported_as_a_crash(script: Path, tmp_path: Path) -> None:
    sup, _ = supervisor(tree_backend(script, free_port(), "--no-child"), tmp_path)
    ensure(sup)
    notes: list[str] = []

    async def watch_then_stop() -> None:
        watcher = asyncio.create_task(sup.watch(notes.append))
        await asyncio.sleep(0)
        await sup.stop()
        await asyncio.wait_for(watcher, 30)

    asyncio.run(watch_then_stop())
    assert notes == []


FAKE_LMS = textwrap.dedent('''
    #!{python}
    """A stand-in `lms`: `server start` leaves a daemon behind, `server stop` ends it."""
    import json, os, signal, socket, subprocess, sys, time
    state = os.environ["FAKE_LMS_STATE"]
    args = sys.argv[1:]
    with open(os.path.join(state, "calls.jsonl"), "a") as calls:
        calls.write(json.dumps(args) + "\\n")
    pidfile = os.path.join(state, "daemon.pid")
    if args[:2] == ["server", "start"]:
        port = args[args.index("--port") + 1]
        daemon = subprocess.Popen([sys.executable, os.environ["FAKE_LMS_SERVER"], port, "--no-child"],
                                  start_new_session=True, stdout=subprocess.DEVNULL)
        open(pidfile, "w").write(str(daemon.pid))
        while socket.socket().connect_ex(("127.0.0.1", int(port))) != 0:
            time.sleep(0.05)
        print("Success! Server is now running on port", port)
    elif args[:2] == ["server", "stop"]:
        os.kill(int(open(pidfile).read()), signal.SIGTERM)
        print("Stopped the server")
''').lstrip()


def test_lm_studio_is_started_with_lms_and_stopped_with_it(script: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    lms = tmp_path / "lms"
    lms.write_text(FAKE_LMS.replace("{python}", sys.executable), encoding="utf-8")
    lms.chmod(0o755)
    monkeypatch.setenv("FAKE_LMS_STATE", str(tmp_path))
    monkeypatch.setenv("FAKE_LMS_SERVER", str(script))
    port = free_port()
    sup, _ = supervisor(lmstudio.BACKEND, tmp_path, url=f"http://127.0.0.1:{port}/v1",
                        model="qwen/qwen3-4b", options={"lms": str(lms)})
    ensure(sup)
    daemon = psutil.Process(int((tmp_path / "daemon.pid").read_text()))
    assert alive(daemon) and port_open("127.0.0.1", port)
    asyncio.run(sup.stop())
    calls = [json.loads(line) for line in (tmp_path / "calls.jsonl").read_text().splitlines()]
    assert calls == [["server", "start", "--port", str(port)],
                     ["load", "qwen/qwen3-4b", "--yes"], ["server", "stop"]]
    psutil.wait_procs([daemon], timeout=10)
    assert not alive(daemon) and not port_open("127.0.0.1", port)
    assert sup.log_path is not None and "Server is now running" in sup.log_path.read_text()


def test_a_started_server_dies_with_anyclaude_even_when_it_is_sigkilled(tmp_path: Path) -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent("""
            import subprocess, sys, time
            from anyclaude.processes import die_with_parent
            child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"],
                                     preexec_fn=die_with_parent(), start_new_session=True)
            print(child.pid, flush=True)
            time.sleep(600)
        """)], stdout=subprocess.PIPE, text=True, cwd=REPO_ROOT)
    assert parent.stdout is not None
    child = psutil.Process(int(parent.stdout.readline()))
    assert alive(child)
    parent.kill()
    parent.wait(10)
    psutil.wait_procs([child], timeout=10)
    assert not alive(child)
    assert die_with_parent() is not None or not sys.platform.startswith("linux")


def run_cli(args: Sequence[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "anyclaude", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def test_missing_claude_is_one_sentence_with_the_install_command(tmp_path: Path,
                                                                 script: Path) -> None:
    port = free_port()
    env = {"PATH": f"{tmp_path}:/usr/bin:/bin", "HOME": str(tmp_path),
           "ANYCLAUDE_STATE_DIR": str(tmp_path / "state"),
           "ANYCLAUDE_KEEP_ALIVE": "0", "ANYCLAUDE_MODE": "mlx-lm",
           "MLX_LM_URL": f"http://127.0.0.1:{port}/v1", "MLX_LM_MODEL": str(tmp_path)}
    result = run_cli(["-p", "hi"], env, tmp_path)
    assert result.returncode == 1
    assert "npm install -g @anthropic-ai/claude-code" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "state" / "logs").exists(), "no backend started for nothing"
    env["ANYCLAUDE_CLAUDE_PATH"] = str(tmp_path / "no-such-claude")
    result = run_cli(["-p", "hi"], env, tmp_path)
    assert result.returncode == 1 and "ANYCLAUDE_CLAUDE_PATH" in result.stderr
    assert "Traceback" not in result.stderr


def test_startup_failures_reach_the_user_as_one_sentence_and_exit_1(tmp_path: Path) -> None:
    fake_claude = tmp_path / "claude"
    fake_claude.write_text("#!/bin/sh\nexit 0\n")
    fake_claude.chmod(0o755)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
           "ANYCLAUDE_STATE_DIR": str(tmp_path / "state"),
           "ANYCLAUDE_KEEP_ALIVE": "0", "ANYCLAUDE_MODE": "openai",
           "ANYCLAUDE_OPENAI_URL": f"http://127.0.0.1:{free_port()}/v1",
           "ANYCLAUDE_CLAUDE_PATH": str(fake_claude)}
    result = run_cli([], env, tmp_path)
    assert result.returncode == 1
    assert result.stderr.startswith("anyclaude: The openai server is not running at")
    assert "Traceback" not in result.stderr


HANGING_LMS = """#!/bin/sh
case "$1 $2" in
  "server start") touch "$FAKE_LMS_STATE/starting"; exec sleep 600 ;;
  "server stop") touch "$FAKE_LMS_STATE/stopped" ;;
esac
"""


def test_ctrl_c_while_the_backend_starts_stops_what_was_started(tmp_path: Path) -> None:
    lms = tmp_path / "lms"
    lms.write_text(HANGING_LMS)
    lms.chmod(0o755)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "FAKE_LMS_STATE": str(tmp_path),
           "ANYCLAUDE_STATE_DIR": str(tmp_path / "state"),
           "ANYCLAUDE_KEEP_ALIVE": "0", "ANYCLAUDE_MODE": "lmstudio",
           "LMSTUDIO_URL": f"http://127.0.0.1:{free_port()}/v1", "LMSTUDIO_LMS": str(lms)}
    proc = psutil.Popen([sys.executable, "-m", "anyclaude", "--proxy-only"], env=env,
                        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not (tmp_path / "starting").exists():
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    hanging = tree(proc)[1:]
    assert hanging, "`lms server start` is running"
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert out == "", "no proxy URL: the proxy never started"
    assert (tmp_path / "stopped").exists(), "the plan's stop command ran"
    psutil.wait_procs(hanging, timeout=10)
    assert not [p for p in hanging if alive(p)]
