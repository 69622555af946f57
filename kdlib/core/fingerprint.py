"""Content fingerprints: what a unit's key and a cache's name are made of.

- `code_fingerprint`: kdlib modules (dotted from the package: "core.distill"; a subpackage stands for all its
  modules) and single functions, as normalised syntax trees: comments, docstrings and layout do not count;
  a changed expression does.
- `model_fingerprint`: a model's weights (names, shapes, values), `weights_fingerprint`: a saved model
  folder's files, `arrays_fingerprint`: arrays (embeddings, logits), `dataset_fingerprint`: the inputs a
  model sees. Content, never the recipe that made it: bf16 training gives slightly different weights on
  different CPUs, so a unit that consumes a model is keyed by the model itself.
"""
from __future__ import annotations

import ast
import copy
import hashlib
from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np
import torch

KDLIB = Path(__file__).resolve().parents[1]  # the kdlib package
TOKEN_KEYS = ("input_ids", "token_type_ids", "attention_mask")
# A saved model's files whose bytes decide its outputs (the tokenizer's files decide its inputs).
MODEL_FILE_PATTERNS = ("*.safetensors", "*.bin", "config.json", "tokenizer.json", "vocab.txt",
                       "tokenizer_config.json", "special_tokens_map.json")


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) \
                and isinstance(getattr(body[0], "value", None), ast.Constant) and isinstance(body[0].value.value, str):
            node.body = body[1:] or [ast.Pass()]
    return tree


def _digest(tree: ast.AST) -> str:
    tree = _strip_docstrings(copy.deepcopy(tree))  # the parsed module is cached: strip a copy
    return hashlib.sha256(ast.dump(tree, annotate_fields=False).encode()).hexdigest()


@lru_cache(maxsize=None)
def _module_tree(path: Path, mtime_ns: int) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"))


def _module_paths(name: str) -> list[Path]:
    """kdlib's module `name`, dotted from the package ("core.data"); a subpackage ("inference.runtimes") is
    every module in it."""
    base = KDLIB.joinpath(*name.split("."))
    if base.is_dir():
        return sorted(base.rglob("*.py"))
    if base.with_suffix(".py").is_file():
        return [base.with_suffix(".py")]
    raise FileNotFoundError(f"no module or package kdlib.{name} ({base})")


def _function_node(fn: Callable) -> ast.AST:
    """The syntax tree of a module-level function (or a method, by its qualified name) in its module."""
    path = Path(fn.__code__.co_filename)
    scope: list[ast.AST] = _module_tree(path, path.stat().st_mtime_ns).body
    for part in fn.__qualname__.split("."):
        node = next((n for n in scope if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                     and n.name == part), None)
        if node is None:
            raise ValueError(f"{fn.__qualname__} is not a module-level function of {path}")
        scope = node.body
    return node


def code_fingerprint(*code: str | Callable) -> str:
    """A hash of the code that computes a unit, ignoring comments, docstrings and layout: kdlib modules named
    dotted from the package ("core.distill", "studies.grid"), and single functions (the function itself, for
    a unit whose module holds much else, so that editing a table or a figure beside it re-runs nothing)."""
    h = hashlib.sha256()
    for name, tree in sorted(_code_trees(code)):
        h.update(name.encode())
        h.update(_digest(tree).encode())
    return h.hexdigest()[:16]


def _code_trees(code) -> list[tuple[str, ast.AST]]:
    trees = []
    for item in code:
        if callable(item):
            trees.append((f"{item.__module__}.{item.__qualname__}", _function_node(item)))
        else:
            trees += [(path.relative_to(KDLIB).as_posix(), _module_tree(path, path.stat().st_mtime_ns))
                      for path in _module_paths(item)]
    return trees


def model_fingerprint(model: torch.nn.Module) -> str:
    """A content hash of a model's weights (names, shapes and values)."""
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(str(tuple(tensor.shape)).encode())
        h.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()


def dataset_fingerprint(dataset, columns=(*TOKEN_KEYS, "embeddings")) -> str:
    """A content hash of the inputs a model would see: token ids (so max length and tokenizer are included)
    or sentence embeddings."""
    h = hashlib.sha256()
    for col in columns:
        if col not in dataset.column_names:
            continue
        h.update(col.encode())
        dtype = np.float32 if col == "embeddings" else np.int32
        for row in dataset[col]:
            h.update(np.asarray(row, dtype=dtype).tobytes())
            h.update(b"|")
    return h.hexdigest()


def arrays_fingerprint(arrays: dict) -> str:
    """A content hash of named arrays (numpy or torch): their names, dtypes, shapes and values."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = arrays[name]
        a = a.detach().cpu().numpy() if torch.is_tensor(a) else np.asarray(a)
        h.update(f"{name}:{a.dtype}:{a.shape}".encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def weights_fingerprint(folder: str | Path) -> str:
    """A content hash of a saved model folder: its weights, configuration and tokenizer files."""
    folder = Path(folder)
    files = sorted({p for pattern in MODEL_FILE_PATTERNS for p in folder.glob(pattern) if p.is_file()})
    if not files:
        raise FileNotFoundError(f"{folder} holds no model files")
    h = hashlib.sha256()
    for path in files:
        h.update(path.name.encode())
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()
