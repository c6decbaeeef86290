"""Two sessions of the real Claude Code in one folder: the first requests the backend gets share
every token but the typed words, so a prefix cache serves a new session's first answer.

The backend is the scripted double (no model runs: only the requests matter); the prompts are
rendered with the tiny model's chat template and counted with its tokenizer."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
from transformers import AutoTokenizer

from tests.support.claude_code import CLAUDE_VERSIONS, claude_path, headless_env
from tests.support.proxy import TOKEN, running_proxy
from tests.support.scripted import ScriptedBackend
from tests.support.tiny_model import build_scripted_model, default_models_dir

pytestmark = pytest.mark.e2e

MODEL = "anyclaude-mlx-lm"
WORDS = ("say hi", "what does this project do? explain it in two sentences")
END = "<|im_end|>\n<|im_start|>assistant\n"


def first_request(version: str, cwd: Path, words: str) -> dict[str, Any]:
    """What the backend gets for the main request of `claude -p WORDS` in `cwd`."""
    with ScriptedBackend("mlx-lm", strict_model=False) as backend, \
            running_proxy("mlx-lm", backend.url) as proxy:
        extra = {"ANTHROPIC_BASE_URL": proxy.url, "ANTHROPIC_AUTH_TOKEN": TOKEN,
                 "ANTHROPIC_MODEL": MODEL, "ANTHROPIC_DEFAULT_OPUS_MODEL": MODEL,
                 "ANTHROPIC_DEFAULT_SONNET_MODEL": MODEL,
                 "ANTHROPIC_DEFAULT_HAIKU_MODEL": "anyclaude-background",
                 "CLAUDE_CODE_ATTRIBUTION_HEADER": "0"}
        env = headless_env(cwd.parent / "home", cwd, extra=extra)
        done = subprocess.run([str(claude_path(version)), "-p", words], cwd=cwd, env=env,
                              stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=180)
        assert done.returncode == 0, done.stderr[-2000:]
        main = [r.json for r in backend.requests if r.json and r.json.get("tools")]
    assert len(main) == 1, len(main)
    return main[0]  # type: ignore[no-any-return]


@pytest.mark.parametrize("version", CLAUDE_VERSIONS)
def test_two_sessions_in_one_folder_share_all_but_the_typed_words(version: str,
                                                                  tmp_path: Path) -> None:
    cwd = tmp_path / "project"
    cwd.mkdir()
    tokenizer = AutoTokenizer.from_pretrained(
        str(build_scripted_model(default_models_dir() / "scripted")))
    prompts = []
    for words in WORDS:
        body = first_request(version, cwd, words)
        prompts.append(tokenizer.apply_chat_template(body["messages"], tools=body["tools"],
                                                     tokenize=False, add_generation_prompt=True))
    one, two = prompts
    chars = next(i for i, (a, b) in enumerate(zip(one, two, strict=False)) if a != b)
    # The words start with different letters: the prompts part exactly where they begin.
    assert (one[chars:], two[chars:]) == (WORDS[0] + END, WORDS[1] + END), two[chars - 300:]
    ids = [tokenizer.encode(p, add_special_tokens=False) for p in prompts]
    shared = next(i for i, (a, b) in enumerate(zip(*ids, strict=False)) if a != b)
    own = len(tokenizer.encode(WORDS[1] + END, add_special_tokens=False))
    assert len(ids[1]) - shared <= own + 1, (len(ids[1]), shared, own)
