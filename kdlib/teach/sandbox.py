"""Distil one student in the sandbox, in seconds: any shape, T and alpha, from the teacher-output cache.

`distil(...)` trains it on a subset of the training rows (a 1-layer student on 1,000 rows takes well under a
minute on 2 cores) and scores it on validation (the number to choose by) and test. It writes under
reports/sandbox/<experiment>/ only (see kdlib.pipeline.sandbox for the notebooks' `overrides`).
"""
from __future__ import annotations

import copy
import dataclasses
import random

from transformers import set_seed

from kdlib.core import models, task
from kdlib.core.distill import fit, teacher_logits, with_teacher_logits
from kdlib.core.io import read_json
from kdlib.pipeline import memo
from kdlib.pipeline.config import StudyParams
from kdlib.pipeline.paths import cache_root, reports_root, step_dir
from kdlib.pipeline.sandbox import SANDBOX, experiment_name
from kdlib.studies import train


def distil(cfg: StudyParams, layers: int = 1, ffn: int | None = None, temperature: float = 4.0,
           alpha: float = 0.5, rows: int = 1000, epochs: float = 2.0, learning_rate: float | None = 1e-3,
           init: str = "alternate", experiment: str = "distil") -> dict:
    """Distil one student from the cached teacher outputs of `cfg`'s teacher (step 01 must have run) on
    at most `rows` training rows drawn with the profile's seed; a memoised unit under
    reports/sandbox/<experiment>/02_distill/runs/, so asking again reads it back. Returns the student's
    validation and test accuracy beside the teacher's, its size and its training time.

    The defaults make a short run that teaches something: 64 steps at batch 32 on 1,000 rows, at ten times
    the quick profile's learning rate (on the quick profile's teacher, 1 epoch at 5e-4 left a 1-layer student
    at the majority class on validation; 2 epochs at 1e-3 did best of the three settings tried).
    `learning_rate=None` takes the profile's distil.learning_rate."""
    if rows < 1:
        raise ValueError(f"rows must be at least 1, not {rows}")
    teacher, tokenizer = train.load_teacher(cfg)
    _, names, tok = task.task_data(cfg, tokenizer)
    cache = teacher_logits(teacher, tok["train"], tokenizer, cache_root() / "teacher_outputs",
                           batch_size=cfg.distill.eval_batch_size)
    n = len(tok["train"])
    rows = min(rows, n)  # a small profile has fewer rows than asked for: all of them
    chosen = sorted(random.Random(cfg.seed).sample(range(n), rows))
    train_ds = with_teacher_logits(tok["train"], cache.logits).select(chosen)
    student = models.make_student(teacher, layers, ffn, init=init, seed=cfg.seed)
    hp = dataclasses.replace(cfg.distill, epochs=epochs, learning_rate=learning_rate or cfg.distill.learning_rate)
    loss = "ce" if alpha == 1 else cfg.distill.loss
    params = {**train.student_spec(cfg, student, hp, loss, alpha, temperature, cache.path.name if alpha < 1 else None,
                                   teacher=teacher), "rows": rows, "row_seed": cfg.seed}
    name = (f"L{layers}_F{student.config.intermediate_size}_T{temperature:g}_a{alpha:g}_n{rows}_e{epochs:g}"
            f"_lr{hp.learning_rate:g}")
    out_dir = reports_root() / SANDBOX / experiment_name(None, experiment) / train.DISTILL_STEP

    def fit_student(ckpt_dir):
        set_seed(cfg.seed)
        return fit(copy.deepcopy(student), tokenizer, train_ds, tok["validation"], tok["test"], ckpt_dir, hp,
                   cfg.seed, alpha=alpha, temperature=temperature, loss=loss, bf16=cfg.compute.bf16,
                   group_by_length=cfg.compute.group_by_length, history_csv=ckpt_dir.parent / "history.csv",
                   run_name=name)

    key = memo.unit_key("student", train.TRAINING_CODE, params)
    result = train.run_training(name, out_dir, key, fit_student, names, params)
    best = max(result["history"], key=lambda row: row["accuracy"])
    teacher_run = read_json(step_dir(cfg.profile, train.TEACHER_STEP, create=False) / "runs" / "summary.json")["result"]
    return {"student": name, "rows": rows, "layers": layers, "ffn": student.config.intermediate_size,
            "temperature": temperature, "alpha": alpha, "val_accuracy": best["accuracy"],
            "test_accuracy": result["test"]["accuracy"],
            "teacher_val_accuracy": _teacher_val(teacher_run), "params": models.count_parameters(student)["total"],
            "train_seconds": result["train_step_seconds"], "reused": result.get("reused", False)}


def _teacher_val(run: dict) -> float:
    """The teacher's validation accuracy at its kept (best) epoch."""
    return max(row["accuracy"] for row in run["history"])
