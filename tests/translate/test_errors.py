"""Backend failures -> the Anthropic errors Claude Code reacts to sensibly."""

from __future__ import annotations

import json

import pytest

from anyclaude.translate.errors import backend_message, from_backend, overflow


def mapped(status: int, body: object, content_type: str = "application/json",
           window: int | None = 4096, estimate: int = 5000):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return from_backend(status, raw, content_type, url="http://127.0.0.1:8081/v1",
                        prompt_estimate=estimate, window=window, max_tokens=1000,
                        model_setting="MLX_LM_MODEL")


VLLM_OVERFLOW = {"object": "error", "message": (
    "This model's maximum context length is 4096 tokens. However, you requested 6000 tokens "
    "(5000 in the messages, 1000 in the completion). Please reduce the length of the messages "
    "or completion."), "type": "BadRequestError", "code": 400}


def test_vllm_context_overflow_becomes_prompt_is_too_long_with_its_numbers() -> None:
    error = mapped(400, VLLM_OVERFLOW)
    assert (error.status, error.type) == (400, "invalid_request_error")
    assert error.message == "prompt is too long: 5000 tokens > 4096 maximum"


def test_overflow_from_max_tokens_uses_the_phrase_claude_code_retries_with() -> None:
    body = dict(VLLM_OVERFLOW, message="This model's maximum context length is 4096 tokens. "
                "However, you requested 5000 tokens (3000 in the messages, 2000 in the completion).")
    error = mapped(400, body)
    assert error.message.startswith("input length and `max_tokens` exceed context limit: "
                                    "3000 + 1000 > 4096")


def test_lmstudio_too_long_prompt_as_http_500_becomes_a_400() -> None:
    body = {"error": "Trying to keep the first 9000 tokens when context the overflows. However, "
                     "the model is loaded with context length of only 4096 tokens"}
    error = mapped(500, body)
    assert error.status == 400 and "prompt is too long" in error.message


def test_generic_context_message_uses_the_estimate_and_window() -> None:
    error = mapped(400, {"error": "context length exceeded"}, estimate=7000, window=4096)
    assert error.message == "prompt is too long: 7000 tokens > 4096 maximum"


def test_mlx_lm_request_errors_are_400_with_the_backend_message() -> None:
    error = mapped(404, {"error": "Only 'text' content type is supported."})
    assert error.status == 400 and "Only 'text' content type is supported." in error.message


def test_missing_model_names_the_setting_to_fix() -> None:
    error = mapped(404, {"error": 'Model "x" does not exist.'})
    assert error.status == 400 and "MLX_LM_MODEL" in error.message


def test_html_error_page_is_summarised_not_dumped() -> None:
    page = b"<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head><body>...</body></html>"
    error = mapped(502, page, "text/html")
    assert error.status == 529 and "HTML error page (502 Bad Gateway)" in error.message


@pytest.mark.parametrize(("status", "expected"), [(500, 500), (503, 529), (429, 429), (401, 400),
                                                  (422, 400)])
def test_status_mapping(status: int, expected: int) -> None:
    assert mapped(status, {"error": {"message": "boom"}}).status == expected


def test_backend_500_is_not_retried_forever() -> None:
    assert mapped(500, {"detail": "KeyError"}).retry is False


@pytest.mark.parametrize(("body", "message"), [
    (b'{"error": "plain"}', "plain"),
    (b'{"error": {"message": "nested", "type": "x"}}', "nested"),
    (b'{"detail": "fastapi"}', "fastapi"),
    (b'{"detail": [{"msg": "field required"}]}', "field required"),
    (b"plain text failure", "plain text failure"),
    (b"", "an empty response"),
])
def test_backend_message_reads_every_known_shape(body: bytes, message: str) -> None:
    assert backend_message(body) == message


def test_unrelated_messages_are_not_overflows() -> None:
    assert overflow("invalid temperature", 100, 4096, 10) is None
