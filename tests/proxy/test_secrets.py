"""Secrets never reach the client, the debug lines or the traces (issue 11, class 7): the
backend URL's password, the backend key quoted back in an error, credentials in headers
outside any fixed list and in secret-looking JSON keys."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path
from typing import Any

import pytest

from anyclaude.proxy.trace import Tracer
from anyclaude.redact import RedactingFormatter
from tests.support.grammar import parse_sse
from tests.support.mlx_server import free_port
from tests.support.proxy import TOKEN, serving
from tests.support.scripted import Reply, ScriptedBackend

PASSWORD = "pw-S3CRET-7781"
KEY = "sk-live-0123456789abcdef"
BODY: dict[str, Any] = {"model": "claude-x", "max_tokens": 50,
                        "messages": [{"role": "user", "content": "hi"}]}
HEADERS = {"x-api-key": TOKEN, "anthropic-version": "2023-06-01"}


@pytest.mark.parametrize("stream", [True, False])
async def test_a_url_password_is_not_in_errors_sent_to_the_client(stream: bool) -> None:
    url = f"http://anyclaude:{PASSWORD}@127.0.0.1:{free_port()}/v1"
    out = io.StringIO()
    async with serving("mlx-lm", url=url, tracer=Tracer(1, out)) as proxy:
        response = await proxy.client.post("/v1/messages", json={**BODY, "stream": stream},
                                           headers=HEADERS)
        text = await response.text()
    assert response.status == 529
    assert PASSWORD not in text and "127.0.0.1" in text and "anyclaude:[redacted]@" in text
    assert PASSWORD not in out.getvalue() and "error 529" in out.getvalue()


MID_STREAM = (b'data: {"choices": [{"index": 0, "delta": {"content": "Hi"}}]}\n\n'
              b'data: {"error": {"message": "key ' + KEY.encode() + b' was revoked"}}\n\n')
QUOTING = {
    "401 quoting the key": (Reply(status=401, error_body={"error": f"Invalid API key {KEY}"}),
                            (True, False)),
    "500 quoting the header": (Reply(status=500, error_body=f"bad header Authorization: Bearer {KEY}"),
                               (True, False)),
    "429 quoting the key": (Reply(status=429, error_body={"error": {"message": f"key {KEY} over"}}),
                            (True, False)),
    "an error event quoting the key": (Reply(error_body=MID_STREAM,
                                             content_type="text/event-stream"), (True,)),
}
CASES = [(case, stream) for case, (_, modes) in sorted(QUOTING.items()) for stream in modes]


@pytest.mark.parametrize("case, stream", CASES)
async def test_a_backend_quoting_the_key_does_not_leak_it(case: str, stream: bool) -> None:
    out = io.StringIO()
    tracer = Tracer(2, out, secrets=(TOKEN, KEY))
    async with ScriptedBackend("vllm", model="m") as backend, \
            serving("openai", backend, model="m", tracer=tracer, api_key=KEY) as proxy:
        backend.reply(QUOTING[case][0])
        response = await proxy.client.post("/v1/messages", json={**BODY, "stream": stream},
                                           headers=HEADERS)
        text = await response.text()
    lines = out.getvalue()
    assert "[redacted]" in text and "[redacted]" in lines
    assert KEY not in text and KEY not in lines, (text, lines)
    if response.status == 200:
        assert [name for name, _ in parse_sse(text.encode())][-1] == "error"


async def test_traces_redact_every_credential_header_and_secret_key(tmp_path: Path) -> None:
    trace = tmp_path / "trace.jsonl"
    tracer = Tracer(3, io.StringIO(), trace, secrets=(TOKEN, KEY, f"http://u:{PASSWORD}@h/v1"))
    headers = {**HEADERS, "x-goog-api-key": "goog-123456", "X-Auth-Token": "auth-654321",
               "x-custom-secret": "custom-999999", "Cookie": "session=abcdef12",
               "Proxy-Authorization": "Basic dXNlcjpwdw==", "x-innocent": f"carries {KEY}",
               "x-url": f"http://u:{PASSWORD}@example.com/"}
    body = {**BODY, "metadata": {"user_id": "u-1", "api_key": "meta-key-1", "password": "hunter22",
                                 "client_secret": "cs-0001", "accessToken": "at-0002"},
            "messages": [{"role": "user", "content": f"use {KEY} and token {TOKEN}"}]}
    async with ScriptedBackend("vllm", model="m") as backend, \
            serving("openai", backend, model="m", tracer=tracer) as proxy:
        backend.reply(Reply(text="ok"))
        response = await proxy.client.post("/v1/messages", json=body, headers=headers)
        assert response.status == 200, await response.text()
    tracer.close()
    raw = trace.read_text()
    for secret in ("goog-123456", "auth-654321", "custom-999999", "abcdef12", "dXNlcjpwdw==",
                   KEY, TOKEN, PASSWORD, "meta-key-1", "hunter22", "cs-0001", "at-0002"):
        assert secret not in raw, secret
    client = json.loads(raw.splitlines()[0])["data"]
    assert client["body"]["max_tokens"] == 50 and client["body"]["metadata"]["user_id"] == "u-1"
    assert {k.lower(): v for k, v in client["headers"].items()}["anthropic-version"] == "2023-06-01"


def test_log_records_and_tracebacks_lose_the_secrets() -> None:
    out = io.StringIO()
    tracer = Tracer(1, out, secrets=(TOKEN, KEY, f"http://u:{PASSWORD}@h/v1"))
    handler = logging.StreamHandler(out)
    handler.setFormatter(RedactingFormatter(tracer.redactor))
    logger = logging.getLogger("anyclaude.test-secrets")
    logger.addHandler(handler)
    try:
        try:
            raise ValueError(f"cannot reach http://u:{PASSWORD}@h/v1 with {KEY}")
        except ValueError:
            logger.exception("request failed for %s", TOKEN)
    finally:
        logger.removeHandler(handler)
    text = out.getvalue()
    assert "Traceback" in text and "ValueError" in text
    assert PASSWORD not in text and KEY not in text and TOKEN not in text
