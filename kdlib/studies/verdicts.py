"""The runs behind the report's findings, repeated over seeds: `kdstudy verdicts --params F`.

One profile run gives one number per claim, and one number cannot say whether a claim holds or only
looked so on that seed. This module repeats, for each seed of `verdicts.seeds`, just the runs a claim
rests on, and writes one row per seed to `reports/<profile>/verdicts/<claim>.csv`; the report
(`kdlib.report.findings`) reads those files and gives each claim mean ± std, a t-test and a verdict.

- `half_depth_retention` and `kd_beats_twin`: step 02's half-depth student, distilled and as its no-KD
  twin, trained with each seed (the teacher is the profile's own, fixed: the claims are about students of
  a given teacher).
- `fast_student`: the grid student of `verdicts.fast_student` (in the quick grid, the most accurate one at
  least 5x faster than the teacher), trained with each seed like step 03's students; its speed-up over the
  teacher is timed anew for each seed (PyTorch fp32, the profile's large batch).
- `layer_vs_ffn`: seed 000's timing finding, re-measured once per seed: the grid's shapes timed at the large
  batch and fitted as in step 03 (time is not a function of the weights, so each seed is an independent
  repetition of the measurement).
- `edge_speedup`: step 06's half-depth KD student (seed 004's DistilBERT), distilled with each seed from the
  profile's QA teacher (step 06's, fixed; the questions too), scored on 06's eval questions (SQuAD F1) and
  timed in turn with the teacher, question by question in one run, in the pi5 profile (PyTorch fp32,
  batch 1).

Every run is a memoised unit, so an interrupted `kdstudy verdicts` resumes where it stopped, and the seed
of the profile itself reuses nothing but gives the same numbers as its step (same key, same training).
`--train-only` trains every seed now and leaves the timings for later, for a machine that is busy now.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd
import torch
from tqdm.auto import tqdm

from kdlib.core import data, models
from kdlib.core.distill import model_fingerprint, teacher_logits, with_teacher_logits
from kdlib.core.io import read_json, write_csv
from kdlib.inference import bench
from kdlib.inference.timing import Benchmark, BenchmarkSettings
from kdlib.pipeline import memo
from kdlib.pipeline.config import StudyParams
from kdlib.pipeline.paths import cache_root, step_dir
from kdlib.studies import grid, train
from kdlib.studies.edge import step as edge

TIMING_CODE = ("inference.timing", "inference.runtimes", "studies.grid")
TIMED = ("fast_student", "layer_vs_ffn", "edge_speedup")  # claims whose rows hold a timing


def verdicts_dir(cfg: StudyParams) -> Path:
    return step_dir(cfg.profile, "verdicts")


def _teacher_accuracy(cfg: StudyParams) -> float:
    path = step_dir(cfg.profile, "01_teacher", create=False) / "metrics.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run step 01 of this profile first (kdstudy run)")
    return read_json(path)["teacher_test_accuracy"]


def half_depth(cfg: StudyParams, seed: int, out: Path) -> dict:
    """Step 02's student and its no-KD twin with `seed` (online KD off: it gives the cached run's numbers)."""

    c = dataclasses.replace(cfg, seed=seed, distill=dataclasses.replace(cfg.distill, compare_online_kd=False))
    runs = train.distill_student(c, out_dir=out / f"02_distill_seed{seed}")["runs"]
    kd, nokd = runs["kd_cached"]["test"]["accuracy"], runs["nokd"]["test"]["accuracy"]
    teacher = _teacher_accuracy(cfg)
    return {"seed": seed, "teacher_accuracy": teacher, "kd_accuracy": kd, "nokd_accuracy": nokd,
            "student_retention": kd / teacher, "kd_gain_pp": 100 * (kd - nokd)}


def _bench_settings(cfg: StudyParams):
    b = cfg.benchmark
    return BenchmarkSettings(batch_size=max(b.batch_sizes), seq_len=b.seq_len, threads=b.threads, warmup=b.warmup,
                             repeats=b.repeats)


def _timed(out: Path, name: str, seed: int, named_models: dict, settings: dict, measure,
           code: tuple[str, ...] = TIMING_CODE) -> dict[str, float]:
    """Each model's time in ms, `measure(named_models)` -> {name: ms}, all measured together in one unit per
    seed (so a speed-up compares models timed under the same load). `settings` and `code` decide the
    unit's key."""

    params = {"seed": seed, "models": {n: model_fingerprint(m)[:16] for n, m in named_models.items()}, **settings}
    key = memo.unit_key("verdict_timing", code, params, memo.machine())

    def build(_folder):
        return {"ms": measure(named_models)}

    return memo.run_unit(out / "timing" / f"{name}_seed{seed}", key, build, params=params)["ms"]


