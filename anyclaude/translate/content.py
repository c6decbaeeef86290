"""Anthropic content blocks -> OpenAI content parts, with fixed, cache-stable wording.

Every placeholder and separator here is a constant: the same history must render to the
same bytes on every turn, or the backend's prefix cache misses.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

Parts = list[dict[str, Any]]


def join_text(texts: Iterable[str | None]) -> str:
    """Join text blocks: a blank line between them unless the first already ends a line."""
    out = ""
    for text in texts:
        if not text:
            continue
        if out and not out.endswith("\n"):
            out += "\n\n"
        out += text
    return out


def system_reminder(text: str) -> str:
    """A mid-conversation system message, as the user-role text Claude Code itself uses."""
    return f"<system-reminder>\n{text}\n</system-reminder>"


def _image(source: Mapping[str, Any], vision: bool) -> dict[str, Any]:
    if not vision:
        media = source.get("media_type") or "image"
        return {"type": "text", "text": f"[image omitted: {media}]"}
    if source["type"] == "url":
        url = source["url"]
    else:
        url = f"data:{source['media_type']};base64,{source['data']}"
    return {"type": "image_url", "image_url": {"url": url}}


def _document(block: Mapping[str, Any], vision: bool) -> Parts:
    source = block["source"]
    title = block.get("title")
    head = f"[document: {title}]\n" if title else ""
    kind = source["type"]
    if kind == "text":
        return [{"type": "text", "text": head + source["data"]}]
    if kind == "content":
        inner = source["content"]
        if isinstance(inner, str):
            return [{"type": "text", "text": head + inner}]
        parts = message_parts(inner, vision=vision, notes=[])
        return ([{"type": "text", "text": head.rstrip()}] if head else []) + parts
    if kind == "url":
        return [{"type": "text", "text": f"{head}[document omitted: {source['url']}]"}]
    return [{"type": "text", "text": f"{head}[document omitted: {source.get('media_type')}]"}]


def _search_result(block: Mapping[str, Any]) -> str:
    texts = [p.get("text", "") for p in block.get("content") or [] if p.get("type") == "text"]
    return join_text([f"[search result: {block.get('title', '')} ({block.get('source', '')})]",
                      *texts])


def message_parts(blocks: Sequence[Mapping[str, Any]], *, vision: bool, notes: list[str]) -> Parts:
    """User-side blocks (not tool results) as OpenAI parts; empty text is dropped."""
    parts: Parts = []
    for block in blocks:
        kind = block["type"]
        if kind == "text":
            if block["text"]:
                parts.append({"type": "text", "text": block["text"]})
        elif kind == "image":
            parts.append(_image(block["source"], vision))
            if not vision:
                notes.append("replaced an image with a text placeholder: the backend takes "
                              "text only")
        elif kind == "document":
            parts.extend(_document(block, vision))
        elif kind == "search_result":
            parts.append({"type": "text", "text": _search_result(block)})
        elif kind == "mid_conv_system":
            content = block["content"]
            text = content if isinstance(content, str) else join_text(
                [p.get("text", "") for p in content if p.get("type") == "text"])
            parts.append({"type": "text", "text": system_reminder(text)})
        else:
            notes.append(f"dropped a user {kind} block")
    return parts


ERROR_OPEN, ERROR_CLOSE = "<tool_use_error>", "</tool_use_error>"
EMPTY_RESULT = "(no output)"
IMAGE_BELOW = "[image attached below]"


def result_parts(block: Mapping[str, Any], *, vision: bool) -> tuple[str, Parts]:
    """A tool_result as (text for the tool message, images for a following user message).

    OpenAI tool messages hold text only, so a vision backend gets each image right after
    the tool messages of the turn; others get a short placeholder. Errors are marked with
    the tag Claude Code itself uses, so the model can tell a failure from output.
    """
    content = block.get("content")
    images: Parts = []
    if content is None:
        text = ""
    elif isinstance(content, str):
        text = content
    else:
        texts: list[str] = []
        for part in content:
            kind = part["type"]
            if kind == "text":
                texts.append(part["text"])
            elif kind == "image":
                image = _image(part["source"], vision)
                if image["type"] == "image_url":
                    images.append(image)
                    texts.append(IMAGE_BELOW)
                else:
                    texts.append(image["text"])
            elif kind == "document":
                texts.extend(p["text"] for p in _document(part, False) if p["type"] == "text")
            elif kind == "search_result":
                texts.append(_search_result(part))
        text = "\n".join(texts)
    if block.get("is_error") and not text.lstrip().startswith(ERROR_OPEN):
        text = f"{ERROR_OPEN}{text}{ERROR_CLOSE}"
    return text or EMPTY_RESULT, images
