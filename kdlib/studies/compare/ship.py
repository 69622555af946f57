"""The model to ship: of every measured row that `kdstudy export` can write, the fastest within a stated margin
of the teacher's accuracy, judged on the validation split and reported on test.

`recommend` picks it from 04's measurements; `export_command` is the exact command that writes it; 04 runs
that export itself into reports/<profile>/deploy/, so the answer is a folder a user can load
(`kdlib.inference.artifact.load_artifact`).
"""
from __future__ import annotations

import shlex
from pathlib import Path

import pandas as pd

from kdlib.inference.export import PRECISIONS, RUNTIMES
from kdlib.studies.compare.tables import teacher_row

MARGIN_PP = 1.0  # accuracy points below the teacher's (validation) that the shipped model may lose
DEPLOY_DIR = "deploy"  # reports/<profile>/deploy/: the artifact 04 writes
# The registry's route -> the export command's --runtime and --precision (the registry's name).
EXPORTABLE = {(runtime, route_precision): (name, route_precision) for name, runtime in RUNTIMES.items()
              for (r, _), route_precision in PRECISIONS.items() if r == runtime}


def recommend(measured: pd.DataFrame, model_dirs: dict[str, Path], batch: int = 1,
              margin_pp: float = MARGIN_PP) -> dict:
    """The recommendation as one flat record: the model (name and folder), the route, its validation and test
    accuracy beside the teacher's, its speed-ups over the PyTorch fp32 teacher (same-unit ratios from
    `measured`), its size against the teacher's, and the margin. Rows are candidates when they ran, their
    model has a folder in `model_dirs` and their route can be exported; the fastest at `batch` among those
    within `margin_pp` points of the teacher's validation accuracy wins (the teacher's exported fp32 route
    when none is)."""
    ok = measured[(measured["status"] == "ok") & measured["name"].isin(model_dirs)]
    teacher = teacher_row(measured)
    exportable = ok[[(r, p) in EXPORTABLE for r, p in zip(ok["runtime"], ok["precision"])]]
    if exportable.empty:
        raise ValueError("no measured row can be exported (onnxruntime or openvino, fp32 or int8): add one of "
                         "them to compare.runtimes")
    floor = teacher["val_accuracy"] - margin_pp / 100
    within = exportable[exportable["val_accuracy"] >= floor]
    speed = f"speedup_vs_torch_fp32_teacher_bs{batch}"
    if within.empty:
        within = exportable[exportable["name"] == "teacher"]
    best = within.sort_values([speed, "val_accuracy"], ascending=False).iloc[0]
    runtime, precision = EXPORTABLE[(best["runtime"], best["precision"])]
    return {
        "model": best["name"], "model_dir": str(model_dirs[best["name"]]),
        "route": f"{best['runtime']}/{best['precision']}", "export_runtime": runtime, "export_precision": precision,
        "margin_pp": margin_pp, "chosen_at_batch": batch,
        "val_accuracy": float(best["val_accuracy"]), "teacher_val_accuracy": float(teacher["val_accuracy"]),
        "test_accuracy": float(best["accuracy"]), "teacher_test_accuracy": float(teacher["accuracy"]),
        "test_macro_f1": float(best["macro_f1"]),
        **{c: float(best[c]) for c in measured.columns if c.startswith("speedup_vs_torch_fp32_teacher_bs")},
        "size_mb": float(best["size_mb"]), "teacher_size_mb": float(teacher["size_mb"]),
        "params": int(best["params"]), "teacher_params": int(teacher["params"]),
        "cpu_flags": str(best.get("cpu_flags", "")),
    }


def export_command(rec: dict, params_file: str | Path, out: str | Path, root: str | Path) -> str:
    """The `kdstudy export` command that writes the recommended artifact, run from the folder `root` (paths
    under it are written relative to it)."""

    def shown(path) -> str:
        path = Path(path).resolve()
        return str(path.relative_to(Path(root).resolve())) if path.is_relative_to(Path(root).resolve()) else str(path)

    return shlex.join(["kdstudy", "export", "--model", shown(rec["model_dir"]), "--runtime", rec["export_runtime"],
                       "--precision", rec["export_precision"], "--out", shown(out), "--params", shown(params_file)])
