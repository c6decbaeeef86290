"""The backend server: does it answer at the configured URL, is the URL's `/v1` right, is a
model there? One probe, shared by the checks that need it, every request bounded.

The probe asks the health URL, `<base>/models` and the same for the likely corrections of the
base URL (`/v1` added or removed, `/chat/completions` dropped) all at once, so a wrong suffix
is named with the URL that works. For servers whose health answers before the model is
loaded (mlx-lm) a 1-token completion confirms the model, as the supervisor does.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from anyclaude import probes, timeouts
from anyclaude.backends.base import Backend, Endpoint
from anyclaude.backends.net import LOOPBACK, host_port
from anyclaude.doctor.result import Context, Result, fail, listing, ok, warn
from anyclaude.probes import Answer

TAILS = ("/chat/completions", "/completions", "/models")


@dataclass(frozen=True)
class Probe:
    url: str
    health_url: str
    health: Answer
    listed: Answer
    """`<url>/models`."""
    corrected: str | None = None
    """A base URL whose `/models` answers where `url`'s does not."""
    generation: Answer | None = None

    @property
    def up(self) -> bool:
        return self.health.status == 200

    @property
    def models(self) -> list[str]:
        """Listed model ids: OpenAI's `{"data": [{"id"}]}` or FastMLX's `{"models": [...]}`."""
        body = self.listed.body if isinstance(self.listed.body, dict) else {}
        data = body.get("data", body.get("models"))
        entries = data if isinstance(data, list) else []
        return [str(e["id"] if isinstance(e, dict) else e) for e in entries
                if (isinstance(e, dict) and e.get("id")) or (isinstance(e, str) and e)]


def corrections(url: str) -> list[str]:
    """Base URLs the user may have meant: `/v1` added or removed, an endpoint path dropped."""
    trimmed = next((url[: -len(t)] for t in TAILS if url.endswith(t)), url)
    candidates = [trimmed, trimmed[:-3] if trimmed.endswith("/v1") else trimmed + "/v1"]
    return [c for c in dict.fromkeys(candidates) if c != url and "://" in c]


async def probe(backend: Backend, endpoint: Endpoint) -> Probe:
    base = endpoint.url.rstrip("/")
    health_url = probes.health_url(backend, endpoint)
    others = corrections(base) if backend.protocol == "openai" else []
    urls = list(dict.fromkeys([health_url, base + "/models", *(o + "/models" for o in others)]))
    async with probes.session(endpoint) as session:
        answers = dict(zip(urls, await asyncio.gather(*(probes.ask(session, u) for u in urls)),
                           strict=True))
        listed = answers[base + "/models"]
        corrected = None
        if listed.status != 200:
            corrected = next((o for o in others if answers[o + "/models"].status == 200), None)
        result = Probe(base, health_url, answers[health_url], listed, corrected)
        # An empty listing (Omni's `data: []`, mlx-lm's empty body) proves nothing either
        # way: a short generation tells whether the server serves.
        if result.up and corrected is None and (backend.confirm_with_generation or (
                listed.status == 200 and not result.models and backend.model_setting)):
            # 2 tokens: servers that stop one short fail at 1
            url, body = probes.one_token_request(backend, endpoint, tokens=2)
            generation = await probes.ask(session, url, body, timeouts.ONE_TOKEN_S)
            result = Probe(base, health_url, result.health, listed, None, generation)
    return result


def shared_probe(ctx: Context) -> asyncio.Task[Probe]:
    settings = ctx.settings
    return ctx.shared("server", lambda: probe(settings.backend, settings.endpoint))


async def server_up(ctx: Context) -> bool:
    """Whether a healthy server answers (local backends only): checks of what anyclaude
    needs to *start* one soften to warnings when it is already running."""
    return ctx.settings.backend.local and (await shared_probe(ctx)).up


async def server_check(ctx: Context) -> Result | None:
    backend = ctx.settings.backend
    if not backend.local:
        return None
    return judge(await shared_probe(ctx), backend, ctx.settings.endpoint,
                 ctx.settings.backend_options())


def judge(found: Probe, backend: Backend, endpoint: Endpoint,
          options: dict[str, str | None]) -> Result:
    url, setting, name = found.url, backend.url_setting, "backend-server"
    hint = backend.start_hint[:1].upper() + backend.start_hint[1:] + "."
    if found.corrected is not None:
        return fail(name, f"{url} is not the API's base URL ({url}/models: "
                    f"{found.listed.said}; {found.corrected}/models answers)",
                    f"Set {setting}={found.corrected}.")
    health = found.health
    if health.silent:
        return fail(name, f"{url} accepts connections but sends no answer within "
                    f"{timeouts.PROBE_S:g} s", f"Restart the server, or point {setting} at "
                    "the right one.")
    if health.status == 0:
        host, _ = host_port(url)
        plan = backend.start(endpoint, options) if backend.start else None
        if plan is not None and host in LOOPBACK:
            return warn(name, f"Nothing answers at {url} yet; anyclaude will start "
                        f"{backend.name} when you run it", "Nothing to do: anyclaude starts it, "
                        "and stops it again when you are done.")
        return fail(name, f"Nothing answers at {url} ({health.problem})", hint)
    if not found.up:
        return fail(name, f"{found.health_url} answers {health.said}, so this is not a "
                    f"healthy {backend.name} server", f"Check the server's log and restart "
                    f"it, or point {setting} at the right server.")
    if found.generation is not None:
        return _judge_generation(found.generation, url, backend)
    return _judge_models(found, backend, endpoint)


def _judge_generation(answer: Answer, url: str, backend: Backend) -> Result:
    name = "backend-server"
    if answer.status == 200:
        return ok(name, f"{backend.name} answers at {url}, and its model answered a "
                  "1-token request")
    if answer.status == 0:
        return warn(name, f"{backend.name} answers at {url}, but its model did not answer a "
                    f"1-token request within {timeouts.ONE_TOKEN_S:g} s (still loading?)",
                    "Wait for the model to load and run `anyclaude doctor` again, or read "
                    "the server's log.")
    return fail(name, f"{backend.name} at {url} failed a 1-token request (HTTP "
                f"{answer.status}: {answer.text.strip()[:120]})",
                f"Check {backend.model_setting or 'the model'} and the server's log.")


def _judge_models(found: Probe, backend: Backend, endpoint: Endpoint) -> Result:
    name, url, models = "backend-server", found.url, found.models
    setting = backend.model_setting
    if found.listed.status != 200 or setting is None:
        return ok(name, f"{backend.name} answers at {url}")
    if not models:
        lms = f" ({backend.reload_hint.format(model=endpoint.model or 'MODEL', size=32768)})" \
            if backend.reload_hint else ""
        return fail(name, f"{url} answers but lists no models", f"Load a model in the server{lms}.")
    if endpoint.model is None:
        return warn(name, f"{url} serves {listing(models)}, and {setting} is not set",
                    f"Set {setting} to one of them.")
    if endpoint.model not in models:
        return fail(name, f"{url} does not serve {endpoint.model} (it lists "
                    f"{listing(models)})", f"Set {setting} to one of those, or load "
                    f"{endpoint.model} in the server.")
    return ok(name, f"{backend.name} answers at {url} and serves {endpoint.model}")
