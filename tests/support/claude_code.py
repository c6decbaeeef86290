"""The real Claude Code for tests, a headless environment to run it in, and process-tree
bookkeeping so a test can prove that nothing it (or anyclaude) started outlives it.

`./scripts/test` installs every version in `CLAUDE_VERSIONS` into the test cache
(`$ANYCLAUDE_TEST_CACHE/claude-code/<version>/`, outside the checkout); ANYCLAUDE_TEST_CLAUDE
names another executable for the pinned version. When one is missing, tests that need it
FAIL with a message saying how to install it: a missing install step is not a pass.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path

import psutil
import pytest

from anyclaude.claude_code import NEWEST_TESTED, OLDEST_TESTED

REPO_ROOT = Path(__file__).resolve().parents[2]
CLAUDE_VERSION = ".".join(map(str, OLDEST_TESTED))
"""The pinned version: the newest Claude Code whose package accepts Node 20, and the oldest
the suite tests."""
NEWEST_VERSION = ".".join(map(str, NEWEST_TESTED))
"""The newest release; `scripts/test` installs the same list (a test checks)."""
CLAUDE_VERSIONS = (CLAUDE_VERSION, NEWEST_VERSION)
SYSTEM_PATH = "/usr/local/bin:/usr/bin:/bin"


def test_cache() -> Path:
    """Where `./scripts/test` keeps big third-party installs, outside the checkout."""
    configured = os.environ.get("ANYCLAUDE_TEST_CACHE")
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "anyclaude-test"


def claude_path(version: str = CLAUDE_VERSION) -> Path:
    """The Claude Code executable of `version` for tests; fails the test (never skips) when
    it is missing."""
    configured = os.environ.get("ANYCLAUDE_TEST_CLAUDE") if version == CLAUDE_VERSION else None
    path = Path(configured) if configured else \
        test_cache() / "claude-code" / version / "node_modules" / ".bin" / "claude"
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.fail(f"Claude Code {version} is not installed for the tests at {path}: run the "
                    "test set-up script ./scripts/test, which installs it with npm.",
                    pytrace=False)
    return path


def seed_home(home: Path, cwd: Path, api_key: str | None = None) -> None:
    """A fresh HOME whose `.claude.json` skips onboarding, the key-approval and trust dialogs."""
    home.mkdir(parents=True, exist_ok=True)
    approved = [api_key[-20:]] if api_key else []
    state = {"hasCompletedOnboarding": True,
             "customApiKeyResponses": {"approved": approved, "rejected": []},
             "projects": {str(cwd): {"hasTrustDialogAccepted": True}}}
    (home / ".claude.json").write_text(json.dumps(state), encoding="utf-8")


def headless_env(home: Path, cwd: Path, *, api_key: str | None = None,
                 extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """A minimal environment for anyclaude + Claude Code: fresh HOME (so neither the user's
    Claude Code nor anyclaude config leaks in), no update checks or telemetry, offline
    Hugging Face, this interpreter's bin folder first on PATH."""
    seed_home(home, cwd, api_key)
    env = {
        "HOME": str(home),
        "PATH": f"{Path(sys.executable).parent}:{SYSTEM_PATH}",
        "TERM": "xterm-256color",
        "LANG": "C.UTF-8",
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_STATE_HOME": str(home / ".local" / "state"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "DISABLE_AUTOUPDATER": "1",
        "DISABLE_TELEMETRY": "1",
        "DISABLE_ERROR_REPORTING": "1",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "ANYCLAUDE_KEEP_ALIVE": "0",  # tests of keep-alive ask for it
    }
    if "HF_HOME" in os.environ:
        env["HF_HOME"] = os.environ["HF_HOME"]
    env.update(extra or {})
    return env


