"""Every time limit anyclaude puts on the world outside it, in one place, with why.

The proxy's own timings toward its client (pings, the header grace) live in
`proxy.config.ProxyConfig`; its limits on the backend are the two settings below.
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
CONNECT_S = 10.0
"""Opening a connection to the backend (the proxy's requests)."""
IDLE_ENV = "ANYCLAUDE_IDLE_TIMEOUT"
ANSWER_ENV = "ANYCLAUDE_ANSWER_TIMEOUT"
IDLE_S = 300.0
"""Default for ANYCLAUDE_IDLE_TIMEOUT: how long a streaming backend may produce nothing
(no text, reasoning or tool-call piece; mlx-lm's prompt-progress comments count, empty
deltas do not) before the stream fails. Claude Code's own watchdog gives up after 300 s of
silence; pings keep it waiting only while the backend makes progress."""
ANSWER_S = 900.0
"""Default for ANYCLAUDE_ANSWER_TIMEOUT: how long an answer that arrives all at once may
take (non-streaming requests, mlx-textgen with tools, warm-up; in claude mode, any one
silence of the upstream): a long tool call on a laptop takes minutes, a stuck server
forever."""
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
