"""Seed 000's grid of students (layers x FFN size), distilled from one teacher through one cache.

Jang (2021) distils KcBERT into nine DistilBERT students, {1, 3, 6} layers x {192, 768, 3072} FFN, and
measures their size, prediction time and accuracy (its Tables 4 and 5). Here:

- every student of `grid.students` is built from the fine-tuned teacher by layer copy (DistilBERT's
  initialisation; a narrower FFN keeps the teacher's first neurons), then distilled on the task from the
  teacher-output cache that step 02 built (the same teacher and tokens give the same cache file);
- a few students (`grid.general_distill.students`) also take the route the seed took: general
  distillation first (TinyBERT's embedding, hidden-state and attention losses on the task's unlabelled
  training texts, with the teacher online), then the same task KD. General distillation starts from the
  layer copy: a few thousand sentences cannot teach a randomly initialised student a language;
- two students are also trained for a fraction of an epoch with the teacher run online, to measure what
  the cache saves per epoch;
- everything is timed in one process (`kdlib.studies.results.benchmark_models`), and the time is fitted against
  layers and FFN size to test the seed's finding that a layer costs far more than a wider FFN.

Every training and timing is a memoised unit (kdlib/pipeline/memo.py): a rerun, or a run resumed after a kill,
trains and times only what is missing.
"""
from __future__ import annotations

import copy
import dataclasses
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.profiler import ProfilerActivity, profile
from transformers import (
    AutoModelForSequenceClassification,
    DistilBertConfig,
    DistilBertForMaskedLM,
    DistilBertForSequenceClassification,
    set_seed,
)

from kdlib.compress.flops import bert_flops
from kdlib.core import models
from kdlib.core.distill import compute_logits, fit
from kdlib.core.fingerprint import model_fingerprint
from kdlib.core.io import write_json
from kdlib.inference.runtimes import random_batch
from kdlib.pipeline import memo
from kdlib.pipeline.config import StudentShape, StudyParams
from kdlib.pipeline.paths import step_dir
from kdlib.pipeline.workers import JOB_THREADS, map_jobs, torch_threads
from kdlib.studies import papers, train

GRID_STEP = "03_grid"



def shape_name(layers: int, ffn: int) -> str:
    return f"L{layers}_F{ffn}"


# ----------------------------------------------------------------------------------------------------
# the paper's architecture, from configuration only


def paper_architecture_table() -> pd.DataFrame:
    """Seed 000's nine students rebuilt from configuration (no weights, so it runs offline): DistilBERT
    with vocabulary 30,000, 300 positions, hidden 768, 12 heads, and the grid's layers and FFN sizes.

    `params` counts DistilBertForMaskedLM (the output projection tied to the embeddings), the model its
    pre-training distillation produced; `params_classifier` the 3-label classifier fine-tuned from it.
    """

    rows = []
    with torch.device("meta"):  # shapes only: no memory, no time
        for (layers, ffn), (params_paper, seconds_paper) in papers.SEED000_TABLE4.items():
            t = papers.SEED000_TEACHER
            config = DistilBertConfig(vocab_size=t["vocab"], max_position_embeddings=t["max_positions"], dim=t["hidden"],
                                      n_heads=t["heads"], n_layers=layers, hidden_dim=ffn, num_labels=3)
            mlm = models.count_parameters(DistilBertForMaskedLM(config))["total"]
            classifier = models.count_parameters(DistilBertForSequenceClassification(config))["total"]
            rows.append({"layers": layers, "ffn": ffn, "params": mlm, "params_paper": params_paper,
                         "difference": mlm - params_paper, "params_classifier": classifier,
                         "time_paper_s": seconds_paper})
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------------------------------
# training the grid


