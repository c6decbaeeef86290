"""The wire shapes the translator reads and writes, as TypedDicts (types only, no code).

Anthropic Messages in (the request `validate.py` accepts) and out (stream events and the
`Message` they add up to); OpenAI Chat Completions out (the request) and in (chunks). Only
what anyclaude reads or writes is declared. Untrusted input (a backend's chunks) stays
`object` until it is checked: these types describe what has been checked or built, not
what might arrive.
"""

from __future__ import annotations

from typing import Any, Literal, NotRequired, Required, TypedDict

# -- Anthropic request ------------------------------------------------------------------


class CacheControl(TypedDict, total=False):
    type: Required[str]
    ttl: str


class TextBlockParam(TypedDict, total=False):
    type: Required[Literal["text"]]
    text: Required[str]
    cache_control: CacheControl


class ImageSource(TypedDict, total=False):
    type: Required[Literal["base64", "url"]]
    media_type: str
    data: str
    url: str


class ImageBlockParam(TypedDict, total=False):
    type: Required[Literal["image"]]
    source: Required[ImageSource]
    cache_control: CacheControl


class ToolUseBlockParam(TypedDict, total=False):
    type: Required[Literal["tool_use"]]
    id: Required[str]
    name: Required[str]
    input: Required[dict[str, Any]]
    cache_control: CacheControl


class ToolResultBlockParam(TypedDict, total=False):
    type: Required[Literal["tool_result"]]
    tool_use_id: Required[str]
    content: str | list[dict[str, Any]]
    is_error: bool
    cache_control: CacheControl


class ThinkingBlockParam(TypedDict, total=False):
    type: Required[Literal["thinking"]]
    thinking: Required[str]
    signature: str


ContentBlockParam = (TextBlockParam | ImageBlockParam | ToolUseBlockParam | ToolResultBlockParam
                     | ThinkingBlockParam | dict[str, Any])
"""The blocks the translator handles by name, and the rest (documents, search results,
server tool blocks...) as plain objects: `validate.py` checks each kind it knows."""


class MessageParam(TypedDict):
    role: Literal["user", "assistant", "system"]
    content: str | list[ContentBlockParam]


class ToolParam(TypedDict, total=False):
    name: Required[str]
    type: str
    """Absent or `custom` for client tools; server tools (`web_search_20250305`...) say so."""
    description: str
    input_schema: dict[str, Any]
    cache_control: CacheControl


class ToolChoice(TypedDict, total=False):
    type: Required[Literal["auto", "any", "tool", "none"]]
    name: str
    disable_parallel_tool_use: bool


class ThinkingConfig(TypedDict, total=False):
    type: Required[str]
    budget_tokens: int


class OutputConfig(TypedDict, total=False):
    format: dict[str, Any]
    effort: str


class MessagesRequest(TypedDict, total=False):
    """A request `validate.validate_messages_request` accepted (count_tokens has no
    `max_tokens`)."""

    model: Required[str]
    messages: Required[list[MessageParam]]
    max_tokens: int
    system: str | list[TextBlockParam]
    tools: list[ToolParam]
    tool_choice: ToolChoice
    stream: bool | None
    temperature: float
    top_p: float
    top_k: int
    stop_sequences: list[str]
    thinking: ThinkingConfig
    output_config: OutputConfig
    metadata: dict[str, Any]


# -- Anthropic answer: content, usage, stream events --------------------------------------


class Usage(TypedDict):
    input_tokens: int
    cache_creation_input_tokens: int
    cache_read_input_tokens: int
    output_tokens: int


class TextBlock(TypedDict):
    type: Literal["text"]
    text: str


class ThinkingBlock(TypedDict):
    type: Literal["thinking"]
    thinking: str
    signature: str


class ToolUseBlock(TypedDict):
    type: Literal["tool_use"]
    id: str
    name: str
    input: dict[str, Any]


ContentBlock = TextBlock | ThinkingBlock | ToolUseBlock


class Message(TypedDict):
    id: str
    type: Literal["message"]
    role: Literal["assistant"]
    model: str
    content: list[ContentBlock]
    stop_reason: str | None
    stop_sequence: str | None
    usage: Usage


class TextDelta(TypedDict):
    type: Literal["text_delta"]
    text: str


class ThinkingDelta(TypedDict):
    type: Literal["thinking_delta"]
    thinking: str


class SignatureDelta(TypedDict):
    type: Literal["signature_delta"]
    signature: str


