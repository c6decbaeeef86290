"""The aiohttp application: routes, the locked door, and errors in Anthropic's shape.

Routes match on the path only (Claude Code appends `?beta=true`). In local modes nothing is
forwarded anywhere but the configured backend; unknown paths get a 404 here.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from anyclaude.proxy import messages, passthrough
from anyclaude.proxy.config import ProxyConfig
from anyclaude.proxy.keys import CONFIG, REQUEST_ID, ROUTE
from anyclaude.routing import AGENT_HEADER, Route
from anyclaude.translate import ids
from anyclaude.translate.errors import AnthropicError, invalid_request, of_status
from anyclaude.translate.models import model_info, model_page
from anyclaude.translate.plan import classify, token_count
from anyclaude.translate.protocol import ModelInfo
from anyclaude.translate.validate import validate_messages_request

log = logging.getLogger("anyclaude.proxy")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_LOOPBACK_HOST = re.compile(r"^(localhost|127\.\d+\.\d+\.\d+|\[::1\]|::1)(:\d+)?$", re.I)
TOKEN_HEADER = "x-anyclaude-token"
"""Carries the run's token in claude mode, where `x-api-key` is the user's own key."""


def _dumps(obj: Any) -> str:
    return orjson.dumps(obj).decode()


def error_response(error: AnthropicError, request_id: str) -> web.Response:
    headers = {"request-id": request_id}
    if error.retry is not None:
        headers["x-should-retry"] = "true" if error.retry else "false"
    return web.json_response(error.body(request_id), status=error.status, headers=headers,
                             dumps=_dumps)


def _presented_tokens(request: web.Request) -> list[str]:
    tokens = [request.headers.get("x-api-key", ""), request.headers.get(TOKEN_HEADER, "")]
    auth = request.headers.get("Authorization", "")
    if auth[:7].lower() == "bearer ":
        tokens.append(auth[7:].strip())
    return [t for t in tokens if t]


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Loopback Host only (DNS rebinding), no browser Origin (cross-site pages), the run's
    token on everything but /health; every answer carries a request-id."""
    request_id = ids.request_id()
    request[REQUEST_ID] = request_id
    try:
        host = request.headers.get("Host")
        if host is not None and not _LOOPBACK_HOST.match(host):
            raise of_status(403, f"Host {host!r} is not a loopback name; anyclaude only "
                            "answers requests made to 127.0.0.1.")
        if "Origin" in request.headers:
            raise of_status(403, "Requests from web pages (with an Origin header) are "
                            "refused; anyclaude serves local clients.")
        if request.path != "/health":
            config = request.app[CONFIG]
            if not any(hmac.compare_digest(t.encode(), config.token.encode())
                       for t in _presented_tokens(request)):
                raise of_status(401, "Missing or wrong token: send the proxy token "
                                "(ANYCLAUDE_PROXY_TOKEN) as x-api-key or Authorization: Bearer.")
        return await handler(request)
    except AnthropicError as exc:
        return error_response(request.app[CONFIG].scrubbed(exc), request_id)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        message = {404: f"No route for {request.method} {request.path}; anyclaude serves "
                        "/v1/messages, /v1/messages/count_tokens and /v1/models.",
                   405: f"{request.method} is not allowed on {request.path}."}.get(
            exc.status, exc.reason)
        return error_response(of_status(exc.status, message), request_id)
    except (asyncio.CancelledError, ConnectionResetError):
        raise
    except Exception:
        log.exception("internal error on %s %s", request.method, request.path)
        return error_response(of_status(500, "anyclaude hit an internal error; run with "
                                        "ANYCLAUDE_DEBUG=1 and report it."), request_id)


