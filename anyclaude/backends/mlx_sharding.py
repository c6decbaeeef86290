"""Which ways the installed mlx-lm can shard a model: tensor parallel, pipeline, both, none.

mlx-lm decides at load time: tensor parallel when the model class has a `shard` method,
pipeline when its inner model has `pipeline` (the `PipelineMixin`); asked for the other,
a rank's generation thread dies while `/health` keeps answering. Which architectures
have which changes with every mlx-lm release, so nothing here lists them: the answer is
read from the installed mlx-lm's own source (the model module for the config's
`model_type`, after mlx-lm's remapping tables), without importing it, which would take
seconds and load MLX.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from anyclaude import hub

FIND_PACKAGE = "import importlib.util as u; s = u.find_spec('mlx_lm'); " \
    "print(s.submodule_search_locations[0] if s else '')"
LOOKUP_S = 10.0
MAX_DEPTH = 6
"""How far base classes are followed across modules (mlx-lm's go two or three deep)."""
MODES = ("tensor", "pipeline")


@dataclass(frozen=True)
class Support:
    """What the installed mlx-lm can do with one model."""

    model_type: str
    """As mlx-lm loads it (after remapping: `mistral` is loaded as `llama`)."""
    tensor: bool
    pipeline: bool
    layers: int | None
    """`num_hidden_layers`: pipelining needs at least one layer per rank."""
    indexed: bool
    """The model has `model.safetensors.index.json`, which mlx-lm's pipelining reads."""
    heads: tuple[int, ...] = ()
    """Attention and key-value head counts: tensor parallelism splits them over the ranks."""

    def supports(self, mode: str) -> bool:
        return self.tensor if mode == "tensor" else self.pipeline

    @property
    def modes(self) -> tuple[str, ...]:
        return tuple(mode for mode in MODES if self.supports(mode))


@functools.lru_cache(maxsize=8)
def package_dir(python: str) -> Path | None:
    """Where `python` finds mlx_lm, without importing it (None when it has none)."""
    if python == sys.executable:
        spec = importlib.util.find_spec("mlx_lm")
        found = spec.submodule_search_locations[0] if spec and \
            spec.submodule_search_locations else ""
    else:
        try:
            found = subprocess.run([python, "-c", FIND_PACKAGE], capture_output=True,
                                   text=True, timeout=LOOKUP_S).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            found = ""
    return Path(found) if found else None


def _parse(path: Path) -> ast.Module | None:
    try:
        return ast.parse(path.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, ValueError):
        return None


def _remapping(package: Path, name: str) -> dict[object, str]:
    """A literal table assigned at the top of mlx_lm/utils.py (`MODEL_REMAPPING`)."""
    tree = _parse(package / "utils.py")
    for node in tree.body if tree else []:
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == name for t in node.targets):
            try:
                table = ast.literal_eval(node.value)
            except ValueError:
                return {}
            return table if isinstance(table, dict) else {}
    return {}


def loaded_type(package: Path, config: dict[str, object]) -> str:
    """The module mlx-lm loads a config with, as its `_get_classes` picks it."""
    model_type = str(config.get("model_type", ""))
    architectures = config.get("architectures") or ()
    if isinstance(architectures, str):
        architectures = (architectures,)
    by_architecture = _remapping(package, "MODEL_ARCHITECTURE_REMAPPING")
    for architecture in architectures if isinstance(architectures, list | tuple) else ():
        remapped = by_architecture.get((model_type, architecture))
        if remapped is not None:
            return remapped
    return _remapping(package, "MODEL_REMAPPING").get(model_type, model_type)


