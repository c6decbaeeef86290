"""Every request a tested Claude Code version was recorded sending (`tests/fixtures/`) goes
through the proxy, with its own headers and body, and gets a valid answer: never a 400 for
something merely new, streaming or not."""

from __future__ import annotations

import io
from collections.abc import Iterator

import anthropic
import httpx
import pytest

from anyclaude.proxy.trace import Tracer
from tests.support import grammar
from tests.support.capture import recorded
from tests.support.claude_code import CLAUDE_VERSIONS
from tests.support.proxy import TOKEN, ThreadedProxy, running_proxy
from tests.support.scripted import ScriptedBackend


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[ScriptedBackend, ThreadedProxy, io.StringIO]]:
    debug = io.StringIO()
    with ScriptedBackend("mlx-lm") as backend, running_proxy(
            "mlx-lm", backend.url, tracer=Tracer(2, debug)) as proxy:
        yield backend, proxy, debug


def send(proxy: ThreadedProxy, capture: dict[str, object], **changes: object) -> httpx.Response:
    headers = {k: v for k, v in capture["headers"].items()  # type: ignore[attr-defined]
               if k not in ("authorization", "x-api-key", "accept-encoding")}
    body = {**capture["body"], **changes}  # type: ignore[dict-item]
    return httpx.post(proxy.url + str(capture["path"]), json=body, timeout=60,
                      headers={**headers, "x-api-key": TOKEN})


@pytest.mark.parametrize("version", CLAUDE_VERSIONS)
def test_every_capture_gets_a_valid_answer_streaming_or_not(
        served: tuple[ScriptedBackend, ThreadedProxy, io.StringIO], version: str) -> None:
    backend, proxy, _ = served
    for capture in recorded(version):
        name = capture["name"]
        if capture["path"].startswith("/v1/messages/count_tokens"):
            response = send(proxy, capture)
            assert response.status_code == 200, (name, response.text)
            assert response.json()["input_tokens"] > 0
            continue
        before = len(backend.requests)
        streamed = send(proxy, capture, stream=True)
        assert streamed.status_code == 200, (name, streamed.text)
        summary = grammar.check(grammar.parse_sse(streamed.content), complete=True)
        assert summary["stop_reason"] in ("end_turn", "tool_use"), name
        whole = send(proxy, capture, stream=False)
        assert whole.status_code == 200, (name, whole.text)
        message = anthropic.types.Message.model_validate(whole.json())
        assert message.content and message.content[0].type == "text", name
        assert len(backend.requests) == before + 2, "both reached the backend"


def test_what_was_dropped_is_in_the_debug_output(
        served: tuple[ScriptedBackend, ThreadedProxy, io.StringIO]) -> None:
    _, proxy, debug = served
    newest = {c["name"]: c for c in recorded(CLAUDE_VERSIONS[-1])}
    response = send(proxy, newest["tui-1"], stream=False)
    assert response.status_code == 200
    notes = [line.split("note: ", 1)[1] for line in debug.getvalue().splitlines()
             if "note: " in line]
    assert any(note.startswith("ignored context_management") for note in notes)
    assert any(note.startswith("ignored safeguards") for note in notes)
    assert any(note.startswith("left out deferred tool(s) DeferredToolPlaceholder")
               for note in notes)