def _train_student(cfg, out_dir, name, student, params, tok, train_ds, names, tokenizer, teacher=None,
                   hp=None, loss=None, alpha=None, save=True, same_as: Path | None = None) -> dict:
    """One memoised training run of a student; returns its result."""


    g = cfg.grid
    hp = hp or g
    key = memo.unit_key("student", train.TRAINING_CODE, params)
    model_dir = out_dir / "models" / name if save else None
    # The same run recorded by step 02 (same shape, data and hyperparameters: its student, or its online-KD
    # probe) is copied, not redone; a saved run copies 02's student model with it.
    distill_runs = step_dir(cfg.profile, "02_distill", create=False) / "runs"
    train.adopt_run(out_dir / "runs" / name, key, same_as, model_dir)
    adopted = memo.adopt(out_dir / "runs" / name, key, [distill_runs / "kd_cached", distill_runs / "kd_online_probe"])
    if save and adopted is not None:
        shutil.copytree(distill_runs.parent / "student_model", model_dir, dirs_exist_ok=True)

    def fit_run(ckpt_dir):
        set_seed(cfg.seed)
        with torch_threads(params["threads"]):
            return fit(copy.deepcopy(student), tokenizer, train_ds, tok["validation"], tok["test"], ckpt_dir, hp,
                       cfg.seed, teacher=teacher, alpha=g.alpha if alpha is None else alpha, temperature=g.temperature,
                       loss=loss or g.loss, bf16=params["bf16"], group_by_length=cfg.compute.group_by_length,
                       history_csv=ckpt_dir.parent / "history.csv", run_name=name)

    return train.run_training(name, out_dir, key, fit_run, names, params, save_to=model_dir, tokenizer=tokenizer)


def _general_distill(cfg, out_dir, name, student, teacher_dir, tok, names, tokenizer) -> tuple[object, str]:
    """TinyBERT-style general distillation of `student` on the unlabelled training texts; returns the
    distilled student (ready for task KD) and the key of that unit."""

    gd = cfg.grid.general_distill
    texts = tok["train"] if gd.max_texts is None else tok["train"].select(range(min(gd.max_texts, len(tok["train"]))))
    # TinyBERT's attention loss needs the attention probabilities, which only eager attention returns.
    teacher = AutoModelForSequenceClassification.from_pretrained(teacher_dir, attn_implementation="eager")
    student = copy.deepcopy(student)
    student.set_attn_implementation("eager")
    params = {**train.student_spec(cfg, student, gd, gd.loss, 0.0, 1.0, "online", cfg.compute.bf16, teacher=teacher,
                                   threads=JOB_THREADS),
              "texts": len(texts), "labels_used": False}
    gd_name = f"{name}_general"
    _train_student(cfg, out_dir, gd_name, student, params, tok, texts, names, tokenizer, teacher=teacher, hp=gd,
                   loss=gd.loss, alpha=0.0)
    distilled = AutoModelForSequenceClassification.from_pretrained(out_dir / "models" / gd_name)
    distilled.set_attn_implementation("sdpa")
    distilled.config.kd_init = f"{student.config.kd_init}+general_distill"
    return distilled, memo.unit_key("student", train.TRAINING_CODE, params)


def train_shape(cfg: StudyParams, out_dir: Path, shape, teacher, tok, cached_ds, cache_name: str, names,
                tokenizer, same_as: Path | None = None) -> tuple[object, dict]:
    """One grid student of `shape` (layers, ffn), copied from the teacher and distilled from its cached logits
    (`cached_ds`, from the cache file `cache_name`) as step 03 does, with cfg.seed; a memoised unit in
    out_dir. Returns (the untrained student, the run's result)."""
    g = cfg.grid
    student = models.make_student(teacher, shape.layers, shape.ffn, init=g.init, seed=cfg.seed)
    params = train.student_spec(cfg, student, g, g.loss, g.alpha, g.temperature, cache_name, cfg.compute.bf16,
                                teacher=teacher, threads=JOB_THREADS)
    name = shape_name(shape.layers, shape.ffn)
    return student, _train_student(cfg, out_dir, name, student, params, tok, cached_ds, names, tokenizer,
                                   same_as=same_as)


