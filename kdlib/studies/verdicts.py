"""The runs behind the report's findings, repeated over seeds: `kdstudy verdicts --params F`.

One profile run gives one number per claim, and one number cannot say whether a claim holds or only
looked so on that seed. This module repeats, for each seed of `verdicts.seeds`, just the runs a claim
rests on, and writes one row per seed to `reports/<profile>/verdicts/<claim>.csv`; the report
(`kdlib.report.findings`) reads those files and gives each claim mean ± std, a test and a verdict.

- `half_depth_retention` and `kd_beats_twin`: step 02's half-depth student, distilled and as its no-KD
  twin, trained with each seed (the teacher is the profile's own, fixed: the claims are about students of
  a given teacher).
- `fast_student`: step 03's fast student (`grid_choice`: among the students at least
  `FAST_STUDENT_SPEEDUP` times faster than the teacher, the best on the validation split), trained with
  each seed like step 03's students; its speed-up over the teacher is timed anew for each seed (PyTorch
  fp32, the profile's large batch).
- `layer_vs_ffn`: seed 000's timing finding, re-measured: the grid's shapes timed at the large batch and
  fitted as in step 03. Time is not a function of the weights and these students are built the same way
  each time, so its rows are repeated timings (a `repeat` column, as many as there are seeds), not seeds.
- `edge_speedup`: step 06's half-depth KD student (seed 004's DistilBERT), distilled with each seed from the
  profile's QA teacher (step 06's, fixed; the questions too), scored on 06's eval questions (SQuAD F1) and
  timed in turn with the teacher, question by question in one run, in the pi5 profile (PyTorch fp32,
  batch 1).

Beside each CSV, `<claim>.json` records what made it: the fingerprint of the parameter sections its runs
read (`claim_sections`), the memo keys of the units each row came from, and the CSV's hash. The report
uses a CSV only while that record matches the parameters it is built with (`staleness`).

Every run is a memoised unit, so an interrupted `kdstudy verdicts` resumes where it stopped, and the seed
of the profile itself reuses nothing but gives the same numbers as its step (same key, same training).
`--train-only` trains every seed now and leaves the timings for later, for a machine that is busy now.
"""
from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import pandas as pd
import torch
from tqdm.auto import tqdm

from kdlib.core import models
from kdlib.core.fingerprint import model_fingerprint
from kdlib.core.io import read_json, write_csv, write_json
from kdlib.inference import bench
from kdlib.inference.routes import RUNTIME_CODE
from kdlib.inference.timing import Benchmark, BenchmarkSettings
from kdlib.pipeline import memo, steps
from kdlib.pipeline.config import StudentShape, StudyParams
from kdlib.pipeline.paths import reports_root, step_dir
from kdlib.studies import grid, train
from kdlib.studies.edge import step as edge

TIMING_CODE = ("inference.timing", *RUNTIME_CODE, "studies.grid")
TIMED = ("fast_student", "layer_vs_ffn", "edge_speedup")  # claims whose rows hold a timing

# Seed 000: "7배 빠른" (7x faster). The fast student must reach it in step 03's timing to be chosen.
FAST_STUDENT_SPEEDUP = 7.0

# The steps whose runs each claim repeats: their parameter sections (and the profile's seed, which trained
# the teacher) decide the claim's rows.
CLAIM_STEPS = {
    "half_depth_retention": ("01_teacher", "02_distill"),
    "kd_beats_twin": ("01_teacher", "02_distill"),
    "fast_student": ("01_teacher", "03_grid"),
    "layer_vs_ffn": ("01_teacher", "03_grid"),
    "edge_speedup": ("06_edge_benchmark",),
}


def verdicts_dir(cfg: StudyParams) -> Path:
    return step_dir(cfg.profile, "verdicts")


def _teacher_accuracy(cfg: StudyParams) -> float:
    path = step_dir(cfg.profile, "01_teacher", create=False) / "metrics.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run step 01 of this profile first (kdstudy run)")
    return read_json(path)["teacher_test_accuracy"]


# --------------------------------------------------------------------------
# Provenance: what parameters made a claim's CSV
# --------------------------------------------------------------------------


def claim_sections(claim: str) -> list[str]:
    """The parameter sections a claim's runs read (sorted): the profile's seed and its steps' sections."""
    return sorted({"seed", *(s for stem in CLAIM_STEPS[claim] for s in steps.BY_STEM[stem].sections)})


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_rows(cfg: StudyParams, out: Path, claim: str, frame: pd.DataFrame, units: dict) -> Path:
    """`<claim>.csv`, then `<claim>.json` beside it: the sections' fingerprint and values, the units of each
    row (by its seed or repeat), the machine the rows were made on (CPU model, flags, threads: a timing's and a
    bf16 training's numbers depend on it), and the CSV's hash (a CSV rewritten without its record no longer
    matches)."""
    csv = out / f"{claim}.csv"
    write_csv(csv, frame)
    sections = claim_sections(claim)
    params = cfg.to_dict()
    write_json(out / f"{claim}.json", {
        "claim": claim, "csv_sha256": _sha256(csv), "sections": sections, "fingerprint": cfg.fingerprint(sections),
        "params": {s: params[s] for s in sections}, "training_precision": _training_precision(cfg), "units": units,
        "machine": memo.machine()})
    return csv


