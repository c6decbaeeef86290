"""The scripted tiny model as a Qwen2 model with several layers, for sharded tests.

mlx-lm pipelines only some architectures (not Llama, which the scripted model is), and
pipelining needs at least one layer per rank and a `model.safetensors.index.json` (each
rank reads only the files of its own layers). This derives, from the cached scripted
llama, a Qwen2 model that answers exactly the same: the hand-set layer comes first, every
further layer is all zeros (attention and MLP add nothing, so the residual passes through),
the unused heads are zero, and the Qwen2 biases are zero. Tensor sharding works too.

Script use::

    python -m tests.support.tiny_sharded OUTDIR --layers 3
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tests.support import tiny_model as tm

HEAD_DIM = 16
"""The scripted model's head size; Qwen2 derives it as hidden / heads."""
KIND = "scripted-qwen2"
INDEX_FILE = "model.safetensors.index.json"


def _pad(weight: tm.FloatArray, rows: int, cols: int) -> tm.FloatArray:
    out = np.zeros((rows, cols), np.float32)
    out[: weight.shape[0], : weight.shape[1]] = weight
    return out


def _qwen2_weights(llama: Mapping[str, tm.FloatArray], hidden: int,
                   layers: int) -> dict[str, tm.FloatArray]:
    heads = hidden // HEAD_DIM
    width = heads * HEAD_DIM
    first = "model.layers.0."
    inter = llama[first + "mlp.gate_proj.weight"].shape[0]
    out = {name: w for name, w in llama.items() if not name.startswith("model.layers.")}
    for layer in range(layers):
        prefix = f"model.layers.{layer}."

        def take(name: str, rows: int, cols: int, layer: int = layer) -> tm.FloatArray:
            return _pad(llama[first + name], rows, cols) if layer == 0 \
                else np.zeros((rows, cols), np.float32)

        out[prefix + "input_layernorm.weight"] = np.ones(hidden, np.float32)
        out[prefix + "post_attention_layernorm.weight"] = np.ones(hidden, np.float32)
        for proj in ("q_proj", "k_proj", "v_proj"):
            out[prefix + f"self_attn.{proj}.weight"] = take(f"self_attn.{proj}.weight",
                                                            width, hidden)
            out[prefix + f"self_attn.{proj}.bias"] = np.zeros(width, np.float32)
        out[prefix + "self_attn.o_proj.weight"] = take("self_attn.o_proj.weight", hidden, width)
        out[prefix + "mlp.gate_proj.weight"] = np.zeros((inter, hidden), np.float32)
        out[prefix + "mlp.up_proj.weight"] = np.zeros((inter, hidden), np.float32)
        out[prefix + "mlp.down_proj.weight"] = np.zeros((hidden, inter), np.float32)
    return out


def _qwen2_config(llama: Mapping[str, Any], layers: int) -> dict[str, Any]:
    hidden = int(llama["hidden_size"])
    heads = hidden // HEAD_DIM
    return {
        "architectures": ["Qwen2ForCausalLM"],
        "model_type": "qwen2",
        "hidden_size": hidden,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": heads,
        "intermediate_size": llama["intermediate_size"],
        "rms_norm_eps": llama["rms_norm_eps"],
        "rope_theta": llama["rope_theta"],
        "max_position_embeddings": llama["max_position_embeddings"],
        "vocab_size": llama["vocab_size"],
        "tie_word_embeddings": False,
        "bos_token_id": None,
        "eos_token_id": llama["eos_token_id"],
        "torch_dtype": "float32",
    }


