"""Typed keys for application and per-request storage (their own module, so route modules
can read the config without importing the app that mounts them)."""

from __future__ import annotations

from aiohttp import web

from anyclaude.proxy.config import ProxyConfig
from anyclaude.routing import Route

CONFIG: web.AppKey[ProxyConfig] = web.AppKey("config", ProxyConfig)
REQUEST_ID: web.RequestKey[str] = web.RequestKey("request_id", str)
ROUTE: web.RequestKey[Route] = web.RequestKey("route", Route)
PREPARED: web.RequestKey[web.StreamResponse] = web.RequestKey("prepared", web.StreamResponse)
"""The response whose status line is out (see `proxy.responses`)."""
