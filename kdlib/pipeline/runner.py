"""Run the study's notebooks in order with papermill, skipping the steps that are up to date.

The notebooks' only source is text (jupytext percent files, notebooks/NN_name.py); the runner turns
each into a notebook for papermill and writes the executed copy to reports/<profile>/<step>/.

A step is up to date when its folder holds the executed notebook, every output the manifest
(kdlib/pipeline/steps.py) promises, a metrics.json with the promised keys, and a stamp (.step.json) whose parts
match the step's inputs now: the notebook's text, the parameter sections it reads, the kdlib sources,
and the stamps of the steps it needs. `status` says which part changed. A stale step re-runs as a
whole, but the expensive units inside it (training runs, caches, benchmarks; see kdlib/pipeline/memo.py) are
reused when their own keys match, so a cosmetic change re-runs a step in seconds.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from pathlib import Path
from unittest import mock

import jupytext
import nbformat
import papermill as pm

from kdlib.core.io import atomic_path, read_json, write_json
from kdlib.pipeline import steps as manifest
from kdlib.pipeline.config import StudyParams, load_params
from kdlib.pipeline.notebook import QUIET_RUN
from kdlib.pipeline.paths import project_root, step_dir
from kdlib.pipeline.steps import Step

STAMP = ".step.json"
# The kernels of `kdstudy run` write no progress bars (tqdm's, datasets', transformers' weight loading), no
# library load reports and no profiler log lines into the executed notebooks: progress is the runner's own
# line per step. Opened in JupyterLab, the same notebooks show their bars.
QUIET_KERNEL = {"TQDM_DISABLE": "1", "HF_DATASETS_DISABLE_PROGRESS_BARS": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1",
                "TRANSFORMERS_VERBOSITY": "error", "KINETO_LOG_LEVEL": "99", QUIET_RUN: "1"}
OFF = "off in this profile"  # a step the profile's `steps` leaves out


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def library_digests() -> dict[str, str]:
    """A hash per kdlib source file and report template, by its path in the package (raw bytes: any edit makes
    the step re-run; units decide what is redone)."""
    kdlib = Path(__file__).resolve().parents[1]
    files = [p for p in kdlib.rglob("*") if p.suffix in (".py", ".j2") and "__pycache__" not in p.parts]
    return {p.relative_to(kdlib).as_posix(): _sha(p.read_bytes()) for p in sorted(files)}


def stamp_parts(step: Step, cfg: StudyParams, root: Path, upstream: dict[str, str]) -> dict:
    """Everything a step's results depend on, part by part (so a changed part can be named)."""
    return {
        "notebook": _sha(step.notebook(root).read_bytes()),
        "params": {s: cfg.fingerprint([s]) for s in ("profile", "seed", *step.sections)},
        "kdlib": library_digests(),
        "needs": {name: upstream.get(name, "missing") for name in step.needs},
    }


def fingerprint(parts: dict) -> str:
    return _sha(json.dumps(parts, sort_keys=True).encode())


def stale_reasons(cfg: StudyParams, step: Step, parts: dict) -> list[str]:
    """Why a step must run; empty when it is up to date."""
    out = step_dir(cfg.profile, step.stem, create=False)
    stamp_path = out / STAMP
    if not stamp_path.exists():
        return ["never finished"]
    try:
        old = read_json(stamp_path).get("parts", {})
    except (OSError, ValueError):
        return ["its stamp is unreadable"]
    reasons = []
    if old.get("notebook") != parts["notebook"]:
        reasons.append(f"notebook {step.stem}.py changed")
    changed = sorted(k for k, v in parts["params"].items() if old.get("params", {}).get(k) != v)
    if changed:
        reasons.append(f"parameters changed: {', '.join(changed)}")
    old_lib = old.get("kdlib", {})
    edited = sorted(k for k in set(old_lib) | set(parts["kdlib"]) if old_lib.get(k) != parts["kdlib"].get(k))
    if edited:
        reasons.append(f"kdlib changed: {', '.join(edited)}")
    needs = sorted(k for k, v in parts["needs"].items() if old.get("needs", {}).get(k) != v)
    if needs:
        reasons.append(f"re-ran or stale before it: {', '.join(needs)}")
    missing = [f for f in (f"{step.stem}.ipynb", "metrics.json", *step.outputs) if not (out / f).exists()]
    if missing:
        shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        reasons.append(f"outputs missing: {shown}")
    elif step.metrics:
        try:
            absent = [k for k in step.metrics if k not in read_json(out / "metrics.json")]
        except (OSError, ValueError):
            absent = ["(metrics.json unreadable)"]
        if absent:
            reasons.append(f"metrics.json lacks {', '.join(absent)}")
    return reasons


def plan(cfg: StudyParams, root: Path | None = None) -> list[tuple[Step, dict, list[str]]]:
    """Every step with its stamp parts and the reasons it is stale (empty: up to date), in order.

    A step downstream of a stale one is stale too (its inputs will change when that one re-runs).
    """
    root = root or project_root()
    fingerprints: dict[str, str] = {}
    stale: set[str] = set()
    rows = []
    for step in manifest.STEPS:
        if not cfg.runs(step.stem):  # off in this profile: never stale, and it stales nothing after it
            fingerprints[step.stem] = OFF
            rows.append((step, {}, [OFF]))
            continue
        parts = stamp_parts(step, cfg, root, fingerprints)
        reasons = stale_reasons(cfg, step, parts)
        before = [n for n in step.needs if n in stale]
        if before and reasons != ["never finished"] and not any(r.startswith("re-ran or stale") for r in reasons):
            reasons.append(f"re-ran or stale before it: {', '.join(before)}")
        if reasons:
            stale.add(step.stem)
        fingerprints[step.stem] = fingerprint(parts)
        rows.append((step, parts, reasons))
    return rows


