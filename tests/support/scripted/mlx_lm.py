"""mlx-lm 0.32.2 (`mlx_lm.server`, BaseHTTPRequestHandler): HTTP/1.0, a close after every
response, Python `json.dumps` defaults (ASCII, ", "/": "), role in every delta, whole tool
calls, errors without Content-Length. Shapes from fixtures 01–56 and its server.py."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping
from typing import Any, ClassVar, Final

from tests.support.scripted.data import INVALID, Reply, Request, error_reply
from tests.support.scripted.dialect import DialectBase, Plan

FINGERPRINT: Final = "0.32.2-0.32.4-Linux-6.18.44-fc-v669-x86_64-with-glibc2.36-x86_64"
SERVER: Final = "BaseHTTP/0.6 Python/3.11.7"
OFFLINE_ERROR: Final = (
    "Cannot find an appropriate cached snapshot folder for the specified revision on the "
    "local disk and outgoing traffic has been disabled. To enable repo look-ups and downloads "
    "online, set 'HF_HUB_OFFLINE=0' as environment variable."
)  # fixture 50: what mlx-lm says after trying a Claude model name as a Hub repo id
CORS: Final = (
    ("Access-Control-Allow-Origin", "*"),
    ("Access-Control-Allow-Methods", "*"),
    ("Access-Control-Allow-Headers", "*"),
)


def mlx_lm_error(message: str, status: int = 404) -> Reply:
    """mlx-lm's `{"error": "..."}`; 404 is what it answers for anything raised while
    setting up generation (bad model name, non-text parts, invalid tool arguments)."""
    return error_reply(status, {"error": message})


class MlxLm(DialectBase):
    name = "mlx-lm"
    http_version = "HTTP/1.0"
    keep_alive = False
    chunked_stream = False
    needs_length = True
    keeps_query = True
    chat_paths = ("/v1/chat/completions", "/chat/completions")
    json_type = "application/json"
    echo_default = "default_model"
    health = b'{"status": "ok"}'
    fixed_headers = (("Server", SERVER), ("Date", "{date}"), ("Content-type", "{type}"), *CORS)
    completion_headers = (*fixed_headers, ("Content-Length", "{length}"))
    stream_headers = (("Server", SERVER), ("Date", "{date}"), ("Content-type", "text/event-stream"),
                      ("Cache-Control", "no-cache"), *CORS)
    reasoning_field = "reasoning"
    keepalives = 1
    template: ClassVar[Mapping[str, Any]] = {"role": "assistant"}
    whole_calls = True
    call_layout = ("function", "type", "id")
    stream_call_layout = ("function", "type", "id", "index")
    chunk_layout = ("id", "system_fingerprint", "object", "model", "created", "choices")
    choice_layout = ("index", "finish_reason", "delta")
    completion_layout = (*chunk_layout, "usage")
    completion_choice_layout = ("index", "finish_reason", "message")
    cached_default = 0
    usage_chunk_object = "chat.completion"
    fingerprint = FINGERPRINT

    def dumps(self, obj: Any) -> bytes:
        return json.dumps(obj).encode()

    def completion_id(self) -> str:
        return f"chatcmpl-{uuid.uuid4()}"

    def call_id(self, index: int) -> str:
        return str(uuid.uuid4())

    def error_json(self, status: int, message: str) -> Mapping[str, Any]:
        return {"error": message}

    def not_found(self, method: str, path: str) -> Reply:
        return error_reply(404, b"Not Found", "application/json")

    def models(self, path: str) -> Reply:
        data = [{"id": self.be.model, "object": "model", "created": int(time.time())}]
        return Reply(error_body={"object": "list", "data": data})

    def cut_stream(self, plan: Plan) -> bool:
        """server.py indexes stream_options["include_usage"]: a KeyError, the stream ends."""
        options = plan.request.json.get("stream_options")
        return isinstance(options, dict) and "include_usage" not in options

    def check(self, req: Request) -> Reply | None:
        if req.json is INVALID:
            try:
                json.loads(req.body.decode(errors="replace"))
            except json.JSONDecodeError as e:
                return mlx_lm_error(f"Invalid JSON in request body: {e}", 400)
        body = req.json
        if not isinstance(body, dict):
            return mlx_lm_error("Request should be a JSON dictionary", 400)
        problem = validate_params(body)
        if problem is not None:
            return mlx_lm_error(problem, 400)
        if "messages" not in body:
            return mlx_lm_error("Request did not contain messages", 400)
        model = body.get("model", "default_model")
        if self.be.strict_model and model not in ("default_model", self.be.model):
            self.be.drop_model(str(model))
            return mlx_lm_error(OFFLINE_ERROR)
        messages = body["messages"]
        if not messages:
            return mlx_lm_error(
                "Cannot apply chat template to an empty conversation. Provide at least one message."
            )
        for m in messages if isinstance(messages, list) else []:
            if not isinstance(m, dict):
                continue
            content = m.get("content")
            if isinstance(content, list) and any(
                not isinstance(p, dict) or p.get("type") != "text" for p in content
            ):
                return mlx_lm_error("Only 'text' content type is supported.")
            for tc in m.get("tool_calls") or []:
                args = tc.get("function", {}).get("arguments") if isinstance(tc, dict) else None
                if isinstance(args, str):
                    try:
                        json.loads(args)
                    except json.JSONDecodeError as e:
                        return mlx_lm_error(str(e))
        return None


def validate_params(body: Mapping[str, Any]) -> str | None:
    """mlx-lm's `validate_model_parameters`, with 0.32.2's `max_tokens >= 1` (fixture 19)."""
    max_tokens = body.get("max_completion_tokens")
    if max_tokens is None:
        max_tokens = body.get("max_tokens", 512)
    num: tuple[type, ...] = (float, int)
    checks: list[tuple[str, Any, type | tuple[type, ...], float | None, float | None]] = [
        ("stream", body.get("stream", False), bool, None, None),
        ("max_tokens", max_tokens, int, 1, None),
        ("temperature", body.get("temperature", 0.0), num, 0, None),
        ("top_p", body.get("top_p", 1.0), num, 0, 1),
        ("top_k", body.get("top_k", 0), int, 0, None),
        ("min_p", body.get("min_p", 0.0), num, 0, 1),
        ("repetition_penalty", body.get("repetition_penalty", 0.0), num, 0, None),
        ("presence_penalty", body.get("presence_penalty", 0.0), num, None, None),
        ("frequency_penalty", body.get("frequency_penalty", 0.0), num, None, None),
        ("logprobs", body.get("logprobs", False), bool, None, None),
        ("requested_model", body.get("model", "default_model"), str, None, None),
    ]
    for name, value, kind, lo, hi in checks:
        if not isinstance(value, kind):
            allowed = tuple(k.__name__ for k in kind) if isinstance(kind, tuple) else kind.__name__
            return f"{name} must be of type {allowed}"
        number: Any = value
        if lo is not None and number < lo:
            return f"{name} must be at least {lo}"
        if hi is not None and number > hi:
            return f"{name} must be at most {hi}"
    top_logprobs = body.get("top_logprobs", -1)
    if not isinstance(top_logprobs, int):
        return "top_logprobs must be of type int"
    if top_logprobs != -1 and not 0 <= top_logprobs <= 11:
        return (
            "top_logprobs must be at most 11"
            if top_logprobs > 11
            else "top_logprobs must be at least 0"
        )
    if body.get("seed") is not None and not isinstance(body.get("seed"), int):
        return "seed must be of type int"
    if body.get("logit_bias") is not None and not isinstance(body.get("logit_bias"), dict):
        return "logit_bias must be of type dict"
    return None
