"""What a user-facing failure is: one sentence saying what happened and what to do, an exit
code, and sometimes a log tail to show beneath it. Kept apart (and import-free) so the CLI can
catch every one of them without loading the launcher, the supervisor or the proxy."""

from __future__ import annotations


class UserError(Exception):
    """A failure the user can fix; the message is one sentence for them."""

    exit_code = 1

    def __init__(self, message: str, log_tail: str = "") -> None:
        super().__init__(message)
        self.log_tail = log_tail
