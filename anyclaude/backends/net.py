"""How anyclaude reaches a backend: its URLs, the API-key header, whether its port is taken."""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

from anyclaude.timeouts import PROBE_S

LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
"""Hosts of servers on this machine: the only ones anyclaude starts, or connects to unasked."""


def host_port(url: str) -> tuple[str, int]:
    """Host and port of a URL, with the scheme's default port when none is given."""
    parts = urlsplit(url)
    default = 443 if parts.scheme == "https" else 80
    return parts.hostname or "localhost", parts.port or default


def server_root(url: str) -> str:
    """`http://host:port` of a base URL, for paths that live outside `/v1` (`/health`)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def auth_headers(api_key: str | None) -> dict[str, str]:
    """The header that carries a backend's API key (none without a key)."""
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


def port_in_use(host: str, port: int) -> bool:
    """Whether something accepts TCP connections at host:port."""
    try:
        with socket.create_connection((host, port), timeout=PROBE_S):
            return True
    except OSError:
        return False
