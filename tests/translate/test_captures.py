"""Real Claude Code requests (every capture of every tested version, `tests/fixtures/`)
through the translator for every dialect: each translates, loses only what it should, and
each follow-up of a session renders to a prompt that starts with the one before."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest

from anyclaude import backends
from anyclaude.backends.base import Dialect
from anyclaude.translate.request import BILLING_PREFIX, Plan, to_openai
from anyclaude.translate.validate import validate_messages_request
from tests.support.capture import recorded
from tests.support.claude_code import CLAUDE_VERSIONS

DIALECTS: dict[str, Dialect] = {}
for _name in backends.names():
    _backend = backends.get(_name)
    if _backend is not None and _backend.protocol == "openai":
        DIALECTS[_name] = _backend.dialect


def translate(capture: dict[str, Any], dialect: Dialect) -> Plan:
    body = validate_messages_request(capture["body"],
                                     count_only=capture["path"].startswith("/v1/messages/count"))
    return to_openai(body, dialect, model="local-model")


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize("version", CLAUDE_VERSIONS)
def test_every_capture_translates_cleanly(version: str, dialect: str) -> None:
    for capture in recorded(version):
        plan = translate(capture, DIALECTS[dialect])
        text = json.dumps(plan.body)
        assert BILLING_PREFIX not in text, capture["name"]
        assert "<system-reminder>\n\n</system-reminder>" not in text, capture["name"]
        assert "DeferredToolPlaceholder" not in text, "deferred tools wait for a tool search"
        assert plan.body["messages"][-1]["role"] in ("user", "tool"), capture["name"]
        sent = {t.get("name") for t in capture["body"].get("tools") or []}
        if DIALECTS[dialect].send_tools:
            kept = {t["function"]["name"] for t in plan.body.get("tools") or []}
        else:  # described in the system prompt instead
            assert "tools" not in plan.body, capture["name"]
            prompt = str(plan.body["messages"][0]["content"])
            kept = {name for name in sent if name in prompt}
        assert kept <= sent and len(kept) >= len(sent) - 1, capture["name"]


def sessions(version: str) -> list[list[dict[str, Any]]]:
    """The main-loop requests of each scenario, in order (titles and other side requests,
    which have no tools, left out)."""
    grouped = itertools.groupby(recorded(version), key=lambda c: c["scenario"])
    return [[c for c in group if c["body"].get("tools")] for _, group in grouped]


def same_prompt(before: dict[str, Any], after: dict[str, Any]) -> bool:
    """Claude Code kept its side stable: same tools, same system prompt apart from the
    billing header (across `--continue` with a Claude model name it may not: 2.1.197 drops
    "(1M context)" from a tool description)."""
    def head(body: dict[str, Any]) -> object:
        system = [b for b in body.get("system") or [] if not b["text"].startswith(
            BILLING_PREFIX)]
        return body.get("tools"), system
    return head(before["body"]) == head(after["body"])


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize("version", CLAUDE_VERSIONS)
def test_each_follow_up_starts_with_the_request_before(version: str, dialect: str) -> None:
    pairs = 0
    for session in sessions(version):
        for before, after in itertools.pairwise(session):
            if not same_prompt(before, after):
                continue
            first, second = (translate(c, DIALECTS[dialect]).body for c in (before, after))
            assert second.get("tools") == first.get("tools"), after["name"]
            assert second["messages"][: len(first["messages"])] == first["messages"], \
                after["name"]
            pairs += 1
    assert pairs >= 6, "the captures hold tool round trips and --continue sessions"
