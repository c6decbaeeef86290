"""vLLM (FastAPI/uvicorn): OpenAI-standard chunks, a `reasoning` field, a first tool delta
with a `chatcmpl-tool-` id and the name only, then argument fragments; 400 for a prompt plus
max_tokens over `--max-model-len`."""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from typing import Any, ClassVar

from tests.support.scripted.data import Reply, Request, error_reply
from tests.support.scripted.dialect import DialectBase


def vllm_context_overflow(max_len: int = 4096, prompt: int = 4000, completion: int = 1000) -> Reply:
    """vLLM's 400 for prompt + max_tokens over `--max-model-len`."""
    message = (
        f"This model's maximum context length is {max_len} tokens. However, you requested "
        f"{prompt + completion} tokens ({prompt} in the messages, {completion} in the "
        "completion). Please reduce the length of the messages or completion."
    )
    return error_reply(
        400, {"error": {"message": message, "type": "BadRequestError", "param": None, "code": 400}}
    )


class Vllm(DialectBase):
    name = "vllm"
    json_type = "application/json"
    health = b""
    reasoning_field = "reasoning"
    first_delta: ClassVar[Mapping[str, Any]] = {"role": "assistant", "content": ""}
    start_has_arguments = False
    stream_call_layout = ("id", "type", "index", "function")
    usage_layout = ("prompt_tokens", "total_tokens", "completion_tokens", "prompt_tokens_details")

    def content_type(self, content_type: str) -> str:
        return content_type.replace("; charset=utf-8", "")

    def call_id(self, index: int) -> str:
        return "chatcmpl-tool-" + uuid.uuid4().hex

    def error_json(self, status: int, message: str) -> Mapping[str, Any]:
        kind = {400: "BadRequestError", 404: "NotFoundError"}.get(status, "InternalServerError")
        return {"error": {"message": message, "type": kind, "param": None, "code": status}}

    def models(self, path: str) -> Reply:
        entry: dict[str, Any] = {
            "id": self.be.model, "object": "model", "created": int(time.time()),
            "owned_by": "vllm", "root": self.be.model, "parent": None}
        if self.be.context_length is not None:
            entry["max_model_len"] = self.be.context_length
        return Reply(error_body={"object": "list", "data": [entry]})

    def check(self, req: Request) -> Reply | None:
        problem = super().check(req)
        if problem is not None:
            return problem
        model = req.model
        if self.be.strict_model and model != self.be.model:
            return error_reply(404, self.error_json(404, f"The model `{model}` does not exist."))
        ctx = self.be.context_length
        if ctx is not None:
            prompt = self.be.token_counter(req)
            body = req.json
            completion = body.get("max_completion_tokens") or body.get("max_tokens") or 0
            if not isinstance(completion, int):
                completion = 0
            if prompt + completion > ctx:
                return vllm_context_overflow(ctx, prompt, completion)
        return None
