"""Typed keys for per-request storage."""

from __future__ import annotations

from aiohttp import web

REQUEST_ID: web.RequestKey[str] = web.RequestKey("request_id", str)
