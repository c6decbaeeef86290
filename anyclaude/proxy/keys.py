"""Typed keys for per-request storage."""

from __future__ import annotations

from aiohttp import web

from anyclaude.routing import Route

REQUEST_ID: web.RequestKey[str] = web.RequestKey("request_id", str)
ROUTE: web.RequestKey[Route] = web.RequestKey("route", Route)
