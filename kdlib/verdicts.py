"""The runs behind the report's findings, repeated over seeds: `kdstudy verdicts --params F`.

One profile run gives one number per claim, and one number cannot say whether a claim holds or only
looked so on that seed. This module repeats, for each seed of `verdicts.seeds`, just the runs a claim
rests on, and writes one row per seed to `reports/<profile>/verdicts/<claim>.csv`; the report
(`kdlib.findings`) reads those files and gives each claim mean ± std, a t-test and a verdict.

- `half_depth_retention` and `kd_beats_twin`: step 02's half-depth student, distilled and as its no-KD
  twin, trained with each seed (the teacher is the profile's own, fixed: the claims are about students of
  a given teacher).
- `fast_student`: the grid student of `verdicts.fast_student` (in the quick grid, the most accurate one at
  least 5x faster than the teacher), trained with each seed like step 03's students; its speed-up over the
  teacher is timed anew for each seed (PyTorch fp32, the profile's large batch).
- `layer_vs_ffn`: seed 000's timing finding, re-measured once per seed: the grid's shapes timed at the large
  batch and fitted as in step 03 (time is not a function of the weights, so each seed is an independent
  repetition of the measurement).

Every run is a memoised unit, so an interrupted `kdstudy verdicts` resumes where it stopped, and the seed
of the profile itself reuses nothing but gives the same numbers as its step (same key, same training).
`--train-only` trains every seed now and leaves the timings for later, for a machine that is busy now.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd

from kdlib import memo
from kdlib.config import StudyParams
from kdlib.outputs import cache_root, read_json, step_dir, write_csv

TIMING_CODE = ("evaluate", "runtimes", "grid")
TIMED = ("fast_student", "layer_vs_ffn")  # claims whose rows hold a timing


def verdicts_dir(cfg: StudyParams) -> Path:
    return step_dir(cfg.profile, "verdicts")


def _teacher_accuracy(cfg: StudyParams) -> float:
    path = step_dir(cfg.profile, "01_teacher", create=False) / "metrics.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run step 01 of this profile first (kdstudy run)")
    return read_json(path)["teacher_test_accuracy"]


def half_depth(cfg: StudyParams, seed: int, out: Path) -> dict:
    """Step 02's student and its no-KD twin with `seed` (online KD off: it gives the cached run's numbers)."""
    from kdlib import train

    c = dataclasses.replace(cfg, seed=seed, distill=dataclasses.replace(cfg.distill, compare_online_kd=False))
    runs = train.distill_student(c, out_dir=out / f"02_distill_seed{seed}")["runs"]
    kd, nokd = runs["kd_cached"]["test"]["accuracy"], runs["nokd"]["test"]["accuracy"]
    teacher = _teacher_accuracy(cfg)
    return {"seed": seed, "teacher_accuracy": teacher, "kd_accuracy": kd, "nokd_accuracy": nokd,
            "student_retention": kd / teacher, "kd_gain_pp": 100 * (kd - nokd)}


def _bench_settings(cfg: StudyParams):
    from kdlib.evaluate import BenchmarkSettings

    b = cfg.benchmark
    return BenchmarkSettings(batch_size=max(b.batch_sizes), seq_len=b.seq_len, threads=b.threads, warmup=b.warmup,
                             repeats=b.repeats)


def _timed(out: Path, name: str, seed: int, named_models: dict, cfg: StudyParams) -> dict[str, float]:
    """Median latency (ms) of each model, PyTorch fp32, measured together in one unit per seed."""
    from kdlib.distill import model_fingerprint
    from kdlib.evaluate import Benchmark

    settings = _bench_settings(cfg)
    params = {"seed": seed, "models": {n: model_fingerprint(m)[:16] for n, m in named_models.items()},
              **dataclasses.asdict(settings)}
    key = memo.unit_key("verdict_timing", TIMING_CODE, params, memo.machine())

    def build(_folder):
        return {"ms": {n: Benchmark(m, n).run(settings, "torch", "fp32")["latency_ms_median"]
                       for n, m in named_models.items()}}

    return memo.run_unit(out / "timing" / f"{name}_seed{seed}", key, build, params=params)["ms"]


def fast_student(cfg: StudyParams, seed: int, out: Path, train_only: bool = False) -> dict:
    """The grid student of `verdicts.fast_student`, trained with `seed` as step 03 trains its students."""
    from kdlib import grid, models, train
    from kdlib.distill import teacher_logits, with_teacher_logits

    c = dataclasses.replace(cfg, seed=seed)
    shape, g = cfg.verdicts.fast_student, cfg.grid
    teacher, tokenizer = train.load_teacher(c)
    _, names, tok = train.task_data(c, tokenizer)
    cache = teacher_logits(teacher, tok["train"], tokenizer, cache_root() / "teacher_outputs",
                           batch_size=g.eval_batch_size)
    student = models.make_student(teacher, shape.layers, shape.ffn, init=g.init, seed=seed)
    params = train.student_spec(c, student, g, g.loss, g.alpha, g.temperature, cache.path.name,
                                grid.training_bf16(c))
    folder = out / f"03_grid_seed{seed}"
    name = grid.shape_name(shape.layers, shape.ffn)
    result = grid._train_student(c, folder, name, student, params, tok, with_teacher_logits(tok["train"], cache.logits),
                                 names, tokenizer)
    accuracy, teacher_acc = result["test"]["accuracy"], _teacher_accuracy(cfg)
    row = {"seed": seed, "student": name, "accuracy": accuracy, "teacher_accuracy": teacher_acc,
           "points_lost": 100 * (teacher_acc - accuracy)}
    if not train_only:
        trained = grid.load_students(folder, [name])[name]
        ms = _timed(out, "fast_student", seed, {"teacher": teacher, name: trained}, cfg)
        row.update(teacher_ms=ms["teacher"], student_ms=ms[name], speedup=ms["teacher"] / ms[name])
    return row


def layer_vs_ffn(cfg: StudyParams, seed: int, out: Path) -> dict:
    """Seed 000's timing finding, measured again: the grid's shapes timed together, then step 03's fit."""
    from kdlib import grid, models, train

    teacher, _ = train.load_teacher(cfg)
    shapes = cfg.grid.students
    students = {grid.shape_name(s.layers, s.ffn): models.make_student(teacher, s.layers, s.ffn, init="alternate")
                for s in shapes}
    ms = _timed(out, "layer_vs_ffn", seed, students, cfg)
    fit = grid.fit_time([s.layers for s in shapes], [s.ffn for s in shapes], [ms[n] for n in students])
    return {"seed": seed, "layer_vs_ffn_time_ratio": fit["layer_vs_ffn_time_ratio"], "r2": fit["r2"],
            "layer_ms": fit["layer_cost_at_middle_ffn"], "ffn_widening_ms": fit["ffn_widening_cost_one_layer"]}