def _training_precision(cfg: StudyParams) -> str:
    """What `compute.precision` resolves to here: `auto` trains in bf16 on a CPU with native bf16 only."""
    return "bf16" if cfg.compute.bf16 else "fp32"


def staleness(cfg: StudyParams, claim: str, csv: Path, on_this_machine: bool = True) -> str | None:
    """Why `csv` does not hold rows of `cfg`'s parameters (and, `on_this_machine`, of the training precision
    they resolve to here); None when it does."""
    record_path = csv.with_suffix(".json")
    if claim not in CLAIM_STEPS:
        return "no `kdstudy verdicts` runs make it"
    if not record_path.exists():
        return f"no record of its parameters ({record_path.name})"
    record = read_json(record_path)
    if record.get("csv_sha256") != _sha256(csv):
        return f"{record_path.name} records another version of it"
    sections = claim_sections(claim)
    precision = record.get("training_precision")
    if on_this_machine and precision != _training_precision(cfg):  # the same parameters, resolved otherwise
        return (f"trained in {precision or 'an unrecorded precision'}; here `compute.precision: "
                f"{cfg.compute.precision}` trains in {_training_precision(cfg)}")
    if record.get("sections") == sections and record.get("fingerprint") == cfg.fingerprint(sections):
        return None
    now, then = cfg.to_dict(), record.get("params", {})
    changed = [s for s in sections if then.get(s) != now[s]] or sections
    return f"made with other parameters ({', '.join(changed)})"


# --------------------------------------------------------------------------
# The runs
# --------------------------------------------------------------------------


def _own(cfg: StudyParams, stem: str) -> Path:
    """The profile's own folder of step `stem`: a seed's run whose key a step already holds is copied from
    there, not trained again (the profile's own seed, unless its parameters changed since)."""
    return step_dir(cfg.profile, stem, create=False)


def half_depth(cfg: StudyParams, seed: int, out: Path) -> dict:
    """Step 02's student and its no-KD twin with `seed` (online KD off: it gives the cached run's numbers)."""

    c = dataclasses.replace(cfg, seed=seed, distill=dataclasses.replace(cfg.distill, compare_online_kd=False))
    runs = train.distill_student(c, out_dir=out / f"02_distill_seed{seed}", same_as=_own(cfg, train.DISTILL_STEP))["runs"]
    kd, nokd = runs["kd_cached"]["test"]["accuracy"], runs["nokd"]["test"]["accuracy"]
    teacher = _teacher_accuracy(cfg)
    return {"seed": seed, "teacher_accuracy": teacher, "kd_accuracy": kd, "nokd_accuracy": nokd,
            "student_retention": kd / teacher, "kd_gain_pp": 100 * (kd - nokd),
            "units": {name: runs[name]["key"] for name in ("kd_cached", "nokd")}}


def _bench_settings(cfg: StudyParams):
    b = cfg.benchmark
    return BenchmarkSettings(batch_size=max(b.batch_sizes), seq_len=b.seq_len, threads=b.threads, warmup=b.warmup,
                             repeats=b.repeats, tolerance=b.tolerance)


def _timed(out: Path, name: str, tag: tuple[str, int], named_models: dict, settings: dict, measure,
           code: tuple[str, ...] = TIMING_CODE) -> tuple[dict[str, float], str]:
    """Each model's time in ms, `measure(named_models)` -> {name: ms}, all measured together in one unit per
    seed or repeat (`tag`: ("seed", 42) or ("repeat", 1)), so a speed-up compares models timed under the same
    load. `settings` and `code` decide the unit's key. Returns the times and the key."""

    params = {tag[0]: tag[1], "models": {n: model_fingerprint(m)[:16] for n, m in named_models.items()}, **settings}
    key = memo.unit_key("verdict_timing", code, params, memo.machine())

    def build(_folder):
        return {"ms": measure(named_models)}

    return memo.run_unit(out / "timing" / f"{name}_{tag[0]}{tag[1]}", key, build, params=params)["ms"], key


def _large_batch_latency(cfg: StudyParams):
    """(settings, measure) for _timed: a classifier's median latency, PyTorch fp32, the profile's large batch."""

    settings = _bench_settings(cfg)

    def measure(named_models):
        return {n: Benchmark(m, n).run(settings, "torch", "fp32")["latency_ms_median"] for n, m in named_models.items()}

    return dataclasses.asdict(settings), measure


