"""Secrets kept out of everything anyclaude writes: console lines, debug logs, traces, and
errors sent to Claude Code.

Two nets, because either alone leaks: by name (a header or JSON key that looks like it holds
a credential, a URL's password) catches secrets nobody told us about, and by value (the
run's own token, the backend API key, the URL password) catches them wherever they are
quoted, such as a backend error that echoes the key.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

REDACTED = "[redacted]"
MIN_SECRET = 4
"""Shorter values are not replaced by value (a one-letter password would garble every
line); URLs still lose their password by name."""

_HEADER_HINTS = ("auth", "key", "token", "cookie", "secret", "passw", "credential", "session",
                 "signature")
"""A header whose name contains one of these carries a credential (x-api-key,
Authorization, Proxy-Authorization, Cookie, x-anyclaude-token, x-goog-api-key...)."""

_KEY_WORDS = frozenset({"secret", "password", "passwd", "pwd", "passphrase", "token", "auth",
                        "authorization", "cookie", "credential", "credentials", "apikey",
                        "bearer", "signature"})
_KEY_QUALIFIERS = frozenset({"api", "secret", "private", "access", "auth", "client", "signing",
                             "encryption", "master", "session", "license"})
"""A JSON key is secret when one of its words is a `_KEY_WORDS` word, or it ends in `key`
after a qualifier (api_key, x-api-key, secretKey). Token counts (`max_tokens`,
`input_tokens`) and other keys (`cache_key`) are not."""

_WORD = re.compile(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])")
_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)([^\s/?#@]+)@")


def secret_header(name: str) -> bool:
    lowered = name.lower()
    return any(hint in lowered for hint in _HEADER_HINTS)


def secret_key(name: str) -> bool:
    words = [w.lower() for w in _WORD.findall(name)]
    if any(w in _KEY_WORDS for w in words):
        return True
    return len(words) >= 2 and words[-1] == "key" and words[-2] in _KEY_QUALIFIERS


def url_secrets(url: str) -> tuple[str, ...]:
    """The credentials a URL carries (`http://user:pass@host`: the password; a lone user
    part is often a token)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return ()
    if parts.password:
        return (parts.password,)
    return (parts.username,) if parts.username else ()


def _userinfo(match: re.Match[str]) -> str:
    scheme, userinfo = match.group(1), match.group(2)
    user, colon, _ = userinfo.partition(":")
    return f"{scheme}{user}:{REDACTED}@" if colon else f"{scheme}{REDACTED}@"


def scrub(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` without URL passwords (by name) and without any of `secrets` (by value)."""
    text = _URL_USERINFO.sub(_userinfo, text) if "@" in text else text
    for secret in secrets:
        if len(secret) >= MIN_SECRET and secret in text:
            text = text.replace(secret, REDACTED)
    return text


class Redactor:
    """Redaction with the known secrets of one run."""

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        found: set[str] = set()
        for secret in secrets:
            if secret and "://" in secret:
                found.update(url_secrets(secret))  # a URL: its credentials are the secret
            elif secret:
                found.add(secret)
        # Longest first, so a secret containing another is replaced whole.
        self.secrets = tuple(sorted((s for s in found if len(s) >= MIN_SECRET),
                                    key=len, reverse=True))

    def text(self, text: str) -> str:
        return scrub(text, self.secrets)

    def headers(self, headers: Mapping[str, str]) -> dict[str, str]:
        return {str(k): REDACTED if secret_header(str(k)) else self.text(v)
                for k, v in headers.items()}

    def value(self, value: Any, depth: int = 0) -> Any:
        """A JSON-like value with secret-looking keys and every secret string redacted."""
        if isinstance(value, str):
            return self.text(value)
        if depth > 200:  # deeper than any body the proxy accepts; never recurse without end
            return REDACTED
        if isinstance(value, Mapping):
            return {k: REDACTED if isinstance(k, str) and secret_key(k) and v
                    and not isinstance(v, (dict, list)) else self.value(v, depth + 1)
                    for k, v in value.items()}
        if isinstance(value, list):
            return [self.value(v, depth + 1) for v in value]
        return value


class RedactingFormatter(logging.Formatter):
    """Log records (tracebacks included) through a `Redactor`: an exception message may
    quote a URL with its password, or a backend's answer that echoes the key."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor

    def format(self, record: logging.LogRecord) -> str:
        return self.redactor.text(super().format(record))


def private_dir(folder: Path) -> Path:
    """A folder only this user can enter (created 0700, tightened when it exists)."""
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(folder, 0o700)
    return folder


def private_file(path: Path, *, truncate: bool = False) -> int:
    """A descriptor for appending to `path` (or rewriting it), created 0600 and tightened
    when it exists: debug logs, traces and server logs hold whole conversations."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if truncate else os.O_APPEND)
    fd = os.open(path, flags, 0o600)
    os.fchmod(fd, 0o600)
    return fd


def write_private(path: Path, data: bytes) -> None:
    """Replace `path` with `data` atomically (a reader never sees half a file), 0600 in a
    0700 folder: kept-server records, keeper specs and warm-up prefixes."""
    private_dir(path.parent)
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    with os.fdopen(private_file(tmp, truncate=True), "wb") as handle:
        handle.write(data)
    os.replace(tmp, path)