def run(cfg: StudyParams, train_only: bool = False, claims: list[str] | None = None) -> dict[str, Path]:
    """Every seed of every claim asked for; one CSV per claim, rewritten after each seed (so it is never
    half-written and grows as seeds finish). Returns the CSV paths."""
    from tqdm.auto import tqdm

    out = verdicts_dir(cfg)
    runs = {
        "half_depth_retention": lambda s: half_depth(cfg, s, out),
        "fast_student": lambda s: fast_student(cfg, s, out, train_only),
        "layer_vs_ffn": None if train_only else (lambda s: layer_vs_ffn(cfg, s, out)),
    }
    wanted = claims or list(cfg.verdicts.claims)
    unknown = sorted(set(wanted) - set(runs))
    if unknown:
        raise ValueError(f"unknown claim(s) {unknown}; claims are {sorted(runs)}")
    written = {}
    for claim in wanted:
        if runs[claim] is None:
            print(f"{claim}: timing only, left for a run without --train-only")
            continue
        rows = []
        for seed in tqdm(cfg.verdicts.seeds, desc=claim, unit="seed"):
            rows.append(runs[claim](seed))
            if train_only and claim in TIMED:
                continue  # trained, not yet timed: its rows are incomplete, so no CSV yet
            frame = pd.DataFrame(rows)
            written[claim] = write_csv(out / f"{claim}.csv", frame)
            if claim == "half_depth_retention":  # the same runs answer a second claim
                written["kd_beats_twin"] = write_csv(out / "kd_beats_twin.csv", frame)
    return written
