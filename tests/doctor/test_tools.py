"""The tool-calls check's verdicts on the answers the MLX servers really give (shapes from
the captures of mlx-openai-server 1.7.1 and FastMLX 0.2.1)."""

from __future__ import annotations

import json

import pytest

from anyclaude.backends import get
from anyclaude.backends.base import Backend, Endpoint
from anyclaude.doctor.tools import judge_tools, probe_body


def backend(name: str) -> Backend:
    found = get(name)
    assert found is not None
    return found


def answer(message: dict[str, object]) -> bytes:
    return json.dumps({"choices": [{"index": 0, "message": message,
                                    "finish_reason": "stop"}]}).encode()


PRINTED = answer({"role": "assistant", "content": '<tool_call>\n{"name": "get_time", '
                  '"arguments": {"zone": "Europe/Paris"}}\n</tool_call>'})
NATIVE = answer({"role": "assistant", "tool_calls": [{"id": "call_1", "type": "function",
                 "function": {"name": "get_time", "arguments": "{}"}}]})
FASTAPI_422 = b'{"detail":[{"type":"missing","loc":["body","tools",0,"name"],' \
    b'"msg":"Field required"}]}'


@pytest.mark.parametrize(("status", "raw", "text_mode", "verdict", "words"), [
    (200, NATIVE, False, "ok", "tool_calls"),
    (200, PRINTED, False, "fail", "<tool_call> text"),
    (200, PRINTED, True, "ok", "as text"),
    (200, answer({"role": "assistant", "content": "It is noon."}), False, "ok", "accepts"),
    (422, FASTAPI_422, False, "fail", "rejects OpenAI tools (HTTP 422: body.tools.0.name"),
    (500, b"Internal Server Error", False, "fail", "failed a one-tool request"),
])
def test_verdicts(status: int, raw: bytes, text_mode: bool, verdict: str, words: str) -> None:
    result = judge_tools(status, raw, "application/json", backend("mlx-openai-server"),
                         text_mode=text_mode)
    assert result.status == verdict and words in result.found, result
    assert (result.fix == "") == (verdict == "ok")


def test_the_probe_is_translated_as_the_proxy_would() -> None:
    endpoint = Endpoint("http://127.0.0.1:1/v1", "/models/m")
    assert "tools" not in probe_body(backend("fastmlx"), endpoint, None)
    assert probe_body(backend("mlx-openai-server"), endpoint, None)["tools"][0]["function"][
        "name"] == "get_time"