class InputJSONDelta(TypedDict):
    type: Literal["input_json_delta"]
    partial_json: str


BlockDelta = TextDelta | ThinkingDelta | SignatureDelta | InputJSONDelta


class MessageStartEvent(TypedDict):
    type: Literal["message_start"]
    message: Message


class PingEvent(TypedDict):
    type: Literal["ping"]


class ContentBlockStartEvent(TypedDict):
    type: Literal["content_block_start"]
    index: int
    content_block: ContentBlock


class ContentBlockDeltaEvent(TypedDict):
    type: Literal["content_block_delta"]
    index: int
    delta: BlockDelta


class ContentBlockStopEvent(TypedDict):
    type: Literal["content_block_stop"]
    index: int


class StopInfo(TypedDict):
    stop_reason: str
    stop_sequence: str | None


class MessageDeltaEvent(TypedDict):
    type: Literal["message_delta"]
    delta: StopInfo
    usage: Usage


class MessageStopEvent(TypedDict):
    type: Literal["message_stop"]


class ErrorDetail(TypedDict):
    type: str
    message: str


class ErrorEvent(TypedDict):
    """Also the body of an error response (`request_id` is added there)."""

    type: Literal["error"]
    error: ErrorDetail
    request_id: NotRequired[str]


StreamEvent = (MessageStartEvent | PingEvent | ContentBlockStartEvent | ContentBlockDeltaEvent
               | ContentBlockStopEvent | MessageDeltaEvent | MessageStopEvent | ErrorEvent)


class ModelInfo(TypedDict, total=False):
    type: Required[Literal["model"]]
    id: Required[str]
    display_name: Required[str]
    created_at: Required[str]
    description: str
    """Shown under the name in Claude Code's /model picker (2.1.332; 2.1.197 ignores it)."""
    max_input_tokens: int
    max_tokens: int


class ModelPage(TypedDict):
    data: list[ModelInfo]
    has_more: bool
    first_id: str
    last_id: str


class TokenCount(TypedDict):
    input_tokens: int


# -- OpenAI Chat Completions request ------------------------------------------------------


class ImageURL(TypedDict):
    url: str


class ContentPart(TypedDict, total=False):
    """`{"type": "text", "text": ...}` or `{"type": "image_url", "image_url": {...}}`."""

    type: Required[Literal["text", "image_url"]]
    text: str
    image_url: ImageURL


class FunctionCall(TypedDict):
    name: str
    arguments: str


class ToolCall(TypedDict):
    id: str
    type: Literal["function"]
    function: FunctionCall


class ChatMessage(TypedDict, total=False):
    role: Required[Literal["system", "user", "assistant", "tool"]]
    content: str | list[ContentPart] | None
    tool_calls: list[ToolCall]
    tool_call_id: str


class FunctionDef(TypedDict, total=False):
    name: Required[str]
    description: str
    parameters: dict[str, Any]


class ChatTool(TypedDict):
    type: Literal["function"]
    function: FunctionDef


class ChatRequest(TypedDict, total=False):
    """The upstream body. The output cap's key is the dialect's (`max_tokens` or
    `max_completion_tokens`) and `Dialect.extra_body` may add keys, so those are set
    through `set_field`."""

    model: str
    messages: Required[list[ChatMessage]]
    max_tokens: int
    max_completion_tokens: int
    temperature: float
    top_p: float
    top_k: int
    stop: list[str]
    tools: list[ChatTool]
    tool_choice: str | dict[str, Any]
    parallel_tool_calls: bool
    chat_template_kwargs: dict[str, Any]
    response_format: dict[str, Any]
    reasoning_effort: str
    stream: Required[bool]
    stream_options: dict[str, bool]


def set_field(body: ChatRequest, key: str, value: object) -> None:
    """Set a key chosen at run time (a dialect's parameter name) on the upstream body."""
    body[key] = value  # type: ignore[literal-required]


# -- OpenAI Chat Completions answer -------------------------------------------------------


class ChunkDelta(TypedDict, total=False):
    role: str
    content: str | None
    reasoning: str
    reasoning_content: str
    tool_calls: list[dict[str, Any]]


class ChunkChoice(TypedDict):
    index: int
    delta: ChunkDelta
    finish_reason: str | None


class ChatChunk(TypedDict, total=False):
    """A `chat.completion.chunk` (or a non-streaming answer recast as one)."""

    choices: Required[list[ChunkChoice]]
    usage: dict[str, Any] | None