class ProcessWatch:
    """Records every descendant of `pid` while it runs (polled in a thread), so that after
    it exits the test can check that none of them survived, re-parented ones included."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        self.root = psutil.Process(pid)
        self.seen: dict[int, psutil.Process] = {}
        self._interval = interval
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True, name="process-watch")
        self._thread.start()

    def _poll(self) -> None:
        while not self._done.is_set():
            self.snapshot()
            self._done.wait(self._interval)

    def snapshot(self) -> None:
        with contextlib.suppress(psutil.Error):
            for proc in self.root.children(recursive=True):
                self.seen.setdefault(proc.pid, proc)

    def matching(self, text: str) -> list[psutil.Process]:
        """Seen processes still running whose command line contains `text`."""
        found = []
        for proc in list(self.seen.values()):
            with contextlib.suppress(psutil.Error):
                if proc.is_running() and text in " ".join(proc.cmdline()):
                    found.append(proc)
        return found

    def close(self) -> None:
        self._done.set()
        self._thread.join(5)

    def survivors(self, timeout: float = 10.0) -> list[psutil.Process]:
        """Seen processes still running after up to `timeout` seconds (killed afterwards, so
        a failing test leaves nothing behind either)."""
        self.close()
        procs = [p for p in self.seen.values() if _alive(p)]
        _, alive = psutil.wait_procs(procs, timeout=timeout)
        alive = [p for p in alive if _alive(p)]
        for proc in alive:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        return alive


def _alive(proc: psutil.Process) -> bool:
    with contextlib.suppress(psutil.Error):
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    return False


@contextlib.contextmanager
def no_new_children(timeout: float = 10.0) -> Iterator[None]:
    """Fails when the block leaves a child process of this test process running."""
    me = psutil.Process()
    before = {p.pid for p in me.children(recursive=True)}
    yield
    new = [p for p in me.children(recursive=True) if p.pid not in before]
    _, alive = psutil.wait_procs(new, timeout=timeout)
    alive = [p for p in alive if _alive(p)]
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    assert not alive, f"child processes survived the test: {[p.pid for p in alive]}"


FAKE_CLAUDE = '''#!{python}
"""A stand-in `claude` for lifecycle tests (see write_fake_claude)."""
import json, os, signal, sys, time, urllib.request

record = os.environ.get("FAKE_CLAUDE_RECORD")
if record:
    with open(record, "w") as out:
        json.dump({{"argv": sys.argv[1:], "env": dict(os.environ)}}, out)
ready = os.environ.get("FAKE_CLAUDE_READY")
if not ready:
    sys.exit(int(os.environ.get("FAKE_CLAUDE_EXIT", "0")))


def note(name, value):
    with open(ready + "." + name, "w") as out:
        json.dump(value, out)


def ctrl_c(signum, frame):
    # Ctrl-C belongs to Claude Code: the proxy must still answer after it.
    body = json.dumps({{"model": "x", "max_tokens": 20,
                       "messages": [{{"role": "user", "content": "hi"}}]}}).encode()
    request = urllib.request.Request(
        os.environ["ANTHROPIC_BASE_URL"] + "/v1/messages", data=body,
        headers={{"content-type": "application/json",
                  "authorization": "Bearer " + os.environ["ANTHROPIC_AUTH_TOKEN"]}})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            note("sigint", {{"status": response.status, "body": json.load(response)}})
    except Exception as exc:
        note("sigint", {{"error": repr(exc)}})
    sys.exit(130)


def other(signum, frame):
    note("signal", signal.Signals(signum).name)
    sys.exit(128 + signum)


signal.signal(signal.SIGINT, ctrl_c)
signal.signal(signal.SIGTERM, other)
signal.signal(signal.SIGHUP, other)
open(ready, "w").close()
while True:
    time.sleep(1)
'''


def write_fake_claude(path: Path) -> Path:
    """A `claude` stand-in driven by its environment:
    FAKE_CLAUDE_RECORD=file: write {"argv", "env"} there;
    FAKE_CLAUDE_EXIT=n: exit with n at once (default 0);
    FAKE_CLAUDE_READY=file: instead create `file` and wait for signals: SIGINT makes a
    `/v1/messages` request to the proxy, writes `file.sigint` and exits 130; SIGTERM/SIGHUP
    write `file.signal` and exit 128+N."""
    path.write_text(FAKE_CLAUDE.format(python=sys.executable), encoding="utf-8")
    path.chmod(0o755)
    return path
