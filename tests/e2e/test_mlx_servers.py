"""The other MLX servers people run, for real: mlx-openai-server, MLX-Omni-Server, FastMLX and
mlx-textgen, each installed into the test cache by `./scripts/test`
(`tests/support/mlx_servers.py`), started and stopped by anyclaude itself (its mode, with
`<MODE>_EXECUTABLE` naming the test install) on the tiny scripted model.

Per server: the official anthropic SDK as a strict client (text, streaming, a tool call
and its follow-up, a cut answer reported as `max_tokens`), then the real Claude Code through
the same proxy: a Bash tool round trip on mlx-openai-server, MLX-Omni-Server and FastMLX
(tool calls as text there); on mlx-textgen, whose outlines grammar the scripted model cannot
follow, Claude Code's whole tool list must compile in mlx-textgen's own grammar code and a
text answer must come back.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anthropic
import pytest

from anyclaude.translate.schemas import clean_schema
from tests.e2e.test_launch import Run, run_env
from tests.support import mlx_servers
from tests.support.claude_code import claude_path, headless_env
from tests.support.mlx_server import free_port, port_open, server_env, terminate_tree
from tests.support.tiny_model import (
    DEFAULT_SENTENCE,
    DEFAULT_TOOL_ARGUMENTS,
    build_scripted_model,
    default_models_dir,
)

pytestmark = pytest.mark.e2e

TOKEN = "anyclaude-e2e-token-0123456789abcdef"
BASH = {"name": "Bash", "description": "Run a shell command",
        "input_schema": {"type": "object", "properties": {
            "command": {"type": "string"}, "description": {"type": "string"}},
            "required": ["command"]}}
ASK = [{"role": "user", "content": "create the marker file"}]
ENV_PREFIX = {"mlx-openai-server": "MLX_OPENAI_SERVER", "mlx-omni-server": "MLX_OMNI_SERVER",
              "fastmlx": "FASTMLX", "mlx-textgen": "MLX_TEXTGEN"}
TOOL_ROUND_TRIP = ("mlx-openai-server", "mlx-omni-server", "fastmlx")


@dataclass
class Served:
    """anyclaude in proxy-only mode in front of a server it started."""

    mode: str
    url: str
    port: int
    run: Run
    logs: Path

    def client(self) -> anthropic.Anthropic:
        return anthropic.Anthropic(base_url=self.url, api_key=TOKEN, max_retries=0,
                                   timeout=300)

    def bodies(self, step: str) -> list[dict[str, Any]]:
        """Every request body of one trace step so far (`client_request`, the Anthropic
        request; `upstream_request`, what anyclaude sent the server)."""
        lines = [line for trace in sorted(self.logs.glob("trace-*.jsonl"))
                 for line in trace.read_text().splitlines()]
        entries = [json.loads(line) for line in lines if line.strip()]
        return [e["data"]["body"] for e in entries if e["step"] == step]

    def upstream_bodies(self) -> list[dict[str, Any]]:
        return self.bodies("upstream_request")


@pytest.fixture(scope="module", params=list(ENV_PREFIX))
def served(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[Served]:
    model = build_scripted_model(default_models_dir() / "scripted")
    with serving(request.param, model, tmp_path_factory.mktemp(request.param)) as found:
        yield found


@contextlib.contextmanager
def serving(mode: str, model: Path, tmp: Path) -> Iterator[Served]:
    """`anyclaude` in proxy-only mode, starting the server of `mode` on `model`; on exit
    it is stopped and nothing it started may survive."""
    command = mlx_servers.require(mode)
    port, prefix = free_port(), ENV_PREFIX[mode]
    env = run_env(tmp, mode, PROXY_ONLY="true", ANYCLAUDE_DEBUG="3",
                  ANYCLAUDE_STARTUP_TIMEOUT="600",
                  **{f"{prefix}_MODEL": str(model), f"{prefix}_URL": f"http://127.0.0.1:{port}/v1",
                     f"{prefix}_EXECUTABLE": str(command)})
    run = Run([], env, tmp / "project")
    try:
        url = run.proxy_url()
        run.wait_for(f"{mode} to be ready", lambda: "is ready" in run.stderr, timeout=600)
        yield Served(mode, url, port, run, tmp / "state" / "logs")
    finally:
        if run.proc.poll() is None:
            os.killpg(run.proc.pid, signal.SIGTERM)
        run.finish(timeout=120)
    run.assert_nothing_left(port)


# -- the anthropic SDK as a strict client ----------------------------------------------------


def test_text_answer(served: Served) -> None:
    message = served.client().messages.create(model="tiny", max_tokens=50, messages=[
        {"role": "user", "content": "say hi"}])
    assert [b.type for b in message.content] == ["text"]
    assert message.content[0].text == DEFAULT_SENTENCE  # type: ignore[union-attr]
    assert message.stop_reason == "end_turn"


def test_streamed_text_answer(served: Served) -> None:
    with served.client().messages.stream(model="tiny", max_tokens=50, messages=[
            {"role": "user", "content": "say hi"}]) as stream:
        message = stream.get_final_message()
    assert message.content[0].text == DEFAULT_SENTENCE  # type: ignore[union-attr]
    assert message.stop_reason == "end_turn"


def test_a_cut_answer_is_reported_as_max_tokens(served: Served) -> None:
    """Every one of these servers says `stop` when `max_tokens` cut the answer."""
    with served.client().messages.stream(model="tiny", max_tokens=3, messages=[
            {"role": "user", "content": "say hi"}]) as stream:
        message = stream.get_final_message()
    assert message.stop_reason == "max_tokens"
    assert DEFAULT_SENTENCE.startswith(message.content[0].text)  # type: ignore[union-attr]


@pytest.mark.parametrize("served", TOOL_ROUND_TRIP, indirect=True)
def test_a_tool_call_and_its_result(served: Served) -> None:
    """Not on mlx-textgen: it constrains a call with an outlines grammar, which derails the
    hand-wired scripted model (its grammar is checked with Claude Code's tools below)."""
    client = served.client()
    with client.messages.stream(model="tiny", max_tokens=200, messages=ASK,
                                tools=[BASH]) as stream:  # type: ignore[list-item]
        message = stream.get_final_message()
    assert message.stop_reason == "tool_use"
    (call,) = [b for b in message.content if b.type == "tool_use"]
    assert (call.name, call.input) == ("Bash", dict(DEFAULT_TOOL_ARGUMENTS))
    follow_up = [*ASK, {"role": "assistant", "content": [call.model_dump()]},
                 {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id,
                                               "content": "done"}]}]
    answer = client.messages.create(model="tiny", max_tokens=50, messages=follow_up,
                                    tools=[BASH])  # type: ignore[arg-type,list-item]
    assert answer.content[0].text == DEFAULT_SENTENCE  # type: ignore[union-attr]
    if served.mode == "fastmlx":  # 422 on OpenAI tools: they travel in the prompt
        assert not any("tools" in body for body in served.upstream_bodies())


