"""Tiny mlx-lm model folders, built offline in seconds, for end-to-end tests.

Tests cannot download models here, yet the proxy must be exercised against the real
mlx-lm server. Both kinds share one byte-level BPE tokenizer (trained on stdlib sources)
and a Qwen/Hermes-style chat template, so mlx-lm infers its ``json_tools`` parser and
answers with native OpenAI ``tool_calls``:

* ``scripted``: a one-layer llama with hand-set weights. At temperature 0 it emits a fixed
  ``<tool_call>`` when the prompt offers tools and holds no tool result yet, and a fixed
  sentence otherwise, so a whole tool round trip is deterministic.
* ``random``: seeded random weights of a chosen size, for prompt-cache benchmarks.

Builds are deterministic and cached: a stamp file holds a hash of the parameters (and of
the tokenizer corpus) and a folder with a matching stamp is not rebuilt.

Script use::

    python -m tests.support.tiny_model scripted OUTDIR [--verify]
    python -m tests.support.tiny_model random OUTDIR --layers 4 --hidden 256
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import inspect
import json
import math
import os
import re
import sys
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]

# Bump when the on-disk output changes for the same parameters, to invalidate caches.
FORMAT_VERSION = 3
STAMP_FILE = ".tiny_model_stamp.json"
MODEL_FILES = (
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
)

ENDOFTEXT = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
SPECIAL_TOKENS = (ENDOFTEXT, IM_START, IM_END)
TOOL_CALL_START = "<tool_call>"
TOOL_CALL_END = "</tool_call>"
TOOLS_MARKER = "<tools>"
TOOL_RESPONSE_MARKER = "<tool_response>"
# Ordinary (non-special) added tokens, as in Qwen tokenizers: decoding keeps them.
STRUCTURAL_TOKENS = (
    TOOL_CALL_START,
    TOOL_CALL_END,
    TOOL_RESPONSE_MARKER,
    "</tool_response>",
    TOOLS_MARKER,
    "</tools>",
)
BPE_VOCAB_SIZE = 3000

DEFAULT_TOOL_NAME = "Bash"
DEFAULT_TOOL_ARGUMENTS: Mapping[str, Any] = {
    "command": "echo anyclaude-e2e > anyclaude-e2e.txt",
    "description": "Create the e2e marker file",
}
DEFAULT_SENTENCE = "Hello from the anyclaude tiny model."

# Stdlib modules whose sources train the tokenizer: present in every CPython 3.11+.
_CORPUS_MODULES = (
    "argparse",
    "configparser",
    "csv",
    "difflib",
    "json.decoder",
    "json.encoder",
    "logging",
    "pprint",
    "shlex",
    "string",
    "subprocess",
    "textwrap",
    "unittest.case",
)
# Prose and JSON so that chat text and tool schemas get sensible merges too.
_CORPUS_EXTRA = """
You are a helpful assistant. The user asks a question and the assistant answers it.
Use the tools when they help: read a file, edit a file, run a command, search the web.
Here is the result of the command. The file was created and the tests pass.
{"type": "object", "properties": {"command": {"type": "string", "description": "The command to run"}},
 "required": ["command"], "additionalProperties": false}
{"name": "Read", "arguments": {"file_path": "/tmp/example.txt", "limit": 100, "offset": 0}}
system user assistant tool function tools description parameters arguments name content
"""

CHAT_TEMPLATE = """\
{%- macro render_content(content) -%}
{%- if content is none -%}
{%- elif content is string -%}{{ content }}
{%- elif content is mapping -%}{{ content.text if content.text is defined else '' }}
{%- elif content is iterable -%}
{%- for part in content -%}
{%- if part is string -%}{{ part }}
{%- elif part is mapping and part.text is defined and part.text is not none -%}{{ part.text }}
{%- endif -%}
{%- endfor -%}
{%- else -%}{{ content }}
{%- endif -%}
{%- endmacro -%}
{%- if messages and messages[0].role == 'system' -%}
{%- set system_text = render_content(messages[0].content) -%}
{%- set rest = messages[1:] -%}
{%- else -%}
{%- set system_text = 'You are a helpful assistant.' -%}
{%- set rest = messages -%}
{%- endif -%}
{{- '<|im_start|>system\\n' + system_text -}}
{%- if tools -%}
{{- '\\n\\n# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\n' -}}
{{- 'You are provided with function signatures within XML tags:\\n<tools>' -}}
{%- for tool in tools -%}
{{- '\\n' + (tool | tojson) -}}
{%- endfor -%}
{{- '\\n</tools>\\n\\nFor each function call, return a json object with function name and ' -}}
{{- 'arguments within XML tags:\\n<tool_call>\\n{"name": <function-name>, ' -}}
{{- '"arguments": <args-json-object>}\\n</tool_call>' -}}
{%- endif -%}
{{- '<|im_end|>\\n' -}}
{%- for message in rest -%}
{%- if message.role == 'tool' -%}
{%- if loop.first or loop.previtem.role != 'tool' -%}{{- '<|im_start|>user' -}}{%- endif -%}
{{- '\\n<tool_response>\\n' + render_content(message.content) + '\\n</tool_response>' -}}
{%- if loop.last or loop.nextitem.role != 'tool' -%}{{- '<|im_end|>\\n' -}}{%- endif -%}
{%- elif message.role == 'assistant' -%}
{{- '<|im_start|>assistant' -}}
{%- set text = render_content(message.content) -%}
{%- if text -%}{{- '\\n' + text -}}{%- endif -%}
{%- if message.tool_calls -%}
{%- for tool_call in message.tool_calls -%}
{%- if tool_call.function is defined -%}{%- set tool_call = tool_call.function -%}{%- endif -%}
{{- '\\n<tool_call>\\n{"name": "' + tool_call.name + '", "arguments": ' -}}
{%- if tool_call.arguments is string -%}{{- tool_call.arguments -}}
{%- else -%}{{- tool_call.arguments | tojson -}}
{%- endif -%}
{{- '}\\n</tool_call>' -}}
{%- endfor -%}
{%- endif -%}
{{- '<|im_end|>\\n' -}}
{%- else -%}
{{- '<|im_start|>' + message.role + '\\n' + render_content(message.content) + '<|im_end|>\\n' -}}
{%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}
"""


# --------------------------------------------------------------------------- tokenizer


def _corpus() -> list[str]:
    """Training texts for the tokenizer, in a fixed order (deterministic merges)."""
    texts = [_CORPUS_EXTRA]
    for name in _CORPUS_MODULES:
        source = inspect.getsourcefile(importlib.import_module(name))
        if source is None:  # pragma: no cover - frozen stdlib
            continue
        texts.append(Path(source).read_text(encoding="utf-8"))
    return texts


def _corpus_digest(texts: Sequence[str]) -> str:
    digest = hashlib.sha256()
    for text in texts:
        digest.update(text.encode("utf-8"))
        digest.update(b"\0")
    return digest.hexdigest()


def _train_tokenizer(texts: Sequence[str], extra_tokens: Sequence[str] = ()) -> Any:
    """Byte-level BPE (any input tokenizes) plus the chat and tool-call markers."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=BPE_VOCAB_SIZE,
        min_frequency=2,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=list(SPECIAL_TOKENS),
        show_progress=False,
    )
    tokenizer.train_from_iterator(list(texts), trainer)
    tokenizer.add_tokens(
        [AddedToken(t, normalized=False, special=False) for t in STRUCTURAL_TOKENS]
    )
    if extra_tokens:
        tokenizer.add_tokens([AddedToken(t, normalized=False, special=False) for t in extra_tokens])
    return tokenizer