def _large_batch_latency(cfg: StudyParams):
    """(settings, measure) for _timed: a classifier's median latency, PyTorch fp32, the profile's large batch."""

    settings = _bench_settings(cfg)

    def measure(named_models):
        return {n: Benchmark(m, n).run(settings, "torch", "fp32")["latency_ms_median"] for n, m in named_models.items()}

    return dataclasses.asdict(settings), measure


def fast_student(cfg: StudyParams, seed: int, out: Path, train_only: bool = False) -> dict:
    """The grid student of `verdicts.fast_student`, trained with `seed` as step 03 trains its students."""

    c = dataclasses.replace(cfg, seed=seed)
    shape = cfg.verdicts.fast_student
    teacher, tokenizer = train.load_teacher(c)
    _, names, tok = data.task_data(c, tokenizer)
    cache = teacher_logits(teacher, tok["train"], tokenizer, cache_root() / "teacher_outputs",
                           batch_size=cfg.grid.eval_batch_size)
    folder = out / f"03_grid_seed{seed}"
    name = grid.shape_name(shape.layers, shape.ffn)
    _, result = grid.train_shape(c, folder, shape, teacher, tok, with_teacher_logits(tok["train"], cache.logits),
                                 cache.path.name, names, tokenizer)
    accuracy, teacher_acc = result["test"]["accuracy"], _teacher_accuracy(cfg)
    row = {"seed": seed, "student": name, "accuracy": accuracy, "teacher_accuracy": teacher_acc,
           "points_lost": 100 * (teacher_acc - accuracy)}
    if not train_only:
        trained = grid.load_students(folder, [name])[name]
        ms = _timed(out, "fast_student", seed, {"teacher": teacher, name: trained}, *_large_batch_latency(cfg))
        row.update(teacher_ms=ms["teacher"], student_ms=ms[name], speedup=ms["teacher"] / ms[name])
    return row


def layer_vs_ffn(cfg: StudyParams, seed: int, out: Path) -> dict:
    """Seed 000's timing finding, measured again: the grid's shapes timed together, then step 03's fit."""

    teacher, _ = train.load_teacher(cfg)
    shapes = cfg.grid.students
    students = {grid.shape_name(s.layers, s.ffn): models.make_student(teacher, s.layers, s.ffn, init="alternate")
                for s in shapes}
    ms = _timed(out, "layer_vs_ffn", seed, students, *_large_batch_latency(cfg))
    fit = grid.fit_time([s.layers for s in shapes], [s.ffn for s in shapes], [ms[n] for n in students])
    return {"seed": seed, "layer_vs_ffn_time_ratio": fit["layer_vs_ffn_time_ratio"], "r2": fit["r2"],
            "layer_ms": fit["layer_cost_at_middle_ffn"], "ffn_widening_ms": fit["ffn_widening_cost_one_layer"]}


