"""User-side content blocks as OpenAI parts, with fixed wording for cache stability."""

from __future__ import annotations

from typing import Any

import pytest

from anyclaude.translate.content import join_text, message_parts, result_parts


def parts(*blocks: Any, vision: bool = False) -> list[dict[str, Any]]:
    notes: list[str] = []
    return message_parts(list(blocks), vision=vision, notes=notes)


@pytest.mark.parametrize(("texts", "joined"), [
    (["a", "b"], "a\n\nb"), (["a\n", "b"], "a\nb"), (["", "a", None, "b"], "a\n\nb"), ([], "")])
def test_join_text_adds_a_blank_line_only_where_needed(texts: list[str | None],
                                                       joined: str) -> None:
    assert join_text(texts) == joined


def test_document_with_block_content_keeps_its_images_for_vision_backends() -> None:
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "x"}}
    doc = {"type": "document", "title": "spec", "source": {
        "type": "content", "content": [{"type": "text", "text": "page 1"}, image]}}
    assert parts(doc, vision=True) == [
        {"type": "text", "text": "[document: spec]"}, {"type": "text", "text": "page 1"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,x"}}]


def test_document_with_string_content_and_url_documents() -> None:
    assert parts({"type": "document", "source": {"type": "content", "content": "inline"}}) == [
        {"type": "text", "text": "inline"}]
    url_doc = {"type": "document", "source": {"type": "url", "url": "https://x/a.pdf"}}
    assert parts(url_doc) == [{"type": "text", "text": "[document omitted: https://x/a.pdf]"}]


def test_search_results_are_flattened_to_text() -> None:
    result = {"type": "search_result", "title": "Docs", "source": "https://d",
              "content": [{"type": "text", "text": "the answer"}]}
    assert parts(result) == [{"type": "text",
                              "text": "[search result: Docs (https://d)]\n\nthe answer"}]


def test_mid_conversation_system_blocks_become_reminders() -> None:
    block = {"type": "mid_conv_system", "content": [{"type": "text", "text": "be brief"}]}
    assert parts(block) == [{"type": "text",
                             "text": "<system-reminder>\nbe brief\n</system-reminder>"}]


def test_unknown_user_blocks_are_dropped_with_a_note() -> None:
    notes: list[str] = []
    assert message_parts([{"type": "tool_reference", "tool_name": "x"}], vision=False,
                         notes=notes) == []
    assert notes == ["dropped a user tool_reference block"]


def test_tool_results_flatten_documents_and_search_results() -> None:
    block = {"type": "tool_result", "tool_use_id": "t", "content": [
        {"type": "document", "source": {"type": "text", "media_type": "text/plain",
                                        "data": "file body"}},
        {"type": "search_result", "title": "T", "source": "s", "content": []}]}
    text, images = result_parts(block, vision=True)
    assert text == "file body\n[search result: T (s)]" and images == []


def test_an_error_already_tagged_is_not_tagged_twice() -> None:
    block = {"type": "tool_result", "tool_use_id": "t", "is_error": True,
             "content": "<tool_use_error>denied</tool_use_error>"}
    assert result_parts(block, vision=False)[0] == "<tool_use_error>denied</tool_use_error>"
