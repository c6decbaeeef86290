"""Benchmark: the first answer of a new session, cold and warm, with the REAL mlx-lm server
(a random-weight tiny model), the REAL Claude Code and anyclaude as users run it.

For each case, the time from starting `anyclaude -p` to the first streamed token (Claude
Code's own stream-json events), and the share of the session's first prompt served from
mlx-lm's cache (the proxy's debug line):

- cold: a fresh server, nothing recorded for the folder (today's first session);
- warm-up: a fresh server (keep_alive 0) warmed with the folder's recorded prefix;
- kept: the server kept alive from the previous session in the folder;
- other folder: a kept server, a session in a folder it has never seen;
- follow-up: `--continue` on the kept server (a follow-up turn, for scale).

    .venv/bin/python -m bench.warm_start [--claude-version 2.1.197]
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from anyclaude.keep import client
from bench.common import ROOT, save
from tests.support.claude_code import CLAUDE_VERSION, claude_path, headless_env
from tests.support.mlx_server import free_port
from tests.support.tiny_model import build_random_model, default_models_dir

REQUEST = re.compile(r"^\[anyclaude\] mlx-lm \S+ stream: prompt (\d+) \((\d+) cached\), "
                     r"output \d+, ttft ([\d.]+)s")
TOKEN = "bench-warm-start-token-0123456789"


def session(env: dict[str, str], cwd: Path, words: str, *extra: str) -> dict[str, Any]:
    """One `anyclaude -p` run: seconds to the first token, and the first main request's
    prompt, cached tokens and proxy-side time to first token."""
    state = Path(env["ANYCLAUDE_STATE_DIR"])
    logs_before = set((state / "logs").glob("debug-*.log"))
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "anyclaude", "-p", words, "--output-format", "stream-json",
         "--verbose", "--include-partial-messages", *extra],
        env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first_token = None
    assert proc.stdout is not None
    for line in proc.stdout:
        if first_token is None and '"content_block_delta"' in line:
            first_token = time.perf_counter() - started
        if first_token is not None and '"message_stop"' in line:
            # The random model's answer is noise: end the session after its first answer
            # (SIGTERM reaches Claude Code; anyclaude then exits the normal way).
            proc.send_signal(signal.SIGTERM)
            break
    stderr = proc.communicate(timeout=120)[1]
    [log] = set((state / "logs").glob("debug-*.log")) - logs_before
    for line in log.read_text().splitlines():
        if match := REQUEST.match(line):
            prompt, cached, ttft = int(match[1]), int(match[2]), float(match[3])
            break
    else:
        raise RuntimeError(f"no main request in {log}")
    return {"to_first_token_s": round(first_token or time.perf_counter() - started, 2),
            "proxy_ttft_s": ttft, "prompt_tokens": prompt, "cached_tokens": cached,
            "cached_share": round(cached / prompt, 4) if prompt else 0.0,
            "warm_up": next((ln.split("Cache warm-up: ", 1)[1] for ln in stderr.splitlines()
                             if "Cache warm-up: " in ln), None)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--claude-version", default=CLAUDE_VERSION)
    args = parser.parse_args()
    model = build_random_model(default_models_dir() / "random-small", layers=2, hidden=128,
                               heads=2)
    claude = claude_path(args.claude_version)
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="anyclaude-warm-") as tmp:
        root = Path(tmp)
        folders = {name: root / name for name in ("project", "other")}
        for folder in folders.values():
            folder.mkdir()
        port = free_port()
        state = root / "state"

        def env(keep_alive: str) -> dict[str, str]:
            return headless_env(root / "home", folders["project"], api_key=TOKEN, extra={
                "ANYCLAUDE_MODE": "mlx-lm", "ANYCLAUDE_PROXY_TOKEN": TOKEN,
                "ANYCLAUDE_STATE_DIR": str(state), "ANYCLAUDE_DEBUG": "1",
                "ANYCLAUDE_KEEP_ALIVE": keep_alive, "ANYCLAUDE_MAX_OUTPUT_TOKENS": "16",
                "MLX_LM_MODEL": str(model), "MLX_LM_URL": f"http://127.0.0.1:{port}/v1",
                "ANYCLAUDE_CLAUDE_PATH": str(claude)})

        try:
            project = folders["project"]
            results["cold"] = session(env("0"), project, "What does this project do?")
            results["warm_up"] = session(env("0"), project, "List the files here.")
            session(env("10m"), project, "Say hello.")  # starts the server that is kept
            results["kept"] = session(env("10m"), project, "Which language is this?")
            results["follow_up"] = session(env("10m"), project, "And why?", "--continue")
            results["other_folder"] = session(env("10m"), folders["other"], "Hello there.")
        finally:
            client.stop_all(state)
    follow = results["follow_up"]["proxy_ttft_s"]
    for case in ("warm_up", "kept"):
        results[case]["ttft_vs_follow_up"] = round(results[case]["proxy_ttft_s"] / follow, 2)
    path = save("warm_start", {"claude_code": args.claude_version, "model": "random llama, 2 layers, hidden 128",
                               "cases": results})
    print(f"{'case':<14}{'to first token':>16}{'proxy ttft':>12}{'prompt':>9}{'cached':>9}")
    for case, row in results.items():
        print(f"{case:<14}{row['to_first_token_s']:>15.2f}s{row['proxy_ttft_s']:>11.2f}s"
              f"{row['prompt_tokens']:>9,}{row['cached_share']:>9.1%}")
    print(f"saved {path.relative_to(ROOT)}")
    print(json.dumps({c: r.get("warm_up") for c, r in results.items()}))


if __name__ == "__main__":
    main()