def grid_run(cfg: StudyParams, out_dir: Path, kind: str, layers: int, ffn: int) -> dict:
    """One of step 03's trainings as memoised units, with JOB_THREADS torch threads (a job for
    kdlib.pipeline.workers.map_jobs): kind "shape" (the layer-copied student distilled from the cache),
    "general" (general distillation, then the same task KD) or "probe" (the online-KD probe). Returns
    {run name: run}."""
    g = cfg.grid
    inputs = train.kd_inputs(cfg, g.eval_batch_size)
    teacher, tokenizer, tok, names = inputs["teacher"], inputs["tokenizer"], inputs["tok"], inputs["names"]
    cache_name = inputs["cache"].path.name
    shape = StudentShape(layers, ffn)
    name = shape_name(layers, ffn)
    if kind == "shape":
        student, result = train_shape(cfg, out_dir, shape, teacher, tok, inputs["cached_ds"], cache_name, names,
                                      tokenizer)
        return {name: {"layers": layers, "ffn": ffn, "route": "layer copy",
                       "param_count": models.count_parameters(student)["total"], **result}}
    student = models.make_student(teacher, layers, ffn, init=g.init, seed=cfg.seed)
    if kind == "general":
        teacher_dir = step_dir(cfg.profile, train.TEACHER_STEP, create=False) / "model"
        distilled, gd_key = _general_distill(cfg, out_dir, name, student, teacher_dir, tok, names, tokenizer)
        params = {**train.student_spec(cfg, distilled, g, g.loss, g.alpha, g.temperature, cache_name,
                                       cfg.compute.bf16, teacher=teacher, threads=JOB_THREADS),
                  "init_from": gd_key}
        return {f"{name}_gd": {"layers": layers, "ffn": ffn, "route": "general distillation",
                               "param_count": models.count_parameters(student)["total"],
                               **_train_student(cfg, out_dir, f"{name}_gd", distilled, params, tok, inputs["cached_ds"],
                                                names, tokenizer)}}
    probe_hp = dataclasses.replace(g, epochs=g.online_probe_epochs)
    params = train.student_spec(cfg, student, probe_hp, g.loss, g.alpha, g.temperature, "online", cfg.compute.bf16,
                                teacher=teacher, threads=JOB_THREADS)
    return {f"{name}_online_probe": _train_student(cfg, out_dir, f"{name}_online_probe", student, params, tok,
                                                   tok["train"], names, tokenizer, teacher=teacher, hp=probe_hp,
                                                   save=False)}


def distil_grid(cfg: StudyParams, out_dir: Path | None = None) -> dict:
    """Train every student of the grid (and the general-distillation route and the online-KD probe), side by
    side on compute.workers processes of one thread each: the two probes first, together (each probe's time
    is taken beside another run, as the cached runs it is compared with are), then the longest runs first."""

    g = cfg.grid
    out_dir = Path(out_dir or step_dir(cfg.profile, GRID_STEP))
    inputs = train.kd_inputs(cfg, g.eval_batch_size, reload=True)  # builds the teacher-logits cache before the workers
    teacher, cache = inputs["teacher"], inputs["cache"]
    # What the cache saves: the smallest and the largest student, a fraction of an epoch with the teacher
    # online, against the same students' cached runs (seconds per epoch of optimisation steps).
    probed = [min(g.students, key=lambda s: (s.layers, s.ffn)), max(g.students, key=lambda s: (s.layers, s.ffn))]
    jobs = [{"kind": "probe", "layers": s.layers, "ffn": s.ffn} for s in probed]
    if g.general_distill.enabled:
        jobs += [{"kind": "general", "layers": s.layers, "ffn": s.ffn}
                 for s in sorted(g.general_distill.students, key=lambda s: (-s.layers, -s.ffn))]
    jobs += [{"kind": "shape", "layers": s.layers, "ffn": s.ffn}
             for s in sorted(g.students, key=lambda s: (-s.layers, -s.ffn))]
    done = {}
    for out in map_jobs(grid_run, jobs, {"cfg": cfg, "out_dir": out_dir}, cfg.compute.workers):
        done.update(out)
    runs = {shape_name(s.layers, s.ffn): done[shape_name(s.layers, s.ffn)] for s in g.students}
    if g.general_distill.enabled:
        runs |= {f"{shape_name(s.layers, s.ffn)}_gd": done[f"{shape_name(s.layers, s.ffn)}_gd"]
                 for s in g.general_distill.students}
    probe = {}
    for shape in probed:
        name = shape_name(shape.layers, shape.ffn)
        probe[name] = {"online_seconds_per_epoch": done[f"{name}_online_probe"]["train_step_seconds"]
                       / g.online_probe_epochs,
                       "cached_seconds_per_epoch": runs[name]["train_step_seconds"] / g.epochs}
    summary = {
        "runs": runs,
        "online_probe": probe,
        "cache": {"file": cache.path.name, "built_now": cache.built_now, "build_seconds": cache.build_seconds},
        "teacher_params": models.count_parameters(teacher)["total"],
        "label_names": inputs["names"],
    }
    write_json(out_dir / "runs" / "summary.json", summary)
    return summary