def _notebook_from_text(path: Path):
    """The jupytext percent file as an nbformat notebook with a python3 kernel."""

    nb = jupytext.read(path)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata.setdefault("language_info", {"name": "python"})
    return nb


def execute(step: Step, cfg: StudyParams, params_file: Path, root: Path) -> Path:
    """Execute one notebook with papermill into reports/<profile>/<step>/<step>.ipynb (atomically)."""

    out = step_dir(cfg.profile, step.stem)
    final = out / f"{step.stem}.ipynb"
    # The kernel must be this interpreter (the one with kdlib), whatever is first on PATH.
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    with atomic_path(final) as tmp:
        source_ipynb, tmp_ipynb = tmp.with_suffix(".source.ipynb"), tmp.with_suffix(".ipynb")
        nbformat.write(_notebook_from_text(step.notebook(root)), source_ipynb)
        try:
            with mock.patch.dict(os.environ, QUIET_KERNEL):  # read by the kernel papermill starts
                pm.execute_notebook(
                    str(source_ipynb), str(tmp_ipynb),
                    parameters={"params_file": str(params_file.resolve())},
                    cwd=str(root / "notebooks"), kernel_name="python3", progress_bar=True,
                    log_output=False, request_save_on_cell_execute=False,
                    # The kernel's own log is not the notebook's: its transport warning at start and the
                    # KeyboardInterrupt it logs when stopped read as failures. A failing cell still raises here.
                    extra_arguments=["--IPKernelApp.log_level=CRITICAL"],
                )
        except BaseException:
            if tmp_ipynb.exists():  # keep the failed run for reading; never mistaken for a finished one
                os.replace(tmp_ipynb, out / f"{step.stem}.failed.ipynb")
            raise
        finally:
            source_ipynb.unlink(missing_ok=True)
        os.replace(tmp_ipynb, tmp)
    (out / f"{step.stem}.failed.ipynb").unlink(missing_ok=True)
    metrics = read_json(out / "metrics.json") if (out / "metrics.json").exists() else {}
    missing = [k for k in step.metrics if k not in metrics] + [f for f in step.outputs if not (out / f).exists()]
    if missing:
        raise RuntimeError(f"{step.stem} ran but did not write {missing}")
    return final


def select(only: list[str] | None) -> list[Step]:
    """Steps named by number or stem (all when empty); an unknown name is an error."""
    if not only:
        return list(manifest.STEPS)
    wanted = {manifest.get(name).stem for name in only}
    return [s for s in manifest.STEPS if s.stem in wanted]


def status(params_file: str | Path) -> list[dict]:
    """Every step: up to date, or stale with its reasons."""
    cfg = load_params(params_file, check_models=False)  # status reads stamps, loads no model
    return [{"step": s.stem, "up_to_date": not reasons, "off": reasons == [OFF], "reasons": reasons}
            for s, _, reasons in plan(cfg)]


def run(params_file: str | Path, only: list[str] | None = None, force: bool = False, log=print) -> list[dict]:
    """Run the selected steps in order; return what happened to each (ran / skipped, seconds)."""
    params_file = Path(params_file)
    cfg = load_params(params_file)  # validates before anything runs
    root = project_root()
    selected = {s.stem for s in select(only)}
    report = []
    for step in manifest.STEPS:
        if step.stem not in selected:
            continue
        if not cfg.runs(step.stem):
            log(f"[{cfg.profile}] {step.stem}: {OFF}, skipped")
            report.append({"step": step.stem, "status": "off", "seconds": 0.0})
            continue
        # Re-plan before each step: the stamps of the steps before it may just have changed.
        _, parts, reasons = next(row for row in plan(cfg, root) if row[0] == step)
        if not force and not reasons:
            log(f"[{cfg.profile}] {step.stem}: up to date, skipped")
            report.append({"step": step.stem, "status": "skipped", "seconds": 0.0})
            continue
        log(f"[{cfg.profile}] {step.stem}: running ({'; '.join(reasons) or 'forced'}) ...")
        t0 = time.perf_counter()
        execute(step, cfg, params_file, root)
        seconds = time.perf_counter() - t0
        # `params`: the resolved sections the step ran with, as values, so the report's manifest can show
        # them (and flag a step that ran with other values than the file the report is built from).
        write_json(step_dir(cfg.profile, step.stem) / STAMP,
                   {"fingerprint": fingerprint(parts), "parts": parts, "seconds": round(seconds, 1),
                    "params_file": str(params_file), "params": {s: cfg.to_dict()[s] for s in parts["params"]}})
        log(f"[{cfg.profile}] {step.stem}: done in {seconds:.0f} s")
        report.append({"step": step.stem, "status": "ran", "seconds": seconds, "reasons": reasons})
    return report