def _validation_accuracy(table: pd.DataFrame, tables: Path) -> pd.Series:
    """Each student's validation accuracy at its kept epoch: table4's `val_accuracy`, or, in a table written
    before it had one, the best of its history's (the epoch is kept on that same accuracy)."""
    if "val_accuracy" in table:
        return table["val_accuracy"]
    history = tables / "history.csv"
    if not history.exists():
        return pd.Series(float("nan"), index=table.index)
    return table["student"].map(pd.read_csv(history).groupby("student")["accuracy"].max())


def grid_choice(profile_dir: Path, min_speedup: float = FAST_STUDENT_SPEEDUP) -> dict | None:
    """Step 03's fast student, chosen without looking at a test score: among its layer-copy students at least
    `min_speedup` times faster than the teacher (03's timing, PyTorch fp32, its large batch), the most accurate
    on the validation split (ties: fewer parameters); the fastest student when none is that fast. Its test
    accuracy is then an honest report. None when step 03 has not run (or recorded no validation accuracy)."""
    tables = profile_dir / "03_grid" / "tables"
    if not (tables / "table4.csv").exists() or not (tables / "benchmark.csv").exists():
        return None
    b = pd.read_csv(tables / "benchmark.csv")
    b = b[(b["name"] == "teacher") & (b["runtime"] == "torch") & (b["precision"] == "fp32") & (b["status"] == "ok")]
    teacher_ms = b[b["batch_size"] == b["batch_size"].max()]["latency_ms_median"].median()
    t = pd.read_csv(tables / "table4.csv")
    t = t.assign(val_accuracy=_validation_accuracy(t, tables), speedup=teacher_ms / t["latency_bs32_ms_median"])
    t = t[(t["route"] == "layer copy") & t["val_accuracy"].notna()]
    if t.empty:
        return None
    fast = t[t["speedup"] >= min_speedup]
    row = (fast.sort_values(["val_accuracy", "params"], ascending=[False, True]).iloc[0] if not fast.empty
           else t.loc[t["speedup"].idxmax()])
    return {"student": row["student"], "layers": int(row["layers"]), "ffn": int(row["ffn"]),
            "speedup": float(row["speedup"]), "val_accuracy": float(row["val_accuracy"]),
            "test_accuracy": float(row["test_accuracy"]), "reaches": bool(row["speedup"] >= min_speedup)}


def _fast_shape(cfg: StudyParams) -> StudentShape:
    """The shape `grid_choice` picks from this profile's step 03 (which must have run)."""
    choice = grid_choice(reports_root() / cfg.profile)
    if choice is None:
        raise FileNotFoundError(f"step 03 of {cfg.profile} has no table4.csv with validation accuracies: run "
                                f"step 03 of this profile first (kdstudy run)")
    print(f"fast_student: {choice['student']}, chosen on validation from step 03")
    return StudentShape(choice["layers"], choice["ffn"])


def fast_student(cfg: StudyParams, seed: int, out: Path, train_only: bool = False,
                 shape: StudentShape | None = None) -> dict:
    """Step 03's fast student (`shape`, else `grid_choice`'s), trained with `seed` as step 03 trains its
    students."""

    c = dataclasses.replace(cfg, seed=seed)
    shape = shape or _fast_shape(cfg)
    inputs = train.kd_inputs(c, cfg.grid.eval_batch_size)
    teacher, tokenizer, tok = inputs["teacher"], inputs["tokenizer"], inputs["tok"]
    folder = out / f"03_grid_seed{seed}"
    name = grid.shape_name(shape.layers, shape.ffn)
    _, result = grid.train_shape(c, folder, shape, teacher, tok, inputs["cached_ds"], inputs["cache"].path.name,
                                 inputs["names"], tokenizer, same_as=_own(cfg, grid.GRID_STEP))
    accuracy, teacher_acc = result["test"]["accuracy"], _teacher_accuracy(cfg)
    row = {"seed": seed, "student": name, "val_accuracy": max(h["accuracy"] for h in result["history"]),
           "accuracy": accuracy, "teacher_accuracy": teacher_acc, "points_lost": 100 * (teacher_acc - accuracy),
           "units": {"student": result["key"]}}
    if not train_only:
        trained = grid.load_students(folder, [name])[name]
        ms, key = _timed(out, "fast_student", ("seed", seed), {"teacher": teacher, name: trained},
                         *_large_batch_latency(cfg))
        row.update(teacher_ms=ms["teacher"], student_ms=ms[name], speedup=ms["teacher"] / ms[name])
        row["units"]["timing"] = key
    return row