def cached_over_online_cost(summary: dict, epochs: float) -> dict:
    """The cost of training the whole grid from the cache, over training it with the teacher online.

    Measured: the probe students' seconds per epoch both ways. The teacher's forward pass is what online KD
    adds per epoch; its mean over the probe students, added to every student's cached cost, gives the
    grid's online cost. The cached cost includes building the cache once.
    """
    probe = summary["online_probe"]
    runs = [r for r in summary["runs"].values() if r["route"] == "layer copy"]
    teacher_per_epoch = np.mean([p["online_seconds_per_epoch"] - p["cached_seconds_per_epoch"] for p in probe.values()])
    cached = sum(r["train_step_seconds"] for r in runs)
    online = cached + len(runs) * epochs * teacher_per_epoch
    build = summary["cache"]["build_seconds"] or 0.0
    probe_ratio = (sum(p["cached_seconds_per_epoch"] for p in probe.values())
                   / sum(p["online_seconds_per_epoch"] for p in probe.values()))
    return {"grid_cached_seconds": cached + build, "grid_online_seconds": online,
            "grid_cached_over_online_cost": (cached + build) / online, "probe_cached_over_online": probe_ratio,
            "teacher_forward_seconds_per_epoch": teacher_per_epoch}


# ----------------------------------------------------------------------------------------------------
# timing


def load_students(out_dir: Path, names: list[str]) -> dict:
    return {n: AutoModelForSequenceClassification.from_pretrained(out_dir / "models" / n) for n in names}


def prediction_seconds(named_models: dict, test_ds, tokenizer, batch_size: int, out_dir: Path) -> dict:
    """Seed 000's "prediction time": wall seconds to predict the whole test split (PyTorch fp32, batches of
    `batch_size`, this process's threads), each model after one warm-up batch, all in one unit."""


    params = {"models": {n: model_fingerprint(m)[:16] for n, m in named_models.items()}, "rows": len(test_ds),
              "batch_size": batch_size, "threads": torch.get_num_threads()}
    key = memo.unit_key("prediction_time", ("core.distill", "inference.timing"), params, memo.machine())

    def build(_folder):
        seconds = {}
        for name, model in named_models.items():
            compute_logits(model, test_ds.select(range(min(batch_size, len(test_ds)))), tokenizer, batch_size)
            t0 = time.perf_counter()
            compute_logits(model, test_ds, tokenizer, batch_size)
            seconds[name] = time.perf_counter() - t0
        return {"seconds": seconds}

    return memo.run_unit(out_dir / "timing" / "prediction", key, build, params=params)["seconds"]


