"""A started server's log: its last lines (shown under an error) and the notes a launched
wrapper leaves in it for anyclaude (`LOG_NOTE` lines: the cluster guard says which ranks
joined, and which rank on which host ended first)."""

from __future__ import annotations

import os
from pathlib import Path

LOG_NOTE = "[anyclaude] "
"""Prefix of the notes: the latest one says what the server is doing (shown while it
starts) or why it ended (put in the exit message)."""
TAIL_LINES = 15


def log_tail(path: Path | None, lines: int = TAIL_LINES, noise: str | None = None) -> str:
    """The last lines of a log, without the lines that contain `noise` (our health probes)."""
    if path is None:
        return ""
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(handle.tell() - 16384, 0))
            text = handle.read().decode("utf-8", "replace")
    except OSError:
        return ""
    kept = [line for line in text.rstrip().splitlines() if not noise or noise not in line]
    return "\n".join(kept[-lines:])


def log_note(path: Path | None) -> str | None:
    """The latest `LOG_NOTE` line a launched wrapper wrote into the log (what the server
    is doing, or why it ended), without the prefix."""
    notes = [line[len(LOG_NOTE):].strip() for line in log_tail(path, lines=400).splitlines()
             if line.startswith(LOG_NOTE)]
    return notes[-1] if notes else None
