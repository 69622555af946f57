"""The sandbox: a profile with overrides, for trying other settings without touching the reference results.

`profile(...)` is what a notebook's `overrides` / `experiment` parameters give: the profile with the overrides
merged in (validated like the file), writing under reports/sandbox/<experiment>/. The steps it reads from
are taken from the reference profile's folders where their parameters are unchanged (linked, never written).
"""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from kdlib.pipeline import steps
from kdlib.pipeline.config import ParamsError, StudyParams, load_params
from kdlib.pipeline.paths import reports_root

SANDBOX = "sandbox"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def experiment_name(overrides: dict | None, experiment: str | None) -> str:
    """The experiment's folder name: the one given, else one derived from the overrides' content."""
    if experiment is None:
        digest = hashlib.sha256(json.dumps(overrides or {}, sort_keys=True).encode()).hexdigest()[:8]
        return f"try-{digest}"
    if not _NAME.fullmatch(experiment):
        raise ParamsError(f"experiment {experiment!r}: use letters, digits, '-', '_' or '.' (at most 64)")
    return experiment


def profile(stem: str, params_file: str | Path, overrides: dict | None = None, experiment: str | None = None,
            check_models: bool = True) -> StudyParams:
    """The parameters of `params_file` with `overrides` merged in, as the profile sandbox/<experiment>; the
    steps `stem` reads from are linked from the reference profile when their parameter sections are the same
    (else the sandbox must run them first, and says so)."""
    reference = load_params(params_file, check_models=False)  # its models are cfg's, looked up once below
    cfg = load_params(params_file, overrides=overrides, check_models=check_models)
    cfg.profile = f"{SANDBOX}/{experiment_name(overrides, experiment)}"
    own = reports_root() / cfg.profile / stem
    if own.is_symlink():  # linked when another step of this experiment read it: now it runs here, in its own folder
        own.unlink()
    for need in steps.upstream(steps.get(stem)):
        here, there = reports_root() / cfg.profile / need.stem, reports_root() / reference.profile / need.stem
        sections = ("seed", *need.sections)
        same = cfg.fingerprint(sections) == reference.fingerprint(sections)
        if here.is_symlink() and not same:  # linked for other overrides under the same experiment name
            here.unlink()
        if here.exists() or not there.is_dir():
            continue
        if same:
            here.parent.mkdir(parents=True, exist_ok=True)
            here.symlink_to(there.resolve(), target_is_directory=True)
        else:
            print(f"{need.stem}: its parameters differ from {reference.profile}'s; run it in this sandbox first")
    return cfg
