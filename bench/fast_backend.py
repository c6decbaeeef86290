"""A fast OpenAI-compatible backend for benchmarks: answers at once, streams N tokens as N
separate chunks (one socket write each, like a real server).

    python -m bench.fast_backend --port 9000 [--framing keepalive|mlx]
A request may set `max_tokens` to choose N (the answer length in tokens). `keepalive`
(default): HTTP/1.1 with chunked bodies and keep-alive connections, like vLLM or LM Studio.
`mlx`: framed like mlx-lm's server: HTTP/1.0, a `: keepalive` comment first, bodies that
end when the server closes the connection (so every request opens a new one).
"""

from __future__ import annotations

import argparse
import asyncio
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


MLX_HEADERS = (b"HTTP/1.0 200 OK\r\nServer: BaseHTTP/0.6 Python/3.11.7\r\n"
               b"Content-type: %s\r\nCache-Control: no-cache\r\n"
               b"Access-Control-Allow-Origin: *\r\n\r\n")


async def mlx_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """One request per connection, answered like mlx-lm 0.32: HTTP/1.0, close-delimited."""
    try:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return  # a port probe: connected and closed without a request
        request_line, *lines = head.decode("latin-1").split("\r\n")
        length = next((int(line.split(":", 1)[1]) for line in lines
                       if line.lower().startswith("content-length:")), 0)
        raw = await reader.readexactly(length)
        path = request_line.split(" ")[1]
        if path.endswith("/chat/completions"):
            body = json.loads(raw)
            n = int(body.get("max_tokens") or body.get("max_completion_tokens") or 16)
            writer.write(MLX_HEADERS % b"text/event-stream" + b": keepalive 1/1\n\n")
            await writer.drain()
            for _ in range(n):
                writer.write(CHUNK)
                await writer.drain()
            writer.write(FINISH + usage(len(raw) // 4, n) + b"data: [DONE]\n\n")
        elif path.endswith("/health"):
            writer.write(MLX_HEADERS % b"application/json" + b'{"status": "ok"}')
        else:
            writer.write(MLX_HEADERS % b"application/json" + json.dumps(
                {"object": "list", "data": [{"id": "bench", "object": "model"}]}).encode())
        await writer.drain()
    finally:
        writer.close()


async def serve_mlx(port: int) -> None:
    server = await asyncio.start_server(mlx_connection, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--framing", choices=["keepalive", "mlx"], default="keepalive")
    args = parser.parse_args()
    if args.framing == "mlx":
        asyncio.run(serve_mlx(args.port))
        return
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_get("/v1/models", models)
    web.run_app(app, host="127.0.0.1", port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