# -- the real Claude Code ----------------------------------------------------------------------


def claude(served: Served, cwd: Path, *args: str) -> dict[str, Any]:
    cwd.mkdir(exist_ok=True)
    extra = {"ANTHROPIC_BASE_URL": served.url, "ANTHROPIC_API_KEY": TOKEN,
             "ANTHROPIC_MODEL": "tiny", "ANTHROPIC_DEFAULT_OPUS_MODEL": "tiny",
             "ANTHROPIC_DEFAULT_SONNET_MODEL": "tiny",
             "ANTHROPIC_DEFAULT_HAIKU_MODEL": "anyclaude-background",
             "CLAUDE_CODE_ATTRIBUTION_HEADER": "0"}
    env = headless_env(cwd.parent / "home", cwd, api_key=TOKEN, extra=extra)
    done = subprocess.run([str(claude_path()), "-p", *args, "--output-format", "json"],
                          cwd=cwd, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=600)
    assert done.stdout.strip(), f"no output; stderr: {done.stderr[-2000:]}"
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    result["exit_code"] = done.returncode
    return result


@pytest.mark.parametrize("served", TOOL_ROUND_TRIP, indirect=True)
def test_claude_code_runs_a_bash_round_trip(served: Served, tmp_path: Path) -> None:
    cwd = tmp_path / "project"
    result = claude(served, cwd, "create the marker file", "--allowedTools", "Bash")
    assert result["exit_code"] == 0 and result["is_error"] is False, result
    assert (cwd / "anyclaude-e2e.txt").read_text().strip() == "anyclaude-e2e"
    assert result["result"] == DEFAULT_SENTENCE and result["num_turns"] == 2


