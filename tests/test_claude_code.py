"""The Claude Code knowledge table: every capture of every tested version is covered by it,
and what is not in it is named."""

from __future__ import annotations

import re
from typing import Any

import pytest

from anyclaude.claude_code import KNOWN, describe, features, unseen
from tests.support.capture import recorded
from tests.support.claude_code import CLAUDE_VERSIONS, REPO_ROOT


@pytest.mark.parametrize("version", CLAUDE_VERSIONS)
def test_everything_the_tested_versions_send_is_known(version: str) -> None:
    for seen in recorded(version):
        news = unseen(features(seen["body"], seen["headers"]))
        assert not news, f"{seen['name']}: add to anyclaude.claude_code.KNOWN: {news}"


def test_what_is_new_is_named_by_category() -> None:
    body: dict[str, Any] = {
        "model": "m", "max_tokens": 5, "crystal_ball": {"on": True},
        "thinking": {"type": "adaptive", "display": "hologram"},
        "output_config": {"effort": "ludicrous"},
        "tools": [{"name": "web", "type": "web_search_20991231"},
                  {"name": "Bash", "input_schema": {}, "strict": True}],
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]},
                     {"role": "narrator", "content": "x", "mood": "calm"},
                     {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t",
                                                   "content": [{"type": "video"}]}]}]}
    news = unseen(features(body, {"Anthropic-Beta": "claude-code-20250219, warp-2099-01-01"}))
    assert news == {"role": ["narrator"], "block": ["video"], "field": ["crystal_ball"],
                    "message field": ["mood"], "beta": ["warp-2099-01-01"],
                    "tool kind": ["web_search_20991231"], "tool field": ["strict"],
                    "thinking": ["display: hologram"], "effort": ["ludicrous"]}
    assert describe({"beta": ["b1"]}) == "beta b1"
    assert describe({"field": ["f1", "f2"], "beta": ["b1"]}) == "field f1, field f2 and beta b1"


def test_known_requests_have_no_news() -> None:
    body = {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
    assert unseen(features(body, {})) == {}
    assert all(KNOWN[name] for name in KNOWN)


def test_scripts_test_installs_the_tested_versions() -> None:
    text = (REPO_ROOT / "scripts" / "test").read_text()
    listed = re.search(r"^CLAUDE_CODE_VERSIONS=\(([^)]*)\)", text, re.M)
    assert listed and tuple(listed.group(1).split()) == CLAUDE_VERSIONS