def profile_forward(model, batch_size: int, seq_len: int, top: int = 12) -> pd.DataFrame:
    """Where one forward pass spends its time: torch's profiler, operators by self CPU time."""


    inputs = {k: torch.as_tensor(v) for k, v in random_batch(batch_size, seq_len, model.config.vocab_size).items()}
    model.eval()
    with torch.inference_mode():
        model(**inputs)  # warm-up
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(5):
                model(**inputs)
    rows = [{"operator": e.key, "calls": e.count // 5, "self_ms": e.self_cpu_time_total / 5 / 1e3}
            for e in prof.key_averages()]
    frame = pd.DataFrame(rows).sort_values("self_ms", ascending=False)
    frame["share"] = frame["self_ms"] / frame["self_ms"].sum()
    return frame.head(top).reset_index(drop=True)


# ----------------------------------------------------------------------------------------------------
# tables and the timing finding


def table3(teacher, students: dict, teacher_name: str) -> pd.DataFrame:
    """Seed 000's Table 3: the teacher's and the students' configurations, read from the models; the paper's
    teacher (KcBERT-base) in its own columns."""
    rows = []
    for name, m in {teacher_name: teacher, **students}.items():
        c = m.config
        rows.append({"model": name, "layers": c.num_hidden_layers, "hidden": c.hidden_size,
                     "ffn": c.intermediate_size, "heads": c.num_attention_heads, "vocab": c.vocab_size,
                     "max_positions": c.max_position_embeddings,
                     "teacher_layers_copied": str(list(getattr(c, "kd_teacher_layers", []))) if m is not teacher else "",
                     "params": models.count_parameters(m)["total"]})
    frame = pd.DataFrame(rows)
    for k, v in papers.SEED000_TEACHER.items():  # the paper's teacher, beside ours
        frame[f"{k}_paper"] = [v] + [None] * (len(frame) - 1)
    return frame


def validation_accuracy(run: dict) -> float:
    """A run's validation accuracy at the epoch it keeps: the best epoch is picked on this same accuracy, so
    it is the maximum over the run's history."""
    return max(h["accuracy"] for h in run["history"])


def table4(summary: dict, bench: pd.DataFrame, pred_seconds: dict, teacher_accuracy: float, seq_len: int,
           hidden: int, num_labels: int) -> pd.DataFrame:
    """One row per student: shape, size, time, accuracy, FLOPs, and the paper's numbers where the shape is
    one of seed 000's. `val_accuracy` (the kept epoch's) is what choices read; the test columns only report."""
    ok = bench[(bench["status"] == "ok") & (bench["runtime"] == "torch") & (bench["precision"] == "fp32")]
    lat = ok.set_index(["name", "batch_size"])
    rows = []
    for name, r in summary["runs"].items():
        timed = shape_name(r["layers"], r["ffn"])  # a general-distillation student runs as its layer-copy twin
        b1, b32 = lat.loc[(timed, 1)], lat.loc[(timed, max(ok["batch_size"]))]
        same_width = hidden == papers.SEED000_TEACHER["hidden"]  # the paper's numbers stand beside its own shapes
        paper = papers.SEED000_TABLE4.get((r["layers"], r["ffn"]), (None, None)) if same_width else (None, None)
        rows.append({
            "student": name, "layers": r["layers"], "ffn": r["ffn"], "route": r["route"],
            "training_precision": "bf16" if r["params"]["bf16"] else "fp32",
            "params": r["param_count"], "size_mb": b1["size_mb"],
            "prediction_time_s": pred_seconds.get(timed),
            "latency_bs1_ms_median": b1["latency_ms_median"], "latency_bs1_ms_p95": b1["latency_ms_p95"],
            "throughput_bs32_per_s_median": b32["throughput_per_s"],
            "throughput_bs32_per_s_p95": max(ok["batch_size"]) / (b32["latency_ms_p95"] / 1e3),
            "latency_bs32_ms_median": b32["latency_ms_median"],
            "val_accuracy": validation_accuracy(r),
            "test_accuracy": r["test"]["accuracy"], "test_macro_f1": r["test"]["macro_f1"],
            "retention": r["test"]["accuracy"] / teacher_accuracy, "best_epoch": r["best_epoch"],
            "flops_per_sample": bert_flops(hidden, r["layers"], r["ffn"], seq_len, num_labels)["total"],
            "params_paper": paper[0], "time_paper_s": paper[1],
        })
    return pd.DataFrame(rows)


def best_student(table: pd.DataFrame, layers: int | None = None) -> pd.Series:
    """The row of table4 (of `layers` layers, if given) with the best validation accuracy, ties to the fewer
    parameters. Picked on validation, its test accuracy and retention are an honest report: the best of many
    test scores would not be."""
    rows = table if layers is None else table[table["layers"] == layers]
    if rows.empty:
        raise ValueError(f"the grid has no {layers}-layer student")
    return rows.sort_values(["val_accuracy", "params"], ascending=[False, True]).iloc[0]


def fit_time(layers, ffn, seconds) -> dict:
    """Least-squares fit of time = t0 + L · (a + b · FFN): a layer's cost grows linearly with its FFN.

    Returns the coefficients, the marginal cost of one more layer at the grid's middle FFN size, the cost of
    widening every layer's FFN from the smallest to the largest grid size (at one layer), their ratio, and R².
    """
    layers, ffn, seconds = (np.asarray(x, dtype=float) for x in (layers, ffn, seconds))
    design = np.column_stack([np.ones_like(layers), layers, layers * ffn])
    coef, *_ = np.linalg.lstsq(design, seconds, rcond=None)
    t0, a, b = coef
    predicted = design @ coef
    r2 = 1 - ((seconds - predicted) ** 2).sum() / max(((seconds - seconds.mean()) ** 2).sum(), 1e-30)
    middle = float(np.median(np.unique(ffn)))
    per_layer = a + b * middle
    widening = b * (ffn.max() - ffn.min())
    return {"t0": t0, "per_layer": a, "per_layer_per_ffn": b, "layer_cost_at_middle_ffn": per_layer,
            "middle_ffn": middle, "ffn_widening_cost_one_layer": widening,
            "layer_vs_ffn_time_ratio": per_layer / widening if widening > 0 else float("inf"), "r2": r2}


def timing_finding(table: pd.DataFrame, teacher_latency: dict) -> pd.DataFrame:
    """Seed 000's finding, tested per batch size (and on the paper's own Table 4): the marginal cost of a
    layer and of a wider FFN, in ms and as a share of the teacher's time, and whether fewer, wider layers
    are the cheaper way to grow a student."""
    rows = []
    grid = table[table["route"] == "layer copy"]
    big = max(teacher_latency)  # the large batch of the benchmark (its columns are named bs32)
    for label, column, teacher in (("batch 1", "latency_bs1_ms_median", teacher_latency[1]),
                                   (f"batch {big}", "latency_bs32_ms_median", teacher_latency[big])):
        f = fit_time(grid["layers"], grid["ffn"], grid[column])
        rows.append({"setting": label, "unit": "ms", **f,
                     "layer_share_of_teacher": f["layer_cost_at_middle_ffn"] / teacher,
                     "ffn_widening_share_of_teacher": f["ffn_widening_cost_one_layer"] / teacher})
    paper = pd.DataFrame([(l, f, s) for (l, f), (_, s) in papers.SEED000_TABLE4.items()], columns=["layers", "ffn", "s"])
    f = fit_time(paper["layers"], paper["ffn"], paper["s"])
    rows.append({"setting": "seed 000, Table 4 (paper)", "unit": "s", **f,
                 "layer_share_of_teacher": None, "ffn_widening_share_of_teacher": None})
    frame = pd.DataFrame(rows)
    frame["advice_holds"] = frame["layer_vs_ffn_time_ratio"] > 1
    return frame