def _tokenizer_files(tokenizer: Any) -> dict[str, bytes]:
    """tokenizer.json plus the transformers config files, as bytes to write."""
    added: dict[str, dict[str, Any]] = {}
    for token_id, token in sorted(tokenizer.get_added_tokens_decoder().items()):
        added[str(token_id)] = {
            "content": token.content,
            "lstrip": False,
            "normalized": False,
            "rstrip": False,
            "single_word": False,
            "special": bool(token.special),
        }
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "added_tokens_decoder": added,
        "bos_token": None,
        "eos_token": IM_END,
        "pad_token": ENDOFTEXT,
        "unk_token": None,
        "model_max_length": 131072,
        "clean_up_tokenization_spaces": False,
        "split_special_tokens": False,
        "errors": "replace",
        "chat_template": CHAT_TEMPLATE,
    }
    special_map = {"eos_token": IM_END, "pad_token": ENDOFTEXT}
    return {
        "tokenizer.json": tokenizer.to_str(pretty=True).encode("utf-8"),
        "tokenizer_config.json": _json_bytes(config),
        "special_tokens_map.json": _json_bytes(special_map),
    }


# --------------------------------------------------------------------------- helpers


def _json_bytes(value: Any) -> bytes:
    return (json.dumps(value, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def _params_digest(kind: str, params: Mapping[str, Any], corpus_digest: str) -> str:
    blob = json.dumps(
        {"kind": kind, "params": params, "corpus": corpus_digest, "format": FORMAT_VERSION},
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def _is_complete(out_dir: Path, digest: str) -> bool:
    stamp = out_dir / STAMP_FILE
    try:
        data = json.loads(stamp.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return data.get("digest") == digest and all((out_dir / f).is_file() for f in MODEL_FILES)


def _write_atomic(path: Path, data: bytes) -> None:
    """Write then rename, so concurrent builders of the same model never see half a file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _write_model(
    out_dir: Path,
    kind: str,
    params: Mapping[str, Any],
    digest: str,
    config: Mapping[str, Any],
    weights: Mapping[str, FloatArray],
    tokenizer: Any,
) -> None:
    from safetensors.numpy import save

    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / STAMP_FILE).unlink(missing_ok=True)
    files = _tokenizer_files(tokenizer)
    files["config.json"] = _json_bytes(dict(config))
    files["generation_config.json"] = _json_bytes({"eos_token_id": config["eos_token_id"]})
    tensors = {name: np.ascontiguousarray(w, dtype=np.float32) for name, w in weights.items()}
    files["model.safetensors"] = save(tensors, metadata={"format": "mlx"})
    for name in MODEL_FILES:
        _write_atomic(out_dir / name, files[name])
    stamp = {"kind": kind, "params": params, "digest": digest, "format": FORMAT_VERSION}
    _write_atomic(out_dir / STAMP_FILE, _json_bytes(stamp))


def _llama_config(
    *,
    vocab_size: int,
    hidden: int,
    layers: int,
    heads: int,
    kv_heads: int,
    head_dim: int,
    intermediate: int,
    rope_theta: float,
    tie: bool,
    eos_ids: Sequence[int],
) -> dict[str, Any]:
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": hidden,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "head_dim": head_dim,
        "intermediate_size": intermediate,
        "rms_norm_eps": 1e-6,
        "rope_theta": rope_theta,
        "max_position_embeddings": 131072,
        "vocab_size": vocab_size,
        "tie_word_embeddings": tie,
        "bos_token_id": None,
        "eos_token_id": list(eos_ids),
        "torch_dtype": "float32",
    }


def default_models_dir() -> Path:
    """Cache folder for built models: $ANYCLAUDE_TINY_MODELS_DIR, else `tiny-models` in the
    test cache outside the checkout (see `tests.support.claude_code.test_cache`)."""
    env = os.environ.get("ANYCLAUDE_TINY_MODELS_DIR")
    if env:
        return Path(env)
    from tests.support.claude_code import test_cache

    return test_cache() / "tiny-models"


def count_parameters(model_dir: str | Path) -> int:
    """Number of weights in a built model (reads the safetensors header only)."""
    path = Path(model_dir) / "model.safetensors"
    with path.open("rb") as fh:
        size = int.from_bytes(fh.read(8), "little")
        header = json.loads(fh.read(size))
    return sum(math.prod(v["shape"]) for k, v in header.items() if k != "__metadata__")


# --------------------------------------------------------------------------- scripted


def scripted_tool_call_text(
    tool_name: str = DEFAULT_TOOL_NAME, tool_arguments: Mapping[str, Any] | None = None
) -> str:
    """The exact text the scripted model emits when it calls its tool."""
    arguments = dict(DEFAULT_TOOL_ARGUMENTS if tool_arguments is None else tool_arguments)
    body = json.dumps({"name": tool_name, "arguments": arguments})
    return f"{TOOL_CALL_START}\n{body}\n{TOOL_CALL_END}"


def _split_words(text: str) -> list[str]:
    """Word pieces with their leading whitespace; they concatenate back to ``text``."""
    pieces = re.findall(r"\s*\S+", text)
    tail = text[len("".join(pieces)) :]
    if tail:
        if pieces:
            pieces[-1] += tail
        else:
            pieces = [tail]
    return pieces


def _unique_chunks(text: str, taken: Iterable[str]) -> list[str]:
    """Split into word tokens, merging repeats: the output chain needs distinct tokens."""
    chunks = _split_words(text)
    while True:
        seen = set(taken)
        duplicate = -1
        for i, chunk in enumerate(chunks):
            if chunk in seen:
                duplicate = i
                break
            seen.add(chunk)
        if duplicate < 0:
            return chunks
        if len(chunks) == 1:
            raise ValueError(f"cannot make a unique output token from {text!r}")
        j = max(duplicate - 1, 0)
        chunks[j : j + 2] = [chunks[j] + chunks[j + 1]]


def _check_output_text(label: str, text: str) -> None:
    if not text.strip():
        raise ValueError(f"{label} must not be empty")
    if not text.isascii():
        # mlx-lm's byte-level detokenizer would re-map non-ASCII added-token text.
        raise ValueError(f"{label} must be ASCII (JSON arguments are escaped)")
    for marker in (*SPECIAL_TOKENS, *STRUCTURAL_TOKENS):
        if marker in text:
            raise ValueError(f"{label} must not contain {marker!r}")


# Feature dimensions of the scripted model's residual stream.
_BIAS, _TOOLS_KEY, _RESPONSE_KEY, _TOOLS_FLAG, _RESPONSE_FLAG = range(5)
_FIRST_CHAIN_DIM = 5
_HEADS = 2  # head 0 looks for <tools>, head 1 for <tool_response>
_HEAD_DIM = 16
_ROPE_THETA = 1e10
# Attention score on a marker seen from an ordinary token (from chain or marker tokens: /√2).
_MARKER_SCORE = 100.0
# lm_head weights. Flags are bounded in [0, 1], so after RMSNorm the margins stay large
# (>= ~40 logits) and even temperature-1 sampling follows the script.
_CHAIN_LOGIT = 100.0
_SWITCH_LOGIT = 20.0
_SENTENCE_LOGIT = 2.0
_OTHER_LOGIT = -20.0


def _scripted_weights(
    vocab_size: int,
    hidden: int,
    tools_id: int,
    response_id: int,
    switch_id: int,
    chains: Sequence[Sequence[int]],
    eos_id: int,
) -> dict[str, FloatArray]:
    """Hand-set one-layer llama; see build_scripted_model for the mechanism."""
    d, hd = hidden, _HEAD_DIM
    embed = np.zeros((vocab_size, d), np.float32)
    embed[:, _BIAS] = 1.0
    embed[tools_id, _TOOLS_KEY] = 1.0
    embed[response_id, _RESPONSE_KEY] = 1.0

    lm_head = np.zeros((vocab_size, d), np.float32)
    lm_head[:, _BIAS] = _OTHER_LOGIT
    # First token: <tool_call> if tools are offered and no result is there, else the sentence.
    lm_head[switch_id, _BIAS] = -_SWITCH_LOGIT / 2
    lm_head[switch_id, _TOOLS_FLAG] = _SWITCH_LOGIT
    lm_head[switch_id, _RESPONSE_FLAG] = -_SWITCH_LOGIT
    sentence_first = chains[-1][0]
    lm_head[sentence_first, _BIAS] = _SENTENCE_LOGIT

    dim = _FIRST_CHAIN_DIM
    for chain in chains:
        for token, following in zip(chain, [*chain[1:], eos_id], strict=True):
            embed[token, dim] = 1.0
            lm_head[following, dim] = _CHAIN_LOGIT
            dim += 1
    assert dim <= d

    # RMSNorm scales a token with n unit features to sqrt(d/n) each (ordinary tokens n=1,
    # markers n=2): the weights undo it, so scores are exactly _MARKER_SCORE and values 1.
    q = np.zeros((_HEADS * hd, d), np.float32)
    k = np.zeros((_HEADS * hd, d), np.float32)
    v = np.zeros((_HEADS * hd, d), np.float32)
    o = np.zeros((d, _HEADS * hd), np.float32)
    # Lowest-frequency rotary pair (i, i + hd/2) with i = hd/2 - 1: with a huge rope_theta
    # its rotation stays ~0 over 131k positions, so scores do not depend on distance.
    slot = hd // 2 - 1
    root = math.sqrt(_MARKER_SCORE) * hd**0.25  # q·k·hd^-0.5 == _MARKER_SCORE
    for head, (key_dim, flag_dim) in enumerate(
        ((_TOOLS_KEY, _TOOLS_FLAG), (_RESPONSE_KEY, _RESPONSE_FLAG))
    ):
        base = head * hd
        q[base + slot, _BIAS] = root / math.sqrt(d)
        k[base + slot, key_dim] = root / math.sqrt(d / 2)
        v[base, key_dim] = 1.0 / math.sqrt(d / 2)
        o[flag_dim, base] = 1.0

    inter = 16
    prefix = "model.layers.0."
    return {
        "model.embed_tokens.weight": embed,
        prefix + "input_layernorm.weight": np.ones(d, np.float32),
        prefix + "post_attention_layernorm.weight": np.ones(d, np.float32),
        prefix + "self_attn.q_proj.weight": q,
        prefix + "self_attn.k_proj.weight": k,
        prefix + "self_attn.v_proj.weight": v,
        prefix + "self_attn.o_proj.weight": o,
        prefix + "mlp.gate_proj.weight": np.zeros((inter, d), np.float32),
        prefix + "mlp.up_proj.weight": np.zeros((inter, d), np.float32),
        prefix + "mlp.down_proj.weight": np.zeros((d, inter), np.float32),
        "model.norm.weight": np.ones(d, np.float32),
        "lm_head.weight": lm_head,
    }


def build_scripted_model(
    out_dir: str | Path,
    *,
    tool_name: str = DEFAULT_TOOL_NAME,
    tool_arguments: Mapping[str, Any] | None = None,
    sentence: str = DEFAULT_SENTENCE,
    force: bool = False,
) -> Path:
    """Build (or reuse) the deterministic scripted model in ``out_dir``; return its path.

    Output (greedy, and in practice at temperature 1 too):
    ``scripted_tool_call_text(tool_name, tool_arguments)`` then EOS when the prompt holds
    a ``<tools>`` token and no ``<tool_response>`` token; ``sentence`` then EOS otherwise.
    How:

    * every output piece is a dedicated added token, each used once, so generation is a
      chain: the token's one-hot embedding feature makes lm_head pick its successor;
    * two attention heads look, with scores of ~100 against 0 for every other token, for
      ``<tools>`` and for ``<tool_response>``; each writes a flag in [0, 1] (1 if its
      marker occurs anywhere before). At an ordinary token (the prompt's last ``\\n``)
      lm_head scores ``<tool_call>`` as tools - result - 1/2 against a constant feature
      that favours the sentence's first token;
    * RoPE is neutralised by using only the lowest-frequency pair with rope_theta 1e10,
      the MLP is zero, and RMSNorm only rescales, which keeps every argmax.
    """
    out = Path(out_dir)
    arguments = dict(DEFAULT_TOOL_ARGUMENTS if tool_arguments is None else tool_arguments)
    call_text = scripted_tool_call_text(tool_name, arguments)
    body = call_text[len(TOOL_CALL_START) : -len(TOOL_CALL_END)]
    _check_output_text("tool call", body)
    _check_output_text("sentence", sentence)

    params = {"tool_name": tool_name, "tool_arguments": arguments, "sentence": sentence}
    texts = _corpus()
    digest = _params_digest("scripted", params, _corpus_digest(texts))
    if not force and _is_complete(out, digest):
        return out

    taken = {*SPECIAL_TOKENS, *STRUCTURAL_TOKENS}
    sentence_chunks = _unique_chunks(sentence, taken)
    taken.update(sentence_chunks)
    body_chunks = _unique_chunks(body, taken)
    tokenizer = _train_tokenizer(texts, [*sentence_chunks, *body_chunks])

    def tid(token: str) -> int:
        token_id = tokenizer.token_to_id(token)
        if token_id is None:
            raise RuntimeError(f"token {token!r} missing from the tokenizer")
        return int(token_id)

    tool_chain = [tid(TOOL_CALL_START), *map(tid, body_chunks), tid(TOOL_CALL_END)]
    sentence_chain = [tid(c) for c in sentence_chunks]
    if len({*tool_chain, *sentence_chain}) != len(tool_chain) + len(sentence_chain):
        raise RuntimeError("output tokens are not distinct")

    vocab_size = int(tokenizer.get_vocab_size(with_added_tokens=True))
    needed = _FIRST_CHAIN_DIM + len(tool_chain) + len(sentence_chain)
    hidden = max(64, -(-needed // 16) * 16)
    eos_ids = [tid(IM_END), tid(ENDOFTEXT)]
    weights = _scripted_weights(
        vocab_size,
        hidden,
        tools_id=tid(TOOLS_MARKER),
        response_id=tid(TOOL_RESPONSE_MARKER),
        switch_id=tool_chain[0],
        chains=[tool_chain, sentence_chain],
        eos_id=eos_ids[0],
    )
    config = _llama_config(
        vocab_size=vocab_size,
        hidden=hidden,
        layers=1,
        heads=_HEADS,
        kv_heads=_HEADS,
        head_dim=_HEAD_DIM,
        intermediate=16,
        rope_theta=_ROPE_THETA,
        tie=False,
        eos_ids=eos_ids,
    )
    _write_model(out, "scripted", params, digest, config, weights, tokenizer)
    return out


# --------------------------------------------------------------------------- random


def build_random_model(
    out_dir: str | Path,
    *,
    layers: int = 4,
    hidden: int = 256,
    heads: int = 4,
    kv_heads: int | None = None,
    intermediate: int | None = None,
    seed: int = 0,
    force: bool = False,
) -> Path:
    """Build (or reuse) a seeded random-weight llama with the shared tokenizer.

    Its output is garbage; it exists to measure prefill and the server's prompt cache.
    The defaults give ~4.9M float32 parameters.
    """
    if hidden % heads:
        raise ValueError("hidden must be a multiple of heads")
    kv = heads if kv_heads is None else kv_heads
    if heads % kv:
        raise ValueError("heads must be a multiple of kv_heads")
    inter = intermediate if intermediate is not None else -(-hidden * 11 // 4 // 64) * 64
    out = Path(out_dir)
    params = {
        "layers": layers,
        "hidden": hidden,
        "heads": heads,
        "kv_heads": kv,
        "intermediate": inter,
        "seed": seed,
    }
    texts = _corpus()
    digest = _params_digest("random", params, _corpus_digest(texts))
    if not force and _is_complete(out, digest):
        return out

    tokenizer = _train_tokenizer(texts)
    vocab_size = int(tokenizer.get_vocab_size(with_added_tokens=True))
    head_dim = hidden // heads
    rng = np.random.default_rng(seed)

    def normal(*shape: int) -> FloatArray:
        return (rng.standard_normal(shape, dtype=np.float32) * 0.02).astype(np.float32)

    weights: dict[str, FloatArray] = {"model.embed_tokens.weight": normal(vocab_size, hidden)}
    for i in range(layers):
        p = f"model.layers.{i}."
        weights[p + "input_layernorm.weight"] = np.ones(hidden, np.float32)
        weights[p + "post_attention_layernorm.weight"] = np.ones(hidden, np.float32)
        weights[p + "self_attn.q_proj.weight"] = normal(heads * head_dim, hidden)
        weights[p + "self_attn.k_proj.weight"] = normal(kv * head_dim, hidden)
        weights[p + "self_attn.v_proj.weight"] = normal(kv * head_dim, hidden)
        weights[p + "self_attn.o_proj.weight"] = normal(hidden, heads * head_dim)
        weights[p + "mlp.gate_proj.weight"] = normal(inter, hidden)
        weights[p + "mlp.up_proj.weight"] = normal(inter, hidden)
        weights[p + "mlp.down_proj.weight"] = normal(hidden, inter)
    weights["model.norm.weight"] = np.ones(hidden, np.float32)
    weights["lm_head.weight"] = normal(vocab_size, hidden)

    config = _llama_config(
        vocab_size=vocab_size,
        hidden=hidden,
        layers=layers,
        heads=heads,
        kv_heads=kv,
        head_dim=head_dim,
        intermediate=inter,
        rope_theta=1e6,
        tie=False,
        eos_ids=[tokenizer.token_to_id(IM_END), tokenizer.token_to_id(ENDOFTEXT)],
    )
    _write_model(out, "random", params, digest, config, weights, tokenizer)
    return out


# --------------------------------------------------------------------------- verification


def generate_greedy(
    model_dir: str | Path,
    messages: Sequence[Mapping[str, Any]],
    tools: Sequence[Mapping[str, Any]] | None = None,
    max_tokens: int = 64,
) -> str:
    """Greedy completion in-process with mlx-lm (optional dependency), for checks."""
    from mlx_lm import generate, load

    loaded: Any = load(str(model_dir))
    model, tokenizer = loaded[0], loaded[1]
    prompt = tokenizer.apply_chat_template(
        [dict(m) for m in messages],
        tools=[dict(t) for t in tools] if tools else None,
        add_generation_prompt=True,
        tokenize=False,
    )
    return str(generate(model, tokenizer, prompt=prompt, max_tokens=max_tokens))


def verify_scripted_model(
    model_dir: str | Path,
    *,
    tool_name: str = DEFAULT_TOOL_NAME,
    tool_arguments: Mapping[str, Any] | None = None,
    sentence: str = DEFAULT_SENTENCE,
) -> None:
    """Raise AssertionError unless both branches produce the scripted text (needs mlx)."""
    tools: list[dict[str, Any]] = [
        {
            "type": "function",
            "function": {
                "name": tool_name,
                "description": "Run a command",
                "parameters": {"type": "object", "properties": {}},
            },
        }
    ]
    user: list[dict[str, Any]] = [{"role": "user", "content": "Please create the file."}]
    expected_call = scripted_tool_call_text(tool_name, tool_arguments)
    call = json.loads(expected_call[len(TOOL_CALL_START) : -len(TOOL_CALL_END)])
    after: list[dict[str, Any]] = [
        *user,
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"type": "function", "id": "1", "function": call}],
        },
        {"role": "tool", "content": "done", "tool_call_id": "1"},
    ]
    cases: list[tuple[list[dict[str, Any]], list[dict[str, Any]] | None, str]] = [
        (user, tools, expected_call),
        (user, None, sentence),
        (after, tools, sentence),
    ]
    for messages, case_tools, expected in cases:
        got = generate_greedy(model_dir, messages, case_tools)
        assert got == expected, f"expected {expected!r}, got {got!r}"


# --------------------------------------------------------------------------- CLI


def main(argv: Sequence[str] | None = None) -> int:
    """Build a model folder from the command line; print its path."""
    parser = argparse.ArgumentParser(prog="python -m tests.support.tiny_model")
    sub = parser.add_subparsers(dest="kind", required=True)
    scripted = sub.add_parser("scripted", help="deterministic tool-call / sentence model")
    scripted.add_argument("out_dir", type=Path)
    scripted.add_argument("--tool-name", default=DEFAULT_TOOL_NAME)
    scripted.add_argument("--tool-arguments", help="JSON object", default=None)
    scripted.add_argument("--sentence", default=DEFAULT_SENTENCE)
    scripted.add_argument("--verify", action="store_true", help="check the output with mlx")
    scripted.add_argument("--force", action="store_true", help="rebuild even if cached")
    rand = sub.add_parser("random", help="seeded random weights (prompt-cache benchmarks)")
    rand.add_argument("out_dir", type=Path)
    rand.add_argument("--layers", type=int, default=4)
    rand.add_argument("--hidden", type=int, default=256)
    rand.add_argument("--heads", type=int, default=4)
    rand.add_argument("--kv-heads", type=int, default=None)
    rand.add_argument("--intermediate", type=int, default=None)
    rand.add_argument("--seed", type=int, default=0)
    rand.add_argument("--force", action="store_true", help="rebuild even if cached")
    args = parser.parse_args(argv)

    if args.kind == "scripted":
        tool_arguments = json.loads(args.tool_arguments) if args.tool_arguments else None
        path = build_scripted_model(
            args.out_dir,
            tool_name=args.tool_name,
            tool_arguments=tool_arguments,
            sentence=args.sentence,
            force=args.force,
        )
        if args.verify:
            verify_scripted_model(
                path,
                tool_name=args.tool_name,
                tool_arguments=tool_arguments,
                sentence=args.sentence,
            )
    else:
        path = build_random_model(
            args.out_dir,
            layers=args.layers,
            hidden=args.hidden,
            heads=args.heads,
            kv_heads=args.kv_heads,
            intermediate=args.intermediate,
            seed=args.seed,
            force=args.force,
        )
    print(f"{path} ({count_parameters(path):,} parameters)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
