"""LM Studio (Express): chunked SSE, role in the first delta only, tool calls streamed as a
start delta (numeric-looking id, name, arguments "") then argument fragments, usage only with
include_usage, a native /api/v0 API that reports context lengths. From its docs
(protocol-notes §G.2); no capture exists."""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

from tests.support.scripted.data import Reply, Request, error_reply
from tests.support.scripted.dialect import DialectBase, alnum

EXPRESS = (("X-Powered-By", "Express"), ("Access-Control-Allow-Origin", "*"),
           ("Access-Control-Allow-Headers", "*"))
KEEP_ALIVE = (("Date", "{date}"), ("Connection", "keep-alive"), ("Keep-Alive", "timeout=5"))


def lmstudio_model_not_found(model: str) -> Reply:
    """LM Studio's 400 for an unknown model identifier (protocol-notes §G.2)."""
    return error_reply(400, {"error": {
        "message": f'Invalid model identifier "{model}". Please specify a valid downloaded '
                   "model (e.g., qwen/qwen3-4b).",
        "type": "invalid_request_error", "param": "model", "code": "model_not_found"}})


def lmstudio_no_models_loaded() -> Reply:
    """LM Studio with JIT loading off and nothing loaded: `error` is a string here."""
    return error_reply(400, {"error": "No models loaded. Please load a model in the developer "
                                      "page or use the `lms load` command."})


def lmstudio_prompt_too_long(prompt_tokens: int, context_length: int) -> Reply:
    """LM Studio reports a too-long prompt as HTTP 500 (text from its bug tracker)."""
    return error_reply(500, {"error": (
        f"Trying to keep the first {prompt_tokens} tokens when context the overflows. However, "
        f"the model is loaded with context length of only {context_length} tokens, which is not "
        "enough. Try to load the model with a larger context length, or provide a shorter input")})


class LmStudio(DialectBase):
    name = "lmstudio"
    model_paths = ("/v1/models", "/api/v0/models")
    fixed_headers = (*EXPRESS, ("Content-Type", "{type}"), ("Content-Length", "{length}"),
                     *KEEP_ALIVE)
    stream_headers = (*EXPRESS, ("Content-Type", "text/event-stream"),
                      ("Cache-Control", "no-cache"), *KEEP_ALIVE, ("Transfer-Encoding", "chunked"))
    chunk_layout = ("id", "object", "created", "model", "system_fingerprint", "choices")
    completion_layout = ("id", "object", "created", "model", "choices", "usage", "stats",
                         "system_fingerprint")
    completion_choice_layout = ("index", "logprobs", "finish_reason", "message")
    null_content_with_calls = False  # as in the docs' tool-call example

    def completion_id(self) -> str:
        return "chatcmpl-" + alnum(22)

    def call_id(self, index: int) -> str:
        return str(random.randint(100_000_000, 999_999_999))

    def error_json(self, status: int, message: str) -> Mapping[str, Any]:
        return {"error": message}

    def not_found(self, method: str, path: str) -> Reply:
        return error_reply(404, {"error": f"Unexpected endpoint or method. ({method} {path})"})

    def models(self, path: str) -> Reply:
        if path.startswith("/api/v0/models"):
            entry: dict[str, Any] = {
                "id": self.be.model, "object": "model", "type": "llm", "publisher": "scripted",
                "arch": "qwen3", "compatibility_type": "gguf", "quantization": "Q4_K_M",
                "state": "loaded"}
            if self.be.context_length is not None:
                entry["max_context_length"] = self.be.context_length
                entry["loaded_context_length"] = self.be.context_length
            if path.rstrip("/") != "/api/v0/models":
                return Reply(error_body=entry)
            return Reply(error_body={"object": "list", "data": [entry]})
        data = [{"id": self.be.model, "object": "model", "owned_by": "organization_owner"}]
        return Reply(error_body={"data": data, "object": "list"})

    def check(self, req: Request) -> Reply | None:
        problem = super().check(req)
        if problem is not None:
            return problem
        model = req.model
        if self.be.strict_model and model is not None and model != self.be.model:
            return lmstudio_model_not_found(str(model))
        ctx = self.be.context_length
        if ctx is not None:
            prompt = self.be.token_counter(req)
            if prompt > ctx:
                return lmstudio_prompt_too_long(prompt, ctx)
        return None