def quiet_model(base: Path, folder: Path) -> Path:
    """The scripted model, with a chat template that lists tools under another heading:
    the model then answers its sentence although tools are offered."""
    shutil.copytree(base, folder)
    config = folder / "tokenizer_config.json"
    data = json.loads(config.read_text())
    data["chat_template"] = data["chat_template"].replace("<tools>", "<tool list>")
    config.write_text(json.dumps(data))
    return folder


COMPILE = """
import json, sys
from mlx_textgen.chat_utils import build_function_call_schema
from outlines_core.fsm.json_schema import build_regex_from_schema
tools = json.load(sys.stdin)
print(len(build_regex_from_schema(json.dumps(build_function_call_schema(tools)))))
"""


def compile_in_textgen(tools: list[dict[str, Any]]) -> subprocess.CompletedProcess[str]:
    """mlx-textgen's own tool-call grammar step (its schema, outlines' regex) in its venv."""
    python = mlx_servers.root() / "mlx-textgen" / "bin" / "python"
    return subprocess.run([str(python), "-c", COMPILE], input=json.dumps(tools),
                          capture_output=True, text=True, timeout=600)


def test_claude_code_tools_compile_in_mlx_textgens_grammar(tmp_path: Path) -> None:
    base = build_scripted_model(default_models_dir() / "scripted")
    model = quiet_model(base, tmp_path / "quiet")
    with serving("mlx-textgen", model, tmp_path) as served:
        result = claude(served, tmp_path / "project", "say hi")
        bodies = served.upstream_bodies()
        (client_tools,) = {json.dumps(b["tools"]) for b in served.bodies("client_request")
                           if b.get("tools")}
    assert result["exit_code"] == 0 and result["is_error"] is False, result
    assert result["result"] == DEFAULT_SENTENCE
    (tools,) = {json.dumps(b["tools"]) for b in bodies if b.get("tools")}
    offered = json.loads(tools)
    assert len(offered) > 10 and all(b["model"] == "quiet" for b in bodies)
    done = compile_in_textgen(offered)
    assert done.returncode == 0 and int(done.stdout) > 0, done.stderr[-2000:]
    # Claude Code's schemas as they come (`format: uri`, description-only properties) do not.
    raw = [{**t, "function": {**t["function"], "parameters": clean_schema(
        original["input_schema"], "minimal")}} for t, original in zip(
            offered, json.loads(client_tools), strict=True)]
    assert compile_in_textgen(raw).returncode != 0


# -- doctor's verdict matches what happens -----------------------------------------------------


def doctor(tmp: Path, mode: str, url: str, model: Path | str) -> dict[str, dict[str, Any]]:
    prefix = ENV_PREFIX.get(mode, "ANYCLAUDE_OPENAI")
    env = run_env(tmp, mode, ANYCLAUDE_CLAUDE_PATH=str(claude_path()),
                  **{f"{prefix}_URL": url, f"{prefix}_MODEL": str(model)})
    done = subprocess.run([sys.executable, "-m", "anyclaude", "doctor", "--json"], env=env,
                          cwd=tmp / "project", capture_output=True, text=True, timeout=120)
    rows: list[dict[str, Any]] = json.loads(done.stdout)
    return {row["check"]: row for row in rows}


def base_url(served: Served) -> str:
    return f"http://127.0.0.1:{served.port}/v1"


def test_doctor_in_the_servers_own_mode(served: Served, tmp_path: Path) -> None:
    """Tool calls work on three of them; on mlx-textgen the scripted model's call breaks in
    its grammar (HTTP 500), and doctor says so."""
    model = build_scripted_model(default_models_dir() / "scripted")
    found = doctor(tmp_path, served.mode, base_url(served), model)
    assert found["backend-server"]["status"] == "ok", found["backend-server"]
    expected = "fail" if served.mode == "mlx-textgen" else "ok"
    assert found["tool-calls"]["status"] == expected, found["tool-calls"]


