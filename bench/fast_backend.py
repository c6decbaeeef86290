"""A fast OpenAI-compatible backend for benchmarks: answers at once, streams N tokens as N
separate chunks (one socket write each, like a real server), keep-alive connections.

    python -m bench.fast_backend --port 9000
A request may set `max_tokens` to choose N (the answer length in tokens).
"""

from __future__ import annotations

import argparse
import json

from aiohttp import web

CHUNK = (b'data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1,'
         b'"model":"bench","choices":[{"index":0,"delta":{"content":"tok "},'
         b'"finish_reason":null}]}\n\n')
FINISH = (b'data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1,'
          b'"model":"bench","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n'
          )


def usage(prompt: int, completion: int) -> bytes:
    return ("data: " + json.dumps({"object": "chat.completion", "choices": [], "usage": {
        "prompt_tokens": prompt, "completion_tokens": completion,
        "prompt_tokens_details": {"cached_tokens": 0}}}) + "\n\n").encode()


def echo_tag(body: dict[str, object]) -> str:
    """A `[[tag:...]]` in the last message is echoed at the end of the answer, so load tests
    can check that every client got its own answer (no cross-talk)."""
    messages = body.get("messages")
    last = messages[-1] if isinstance(messages, list) and messages else {}
    content = last.get("content") if isinstance(last, dict) else ""
    text = content if isinstance(content, str) else json.dumps(content)
    start = text.find("[[tag:")
    return text[start:text.find("]]", start) + 2] if start != -1 else ""


def tag_chunk(tag: str) -> bytes:
    return ("data: " + json.dumps({"object": "chat.completion.chunk", "choices": [
        {"index": 0, "delta": {"content": tag}, "finish_reason": None}]}) + "\n\n").encode()


async def chat(request: web.Request) -> web.StreamResponse:
    raw = await request.read()
    body = json.loads(raw)
    n = int(body.get("max_tokens") or body.get("max_completion_tokens") or 16)
    prompt = len(raw) // 4
    tag = echo_tag(body)
    if not body.get("stream"):
        return web.json_response({"id": "chatcmpl-bench", "object": "chat.completion",
                                  "choices": [{"index": 0, "finish_reason": "stop", "message": {
                                      "role": "assistant", "content": "tok " * n + tag}}],
                                  "usage": {"prompt_tokens": prompt, "completion_tokens": n}})
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    for _ in range(n):
        await response.write(CHUNK)
    if tag:
        await response.write(tag_chunk(tag))
    await response.write(FINISH + usage(prompt, n) + b"data: [DONE]\n\n")
    return response


async def models(request: web.Request) -> web.Response:
    return web.json_response({"object": "list", "data": [{"id": "bench", "object": "model"}]})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_get("/v1/models", models)
    web.run_app(app, host="127.0.0.1", port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
