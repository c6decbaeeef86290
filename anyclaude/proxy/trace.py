"""ANYCLAUDE_DEBUG: what the proxy did, at three levels of detail.

1. one line per request: mode, model, prompt/cached/output tokens, time to first token,
   duration, stop reason;
2. also a summary of each translated request and of each answer;
3. also full traces as JSONL (one object per step: the Anthropic request, the OpenAI
   request, the raw upstream body, the Anthropic answer).

Every line and record goes through the run's `Redactor` (credentials by header and key
name, URL passwords, and the run's secrets by value); trace files are created 0600 in a
0700 folder, since they hold whole conversations.

Lines go to a text stream (stderr in proxy-only mode, a log file when Claude Code owns the
terminal). Nothing here runs when debugging is off: the proxy holds `None` instead.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any, TextIO

import orjson

from anyclaude.proxy.stats import RequestRecord
from anyclaude.redact import Redactor, private_dir, private_file
from anyclaude.translate.describe import answer_summary, request_summary
from anyclaude.translate.protocol import ChatRequest, Message


def request_line(record: RequestRecord) -> str:
    ttft = f"{record.first_token_s:.2f}s" if record.first_token_s is not None else "-"
    kind = "stream" if record.stream else "once"
    tag = " background" if record.background else ""
    tag += "" if record.role == "main" else f" → {record.served} ({record.role})"
    outcome = record.stop_reason or (f"error {record.status}: {record.error}" if record.error
                                     else "-")
    return (f"[anyclaude] {record.mode} {record.model} {kind}{tag}: "
            f"prompt {record.prompt_tokens} ({record.cached_tokens} cached), "
            f"output {record.output_tokens}, ttft {ttft}, {record.duration_s:.2f}s, {outcome}")


def _jsonl(entry: dict[str, Any]) -> bytes:
    """One trace line. A header the client sent may hold bytes that are not UTF-8 (kept as
    surrogates, which orjson refuses): those are written escaped. Tracing never fails a
    request."""
    try:
        return orjson.dumps(entry) + b"\n"
    except orjson.JSONEncodeError:
        pass
    try:
        return json.dumps(entry, default=str).encode() + b"\n"
    except (ValueError, RecursionError) as exc:
        return orjson.dumps({**entry, "data": f"not recordable: {exc}"}) + b"\n"


class Tracer:
    def __init__(self, level: int, stream: TextIO, trace_path: Path | None = None,
                 secrets: tuple[str | None, ...] = ()) -> None:
        self.level = level
        self.stream = stream
        self.trace_path = trace_path
        self.redactor = Redactor(secrets)
        self._lock = threading.Lock()
        self._file: IO[bytes] | None = None
        if level >= 3 and trace_path is not None:
            private_dir(trace_path.parent)
            self._file = os.fdopen(private_file(trace_path), "ab")

    def _line(self, text: str) -> None:
        text = self.redactor.text(text).encode("utf-8", "backslashreplace").decode()
        with self._lock:
            self.stream.write(text + "\n")
            self.stream.flush()

    def _record(self, request_id: str, step: str, data: Any) -> None:
        if self._file is None:
            return
        entry = {"ts": time.time(), "request_id": request_id, "step": step,
                 "data": self.redactor.value(data)}
        with self._lock:
            self._file.write(_jsonl(entry))
            self._file.flush()

    def client_request(self, request_id: str, method: str, path: str,
                       headers: Mapping[str, str], body: Any) -> None:
        self._record(request_id, "client_request", {
            "method": method, "path": path, "headers": self.redactor.headers(headers), "body": body})

    def upstream_request(self, request_id: str, url: str, body: ChatRequest,
                         notes: list[str]) -> None:
        if self.level >= 2:
            self._line(request_summary(body, notes))
        self._record(request_id, "upstream_request", {"url": url, "body": body, "notes": notes})

    def upstream_response(self, request_id: str, status: int, raw: bytes) -> None:
        self._record(request_id, "upstream_response",
                     {"status": status, "body": raw.decode("utf-8", "replace")})

    def answer(self, request_id: str, message: Message) -> None:
        if self.level >= 2:
            self._line(answer_summary(message))
        self._record(request_id, "answer", message)

    def done(self, record: RequestRecord) -> None:
        self._line(request_line(record))

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
