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
from kdlib.studies.compare.tables import speedup, teacher_row

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
    teacher = teacher_row(measured)
    within = candidates(measured, model_dirs, margin_pp)
    speed = f"speedup_vs_torch_fp32_teacher_bs{batch}"
    # Ranked on the head-to-head run where the rows took part in it (tables.fastest says why), then as measured.
    h2h = f"h2h_speedup_bs{batch}"
    keys = [h2h, speed, "val_accuracy"] if h2h in within and within[h2h].notna().any() else [speed, "val_accuracy"]
    best = within.sort_values(keys, ascending=False, na_position="last").iloc[0]
    runtime, precision = EXPORTABLE[(best["runtime"], best["precision"])]
    return {
        "model": best["name"], "model_dir": str(model_dirs[best["name"]]),
        "route": f"{best['runtime']}/{best['precision']}", "export_runtime": runtime, "export_precision": precision,
        "margin_pp": margin_pp, "chosen_at_batch": batch,
        "val_accuracy": float(best["val_accuracy"]), "teacher_val_accuracy": float(teacher["val_accuracy"]),
        "test_accuracy": float(best["accuracy"]), "teacher_test_accuracy": float(teacher["accuracy"]),
        "test_macro_f1": float(best["macro_f1"]),
        **{c: float(best[c]) for c in measured.columns if c.startswith("speedup_vs_torch_fp32_teacher_bs")},
        # where the row took part in the head-to-head run, its speed-up there (what chose it)
        **{f"speedup_vs_torch_fp32_teacher_bs{b}": speedup(best, b) for b in _batch_sizes(measured)},
        **{f"speedup_measured_in_bs{b}": "head-to-head run" if not pd.isna(best.get(f"h2h_speedup_bs{b}"))
           else "route run" for b in _batch_sizes(measured)},
        "size_mb": float(best["size_mb"]), "teacher_size_mb": float(teacher["size_mb"]),
        "params": int(best["params"]), "teacher_params": int(teacher["params"]),
        "cpu_flags": str(best.get("cpu_flags", "")),
    }


def candidates(measured: pd.DataFrame, model_dirs: dict[str, Path], margin_pp: float = MARGIN_PP) -> pd.DataFrame:
    """The rows `recommend` picks from: they ran, their model has a folder in `model_dirs`, their route can be
    exported, and they are within `margin_pp` points of the teacher's validation accuracy (the teacher's
    exportable rows when none is)."""
    ok = measured[(measured["status"] == "ok") & measured["name"].isin(model_dirs)]
    exportable = ok[[(r, p) in EXPORTABLE for r, p in zip(ok["runtime"], ok["precision"])]]
    if exportable.empty:
        raise ValueError("no measured row can be exported (onnxruntime or openvino, fp32 or int8): add one of "
                         "them to compare.runtimes")
    within = exportable[exportable["val_accuracy"] >= teacher_row(measured)["val_accuracy"] - margin_pp / 100]
    return within if len(within) else exportable[exportable["name"] == "teacher"]


def _batch_sizes(measured: pd.DataFrame) -> list[int]:
    prefix = "speedup_vs_torch_fp32_teacher_bs"
    return [int(c[len(prefix):]) for c in measured.columns if c.startswith(prefix) and c[len(prefix):].isdigit()]


def export_command(rec: dict, params_file: str | Path, out: str | Path, root: str | Path) -> str:
    """The `kdstudy export` command that writes the recommended artifact, run from the folder `root` (paths
    under it are written relative to it)."""

    def shown(path) -> str:
        path = Path(path).resolve()
        return str(path.relative_to(Path(root).resolve())) if path.is_relative_to(Path(root).resolve()) else str(path)

    return shlex.join(["kdstudy", "export", "--model", shown(rec["model_dir"]), "--runtime", rec["export_runtime"],
                       "--precision", rec["export_precision"], "--out", shown(out), "--params", shown(params_file)])
