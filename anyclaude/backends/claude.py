"""Anthropic itself: requests pass through unchanged, with the user's own credentials."""

from __future__ import annotations

from anyclaude.backends.base import Backend

BACKEND = Backend(
    name="claude",
    description="Anthropic's API, passed through unchanged",
    protocol="anthropic",
    url_setting="ANTHROPIC_UPSTREAM_URL",
    model_setting=None,
    default_url="https://api.anthropic.com",
    health_path="",
    local=False,
    model_files=False,
)