async def read_json(request: web.Request) -> object:
    """The body as JSON, or a 4xx that says exactly what is wrong with it."""
    content_type = request.headers.get("Content-Type", "")
    if content_type and "json" not in content_type.lower():
        raise invalid_request(f"Content-Type must be application/json, got {content_type!r}.")
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge as exc:
        raise of_status(413, "The request body is larger than "
                        f"{request.app[CONFIG].max_body // (1024 * 1024)} MB.") from exc
    if not raw.strip():
        raise invalid_request("The request body is empty; send a JSON object.")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise invalid_request(f"The request body is not valid JSON ({exc}).") from None


async def create_message(request: web.Request) -> web.StreamResponse:
    config = request.app[CONFIG]
    raw = await read_json(request)
    if config.tracer is not None:
        config.tracer.client_request(request[REQUEST_ID], request.method, request.path_qs,
                                     request.headers, raw)
    body = validate_messages_request(raw)
    # Side work: what `classify` finds in the body, and every request of a subagent.
    reason = classify(body) or ("subagent" if AGENT_HEADER in request.headers else None)
    route = request[ROUTE] = config.router.pick(body["model"], side=reason is not None)
    plan = await messages.plan_request(config, body, route=route)
    plan.background = plan.background or reason
    if plan.background == "probe":
        return await messages.probe(config, request, plan)
    if config.warmup is not None and plan.background is None and route.role == "main":
        await config.warmup.before(plan.body)
        config.warmup.record(plan.body)
    # Only the main server's requests queue behind the conversation; the small model's own
    # server answers side work at once.
    gate = config.gate.hold(background=plan.background is not None) \
        if route.url == config.endpoint.url else contextlib.nullcontext()
    async with gate, config.router.use(route, config.tell):
        if plan.client_stream:
            return await messages.stream(config, request, plan)
        return await messages.complete(config, request, plan)


async def count_tokens(request: web.Request) -> web.Response:
    """Answered locally, never forwarded: the same planning step as a message, counted
    exactly when the model's tokenizer is at hand (see `translate/plan.py`)."""
    config = request.app[CONFIG]
    body = validate_messages_request(await read_json(request), count_only=True)
    plan = await messages.plan_request(config, body, count_only=True)
    return web.json_response(token_count(plan), headers={"request-id": request[REQUEST_ID]})


def _model_info(config: ProxyConfig, route: Route) -> ModelInfo:
    return model_info(route.id, route.window or config.context_window,
                      config.max_output_tokens, display=route.display,
                      description=route.description)


async def list_models(request: web.Request) -> web.Response:
    """The models to choose from, for Claude Code's /model picker (gateway model discovery;
    ids as `anyclaude.routing` makes them)."""
    config = request.app[CONFIG]
    page = model_page([_model_info(config, route) for route in config.router.listing()])
    return web.json_response(page, headers={"request-id": request[REQUEST_ID]})


async def get_model(request: web.Request) -> web.Response:
    config, asked = request.app[CONFIG], request.match_info["model_id"]
    route = config.router.find(asked)
    if route is None:
        raise of_status(404, f"Model {asked!r} not found; this proxy serves "
                             f"{', '.join(repr(r.id) for r in config.router.listing())}.")
    return web.json_response(_model_info(config, route),
                             headers={"request-id": request[REQUEST_ID]})


async def health(request: web.Request) -> web.Response:
    config = request.app[CONFIG]
    return web.json_response({"status": "ok", "mode": config.backend.name})


async def _close_upstream(app: web.Application) -> None:
    await app[CONFIG].close()


def create_app(config: ProxyConfig) -> web.Application:
    app = web.Application(client_max_size=config.max_body, middlewares=[guard])
    app[CONFIG] = config
    app.router.add_get("/health", health)
    if config.backend.protocol == "anthropic":
        passthrough.add_routes(app)
    else:
        app.router.add_post("/v1/messages", create_message)
        app.router.add_post("/v1/messages/count_tokens", count_tokens)
        app.router.add_get("/v1/models", list_models)
        app.router.add_get("/v1/models/{model_id}", get_model)
    app.on_cleanup.append(_close_upstream)
    return app
