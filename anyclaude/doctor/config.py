"""Settings (loaded leniently by `settings.load_lenient`, so one bad value does not hide every
other check) and config files; and, in claude mode, the user's own Anthropic credentials
(looked for, never sent)."""

from __future__ import annotations

import asyncio
import difflib
import json
from pathlib import Path

import platformdirs

from anyclaude import settings as settings_mod
from anyclaude import timeouts
from anyclaude.backends.net import LOOPBACK, host_port
from anyclaude.doctor.result import Context, Result, fail, from_sentence, ok, warn
from anyclaude.settings import SettingsError

CREDENTIAL_VARS = ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "CLAUDE_CODE_OAUTH_TOKEN")


async def settings_check(ctx: Context) -> list[Result]:
    if ctx.problems:
        return [from_sentence("settings", "fail", problem) for problem in ctx.problems]
    s, backend = ctx.settings, ctx.settings.backend
    found = [f"mode {s.mode} ({_source(s.sources.get('mode', 'default'))})",
             f"{backend.url_setting} {s.endpoint.url}"]
    if backend.model_setting:
        found.append(f"{backend.model_setting} {s.endpoint.model or 'not set'}")
    return [ok("settings", "; ".join(found))]


def _source(source: str) -> str:
    return "the default" if source == "default" else f"from {source}"


async def config_check(ctx: Context) -> list[Result]:
    """Every config file parses and has only known keys (a typo gets the closest key)."""
    files = settings_mod.config_files(ctx.cwd, ctx.environ)
    if not files:
        user = Path(platformdirs.user_config_dir("anyclaude")) / "config.toml"
        return [ok("config", f"no config file (the user file would be {user})")]
    known = [row.key for row in settings_mod.table()]
    results = []
    for path in files:
        try:
            keys = settings_mod.read_config(path)
        except SettingsError as exc:
            results.append(from_sentence("config", "fail", str(exc)))
            continue
        unknown = settings_mod.unknown_keys(keys)
        for key in unknown:
            close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
            fix = f"Did you mean `{close[0]}`? Rename it." if close else \
                "Remove it; `anyclaude doctor` lists the known settings."
            results.append(warn("config", f"{path}: unknown key `{key}` (ignored)", fix))
        if not unknown:
            results.append(ok("config", f"{path} ({len(keys)} settings)"))
    return results


# -- claude mode ----------------------------------------------------------------------------

async def credentials_check(ctx: Context) -> Result | None:
    """In claude mode Claude Code uses the user's own key or login; only their presence is
    checked, and nothing is sent anywhere."""
    if not ctx.settings.backend.passthrough:
        return None
    name = "credentials"
    for var in CREDENTIAL_VARS:
        if ctx.environ.get(var):
            return ok(name, f"{var} is set")
    folder = Path(ctx.environ.get("CLAUDE_CONFIG_DIR") or ctx.home / ".claude")
    if (folder / ".credentials.json").is_file():
        return ok(name, f"Claude Code login ({folder / '.credentials.json'})")
    if _logged_in(ctx.home / ".claude.json"):  # macOS keeps the token in the keychain
        return ok(name, "Claude Code login (the system keychain)")
    return warn(name, "no ANTHROPIC_API_KEY and no Claude Code login found",
                "Run `claude` and log in with /login, or export ANTHROPIC_API_KEY.")


def _logged_in(state: Path) -> bool:
    try:
        data = json.loads(state.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and bool(data.get("oauthAccount"))


async def upstream_check(ctx: Context) -> Result | None:
    """The upstream of a pass-through mode: a local one must listen (a bare TCP connect,
    nothing sent); a remote one (Anthropic) is not contacted."""
    if not ctx.settings.backend.passthrough:
        return None
    url, setting = ctx.settings.endpoint.url, ctx.settings.backend.url_setting
    host, port = host_port(url)
    if host not in LOOPBACK:
        return ok("upstream", f"{url} (not contacted)")
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port),
                                           timeouts.PROBE_S)
    except (OSError, TimeoutError) as exc:
        why = "no answer" if isinstance(exc, TimeoutError) else exc.strerror or "refused"
        return fail("upstream", f"Nothing listens at {url} ({why})",
                    f"Start the server, or point {setting} at it.")
    writer.close()
    return ok("upstream", f"{url} accepts connections")
