"""A scripted OpenAI-compatible backend: a test double for servers we cannot run here.

Why: mlx-textgen only runs on macOS, LM Studio is a desktop app, vLLM and llama.cpp need
weights, and even the real mlx-lm cannot be made to cut a stream, hang, or send broken SSE on
demand. This server speaks each dialect byte for byte as captured in `tests/fixtures/`
(mlx-lm 0.32.2, mlx-textgen 0.2.1) or as documented (protocol-notes §G for LM Studio, vLLM,
llama.cpp), and plays back scripted model output.

Every byte is ours (no HTTP framework): HTTP/1.0 with a close after each response (mlx-lm),
chunked HTTP/1.1 with keep-alive (the others), a `data: [DONE]` without the blank line
(mlx-textgen), cut connections and hangs.

    with ScriptedBackend("mlx-lm") as be:          # a thread, a port: be.url
        be.reply(Reply(text="Hi", tool_calls=[("Read", '{"file_path": "/x"}')]))
        req = be.wait_for_request(1)

    async with ScriptedBackend("mlx-lm") as be:    # this loop, no port: be.connector()
        ...
        req = await be.until_request(1)

The modules: `data` (what tests script and what is recorded), `wire` (HTTP framing),
`dialect` (the one renderer, shaped by each dialect's data), one module per dialect with its
request checks and error helpers, `faults` (writing a reply, broken on purpose), `record`,
`server`.
"""

from tests.support.scripted.data import (
    DEFAULT_PIECES,
    DIALECTS,
    FAULTS,
    ConnectionRecord,
    Dialect,
    Fault,
    Reply,
    Request,
    Usage,
    error_reply,
    html_error,
)
from tests.support.scripted.llamacpp import llamacpp_context_overflow
from tests.support.scripted.lmstudio import (
    lmstudio_model_not_found,
    lmstudio_no_models_loaded,
    lmstudio_prompt_too_long,
)
from tests.support.scripted.mlx_lm import mlx_lm_error
from tests.support.scripted.mlx_textgen import textgen_detail, textgen_error
from tests.support.scripted.server import ScriptedBackend
from tests.support.scripted.vllm import vllm_context_overflow

__all__ = [
    "DEFAULT_PIECES",
    "DIALECTS",
    "FAULTS",
    "ConnectionRecord",
    "Dialect",
    "Fault",
    "Reply",
    "Request",
    "ScriptedBackend",
    "Usage",
    "error_reply",
    "html_error",
    "llamacpp_context_overflow",
    "lmstudio_model_not_found",
    "lmstudio_no_models_loaded",
    "lmstudio_prompt_too_long",
    "mlx_lm_error",
    "textgen_detail",
    "textgen_error",
    "vllm_context_overflow",
]
