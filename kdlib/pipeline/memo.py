"""Memoised units: an expensive piece of work (a training run, a cache, a benchmark) done once per key.

A unit's key hashes what decides its numbers: its inputs, its resolved parameters, and the *code* that
computes it. The code is hashed as a normalised syntax tree, so a comment, a docstring or a reformatting
changes nothing, while a changed expression changes the key. A cosmetic edit (a figure, a markdown
cell, a comment) therefore retrains nothing and re-times nothing.

Each unit lives in its own folder with a `result.json` that is written last and atomically and that
records the key, the resolved parameters and the machine. A unit is reused only when that file reads
back, holds the same key, and every file the unit promises is still there; otherwise it is rebuilt
(with a one-line warning when a file was there but unreadable or incomplete).
"""
from __future__ import annotations

import ast
import copy
import dataclasses
import hashlib
import json
import platform
import shutil
import warnings
from functools import lru_cache
from pathlib import Path
from typing import Callable, Iterable

from kdlib.core.io import read_json, write_json
from kdlib.inference.machine import cpu_info

KDLIB = Path(__file__).resolve().parents[1]  # the kdlib package


class UnitRebuilt(UserWarning):
    """A unit's files were present but unusable; it is built again."""


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


def _default(x):
    if hasattr(x, "__dataclass_fields__"):

        return dataclasses.asdict(x)
    return str(x)


def unit_key(kind: str, code: Iterable[str | Callable], *parts) -> str:
    """The key of a unit: its kind, the fingerprint of the code that computes it, and its inputs."""
    blob = json.dumps([kind, code_fingerprint(*code), *parts], sort_keys=True, default=_default)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def machine() -> dict:
    """What the numbers were measured on: CPU model, the flags that matter for speed, cores, versions."""

    info = cpu_info()
    return {"cpu": info["model"], "flags": info["flags"], "logical_cores": info["logical_cores"],
            "python": platform.python_version(), "torch": info["torch_version"]}


def load_unit(folder: str | Path, key: str, files: Iterable[str] = ()) -> dict | None:
    """The recorded result of the unit in `folder` if it is complete and has `key`; else None."""
    folder = Path(folder)
    result_path = folder / "result.json"
    if not result_path.exists():
        return None
    try:
        done = read_json(result_path)
    except (OSError, ValueError) as e:
        warnings.warn(f"{result_path} is unreadable ({type(e).__name__}); rebuilding the unit", UnitRebuilt,
                      stacklevel=2)
        return None
    if done.get("key") != key:
        return None
    missing = [f for f in files if not (folder / f).exists()]
    if missing:
        warnings.warn(f"{folder}: {', '.join(missing)} missing; rebuilding the unit", UnitRebuilt, stacklevel=2)
        return None
    return done


def adopt(folder: str | Path, key: str, candidates: Iterable[str | Path], files: Iterable[str] = ()) -> Path | None:
    """If `folder` holds no unit with `key` but one of `candidates` does (the same work, recorded by another
    step), copy that unit into `folder` and return where it came from; else None. Steps then share work
    without sharing folders: each keeps its own complete copy."""

    files = tuple(files)
    if load_unit(folder, key, files) is not None:
        return None
    for other in map(Path, candidates):
        if other.resolve() != Path(folder).resolve() and load_unit(other, key, files) is not None:
            shutil.rmtree(folder, ignore_errors=True)
            shutil.copytree(other, folder, ignore=shutil.ignore_patterns("checkpoints"))
            return other
    return None


def run_unit(folder: str | Path, key: str, build: Callable[[Path], dict], *, params=None,
             files: Iterable[str] = (), record: bool = True) -> dict:
    """Return the unit's recorded result when it is complete, else `build(folder)` and record it.

    `build` writes any files it promises (`files`, relative to `folder`) before returning; the result is
    recorded after them, so a killed build leaves no finished-looking unit. `record=False` (other ranks
    of a distributed run) builds without writing.
    """
    folder = Path(folder)
    files = tuple(files)
    done = load_unit(folder, key, files)
    if done is not None:
        done["reused"] = True
        return done
    result = dict(build(folder))
    result.update(key=key, reused=False)
    if params is not None:
        result["params"] = params
    result.setdefault("machine", machine())
    if record:
        write_json(folder / "result.json", result)
    return result
