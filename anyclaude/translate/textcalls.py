"""Streaming extraction of tool calls (and inline reasoning) that models print as text.

Servers without a tool parser for the loaded model (LM Studio's fallback, mlx-lm with an
unknown template, bare llama.cpp) return the template's raw markup in ``content``. This
parser turns it back into text, thinking and tool-call segments while streaming:

* a possible marker prefix at the end of a chunk (``<``, ``<tool_ca``) is held back until
  decided, so markup is never shown early, and released at once when it cannot be one;
* a call is only accepted when it parses and names an offered tool; anything else is
  returned as the exact original characters, so nothing is ever lost;
* the result does not depend on how the input is split into chunks.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from anyclaude.translate.arguments import dumps_arguments, loads_lenient, strip_code_fence

__all__ = ["FORMATS", "Segment", "TextCallParser", "parse_complete"]

FORMATS = frozenset({"hermes", "qwen3_coder", "think"})

CALL_OPEN = "<tool_call>"
CALL_CLOSE = "</tool_call>"
THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"
FUNC_OPEN = "<function="
FUNC_CLOSE = "</function>"
PARAM_OPEN = "<parameter="
PARAM_CLOSE = "</parameter>"

_State = Literal["start", "think", "text", "call"]
_CallFormat = Literal["", "hermes", "qwen3_coder"]
_JSON_SPECIAL = re.compile(r'["\\]')
_XML_TAG = re.compile(f"{PARAM_OPEN}|{PARAM_CLOSE}|{FUNC_CLOSE}")
_NEXT_PARAM = re.compile(rf"\s*(?:{PARAM_OPEN}|\Z)")
_CUT_NAME = re.compile(r'<function=([^>\n]+)>|"name"\s*:\s*"([^"\n]+)"')
_WAIT = "wait"  # verdict: the close marker sits inside the payload, look for a later one
_TEXT = "text"  # verdict: not an acceptable call, keep the original characters


@dataclass(frozen=True)
class Segment:
    """One piece of model output, in order."""

    kind: Literal["text", "thinking", "tool_call", "cut_call"]
    text: str = ""  # text / thinking
    name: str = ""  # tool_call; cut_call: the name if it arrived before the cut
    # Raw JSON text (hermes) or parameter name -> raw string value (qwen3_coder XML);
    # both go through ``repair_arguments`` before use.
    arguments: str | dict[str, object] = ""


class TextCallParser:
    """Incremental parser; feed the content deltas, then call :meth:`finish` once."""

    def __init__(
        self,
        formats: Sequence[str],
        tool_names: Collection[str],
        *,
        start_in_thinking: bool = False,
    ) -> None:
        unknown = sorted(set(formats) - FORMATS)
        if unknown:
            raise ValueError(f"unknown text tool-call format(s): {', '.join(unknown)}")
        self._hermes = "hermes" in formats
        self._xml = "qwen3_coder" in formats
        self._tools = frozenset(tool_names)
        self._buf = ""
        self._out: list[Segment] = []
        self._state: _State = "text"
        # Drop leading whitespace: at the start of reasoning and after "</think>".
        self._lead = False
        self._call_fmt: _CallFormat = ""
        self._scan = 0  # where the next search for CALL_CLOSE starts
        # Incremental payload tracking (scanned up to; inside a JSON string / XML value?),
        # so a payload quoting the close marker many times costs linear time.
        self._payload_pos = 0
        self._payload_inside = False
        if start_in_thinking:
            self._state, self._lead = "think", True
        elif "think" in formats:
            self._state = "start"

    def feed(self, text: str) -> list[Segment]:
        """Consume a chunk; return the segments that are now decided."""
        buf, self._buf = self._buf, ""
        buf += text  # sole reference: CPython appends in place, no quadratic copying
        self._buf = buf
        self._run(final=False)
        return self._take()

    def finish(self, *, cut: bool = False) -> list[Segment]:
        """End of stream: decide and flush everything held back.

        ``cut``: the answer was stopped by max_tokens, so a call still waiting for its close
        marker was cut short. It becomes one ``cut_call`` segment, never a call (a
        truncated command must not run) nor its raw markup as text."""
        if cut and self._cut_call():
            return self._take()
        self._run(final=True)
        if self._buf:  # unreachable by construction; never lose characters
            self._emit("thinking" if self._state == "think" else "text", self._buf)
            self._buf = ""
        return self._take()

    def _cut_call(self) -> bool:
        self._run(final=False)  # decides every call that did close
        if self._state != "call":
            return False
        named = _CUT_NAME.search(self._buf)
        name = next((g for g in named.groups() if g), "") if named else ""
        self._out.append(Segment("cut_call", name=name.strip()))
        self._buf, self._state, self._call_fmt = "", "text", ""
        return True

    # -- state machine ------------------------------------------------------------------

    def _run(self, final: bool) -> None:
        steps = {
            "start": self._step_start,
            "think": self._step_think,
            "text": self._step_text,
            "call": self._step_call,
        }
        while steps[self._state](final):
            pass

    def _step_start(self, final: bool) -> bool:
        """Output may open with ``<think>`` (after whitespace); decide before showing it."""
        body = self._buf.lstrip()
        if body.startswith(THINK_OPEN):
            self._buf = body[len(THINK_OPEN) :]
            self._state, self._lead = "think", True
            return True
        if not final and (not body or THINK_OPEN.startswith(body)):
            return False
        self._state = "text"
        return True

    def _step_think(self, final: bool) -> bool:
        if self._lead:
            self._buf = self._buf.lstrip()
            if self._buf.startswith(THINK_OPEN):  # template opened it and the model repeated it
                self._buf = self._buf[len(THINK_OPEN) :]
                return True
            if not self._buf or (not final and THINK_OPEN.startswith(self._buf)):
                return False
            self._lead = False
        end = self._buf.find(THINK_CLOSE)
        if end >= 0:
            self._emit("thinking", self._buf[:end].rstrip())
            self._buf = self._buf[end + len(THINK_CLOSE) :]
            self._state, self._lead = "text", True
            return True
        if final:  # truncated while reasoning: it is still reasoning
            self._emit("thinking", self._buf)
            self._buf = ""
            return False
        cut = len(self._buf) - _partial_suffix(self._buf, THINK_CLOSE)
        while cut > 0 and self._buf[cut - 1].isspace():  # dropped if "</think>" follows
            cut -= 1
        self._emit("thinking", self._buf[:cut])
        self._buf = self._buf[cut:]
        return False

    def _step_text(self, final: bool) -> bool:
        if self._lead:
            self._buf = self._buf.lstrip()
            if not self._buf:
                return False
            self._lead = False
        if not (self._hermes or self._xml):
            self._emit("text", self._buf)
            self._buf = ""
            return False
        start = self._buf.find(CALL_OPEN)
        if start >= 0:
            self._emit("text", self._buf[:start])
            self._buf = self._buf[start:]
            self._state, self._call_fmt, self._scan = "call", "", len(CALL_OPEN)
            self._payload_pos, self._payload_inside = len(CALL_OPEN), False
            return True
        cut = len(self._buf) - (0 if final else _partial_suffix(self._buf, CALL_OPEN))
        self._emit("text", self._buf[:cut])
        self._buf = self._buf[cut:]
        return False

    def _step_call(self, final: bool) -> bool:
        """``self._buf`` starts with CALL_OPEN; find where the call ends and judge it."""
        if not self._call_fmt:
            fmt = self._detect(self._buf[len(CALL_OPEN) :].lstrip(), final)
            if fmt is None:
                return False
            if not fmt:
                return self._release_marker()
            self._call_fmt = fmt
        while (end := self._buf.find(CALL_CLOSE, self._scan)) >= 0:
            self._scan = end + len(CALL_CLOSE)
            verdict = self._judge(end, tolerant=False)
            if verdict != _WAIT:
                return self._close_call(verdict, end)
        if not final:
            self._scan = max(self._scan, len(self._buf) - len(CALL_CLOSE) + 1)
            return False
        # End of stream and every close marker looked like payload: accept the first
        # one that now parses leniently, else the marker was just text.
        end = self._buf.find(CALL_CLOSE)
        while end >= 0:
            verdict = self._judge(end, tolerant=True)
            if isinstance(verdict, list):
                return self._close_call(verdict, end)
            end = self._buf.find(CALL_CLOSE, end + len(CALL_CLOSE))
        return self._release_marker()

    def _detect(self, head: str, final: bool) -> _CallFormat | None:
        """Which format follows ``<tool_call>``: "" = none, None = not decided yet."""
        if not head:
            return "" if final else None
        if self._xml:
            if head.startswith(FUNC_OPEN):
                return "qwen3_coder"
            if FUNC_OPEN.startswith(head):
                return "" if final else None
        if self._hermes and head[0] in "{[`":
            return "hermes"
        return ""

    def _close_call(self, verdict: list[Segment] | str, end: int) -> bool:
        stop = end + len(CALL_CLOSE)
        if isinstance(verdict, list):
            self._out.extend(verdict)
        else:
            self._emit("text", self._buf[:stop])
        self._buf = self._buf[stop:]
        self._state, self._call_fmt = "text", ""
        return True

    def _release_marker(self) -> bool:
        """Not a call after all: show the marker and rescan what follows it."""
        self._emit("text", CALL_OPEN)
        self._buf = self._buf[len(CALL_OPEN) :]
        self._state, self._call_fmt = "text", ""
        return True

    # -- judging a candidate call ---------------------------------------------------------

    def _judge(self, end: int, *, tolerant: bool) -> list[Segment] | str:
        """Verdict on the call ending at the close marker at ``end``.

        ``_WAIT`` when the marker sits inside a JSON string or an unclosed XML value: a
        payload quoting the marker must not cut the call short.
        """
        body = self._buf[len(CALL_OPEN) : end]
        if self._call_fmt == "qwen3_coder":
            if not tolerant and self._inside_payload(end, _XML_TAG):
                return _WAIT  # (strict parsing cannot succeed then either)
            parsed = _parse_xml(body, strict=True) or _parse_xml(body, strict=False)
            if parsed is None or parsed[0] not in self._tools:
                return _TEXT
            return [Segment("tool_call", name=parsed[0], arguments=parsed[1])]
        if not tolerant and self._inside_payload(end, _JSON_SPECIAL):
            return _WAIT  # (valid JSON never ends inside a string)
        obj = loads_lenient(strip_code_fence(body.strip()))
        items = obj if isinstance(obj, list) and obj else [obj]
        segments = [self._hermes_segment(item) for item in items]
        if any(s is None for s in segments):
            return _TEXT
        return [s for s in segments if s is not None]

    def _inside_payload(self, end: int, tokens: re.Pattern[str]) -> bool:
        """Whether the call up to ``end`` stops inside a JSON string (hermes) or an unclosed
        ``<parameter=`` value (XML); each character is scanned once per call."""
        pos, inside = self._payload_pos, self._payload_inside
        while (match := tokens.search(self._buf, pos, end)) is not None:
            token, pos = match.group(), match.end()
            if token == '"':
                inside = not inside
            elif token == "\\":
                pos += 1 if inside else 0  # a backslash escapes the next char in a string
            else:
                inside = token == PARAM_OPEN  # the last XML tag decides
        self._payload_pos, self._payload_inside = max(pos, end), inside
        return inside

    def _hermes_segment(self, obj: Any) -> Segment | None:
        if not isinstance(obj, dict):
            return None
        if "name" not in obj and isinstance(obj.get("function"), dict):
            obj = obj["function"]  # OpenAI-shaped {"type": "function", "function": {...}}
        name = obj.get("name")
        if not isinstance(name, str) or name.strip() not in self._tools:
            return None
        args = obj.get("arguments")
        if args is None:
            args = obj.get("parameters")
        if args is None:
            text = "{}"
        elif isinstance(args, str):
            text = args
        elif isinstance(args, dict):
            text = dumps_arguments(args)
        else:
            text = json.dumps(args, ensure_ascii=False)  # repair_arguments rejects it later
        return Segment("tool_call", name=name.strip(), arguments=text)

    # -- output -------------------------------------------------------------------------

    def _emit(self, kind: Literal["text", "thinking"], text: str) -> None:
        if not text:
            return
        if self._out and self._out[-1].kind == kind:
            text = self._out.pop().text + text
        self._out.append(Segment(kind, text=text))

    def _take(self) -> list[Segment]:
        out, self._out = self._out, []
        return out


def parse_complete(
    text: str,
    formats: Sequence[str],
    tool_names: Collection[str],
    *,
    start_in_thinking: bool = False,
) -> list[Segment]:
    """Parse a whole (non-streaming) response."""
    parser = TextCallParser(formats, tool_names, start_in_thinking=start_in_thinking)
    segments = parser.feed(text) + parser.finish()
    merged: list[Segment] = []
    for segment in segments:
        if merged and segment.kind != "tool_call" and merged[-1].kind == segment.kind:
            segment = Segment(segment.kind, text=merged.pop().text + segment.text)
        merged.append(segment)
    return merged


# -- helpers ------------------------------------------------------------------------------


def _partial_suffix(text: str, marker: str) -> int:
    """Length of the longest end of ``text`` that is a proper prefix of ``marker``."""
    start = text.find(marker[0], max(0, len(text) - len(marker) + 1))
    while start >= 0:
        if marker.startswith(text[start:]):
            return len(text) - start
        start = text.find(marker[0], start + 1)
    return 0


def _parse_xml(body: str, *, strict: bool) -> tuple[str, dict[str, object]] | None:
    """Parse ``<function=NAME><parameter=P>value</parameter>...</function>``.

    ``strict`` requires every closing tag; the lenient form (used once the end of the call
    is certain) accepts a missing ``</parameter>`` or ``</function>``, as models do drop them.
    """
    s = body.strip()
    close = s.find(">")
    if not s.startswith(FUNC_OPEN) or close < 0:
        return None
    name = s[len(FUNC_OPEN) : close].strip()
    if not _plain_name(name):
        return None
    inner = s[close + 1 :].rstrip()
    if inner.endswith(FUNC_CLOSE):
        inner = inner[: -len(FUNC_CLOSE)]
    elif strict:
        return None
    args: dict[str, object] = {}
    pos = 0
    while rest := inner[pos:].lstrip():
        if not rest.startswith(PARAM_OPEN):
            return None
        start = len(inner) - len(rest) + len(PARAM_OPEN)
        close = inner.find(">", start)
        key = inner[start:close].strip() if close >= 0 else ""
        if not _plain_name(key):
            return None
        span = _value_span(inner, close + 1, strict=strict)
        if span is None:
            return None
        value = inner[close + 1 : span[0]]
        value = value[1:] if value.startswith("\n") else value
        args[key] = value[:-1] if value.endswith("\n") else value
        pos = span[1]
    return name, args


def _value_span(inner: str, start: int, *, strict: bool) -> tuple[int, int] | None:
    """(value end, next position): the first ``</parameter>`` followed by another parameter
    or by the end, so values may contain ``<``, tags and even ``</parameter>`` text."""
    at = inner.find(PARAM_CLOSE, start)
    while at >= 0:
        after = at + len(PARAM_CLOSE)
        if _NEXT_PARAM.match(inner, after):
            return at, after
        at = inner.find(PARAM_CLOSE, after)
    if strict:
        return None
    end = inner.find(PARAM_OPEN, start)
    end = len(inner) if end < 0 else end
    return end, end


def _plain_name(name: str) -> bool:
    return bool(name) and not any(c in name for c in "<>\n\"'")
