"""Where results land, and how they are written: always atomically (temporary file, then rename).

An interrupted run therefore leaves either the old file or the new one, never half of one, and the
runner can trust any file it finds. Layout (docs/conventions.md):

    reports/<profile>/<step>/metrics.json      headline numbers of the step
    reports/<profile>/<step>/tables/*.csv
    reports/<profile>/<step>/figures/*.png|pdf
"""
from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _usual_mode(path: str | Path, folder: bool) -> None:
    """The mode a plain open() or mkdir() would give (temporary files and folders are private to their owner)."""
    os.chmod(path, (0o777 if folder else 0o666) & ~_umask())


@contextmanager
def atomic_path(path: str | Path):
    """Yield a temporary path beside `path`; on success rename it onto `path`, on error remove it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    _usual_mode(tmp, folder=False)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def atomic_folder(folder: str | Path):
    """Yield a temporary folder beside `folder`; on success it takes `folder`'s place, on error it is removed.
    The old folder is renamed aside before the new one is renamed in (each rename is atomic), so a reader
    finds the old complete folder or the new complete one, never a half-written one."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.", suffix=".tmp"))
    _usual_mode(tmp, folder=True)
    try:
        yield tmp
        old = None
        if folder.exists():
            old = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.", suffix=".old"))
            os.replace(folder, old / folder.name)
        os.replace(tmp, folder)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_text(path: str | Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def _jsonable(x):
    """numpy and torch scalars to plain Python; NaN to None so the JSON stays standard."""
    if hasattr(x, "item") and callable(x.item) and getattr(x, "ndim", 0) == 0:
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, Path):
        return str(x)
    return x


def write_json(path: str | Path, obj) -> Path:
    return write_text(path, json.dumps(_jsonable(obj), indent=2, sort_keys=True) + "\n")


def read_json(path: str | Path):
    return json.loads(Path(path).read_text(encoding="utf-8"))


def write_csv(path: str | Path, frame) -> None:
    """A pandas DataFrame as CSV, without the index unless it is named. It returns nothing, so that a notebook
    cell ending with it shows no path."""
    keep_index = any(name is not None for name in frame.index.names)
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=keep_index)


def save_figure(fig, out_dir: str | Path, name: str) -> None:
    """Save a matplotlib figure as figures/<name>.png and .pdf under `out_dir`. It returns nothing, so that a
    notebook cell ending with it shows the figure (drawn by the inline backend) and no list of paths."""
    for ext in ("png", "pdf"):
        path = Path(out_dir) / "figures" / f"{name}.{ext}"
        with atomic_path(path) as tmp:
            # No creation date in the file: the same figure gives the same bytes on every run.
            meta = {"CreationDate": None} if ext == "pdf" else {"Software": None}
            fig.savefig(tmp, format=ext, dpi=150, bbox_inches="tight", metadata=meta)


def write_metrics(out_dir: str | Path, metrics: dict, required: list[str] | tuple = ()) -> None:
    """Write the step's flat metrics.json, refusing to write one that lacks a promised key. It returns nothing,
    so that a notebook cell ending with it shows no path."""
    missing = [k for k in required if k not in metrics]
    if missing:
        raise KeyError(f"metrics.json would lack {missing}")
    nested = [k for k, v in metrics.items() if isinstance(v, (dict, list))]
    if nested:
        raise TypeError(f"metrics.json is flat; these values are not scalars: {nested}")
    write_json(Path(out_dir) / "metrics.json", metrics)
