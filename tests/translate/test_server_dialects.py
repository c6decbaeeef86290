"""The dialect rules added for mlx-openai-server, MLX-Omni-Server, FastMLX and mlx-textgen,
as pure translation: cut answers, tools in the prompt, text-only content, FastAPI errors,
served model names, schemas outlines compiles. (The real servers: tests/e2e/test_mlx_servers.py.)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from anyclaude.backends import get
from anyclaude.backends.base import Backend, Dialect, upstream_model
from anyclaude.translate.errors import backend_message
from anyclaude.translate.request import to_openai
from anyclaude.translate.schemas import clean_schema
from anyclaude.translate.stream import StreamTranslator
from anyclaude.translate.toolprompt import inline


def backend(name: str) -> Backend:
    found = get(name)
    assert found is not None
    return found


OPENAI_SERVER = backend("mlx-openai-server").dialect
OMNI = backend("mlx-omni-server").dialect
FASTMLX = backend("fastmlx").dialect
TEXTGEN = backend("mlx-textgen").dialect
MLX = backend("mlx-lm").dialect
BASH = {"name": "Bash", "description": "Run a command", "input_schema": {
    "type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"]}}


def req(messages: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"model": "claude-x", "max_tokens": 10, "stream": True, "messages": messages,
            **extra}


HI = [{"role": "user", "content": "hi"}]


def stop_reason(dialect: Dialect, chunks: list[dict[str, Any]]) -> str:
    translator = StreamTranslator(to_openai(req(HI), dialect, model="/m"))
    translator.start()
    for chunk in chunks:
        translator.feed(chunk)
    events = translator.finish()
    return str(events[-2][1]["delta"]["stop_reason"])


def text(content: str, finish: str | None = None, usage: dict[str, int] | None = None
         ) -> dict[str, Any]:
    chunk: dict[str, Any] = {"choices": [{"index": 0, "delta": {"content": content},
                                          "finish_reason": finish}]}
    if usage is not None:
        chunk["usage"] = usage
    return chunk


@pytest.mark.parametrize(("dialect", "chunks", "expected"), [
    # mlx-openai-server: `stop` with completion_tokens == max_tokens (10).
    (OPENAI_SERVER, [text("a", "stop", {"prompt_tokens": 5, "completion_tokens": 10})],
     "max_tokens"),
    (OPENAI_SERVER, [text("a", "stop", {"prompt_tokens": 5, "completion_tokens": 9})],
     "end_turn"),
    # Omni stops one short: 9 of 10 is cut, 8 is finished.
    (OMNI, [text("a", "stop", {"prompt_tokens": 5, "completion_tokens": 9})], "max_tokens"),
    (OMNI, [text("a", "stop", {"prompt_tokens": 5, "completion_tokens": 8})], "end_turn"),
    # Every backend: mlx-lm too.
    (MLX, [text("a", "stop", {"prompt_tokens": 5, "completion_tokens": 10})], "max_tokens"),
    (MLX, [text("a", "length")], "max_tokens"),
    # FastMLX: no usage, no finish_reason, one token per chunk.
    (FASTMLX, [text("t") for _ in range(10)], "max_tokens"),
    (FASTMLX, [text("t") for _ in range(9)], "end_turn"),
    # No usage and no chunk counting: nothing to go by.
    (TEXTGEN, [text("t", "stop") for _ in range(10)], "end_turn"),
])
def test_a_stop_at_the_limit_is_max_tokens(dialect: Dialect, chunks: list[dict[str, Any]],
                                           expected: str) -> None:
    assert stop_reason(dialect, chunks) == expected


def test_fastmlx_gets_the_tools_in_the_prompt_and_history_as_text() -> None:
    call = {"type": "tool_use", "id": "toolu_1", "name": "Bash", "input": {"command": "ls"}}
    result = {"type": "tool_result", "tool_use_id": "toolu_1", "content": "a.txt"}
    messages = [{"role": "user", "content": "list"},
                {"role": "assistant", "content": [{"type": "text", "text": "Sure."}, call]},
                {"role": "user", "content": [result, {"type": "text", "text": "and now?"}]}]
    plan = to_openai(req(messages, tools=[BASH], system="Be brief."), FASTMLX, model="/m")
    body = plan.body
    assert "tools" not in body and "tool_choice" not in body
    assert plan.text_tools and "hermes" in plan.text_formats
    roles = [m["role"] for m in body["messages"]]
    assert roles == ["system", "user", "assistant", "user"]
    assert all(isinstance(m["content"], str) for m in body["messages"])
    system = body["messages"][0]["content"]
    assert system.startswith("Be brief.\n\n# Tools") and "<tools>\n{" in system
    assert json.loads(system.split("<tools>\n")[1].split("\n</tools>")[0])["function"][
        "name"] == "Bash"
    assert body["messages"][2]["content"] == (
        'Sure.\n\n<tool_call>\n{"name":"Bash","arguments":{"command":"ls"}}\n</tool_call>')
    assert body["messages"][3]["content"] == "<tool_response>\na.txt\n</tool_response>\nand now?"


def test_tools_in_the_prompt_keep_the_prefix_of_the_previous_turn() -> None:
    first = inline([{"role": "system", "content": "S"}, {"role": "user", "content": "u"}],
                   [{"type": "function", "function": {"name": "Bash", "parameters": {}}}])
    second = inline([{"role": "system", "content": "S"}, {"role": "user", "content": "u"},
                     {"role": "assistant", "content": "a"}, {"role": "user", "content": "v"}],
                    [{"type": "function", "function": {"name": "Bash", "parameters": {}}}])
    assert second[: len(first)] == first


def test_a_text_answer_with_a_printed_call_becomes_a_tool_use() -> None:
    plan = to_openai(req(HI, tools=[BASH]), FASTMLX, model="/m")
    translator = StreamTranslator(plan)
    translator.start()
    translator.feed(text('<tool_call>\n{"name": "Bash", "arguments": {"command": "ls"}}\n'
                         '</tool_call>'))
    events = translator.finish()
    starts = [e[1]["content_block"] for e in events if e[0] == "content_block_start"]
    assert [(b["type"], b.get("name")) for b in starts] == [("tool_use", "Bash")]
    assert translator.stop_reason() == "tool_use"


def test_text_only_servers_get_a_placeholder_and_a_debug_note() -> None:
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                         "data": "AAAA"}}
    for dialect in (OMNI, FASTMLX, OPENAI_SERVER):
        plan = to_openai(req([{"role": "user", "content": [image, {"type": "text",
                                                                   "text": "what?"}]}]),
                         dialect, model="/m")
        assert plan.body["messages"][-1]["content"] == "[image omitted: image/png]\n\nwhat?"
        assert any("placeholder" in note for note in plan.notes)


@pytest.mark.parametrize(("body", "message"), [
    (b'{"detail":[{"type":"missing","loc":["body","tools",0,"name"],"msg":"Field required",'
     b'"input":{}}]}', "body.tools.0.name: Field required"),
    (b'{"detail":[{"loc":["body","model"],"msg":"Field required"}]}',
     "body.model: Field required"),
    (b'{"detail":[{"msg":"Field required"}]}', "Field required"),
])
def test_fastapi_422_keeps_the_field_path(body: bytes, message: str) -> None:
    assert backend_message(body, "application/json") == message


def test_mlx_textgen_is_asked_for_a_folder_by_its_base_name(tmp_path: Path) -> None:
    folder = tmp_path / "my-model"
    folder.mkdir()
    assert upstream_model(TEXTGEN, str(folder)) == "my-model"
    assert upstream_model(TEXTGEN, "owner/hub-model") == "owner/hub-model"
    assert upstream_model(OMNI, str(folder)) == str(folder)
    body = to_openai(req(HI), TEXTGEN, model=str(folder)).body
    assert body["model"] == "my-model"


def test_outlines_profile_types_bare_properties_and_drops_formats() -> None:
    schema = {"type": "object", "properties": {
        "url": {"type": "string", "format": "uri", "description": "d"},
        "args": {"description": "anything"},
        "list": {"type": "array", "items": {"description": "x"}},
        "choice": {"enum": ["a", "b"]},
        "nested": {"type": "object", "properties": {"deep": {}}}}}
    cleaned = clean_schema(schema, "outlines")
    props: Any = cleaned["properties"]
    assert props["url"] == {"type": "string", "description": "d"}
    kinds = [k["type"] for k in props["args"]["anyOf"]]
    assert kinds == ["string", "number", "boolean", "object", "array", "null"]
    assert "anyOf" in props["list"]["items"]
    assert props["choice"] == {"enum": ["a", "b"]}
    assert "anyOf" in props["nested"]["properties"]["deep"]
    assert clean_schema(schema, "outlines") == cleaned  # deterministic


def test_backends_start_with_the_flags_they_need() -> None:
    from anyclaude.backends.base import Endpoint

    endpoint = Endpoint("http://127.0.0.1:9000/v1", "/models/m")
    oai = backend("mlx-openai-server")
    assert oai.start is not None
    plan = oai.start(endpoint, {"executable": None, "tool_parser": None})
    assert plan is not None
    argv = list(plan.argv)
    assert argv[:2] == ["mlx-openai-server", "launch"]
    assert argv[argv.index("--tool-call-parser") + 1] == "hermes"
    assert "--enable-auto-tool-choice" in argv and argv[argv.index("--port") + 1] == "9000"
    for name in ("mlx-omni-server", "fastmlx"):
        found = backend(name)
        assert found.start is not None and found.model_required
        started = found.start(endpoint, {"executable": "/x/server"})
        assert started is not None and started.argv[0] == "/x/server"
        assert "127.0.0.1" in started.argv