class _Models:
    """mlx_lm/models/*.py read as syntax trees: classes, what they import, their bases."""

    def __init__(self, package: Path) -> None:
        self.folder = package / "models"
        self.trees: dict[str, ast.Module | None] = {}

    def tree(self, module: str) -> ast.Module | None:
        if module not in self.trees:
            self.trees[module] = _parse(self.folder / f"{module}.py")
        return self.trees[module]

    def find(self, module: str, name: str, depth: int = 0) -> tuple[str, ast.ClassDef] | None:
        """The class `name` as seen from `module`: defined there, or imported from a sibling
        (`from .qwen3_5 import Model as Base`, or `qwen3_5.Model` after `from . import`)."""
        tree = self.tree(module)
        if tree is None or depth > MAX_DEPTH:
            return None
        owner, _, name = name.rpartition(".")
        if owner:
            return self.find(owner, name, depth + 1)
        for node in tree.body:
            if isinstance(node, ast.ClassDef) and node.name == name:
                return module, node
        for node in tree.body:
            if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module:
                for alias in node.names:
                    if (alias.asname or alias.name) == name:
                        return self.find(node.module, alias.name, depth + 1)
        return None

    def chain(self, module: str, name: str) -> list[tuple[str, ast.ClassDef]]:
        """The class and its ancestors that live in mlx_lm's model modules."""
        found, todo = [], [(module, name, 0)]
        while todo:
            where, what, depth = todo.pop()
            hit = self.find(where, what)
            if hit is None or depth > MAX_DEPTH:
                continue
            found.append(hit)
            todo.extend((hit[0], ast.unparse(base), depth + 1) for base in hit[1].bases)
        return found

    def attribute(self, chain: list[tuple[str, ast.ClassDef]], path: list[str],
                  depth: int = 0) -> list[tuple[str, ast.ClassDef]]:
        """The class chain of `self.<path>` on an instance of `chain`'s class, followed
        through `self.x = Class(...)` assignments and properties returning `self.y.z`."""
        if not path or depth > MAX_DEPTH:
            return chain
        head, rest = path[0], path[1:]
        for module, cls in chain:
            for node in ast.walk(cls):
                if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call) and any(
                        ast.unparse(t) == f"self.{head}" for t in node.targets):
                    found = self.chain(module, ast.unparse(node.value.func))
                    if found:
                        return self.attribute(found, rest, depth + 1)
                if isinstance(node, ast.FunctionDef) and node.name == head:
                    returned = [r.value for r in ast.walk(node)
                                if isinstance(r, ast.Return) and r.value is not None]
                    spelled = ast.unparse(returned[0]).split(".") if returned else []
                    if spelled[:1] == ["self"]:
                        found = self.attribute(chain, spelled[1:], depth + 1)
                        if found:
                            return self.attribute(found, rest, depth + 1)
        return []


def _has_method(chain: list[tuple[str, ast.ClassDef]], name: str) -> bool:
    return any(isinstance(item, ast.FunctionDef) and item.name == name
               for _, cls in chain for item in cls.body)


def support(model: str | None, python: str) -> Support | None:
    """What mlx-lm (as installed for `python`) can do with `model` (a folder or a Hub id
    already downloaded); None when the model's config or mlx-lm cannot be read."""
    config = hub.model_config(model)
    package = package_dir(python)
    if config is None or package is None:
        return None
    model_type = loaded_type(package, config)
    models = _Models(package)
    if models.tree(model_type) is None:
        return Support(model_type, False, False, None, False)
    chain = models.chain(model_type, "Model")
    tensor = _has_method(chain, "shard")
    inner = models.attribute(chain, ["model"])  # mlx-lm pipelines `model.model`
    pipeline = any(ast.unparse(base).endswith("PipelineMixin") for _, cls in inner
                   for base in cls.bases) or _has_method(inner, "pipeline")
    text = config.get("text_config")
    args = text if isinstance(text, dict) and "num_hidden_layers" not in config else config
    layers = args.get("num_hidden_layers")
    heads = tuple(args[key] for key in ("num_attention_heads", "num_key_value_heads")
                  if isinstance(args.get(key), int) and args[key] > 0)
    indexed = hub.model_file(model, "model.safetensors.index.json") is not None
    return Support(model_type, tensor, pipeline, layers if isinstance(layers, int) else None,
                   indexed, heads)
