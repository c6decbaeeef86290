"""Reading the captures in tests/fixtures and raw responses off a socket, to compare the
scripted backend's bytes with what the real servers sent."""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
"""Raw HTTP exchanges captured from mlx-lm 0.32.2 and mlx-textgen 0.2.1 (tiny prompts)."""
MLX = FIXTURES / "mlx-lm-0.32.2"
TEXTGEN = FIXTURES / "mlx-textgen-0.2.1"
CHAT = [{"role": "user", "content": "Hi"}]


def split_fixture(path: Path) -> tuple[bytes, bytes]:
    """(raw request, raw response) of a capture file."""
    data = path.read_bytes()
    head, response = data.split(b"\n### RESPONSE (raw bytes as received)\n", 1)
    return head.split(b"### REQUEST\n", 1)[1], response


def read_response(sock: socket.socket) -> bytes:
    """One whole HTTP response: by Content-Length, by chunks, or until EOF (HTTP/1.0)."""
    buf = b""

    def more() -> bool:
        nonlocal buf
        data = sock.recv(65536)
        buf += data
        return bool(data)

    while b"\r\n\r\n" not in buf:
        if not more():
            return buf
    head, _ = buf.split(b"\r\n\r\n", 1)
    lower = head.lower()
    if b"\r\ncontent-length:" in lower:
        length = int(re.search(rb"content-length: *(\d+)", lower).group(1))  # type: ignore[union-attr]
        while len(buf) < len(head) + 4 + length:
            if not more():
                break
        return buf
    if b"transfer-encoding: chunked" in lower:
        pos = len(head) + 4
        while True:
            while b"\r\n" not in buf[pos:]:
                if not more():
                    return buf
            line_end = buf.index(b"\r\n", pos)
            size = int(buf[pos:line_end], 16)
            end = line_end + 2 + size + 2
            while len(buf) < end:
                if not more():
                    return buf
            pos = end
            if size == 0:
                return buf
    while more():
        pass
    return buf


def exchange(port: int, raw: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(raw)
        return read_response(sock)


def mask(data: bytes) -> bytes:
    """Blank out what differs between runs (same lengths, so chunk sizes still compare)."""
    data = re.sub(rb"(?i)(\r\ndate: )[^\r\n]+", rb"\1DATE", data)
    data = re.sub(rb"chatcmpl-[0-9a-f-]+", lambda m: b"chatcmpl-" + b"X" * (len(m[0]) - 9), data)
    data = re.sub(rb'"id": "[0-9a-f-]{36}"', b'"id": "UUID"', data)
    data = re.sub(rb"call_[0-9a-f]{8}", b"call_XXXXXXXX", data)
    return re.sub(rb'"created": ?\d{10}', lambda m: m[0][:-10] + b"0" * 10, data)


def sse_data(text: str) -> list[str]:
    return [line[6:] for line in text.split("\n") if line.startswith("data: ")]


def chunks(text: str) -> list[dict[str, Any]]:
    return [json.loads(d) for d in sse_data(text) if d != "[DONE]"]
