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

import hashlib
import json
import shutil
import time
import warnings
from pathlib import Path
from typing import Callable, Iterable

import torch

from kdlib.core.fingerprint import code_fingerprint
from kdlib.core.io import atomic_folder, read_json, write_json
from kdlib.inference.machine import describe
from kdlib.pipeline.config import to_plain


class UnitRebuilt(UserWarning):
    """A unit's files were present but unusable; it is built again."""


def _default(x):
    if hasattr(x, "__dataclass_fields__"):
        return to_plain(x)
    return str(x)


def unit_key(kind: str, code: Iterable[str | Callable], *parts) -> str:
    """The key of a unit: its kind, the fingerprint of the code that computes it, and its inputs."""
    blob = json.dumps([kind, code_fingerprint(*code), *parts], sort_keys=True, default=_default)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def machine(threads: int | None = None) -> dict:
    """What a timing was taken on, for its key and its record: the machine's description (CPU model and
    flags, cores, system, Python and runtime versions) and the threads the timing used (torch's current
    count unless given). A timing unit holds it in its key, so it is reused only where it was measured."""
    return {**describe(), "threads": torch.get_num_threads() if threads is None else threads}


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
            with atomic_folder(folder) as tmp:
                shutil.copytree(other, tmp, ignore=shutil.ignore_patterns("checkpoints"), dirs_exist_ok=True)
            return other
    return None


def run_unit(folder: str | Path, key: str, build: Callable[[Path], dict], *, params=None,
             files: Iterable[str] = (), record: bool = True, keep: Callable[[dict], bool] | None = None) -> dict:
    """Return the unit's recorded result when it is complete, else `build(folder)` and record it.

    `build` writes any files it promises (`files`, relative to `folder`) before returning; the result is
    recorded after them, so a killed build leaves no finished-looking unit. `record=False` (other ranks
    of a distributed run) builds without writing. A result that `keep` rejects (a route that failed) is
    returned but not recorded, so the next run tries it again.
    """
    folder = Path(folder)
    files = tuple(files)
    done = load_unit(folder, key, files)
    if done is not None:
        done["reused"] = True
        return done
    started = time.perf_counter()
    result = dict(build(folder))
    # what building it took: where a cold run's time went, read from the cache
    result.update(key=key, reused=False, build_seconds=round(time.perf_counter() - started, 3))
    if params is not None:
        result["params"] = params
    result.setdefault("machine", machine())
    if record and (keep is None or keep(result)):
        write_json(folder / "result.json", result)
        return read_json(folder / "result.json")  # as a later run reads it (keys sorted): the same tables cold and warm
    return result