def layer_vs_ffn(cfg: StudyParams, repeat: int, out: Path) -> dict:
    """Seed 000's timing finding, measured again (repeat `repeat`): the grid's shapes, built the same way each
    time, timed together, then step 03's fit."""

    teacher, _ = train.load_teacher(cfg)
    shapes = cfg.grid.students
    students = {grid.shape_name(s.layers, s.ffn): models.make_student(teacher, s.layers, s.ffn, init="alternate")
                for s in shapes}
    ms, key = _timed(out, "layer_vs_ffn", ("repeat", repeat), students, *_large_batch_latency(cfg))
    fit = grid.fit_time([s.layers for s in shapes], [s.ffn for s in shapes], [ms[n] for n in students])
    return {"repeat": repeat, "layer_vs_ffn_time_ratio": fit["layer_vs_ffn_time_ratio"], "r2": fit["r2"],
            "layer_ms": fit["layer_cost_at_middle_ffn"], "ffn_widening_ms": fit["ffn_widening_cost_one_layer"],
            "units": {"timing": key}}


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
    run = edge.train_student(cfg, inputs, teacher, shape, kd=True, seed=seed, out_dir=out / f"06_edge_seed{seed}",
                             same_as=_own(cfg, edge.STEP))
    scores, _, student = edge.eval_scores(run["model_dir"], inputs.tokenizer, inputs.datasets,
                                          inputs.examples["eval"], cfg.edge)
    name, t = edge.student_name(shape, kd=True), shared["teacher_scores"]
    row = {"seed": seed, "student": name, "best_epoch": run["best_epoch"], "teacher_em": t["exact_match"],
           "teacher_f1": t["f1"], "student_em": scores["exact_match"], "student_f1": scores["f1"],
           "student_f1_retention": scores["f1"] / t["f1"], "units": {"teacher": teacher.run.get("key"),
                                                                     "student": run.get("key")}}
    if not train_only:
        ms, key = _timed(out, "edge_speedup", ("seed", seed), {"teacher": teacher.model, name: student},
                         *_pi5_time(cfg.edge, *shared["questions"], teacher.run["model_dir"], run["model_dir"]),
                         code=("inference.bench", "studies.edge.qa"))
        row.update(teacher_ms=ms["teacher"], student_ms=ms[name], student_speedup=ms["teacher"] / ms[name])
        row["units"]["timing"] = key
    return row


def _runs(cfg: StudyParams, out: Path, train_only: bool) -> dict:
    """Each claim's rows: (the column that labels them, the labels, the function that makes one row)."""
    seeds, repeats = list(cfg.verdicts.seeds), list(range(1, len(cfg.verdicts.seeds) + 1))
    edge_setup: dict = {}  # step 06's inputs and teacher: loaded at the first seed, kept for the others
    fast: list = []  # the fast student's shape, chosen at its first seed (so other claims need no step 03)

    def fast_row(seed):
        if not fast:
            fast.append(_fast_shape(cfg))
        return fast_student(cfg, seed, out, train_only, fast[0])

    return {
        "half_depth_retention": ("seed", seeds, lambda s: half_depth(cfg, s, out)),
        "fast_student": ("seed", seeds, fast_row),
        "layer_vs_ffn": ("repeat", repeats, None if train_only else (lambda r: layer_vs_ffn(cfg, r, out))),
        "edge_speedup": ("seed", seeds, lambda s: edge_speedup(cfg, s, out, train_only, edge_setup)),
    }


def run(cfg: StudyParams, train_only: bool = False, claims: list[str] | None = None) -> dict[str, Path]:
    """Every seed (or repeat) of every claim asked for; one CSV per claim with its record beside it, both
    rewritten after each row (so they are never half-written and grow as rows finish). Returns the CSV paths."""

    out = verdicts_dir(cfg)
    runs = _runs(cfg, out, train_only)
    wanted = claims or list(cfg.verdicts.claims)
    unknown = sorted(set(wanted) - set(runs))
    if unknown:
        raise ValueError(f"unknown claim(s) {unknown}; claims are {sorted(runs)}")
    written = {}
    for claim in wanted:
        column, labels, make_row = runs[claim]
        if make_row is None:
            print(f"{claim}: timing only, left for a run without --train-only")
            continue
        rows, units = [], {}
        for label in tqdm(labels, desc=claim, unit=column):
            row = make_row(label)
            units[str(label)] = row.pop("units")
            rows.append(row)
            if train_only and claim in TIMED:
                continue  # trained, not yet timed: its rows are incomplete, so no CSV yet
            frame = pd.DataFrame(rows)
            written[claim] = write_rows(cfg, out, claim, frame, units)
            if claim == "half_depth_retention":  # the same runs answer a second claim
                written["kd_beats_twin"] = write_rows(cfg, out, "kd_beats_twin", frame, units)
    return written
