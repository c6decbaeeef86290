"""The aiohttp application: routes, the locked door, and errors in Anthropic's shape.

Routes match on the path only (Claude Code appends `?beta=true`). In local modes nothing is
forwarded anywhere but the configured backend; unknown paths get a 404 here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from anyclaude.proxy import door, messages, passthrough
from anyclaude.proxy.config import ProxyConfig
from anyclaude.proxy.incoming import read_json
from anyclaude.proxy.keys import CONFIG, REQUEST_ID, ROUTE
from anyclaude.proxy.responses import abandon, error_response, note_prepared, started
from anyclaude.routing import AGENT_HEADER, Route
from anyclaude.translate import ids
from anyclaude.translate.errors import AnthropicError, internal, of_status
from anyclaude.translate.models import model_info, model_page
from anyclaude.translate.plan import classify, token_count
from anyclaude.translate.protocol import ModelInfo
from anyclaude.translate.validate import validate_messages_request

log = logging.getLogger("anyclaude.proxy")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
TOKEN_HEADER = door.TOKEN_HEADER


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The door (`proxy.door`), then the handler; every answer carries a request-id, and
    every failure becomes an Anthropic error, or, once a response has started, its end."""
    request_id = ids.request_id()
    request[REQUEST_ID] = request_id
    config = request.app[CONFIG]
    try:
        refused = door.refusal(request.headers.items(), request.headers.get("Host"),
                               request.path, config.token)
        if refused is not None:
            raise refused
        return await handler(request)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        response = started(request)
        if response is not None:
            # Handlers end their own streams; this is the last resort, never a 2nd response.
            if not isinstance(exc, ConnectionResetError):
                log.error("a started response to %s %s failed; closing the connection",
                          request.method, request.path, exc_info=exc)
            abandon(request)
            return response
        if isinstance(exc, ConnectionResetError):
            raise
        return error_response(_as_anthropic(request, exc), request_id)


def _as_anthropic(request: web.Request, exc: Exception) -> AnthropicError:
    if isinstance(exc, AnthropicError):
        return request.app[CONFIG].scrubbed(exc)
    if isinstance(exc, web.HTTPException) and exc.status >= 400:
        message = {404: f"No route for {request.method} {request.path}; anyclaude serves "
                        "/v1/messages, /v1/messages/count_tokens and /v1/models.",
                   405: f"{request.method} is not allowed on {request.path}."}.get(
            exc.status, exc.reason)
        return of_status(exc.status, message)
    if isinstance(exc, web.HTTPException):
        raise exc
    log.error("internal error on %s %s", request.method, request.path, exc_info=exc)
    return internal()


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
    app.on_response_prepare.append(note_prepared)
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
