"""mlx-textgen 0.2.1 (FastAPI/uvicorn): chunked SSE, every delta serialises role/content/
reasoning_content/tool_calls, usage inside the finish chunk, `data: [DONE]` with no blank
line, tool calls at index 0 with `call_<8 hex>` ids, and the 0.2.1 bug that a stream with
tools (tool_choice auto) drops the call and the finish chunk. Shapes from fixtures tg01–tg08
and the sdist's server.py / engine.py / chat_utils.py."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping
from typing import Any, ClassVar

from tests.support.scripted.data import Reply, Request, error_reply
from tests.support.scripted.dialect import DialectBase, Plan


def textgen_error(message: str, status: int = 404) -> Reply:
    """mlx-textgen's own error shape (wrong model name)."""
    return error_reply(status, {"error": message})


def textgen_detail(detail: str, status: int = 500) -> Reply:
    """mlx-textgen's FastAPI error shape, e.g. the Metal lookup failure on Linux (tg01)."""
    return error_reply(status, {"detail": detail})


class Abort(Exception):
    """An mlx-textgen `chat_generate` error: 500 `{"detail"}`, or a cut stream."""


class MlxTextgen(DialectBase):
    name = "mlx-textgen"
    json_type = "application/json"
    reasoning_field = None  # inline <think> unless --use-reasoning-content
    template: ClassVar[Mapping[str, Any]] = {"role": None, "content": None, "reasoning_content": None, "tool_calls": []}
    first_delta: ClassVar[Mapping[str, Any]] = {"role": "assistant", "content": ""}
    whole_calls = True
    calls_at_index_zero = True
    call_layout = stream_call_layout = ("index", "id", "function", "type")
    chunk_layout = ("id", "object", "created", "model", "choices", "usage")
    choice_layout = ("index", "finish_reason", "logprobs", "delta")
    completion_choice_layout = ("index", "message", "finish_reason", "logprobs")
    usage_layout = ("prompt_tokens", "completion_tokens", "total_tokens",
                    "completion_tokens_details")
    usage_in_finish = True
    done = b"data: [DONE]"

    def call_id(self, index: int) -> str:
        return "call_" + uuid.uuid4().hex[:8]

    def content_type(self, content_type: str) -> str:
        return "application/json" if content_type == "application/json; charset=utf-8" \
            else content_type

    def error_json(self, status: int, message: str) -> Mapping[str, Any]:
        return {"detail": message}

    def models(self, path: str) -> Reply:
        info = {
            "id": self.be.model,
            "object": "model",
            "created": int(time.time()),
            "owned_by": None,
            "permission": [],
            "root": "root",
            "info": {"tokenizer_id": self.be.model, "tokenizer_kwargs": None},
        }
        if path.rstrip("/") != "/v1/models":
            wanted = path.rstrip("/").removeprefix("/v1/models/")
            if wanted != self.be.model:
                return error_reply(404, {"detail": f'Model "{wanted}" does not exist.'})
            return Reply(error_body=info)
        return Reply(error_body={"object": "list", "data": [info]})

    def check(self, req: Request) -> Reply | None:
        body = req.json
        if not isinstance(body, dict):  # request.json() or content.get() raises: plain 500
            return error_reply(500, b"Internal Server Error", "text/plain; charset=utf-8")
        model = body.get("model")
        if self.be.strict_model and model != self.be.model:
            return textgen_error(f'Model "{model}" does not exist.')
        try:
            chat_generate_checks(body)
        except Abort as e:
            if body.get("stream"):
                # gen() raises after StreamingResponse sent its headers: uvicorn drops the socket
                return Reply(fault="die_mid_stream", fault_after=0)
            return textgen_detail(str(e))
        return None

    def reasoning_delta(self, piece: str) -> dict[str, Any]:
        return {**self.template, "content": "", "reasoning_content": piece}

    def drops_calls(self, plan: Plan) -> bool:
        auto = plan.tool_choice is None or plan.tool_choice == "auto"
        return (self.be.textgen_stream_tool_bug and plan.tools_requested and auto
                and bool(plan.calls))


def pydantic_error(model: str, message: str, value: Any) -> str:
    shown = repr(value)
    if len(shown) > 60:
        shown = shown[:27] + "..." + shown[-27:]
    return (
        f"1 validation error for {model}\n  Value error, {message} "
        f"[type=value_error, input_value={shown}, input_type={type(value).__name__}]\n"
        "    For further information visit https://errors.pydantic.dev/2.11/v/value_error"
    )


def chat_generate_checks(body: Mapping[str, Any]) -> None:
    """What mlx-textgen 0.2.1's `chat_generate` / `ChatMessage` / `_validate_msg_seq` reject,
    in their order; raises `Abort` with the text it would put in `detail`."""
    if "messages" not in body:
        raise Abort(
            "InferenceEngine.chat_generate() missing 1 required positional argument: 'messages'"
        )
    for tool in body.get("tools") or []:
        params = tool.get("function", {}).get("parameters") if isinstance(tool, dict) else None
        if not (
            isinstance(params, dict)
            and params.get("type") == "object"
            and isinstance(params.get("properties"), dict)
        ):
            raise Abort(
                "1 validation error for OpenAIToolSchema\nfunction.parameters\n"
                "  parameters must be {'type': 'object', 'properties': {...}}"
            )
    if body.get("reasoning_effort"):
        raise Abort("'dict' object is not callable")  # rmap(reasoning_effort)
    messages = body["messages"]
    if not messages:
        raise Abort("list index out of range")
    roles = []
    for m in messages:
        role = m.get("role") if isinstance(m, dict) else None
        if role not in ("system", "developer", "user", "assistant", "tool"):
            raise Abort(pydantic_error("ChatMessage", f"invalid role {role!r}", m))
        assert isinstance(m, dict)
        role = "system" if role == "developer" else role
        content = m.get("content")
        if isinstance(content, list) and all(
            isinstance(p, dict) and p.get("type") == "text" for p in content
        ):
            content = "\n".join(str(p.get("text", "")) for p in content)
        calls = m.get("tool_calls") or None
        for tc in calls or []:
            args = str(tc.get("function", {}).get("arguments", "")).strip()
            if args:
                try:
                    json.loads(args)
                except json.JSONDecodeError as e:
                    raise Abort(str(e)) from e
        if role == "assistant":
            if content is not None and not isinstance(content, str):
                raise Abort(
                    pydantic_error("ChatMessage", '"assistant" content must be string.', m)
                )
            if content is None and not calls:
                raise Abort(
                    pydantic_error(
                        "ChatMessage", 'No "tool_calls" or "content" for the assistant message.', m
                    )
                )
            if content is not None and calls:
                raise Abort(
                    pydantic_error("ChatMessage", "Cannot have both tool_calls and content.", m)
                )
        elif role != "user":
            if content is None:
                raise Abort(
                    pydantic_error("ChatMessage", f'Content cannot be None for role "{role}".', m)
                )
            if isinstance(content, list):
                raise Abort(
                    pydantic_error(
                        "ChatMessage", f'Content can only be string for role "{role}".', m
                    )
                )
        roles.append((role, content))
    systems = sum(1 for r, _ in roles if r == "system")
    if systems > 1:
        raise Abort("Cannot have more than one system messages.")
    if systems == 1 and roles[0][0] != "system":
        raise Abort("If system messages is provided, it must be the first message.")
    if systems == 1 and len(roles) < 2:
        raise Abort("Cannot have a messages list with only a system message.")
    if any(isinstance(c, list) for _, c in roles):
        raise Abort("Text only template only support string contents.")
