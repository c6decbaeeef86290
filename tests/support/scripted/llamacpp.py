"""llama.cpp `llama-server` (cpp-httplib, nlohmann ordered_json): `choices` first in each
chunk, `reasoning_content`, tool-call fragments, `{"error": {"code", "message", "type"}}`."""

from __future__ import annotations

import string
import time
from collections.abc import Mapping
from typing import Any, ClassVar

from tests.support.scripted.data import INVALID, Reply, Request, error_reply
from tests.support.scripted.dialect import DialectBase, alnum

LETTERS = string.ascii_letters + string.digits


def llamacpp_context_overflow(n_prompt: int, n_ctx: int) -> Reply:
    """llama-server's 400 `exceed_context_size_error`."""
    return error_reply(400, {"error": {
        "code": 400, "message": "the request exceeds the available context size, try "
                                "increasing it",
        "type": "exceed_context_size_error", "n_prompt_tokens": n_prompt, "n_ctx": n_ctx}})


class LlamaCpp(DialectBase):
    name = "llamacpp"
    health: ClassVar[Mapping[str, Any]] = {"status": "ok"}
    fixed_headers = (("Access-Control-Allow-Origin", ""), ("Content-Length", "{length}"),
                     ("Content-Type", "{type}"), ("Keep-Alive", "timeout=5, max=100"),
                     ("Server", "llama.cpp"))
    stream_headers = (("Access-Control-Allow-Origin", ""), ("Content-Type", "text/event-stream"),
                      ("Keep-Alive", "timeout=5, max=100"), ("Server", "llama.cpp"),
                      ("Transfer-Encoding", "chunked"))
    first_delta: ClassVar[Mapping[str, Any]] = {"role": "assistant", "content": None}
    chunk_layout = ("choices", "created", "id", "model", "system_fingerprint", "object")
    choice_layout = ("finish_reason", "index", "delta")
    fingerprint = "b6000-scripted"

    def completion_id(self) -> str:
        return "chatcmpl-" + alnum(32, LETTERS)

    def call_id(self, index: int) -> str:
        return alnum(32, LETTERS)

    def error_json(self, status: int, message: str) -> Mapping[str, Any]:
        kind = {400: "invalid_request_error", 404: "not_found_error"}.get(status, "server_error")
        return {"error": {"code": status, "message": message, "type": kind}}

    def not_found(self, method: str, path: str) -> Reply:
        return error_reply(404, self.error_json(404, "File Not Found"))

    def models(self, path: str) -> Reply:
        meta: dict[str, Any] = {"vocab_type": 2, "n_vocab": 151936}
        if self.be.context_length is not None:
            meta["n_ctx_train"] = self.be.context_length
        data = [{"id": self.be.model, "object": "model", "created": int(time.time()),
                 "owned_by": "llamacpp", "meta": meta}]
        return Reply(error_body={"models": [{"name": self.be.model, "model": self.be.model}],
                                 "object": "list", "data": data})

    def check(self, req: Request) -> Reply | None:
        if req.json is INVALID:
            return error_reply(
                500, self.error_json(500, "[json.exception.parse_error.101] parse error"))
        problem = super().check(req)
        if problem is not None:
            return problem
        ctx = self.be.context_length
        if ctx is not None:
            prompt = self.be.token_counter(req)
            if prompt > ctx:
                return llamacpp_context_overflow(prompt, ctx)
        return None