@pytest.mark.parametrize("served", TOOL_ROUND_TRIP, indirect=True)
def test_doctor_in_openai_mode(served: Served, tmp_path: Path) -> None:
    """An empty or FastMLX-shaped model listing is no failure; FastMLX's 422 on OpenAI
    tools is, in openai mode (its own mode sends no tools)."""
    model = build_scripted_model(default_models_dir() / "scripted")
    found = doctor(tmp_path, "openai", base_url(served), model)
    assert found["backend-server"]["status"] == "ok", found["backend-server"]
    tools = found["tool-calls"]
    if served.mode == "fastmlx":
        assert tools["status"] == "fail" and "body.tools.0" in tools["found"], tools
    else:
        assert tools["status"] == "ok", tools


@contextlib.contextmanager
def started_by_hand(argv: list[str], port: int, log: Path) -> Iterator[None]:
    """A server started outside anyclaude, taken down (its whole tree) at the end."""
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, env=server_env(), stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while not port_open("127.0.0.1", port):
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-2000:]
            time.sleep(0.2)
        yield
    finally:
        terminate_tree(proc.pid)


def test_doctor_sees_mlx_openai_server_without_its_tool_parser(tmp_path: Path) -> None:
    model = build_scripted_model(default_models_dir() / "scripted")
    port = free_port()
    argv = [str(mlx_servers.require("mlx-openai-server")), "launch", "--model-path", str(model),
            "--model-type", "lm", "--host", "127.0.0.1", "--port", str(port), "--no-log-file"]
    with started_by_hand(argv, port, tmp_path / "server.log"):
        found = doctor(tmp_path, "mlx-openai-server", f"http://127.0.0.1:{port}/v1", model)
    tools = found["tool-calls"]
    assert tools["status"] == "fail" and "--tool-call-parser" in tools["fix"], tools


def test_doctor_sees_mlx_textgen_failing_every_generation(tmp_path: Path) -> None:
    """Without the Linux shim every generation fails inside mlx-textgen, while its model
    listing answers."""
    mlx_servers.require("mlx-textgen")
    model = build_scripted_model(default_models_dir() / "scripted")
    port = free_port()
    unpatched = mlx_servers.root() / "mlx-textgen" / "bin" / "mlx_textgen"
    argv = [str(unpatched), "serve", "-m", str(model), "--host", "127.0.0.1", "-p", str(port)]
    with started_by_hand(argv, port, tmp_path / "server.log"):
        found = doctor(tmp_path, "mlx-textgen", f"http://127.0.0.1:{port}/v1", model)
    server = found["backend-server"]
    assert server["status"] == "fail" and "1-token" in server["found"], server


def test_omni_without_a_model_is_named_at_start(tmp_path: Path) -> None:
    """MLX-Omni-Server loads the model each request names: without the setting, anyclaude
    warns and its 1-token check fails with the field path, instead of every request failing."""
    port = free_port()
    env = run_env(tmp_path, "mlx-omni-server", PROXY_ONLY="true",
                  MLX_OMNI_SERVER_URL=f"http://127.0.0.1:{port}/v1",
                  MLX_OMNI_SERVER_EXECUTABLE=str(mlx_servers.require("mlx-omni-server")))
    run = Run([], env, tmp_path / "project")
    assert run.finish(timeout=300) != 0
    assert "MLX_OMNI_SERVER_MODEL is not set" in run.stderr
    assert "body.model: Field required" in run.stderr, run.stderr
    run.assert_nothing_left(port)


def test_mlx_textgen_failing_every_generation_is_not_called_ready(tmp_path: Path) -> None:
    """Unpatched on Linux, mlx-textgen lists its model but fails every generation: anyclaude
    says so at start instead of calling it ready."""
    mlx_servers.require("mlx-textgen")
    model = build_scripted_model(default_models_dir() / "scripted")
    port = free_port()
    env = run_env(tmp_path, "mlx-textgen", PROXY_ONLY="true", MLX_TEXTGEN_MODEL=str(model),
                  MLX_TEXTGEN_URL=f"http://127.0.0.1:{port}/v1", MLX_TEXTGEN_EXECUTABLE=str(
                      mlx_servers.root() / "mlx-textgen" / "bin" / "mlx_textgen"))
    run = Run([], env, tmp_path / "project")
    assert run.finish(timeout=300) != 0
    assert "failed a 1-token test request (HTTP 500" in run.stderr, run.stderr
    assert "is ready" not in run.stderr
    run.assert_nothing_left(port)
