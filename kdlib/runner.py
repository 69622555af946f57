"""Run the study's notebooks in order with papermill, skipping the steps that are already done.

A step is done when reports/<profile>/<step>/ holds its executed notebook, a metrics.json with the keys
STUDY.md promises, and a stamp (.step.json) whose fingerprint matches the step's inputs now: the
notebook's text, the parameters, the kdlib sources, and the fingerprints of the steps before it.
The stamp is written last and atomically, so a step killed half-way is simply run again; inside a
step, training runs resume on their own (see kdlib.train).
"""
from __future__ import annotations

import hashlib
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from kdlib.config import StudyParams, load_params
from kdlib.outputs import atomic_path, read_json, reports_root, write_json

# The headline keys each step's metrics.json must hold (STUDY.md, "Where results land").
REQUIRED_METRICS = {
    "00_data_prep": ["n_train", "n_validation", "n_test", "n_classes"],
    "01_teacher": ["teacher_test_accuracy", "teacher_test_macro_f1", "teacher_params"],
    "02_distill": ["student_test_accuracy", "nokd_test_accuracy", "student_params", "cached_kd_train_seconds",
                   "online_kd_train_seconds", "nokd_train_seconds"],
    "03_grid": ["best_half_depth_retention", "speedup_over_flop_ratio_bs1", "speedup_over_flop_ratio_bs32",
                "grid_cached_over_online_cost"],
    "04_compare": ["best_quantized_speedup", "best_quantized_accuracy_drop_pp"],
    "05_hetero_kd": ["n_seeds", "acc_A_mean", "acc_B_mean", "acc_C_mean", "acc_A_std", "acc_B_std", "acc_C_std"],
    "06_edge_benchmark": ["teacher_f1", "student_f1", "student_speedup", "quantized_student_speedup"],
}
STAMP = ".step.json"


def notebooks_dir() -> Path:
    from kdlib.outputs import project_root

    return project_root() / "notebooks"


@dataclass
class Step:
    stem: str  # e.g. "01_teacher"
    notebook: Path

    @property
    def number(self) -> str:
        return self.stem.split("_", 1)[0]


def discover_steps(folder: Path | None = None) -> list[Step]:
    """The numbered notebooks (NN_name.ipynb), in order."""
    folder = folder or notebooks_dir()
    found = [Step(p.stem, p) for p in sorted(folder.glob("[0-9][0-9]_*.ipynb"))]
    if not found:
        raise FileNotFoundError(f"no numbered notebooks in {folder}")
    return found


def select_steps(steps: list[Step], only: list[str] | None) -> list[Step]:
    """Steps whose number or stem is in `only` (all when empty); an unknown name is an error."""
    if not only:
        return steps
    wanted = []
    for name in only:
        match = [s for s in steps if name in (s.number, s.stem)]
        if not match:
            raise ValueError(f"no step {name!r}; steps are {', '.join(s.stem for s in steps)}")
        wanted.extend(match)
    return [s for s in steps if s in wanted]


def _hash_files(paths) -> str:
    h = hashlib.sha256()
    for p in sorted(paths):
        h.update(p.name.encode())
        h.update(p.read_bytes())
    return h.hexdigest()


def library_fingerprint() -> str:
    """Changes when any kdlib source file changes."""
    return _hash_files(Path(__file__).parent.glob("*.py"))[:16]


def step_fingerprint(step: Step, cfg: StudyParams, upstream: str) -> str:
    h = hashlib.sha256()
    for part in (_hash_files([step.notebook]), cfg.fingerprint(), library_fingerprint(), upstream):
        h.update(part.encode())
    return h.hexdigest()[:16]


def step_output_dir(cfg: StudyParams, step: Step) -> Path:
    return reports_root() / cfg.profile / step.stem


def is_complete(cfg: StudyParams, step: Step, fingerprint: str) -> bool:
    out = step_output_dir(cfg, step)
    stamp, metrics = out / STAMP, out / "metrics.json"
    if not (stamp.exists() and metrics.exists() and (out / f"{step.stem}.ipynb").exists()):
        return False
    if read_json(stamp).get("fingerprint") != fingerprint:
        return False
    return all(k in read_json(metrics) for k in REQUIRED_METRICS.get(step.stem, []))


def execute(step: Step, cfg: StudyParams, params_file: Path) -> Path:
    """Execute one notebook with papermill into reports/<profile>/<step>/<step>.ipynb (atomically)."""
    import papermill as pm

    out = step_output_dir(cfg, step)
    out.mkdir(parents=True, exist_ok=True)
    final = out / f"{step.stem}.ipynb"
    # The kernel must be this interpreter (the one with kdlib), whatever is first on PATH.
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    with atomic_path(final) as tmp:
        tmp_ipynb = tmp.with_suffix(".ipynb")
        try:
            pm.execute_notebook(
                str(step.notebook), str(tmp_ipynb),
                parameters={"params_file": str(params_file.resolve())},
                cwd=str(step.notebook.parent), kernel_name="python3", progress_bar=True,
                log_output=False, request_save_on_cell_execute=False,
            )
        except BaseException:
            if tmp_ipynb.exists():  # keep the failed run for reading; never mistaken for a finished one
                os.replace(tmp_ipynb, out / f"{step.stem}.failed.ipynb")
            raise
        os.replace(tmp_ipynb, tmp)
    (out / f"{step.stem}.failed.ipynb").unlink(missing_ok=True)
    missing = [k for k in REQUIRED_METRICS.get(step.stem, [])
               if k not in (read_json(out / "metrics.json") if (out / "metrics.json").exists() else {})]
    if missing:
        raise RuntimeError(f"{step.stem} ran but its metrics.json lacks {missing}")
    return final


def run(params_file: str | Path, only: list[str] | None = None, force: bool = False, log=print) -> list[dict]:
    """Run the selected steps in order; return what happened to each (ran / skipped, seconds)."""
    params_file = Path(params_file)
    cfg = load_params(params_file)  # validates before anything runs
    steps = discover_steps()
    selected = select_steps(steps, only)
    report, upstream = [], ""
    for step in steps:
        fingerprint = step_fingerprint(step, cfg, upstream)
        upstream = fingerprint
        if step not in selected:
            continue
        if not force and is_complete(cfg, step, fingerprint):
            log(f"[{cfg.profile}] {step.stem}: up to date, skipped")
            report.append({"step": step.stem, "status": "skipped", "seconds": 0.0})
            continue
        log(f"[{cfg.profile}] {step.stem}: running ...")
        t0 = time.perf_counter()
        execute(step, cfg, params_file)
        seconds = time.perf_counter() - t0
        write_json(step_output_dir(cfg, step) / STAMP,
                   {"fingerprint": fingerprint, "seconds": round(seconds, 1), "params": str(params_file)})
        log(f"[{cfg.profile}] {step.stem}: done in {seconds:.0f} s")
        report.append({"step": step.stem, "status": "ran", "seconds": seconds})
    return report
