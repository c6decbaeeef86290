"""Every time limit anyclaude puts on the world outside it, in one place, with why.

The proxy's own stream timings (pings, the header grace, the idle limit) belong to one
request and live in `proxy.config.ProxyConfig`.
"""

from __future__ import annotations

PROBE_S = 2.0
"""One health or listing request, or a bare TCP connect: a server on this machine answers in
milliseconds, so a longer silence means it is stuck, not slow."""
ONE_TOKEN_S = 5.0
"""A 1-token completion once the server is up: mlx-lm never answers one queued while its
model failed to load, but answers the next at once, so an attempt is given up and sent
again after this long."""
STARTUP_S = 300.0
"""Default for ANYCLAUDE_STARTUP_TIMEOUT: a large model loads from a cold disk in minutes."""
STOP_GRACE_S = 5.0
"""Between SIGTERM and SIGKILL when stopping a process tree."""
STOP_COMMAND_S = 60.0
"""A one-shot stop command (`lms server stop`)."""
VERSION_S = 5.0
"""`claude --version`, `node --version` (doctor)."""
PACKAGE_S = 10.0
"""Starting the backend's Python to look its package up (doctor); slow only on a busy
machine or a cold disk."""
DOCTOR_CHECK_S = 12.0
"""Any one doctor check: above every limit a check waits on (the package look-up; a probe,
then a 1-token request)."""
CLAUDE_API_MS = "3600000"
"""Claude Code's API_TIMEOUT_MS: an hour, since a cold 30k-token prefill on a laptop can take
minutes."""
