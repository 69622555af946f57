"""Where results land: reports/<profile>/<step>/ (metrics.json, tables/, figures/) and the rebuildable
caches under .cache/; both can be moved with KD_REPORTS_DIR and KD_CACHE_DIR."""
from __future__ import annotations

import os
from pathlib import Path

REPORTS_ENV = "KD_REPORTS_DIR"


CACHE_ENV = "KD_CACHE_DIR"


def project_root() -> Path:
    """The repository root: the nearest folder (from the working directory up) holding params/ and kdlib/.

    Notebooks run with the notebooks/ folder as working directory, the CLI from the root; both find it.
    """
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / "params").is_dir() and (folder / "kdlib").is_dir():
            return folder
    return Path(__file__).resolve().parents[2]  # the repository (kdlib/pipeline/paths.py)


def reports_root() -> Path:
    return Path(os.environ.get(REPORTS_ENV) or project_root() / "reports")


def cache_root() -> Path:
    """Caches that can be rebuilt (teacher outputs); never committed."""
    return Path(os.environ.get(CACHE_ENV) or project_root() / ".cache")


def step_dir(profile: str, step: str, create: bool = True) -> Path:
    """reports/<profile>/<step>/ (created unless `create` is False)."""
    d = reports_root() / profile / step
    if create:
        d.mkdir(parents=True, exist_ok=True)
    return d
