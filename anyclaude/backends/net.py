"""URL helpers shared by backend declarations and the supervisor."""

from __future__ import annotations

from urllib.parse import urlsplit


def host_port(url: str) -> tuple[str, int]:
    """Host and port of a URL, with the scheme's default port when none is given."""
    parts = urlsplit(url)
    default = 443 if parts.scheme == "https" else 80
    return parts.hostname or "localhost", parts.port or default


def server_root(url: str) -> str:
    """`http://host:port` of a base URL, for paths that live outside `/v1` (`/health`)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"
