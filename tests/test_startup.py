"""`anyclaude --help` (and `--version`, and shell completion) load the command line only: the
proxy, the launcher and aiohttp are imported when a run needs them. Checked in a fresh
interpreter, since this test process has imported everything already."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("aiohttp", "anyclaude.proxy", "anyclaude.launcher", "anyclaude.supervisor",
         "anyclaude.doctor", "anyclaude.settings", "huggingface_hub", "tokenizers")

PROBE = """
import contextlib, io, json, sys
from anyclaude import cli
with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):
    cli.main(sys.argv[1:])
print(json.dumps(sorted(sys.modules)), file=sys.stderr)
"""


@pytest.mark.parametrize("args", [[], ["--help"], ["--version"], ["doctor", "--help"]],
                         ids=["import", "help", "version", "doctor-help"])
def test_the_command_line_alone_loads_nothing_a_run_needs(args: list[str]) -> None:
    code = PROBE if args else "import json, sys, anyclaude.cli\n" \
        "print(json.dumps(sorted(sys.modules)), file=sys.stderr)"
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          timeout=60, check=True)
    loaded = json.loads(done.stderr.splitlines()[-1])
    assert "anyclaude.cli" in loaded
    heavy = [name for name in loaded if name.startswith(HEAVY)]
    assert heavy == [], f"{' '.join(args) or 'import'} loaded {heavy}"