def build_scripted_qwen2(out_dir: str | Path, *, layers: int = 3,
                         source: Path | None = None) -> Path:
    """Build (or reuse) the scripted model as a `layers`-layer Qwen2 in `out_dir`."""
    from safetensors.numpy import load_file, save

    if layers < 1:
        raise ValueError("layers must be at least 1")
    llama_dir = tm.build_scripted_model(source or tm.default_models_dir() / "scripted")
    stamp = json.loads((llama_dir / tm.STAMP_FILE).read_text(encoding="utf-8"))
    params = {"layers": layers, "source": stamp["digest"]}
    digest = tm._params_digest(KIND, params, stamp["digest"])
    out = Path(out_dir)
    if tm._is_complete(out, digest) and (out / INDEX_FILE).is_file():
        return out
    llama_config = json.loads((llama_dir / "config.json").read_text(encoding="utf-8"))
    if int(llama_config["hidden_size"]) % HEAD_DIM:
        raise RuntimeError("the scripted model's hidden size is not a multiple of 16")
    config = _qwen2_config(llama_config, layers)
    weights = _qwen2_weights(load_file(str(llama_dir / "model.safetensors")),
                             int(config["hidden_size"]), layers)
    out.mkdir(parents=True, exist_ok=True)
    (out / tm.STAMP_FILE).unlink(missing_ok=True)
    for name in tm.MODEL_FILES:
        if name not in ("config.json", "model.safetensors"):
            tm._write_atomic(out / name, (llama_dir / name).read_bytes())
    tm._write_atomic(out / "config.json", tm._json_bytes(config))
    tm._write_atomic(out / "model.safetensors", save(weights, metadata={"format": "mlx"}))
    index = {"metadata": {}, "weight_map": {name: "model.safetensors" for name in weights}}
    tm._write_atomic(out / INDEX_FILE, tm._json_bytes(index))
    tm._write_atomic(out / tm.STAMP_FILE, tm._json_bytes(
        {"kind": KIND, "params": params, "digest": digest, "format": tm.FORMAT_VERSION}))
    return out


def build_random_qwen2(out_dir: str | Path, *, layers: int = 6, hidden: int = 384,
                       heads: int = 6, intermediate: int = 1056, seed: int = 0) -> Path:
    """Build (or reuse) a seeded random-weight Qwen2 (the random llama plus zero biases):
    it talks until `max_tokens`, and with 6 layers, 6 heads and 1056 MLP units it splits
    over 1, 2 or 3 ranks either way (for the cluster benchmark)."""
    from safetensors.numpy import load_file, save

    source = tm.build_random_model(Path(out_dir).with_name(Path(out_dir).name + "-llama"),
                                   layers=layers, hidden=hidden, heads=heads,
                                   intermediate=intermediate, seed=seed)
    stamp = json.loads((source / tm.STAMP_FILE).read_text(encoding="utf-8"))
    params = {"random": stamp["digest"]}
    digest = tm._params_digest("random-qwen2", params, stamp["digest"])
    out = Path(out_dir)
    if tm._is_complete(out, digest) and (out / INDEX_FILE).is_file():
        return out
    config = json.loads((source / "config.json").read_text(encoding="utf-8"))
    config.update({"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2"})
    weights = load_file(str(source / "model.safetensors"))
    for layer in range(layers):
        for proj in ("q_proj", "k_proj", "v_proj"):
            name = f"model.layers.{layer}.self_attn.{proj}"
            weights[name + ".bias"] = np.zeros(weights[name + ".weight"].shape[0], np.float32)
    out.mkdir(parents=True, exist_ok=True)
    (out / tm.STAMP_FILE).unlink(missing_ok=True)
    for name in tm.MODEL_FILES:
        if name not in ("config.json", "model.safetensors"):
            tm._write_atomic(out / name, (source / name).read_bytes())
    tm._write_atomic(out / "config.json", tm._json_bytes(config))
    tm._write_atomic(out / "model.safetensors", save(weights, metadata={"format": "mlx"}))
    index = {"metadata": {}, "weight_map": {name: "model.safetensors" for name in weights}}
    tm._write_atomic(out / INDEX_FILE, tm._json_bytes(index))
    tm._write_atomic(out / tm.STAMP_FILE, tm._json_bytes(
        {"kind": "random-qwen2", "params": params, "digest": digest,
         "format": tm.FORMAT_VERSION}))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.support.tiny_sharded")
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--verify", action="store_true", help="check the output with mlx")
    args = parser.parse_args(argv)
    path = build_scripted_qwen2(args.out_dir, layers=args.layers)
    if args.verify:
        tm.verify_scripted_model(path)
    print(f"{path} ({tm.count_parameters(path):,} parameters)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