def _pi5_time(edge, questions_file: Path, questions_sha: str, teacher_dir, student_dir):
    """(settings, measure) for _timed: the teacher's and a student's mean time per question in step 06's pi5
    profile (kdstudy bench: batch 1, edge.threads threads, PyTorch fp32) over 06's eval questions, the two
    timed in turn question by question in one run (`--baseline`), as step 06 times them."""


    def measure(named_models):
        teacher, student = named_models  # names: the teacher first
        threads = torch.get_num_threads()
        try:
            r = bench.run_benchmark(student_dir, questions_file, "pi5", "torch", "fp32", edge.threads,
                                    baseline=teacher_dir)
        finally:
            torch.set_num_threads(threads)  # bench sets the profile's threads; training here keeps its own
        return {teacher: r["baseline"]["mean_ms"], student: r["mean_ms"]}

    return {"profile": "pi5", "threads": edge.threads, "questions": questions_sha, "timed": "in turn"}, measure


def _edge_setup(cfg: StudyParams, out: Path) -> dict:
    """What every seed of `edge_speedup` shares: step 06's inputs, its trained teacher and the teacher's
    scores, and the eval questions as `kdstudy bench` reads them."""

    inputs = edge.step_inputs(cfg)
    teacher = edge.load_teacher(edge.step_teacher_run(cfg), inputs)
    scores, _, _ = edge.eval_scores(teacher.run["model_dir"], inputs.tokenizer, inputs.datasets,
                                    inputs.examples["eval"], cfg.edge)
    questions = out / "timing" / "edge_questions.json"
    sha = edge.write_device_questions(inputs.examples["eval"], cfg.edge, questions)
    return {"inputs": inputs, "teacher": teacher, "teacher_scores": scores, "questions": (questions, sha),
            "shape": edge.headline_student(cfg.edge, teacher.model.config.num_hidden_layers)}


def edge_speedup(cfg: StudyParams, seed: int, out: Path, train_only: bool = False, shared: dict | None = None) -> dict:
    """Step 06's half-depth KD student, distilled with `seed` from step 06's teacher, scored on 06's eval
    questions and timed beside the teacher. `shared`: a dict that keeps _edge_setup between seeds."""

    shared = {} if shared is None else shared
    if not shared:
        shared.update(_edge_setup(cfg, out))
    inputs, teacher, shape = shared["inputs"], shared["teacher"], shared["shape"]
    run = edge.train_student(cfg, inputs, teacher, shape, kd=True, seed=seed, out_dir=out / f"06_edge_seed{seed}")
    scores, _, student = edge.eval_scores(run["model_dir"], inputs.tokenizer, inputs.datasets,
                                          inputs.examples["eval"], cfg.edge)
    name, t = edge.student_name(shape, kd=True), shared["teacher_scores"]
    row = {"seed": seed, "student": name, "best_epoch": run["best_epoch"], "teacher_em": t["exact_match"],
           "teacher_f1": t["f1"], "student_em": scores["exact_match"], "student_f1": scores["f1"],
           "student_f1_retention": scores["f1"] / t["f1"]}
    if not train_only:
        ms = _timed(out, "edge_speedup", seed, {"teacher": teacher.model, name: student},
                    *_pi5_time(cfg.edge, *shared["questions"], teacher.run["model_dir"], run["model_dir"]),
                    code=("bench", "qa"))
        row.update(teacher_ms=ms["teacher"], student_ms=ms[name], student_speedup=ms["teacher"] / ms[name])
    return row


def run(cfg: StudyParams, train_only: bool = False, claims: list[str] | None = None) -> dict[str, Path]:
    """Every seed of every claim asked for; one CSV per claim, rewritten after each seed (so it is never
    half-written and grows as seeds finish). Returns the CSV paths."""

    out = verdicts_dir(cfg)
    edge_setup: dict = {}  # step 06's inputs and teacher: loaded at the first seed, kept for the others
    runs = {
        "half_depth_retention": lambda s: half_depth(cfg, s, out),
        "fast_student": lambda s: fast_student(cfg, s, out, train_only),
        "layer_vs_ffn": None if train_only else (lambda s: layer_vs_ffn(cfg, s, out)),
        "edge_speedup": lambda s: edge_speedup(cfg, s, out, train_only, edge_setup),
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
