"""Step 06 (seed 004, SQuAD on a Raspberry-Pi-5 budget): train the QA teacher and students, score them,
run every model on every runtime through `kdstudy bench`, and draw the teaching figures.

The QA building blocks (windows, the SQuAD metric, answer extraction, one training run) are in kdlib/core/squad.py;
this module only strings them together, so changing a table or a figure here does not invalidate the
trained models (their memo keys hash kdlib/core/squad.py, not this file).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import datasets
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch
from transformers import AutoModelForQuestionAnswering, BertForMaskedLM

from kdlib.core import distill, models
from kdlib.core.fingerprint import weights_fingerprint
from kdlib.core.io import read_json, write_json, write_text
from kdlib.core.losses import distilbert_triple_loss
from kdlib.core.models import count_parameters, make_student, resolve_model
from kdlib.core.squad import (
    TOKEN_INPUTS,
    first_sentence_baseline,
    random_span_baseline,
    references_of,
    squad_scores,
    window_tokenizer,
)
from kdlib.inference import bench
from kdlib.inference.routes import RUNTIME_CODE
from kdlib.inference.runtimes import ROUTES, prepare, refusal
from kdlib.pipeline import memo
from kdlib.pipeline.config import TrainParams
from kdlib.pipeline.paths import cache_root, step_dir
from kdlib.studies import papers
from kdlib.studies.edge.qa import (
    load_examples,
    load_qa_model,
    predict_answers,
    train_qa,
    window_datasets,
)
from kdlib.studies.train import student_origin

STEP = "06_edge_benchmark"
# What the training keys leave out: the benchmark settings do not change a trained model.
_NOT_TRAINING = ("threads", "runtimes", "eval_size", "n_best", "max_answer_length")
# What only the students read: the teacher's key leaves it out, so tuning the students retrains no teacher.
_STUDENTS_ONLY = ("students", "student_init", "alpha", "temperature", "student_learning_rate", "student_epochs",
                  "transfer_size")


def student_name(shape, kd: bool) -> str:
    return f"L{shape.layers}_ffn{shape.ffn}_{'kd' if kd else 'nokd'}"


def teacher_schedule(edge) -> TrainParams:
    return TrainParams(edge.epochs, edge.learning_rate, edge.batch_size)


def student_schedule(edge) -> TrainParams:
    """The students' epochs and learning rate (edge.student_*; None: the teacher's)."""
    return TrainParams(edge.student_epochs or edge.epochs, edge.student_learning_rate or edge.learning_rate,
                         edge.batch_size)


@dataclass
class StepInputs:
    """What every training run of step 06 reads."""
    tokenizer: object
    examples: dict  # train, select, eval questions (kdlib.core.squad.load_examples)
    datasets: dict  # their windows (kdlib.core.squad.window_datasets)
    bf16: bool
    settings: dict  # the edge settings that decide a trained model (part of every run's key)


@dataclass
class Teacher:
    """The trained QA teacher, and its start/end logits on the training windows (the students' targets)."""
    run: dict  # its train_qa result: key, model_dir, ...
    model: object
    cache: object  # kdlib.core.distill.CacheResult
    kd_train: object  # the training and transfer windows, with teacher_* columns


def step_inputs(cfg) -> StepInputs:
    """The tokenizer, the profile's questions (drawn with cfg.seed) and their windows."""


    edge = cfg.edge
    tokenizer = models.load_tokenizer(edge.teacher)
    examples = load_examples(edge, cfg.seed)
    datasets = window_datasets(examples, window_tokenizer(tokenizer, edge.max_length, edge.stride))
    settings = {k: v for k, v in dataclasses.asdict(edge).items() if k not in _NOT_TRAINING}
    return StepInputs(tokenizer, examples, datasets, cfg.compute.bf16, settings)


def train_teacher(cfg, inputs: StepInputs, out_dir) -> dict:
    """Fine-tune the teacher on the gold spans (a memoised run in out_dir/runs/teacher)."""
    keys = {k: v for k, v in inputs.settings.items() if k not in _STUDENTS_ONLY}
    ds = inputs.datasets
    teacher = load_qa_model(cfg.edge.teacher, cfg.seed, cfg.edge.attention_dropout)
    return train_qa("teacher", out_dir, teacher, inputs.tokenizer, ds["train"], ds["select"],
                    teacher_schedule(cfg.edge), cfg.seed, {"train": keys}, inputs.bf16)


def load_teacher(run: dict, inputs: StepInputs) -> Teacher:
    """The trained teacher of `run`, with its logits on the training and transfer windows (cached,
    kdlib.core.distill). The transfer windows get the teacher's most likely start and end token as their span."""


    model = AutoModelForQuestionAnswering.from_pretrained(run["model_dir"])
    train, transfer = inputs.datasets["train"], inputs.datasets["transfer"]
    rows = train
    if len(transfer):
        rows = datasets.concatenate_datasets([train.select_columns(list(TOKEN_INPUTS)), transfer])
    # bf16 where the step trains in bf16: 2.4x faster here, the same most likely start and end on 320
    # windows, logits within 0.09 of fp32's.
    cache = distill.teacher_outputs(model, rows, inputs.tokenizer, cache_root() / "teacher_outputs", task="qa",
                                    bf16=inputs.bf16)
    kd_rows = train
    if len(transfer):
        for end in ("start", "end"):  # the teacher's most likely token, as the gold span would be
            transfer = transfer.add_column(f"{end}_positions",
                                           cache.outputs[f"{end}_logits"][len(train):].argmax(-1).tolist())
        kd_rows = datasets.concatenate_datasets([train, transfer.cast(train.features)])
    return Teacher(run, model, cache, distill.with_teacher_outputs(kd_rows, cache.outputs, task="qa"))


def train_student(cfg, inputs: StepInputs, teacher: Teacher, shape, kd: bool, seed: int, out_dir,
                  same_as: Path | None = None) -> dict:
    """One student of `shape` made from the trained teacher (its layers edge.student_init and its QA head),
    trained with `seed`: with soft-target KD on the teacher's cached start/end logits, or (kd=False) as the
    no-KD twin on the gold spans alone. A memoised run in out_dir/runs/<student_name>."""


    edge, ds = cfg.edge, inputs.datasets
    keys = {k: v for k, v in inputs.settings.items() if k != "students"}
    student = models.make_student(teacher.model, shape.layers, shape.ffn, init=edge.student_init, seed=seed)
    parts = {"train": keys, "shape": dataclasses.asdict(shape), **student_origin(teacher.model, student)}
    run = train_qa(student_name(shape, kd), out_dir, student, inputs.tokenizer,
                   teacher.kd_train if kd else ds["train"], ds["select"], student_schedule(edge), seed, parts,
                   inputs.bf16, teacher_cache=teacher.cache.path.name if kd else None,
                   alpha=edge.alpha if kd else 1.0, temperature=edge.temperature, same_as=same_as)
    return {**run, "layers": shape.layers, "kd": kd}


def train_models(cfg, out_dir) -> dict:
    """Fine-tune the QA teacher, then each student with KD (cached teacher outputs) and its no-KD twin.

    All runs are memoised units (out_dir/runs/<name>); models are saved under out_dir/models/<name>."""
    inputs = step_inputs(cfg)
    teacher = load_teacher(train_teacher(cfg, inputs, out_dir), inputs)
    runs = {"teacher": teacher.run}
    for shape in cfg.edge.students:
        for kd in (True, False):
            runs[student_name(shape, kd)] = train_student(cfg, inputs, teacher, shape, kd, cfg.seed, out_dir)
    cache = teacher.cache
    return {"runs": runs, "examples": inputs.examples, "datasets": inputs.datasets, "tokenizer": inputs.tokenizer,
            "bf16": inputs.bf16,
            "cache": {"rows": len(teacher.kd_train), "built_now": cache.built_now,
                      "build_seconds": cache.build_seconds},
            "teacher_layers": teacher.model.config.num_hidden_layers}


def step_teacher_run(cfg) -> dict:
    """The run record of the teacher that step 06 trained for this profile (with its model_dir), for runs
    that keep it fixed (`kdstudy verdicts`)."""

    folder = step_dir(cfg.profile, STEP, create=False)
    record, model_dir = folder / "runs" / "teacher" / "result.json", folder / "models" / "teacher"
    if not record.exists() or not (model_dir / "config.json").exists():
        raise FileNotFoundError(f"{folder} holds no trained teacher: run step 06 of this profile first (kdstudy run)")
    return {**read_json(record), "model_dir": str(model_dir)}


def eval_scores(model_dir, tokenizer, datasets, examples, edge) -> tuple[dict, dict, object]:
    """Official SQuAD v1.1 EM and F1 of a saved model on the eval questions (batched torch inference), its
    answers, and the model."""

    model = AutoModelForQuestionAnswering.from_pretrained(model_dir)
    preds = predict_answers(model, tokenizer, datasets["eval"], datasets["eval_windows"], examples, edge)
    return squad_scores(preds, references_of(examples)), preds, model


def score_models(trained: dict, edge, out_dir) -> list[dict]:
    """Official EM/F1 of every trained model on the eval questions; each model's answers are saved to
    out_dir/predictions/<name>.json."""


    examples = trained["examples"]["eval"]
    rows = []
    for name, run in trained["runs"].items():
        s, preds, model = eval_scores(run["model_dir"], trained["tokenizer"], trained["datasets"], examples, edge)
        write_json(Path(out_dir) / "predictions" / f"{name}.json", preds)
        rows.append({"model": name, "layers": model.config.num_hidden_layers, "kd": run.get("kd"),
                     "params": count_parameters(model)["total"], "exact_match": s["exact_match"], "f1": s["f1"],
                     "train_windows": run["train_windows"], "best_epoch": run["best_epoch"],
                     "train_seconds": run["train_step_seconds"]})
    refs = references_of(examples)
    for name, preds in (("baseline: first sentence", first_sentence_baseline(examples)),
                        ("baseline: random 1-4 words", random_span_baseline(examples))):
        rows.append({"model": name, **squad_scores(preds, refs)})
    return rows


def write_device_questions(examples, edge, path) -> str:
    """The eval questions and window settings as the JSON `kdstudy bench` reads; returns its sha256."""


    settings = {"max_length": edge.max_length, "stride": edge.stride, "n_best": edge.n_best,
                "max_answer_length": edge.max_answer_length}
    questions = [{"id": e["id"], "question": e["question"], "context": e["context"],
                  "answers": {"text": list(e["answers"]["text"])}} for e in examples]
    text = json.dumps({"settings": settings, "questions": questions}, ensure_ascii=False, indent=0)
    write_text(Path(path), text)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def half_depth_student(edge, teacher_layers: int):
    """The student of half the teacher's depth (seed 004's DistilBERT), or None."""
    return next((s for s in edge.students if 2 * s.layers == teacher_layers), None)


def headline_student(edge, teacher_layers: int):
    """The student that stands beside DistilBERT: the half-depth one, else (the smoke profile) the first."""
    return half_depth_student(edge, teacher_layers) or edge.students[0]


def variant_routes(edge, role: str) -> list[tuple[str, str]]:
    """(runtime, precision) pairs tried for a model. Every model runs torch fp32 (the teacher's fp32 is what
    every speed-up compares with); the half-depth student ("half") also runs every precision of every
    runtime in edge.runtimes, and the other students ("student") the dynamic int8 of ONNX Runtime."""

    routes = [("torch", "fp32")]
    if role == "half":
        routes += [(r, p) for r in edge.runtimes for p in ROUTES[r] if (r, p) != ("torch", "fp32")]
    elif role == "student" and "onnxruntime" in edge.runtimes:
        routes.append(("onnxruntime", "int8"))
    return routes


def bench_threads(edge) -> int:
    """The threads `kdstudy bench` runs with: the profile's, capped at this machine's cores."""
    return min(edge.threads, os.cpu_count() or 1)


def _bench_unit(unit, key: str, model_path, args: list[str]) -> dict:
    """`kdstudy bench --model M ARGS` in a fresh process (so that its peak memory is its own), memoised in
    `unit`: its result JSON with status "ok", or status "failed: ..." (reported, not kept). `model_path`:
    M, or a function that makes M (an export, done only when the unit is not memoised)."""


    def build(folder):
        model = model_path() if callable(model_path) else model_path
        cmd = [sys.executable, "-m", "kdlib.inference.bench", "--model", str(model), *args, "--profile", "pi5",
               "--out", str(folder / "bench.json")]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            return {"status": "failed: " + (done.stderr.strip().splitlines() or ["?"])[-1]}
        return {"status": "ok", **read_json(folder / "bench.json")}

    return memo.run_unit(unit, key, build, keep=lambda r: r["status"] == "ok")


def benchmark_variants(trained: dict, edge, out_dir, questions_file, questions_sha: str,
                       calibration_windows: int = 32) -> list[dict]:
    """Each model on each of its routes through `kdstudy bench` in a fresh process (so its peak memory is
    its own), memoised per (model, route, questions). Refused routes are listed with the reason."""


    out_dir = Path(out_dir)
    teacher_layers = trained["teacher_layers"]
    # Static int8 routes fix activation ranges on real windows: the first training windows, one at a time.
    train = trained["datasets"]["train"]
    calibration = [{k: np.asarray([train[i][k]], dtype=np.int64) for k in ("input_ids", "attention_mask",
                                                                           "token_type_ids")}
                   for i in range(min(calibration_windows, len(train)))]
    rows = []
    for name, run in trained["runs"].items():
        if run.get("kd") is False:
            continue  # the no-KD twins are scored for accuracy only
        role = "teacher" if name == "teacher" else "half" if run.get("layers") * 2 == teacher_layers else "student"
        for runtime, precision in variant_routes(edge, role):
            row = {"model": name, "runtime": runtime, "precision": precision}
            reason = refusal(runtime, precision) or bench.unsupported(runtime, precision)
            if reason:
                rows.append({**row, "status": f"not run: {reason}"})
                continue
            key = memo.unit_key("qa-bench", ("core.squad", "inference.bench", *RUNTIME_CODE),
                                weights_fingerprint(run["model_dir"]), runtime, precision, questions_sha,
                                memo.machine(bench_threads(edge)))

            def model_path(run=run, runtime=runtime, precision=precision):
                folder = Path(run["model_dir"])
                if runtime == "torch":
                    return folder

                model = AutoModelForQuestionAnswering.from_pretrained(folder)
                return prepare(model, runtime, precision, folder / f"{runtime}-{precision}", threads=1,
                               calibration=calibration).files[0]

            result = _bench_unit(out_dir / "bench" / f"{name}-{runtime}-{precision}", key, model_path,
                                 ["--data", str(questions_file), "--runtime", runtime, "--precision", precision,
                                  "--threads", str(edge.threads)])
            measured = {k: v for k, v in result.items() if k not in ("predictions", "key", "params")}
            rows.append({**measured, **row, "artifact": measured.get("model")})
    return rows


# A student's quantized (or bf16) route must keep this share of its own fp32 F1 to be the one quoted.
QUANTIZED_F1_SHARE = 0.97


# How many of a student's quantized (or bf16) routes are timed in turn with the teacher: near-tied routes
# (OpenVINO's bf16 and int8_static on AVX-512) swapped places between two separate runs of each.
PAIRED_CANDIDATES = 2


def quantized_candidates(variants: list[dict], model: str, top: int = PAIRED_CANDIDATES) -> list[tuple[str, str]]:
    """`model`'s quantized (or bf16) routes worth timing beside the teacher, chosen for this CPU on the
    validation questions the variants scored: the `top` fastest (each in its own run) of its non-fp32 routes
    whose F1 keeps QUANTIZED_F1_SHARE of its PyTorch fp32 F1, else the most accurate of them; [] when none ran."""
    mine = [v for v in variants if v["model"] == model and v["status"] == "ok"]
    fp32 = next((v for v in mine if (v["runtime"], v["precision"]) == ("torch", "fp32")), None)
    others = [v for v in mine if v["precision"] != "fp32"]
    if not others or fp32 is None:
        return []
    within = sorted((v for v in others if v["f1"] >= QUANTIZED_F1_SHARE * fp32["f1"]),
                    key=lambda v: v["total_seconds"])[:top]
    return [(v["runtime"], v["precision"]) for v in within or [max(others, key=lambda v: v["f1"])]]


def quoted_route(pairs: pd.DataFrame, model: str) -> tuple[str, str] | None:
    """The route metrics.json quotes as `model`'s quantized one: of its candidates (quantized_candidates), the
    one with the highest speed-up timed in turn with the teacher (paired_speedups' rows); None when none ran."""
    if not len(pairs):
        return None
    timed = pairs.query("model == @model and precision != 'fp32' and status == 'ok'")
    if not len(timed):
        return None
    best = timed.loc[timed["speedup"].idxmax()]
    return best["runtime"], best["precision"]


def paired_speedups(trained: dict, variants: list[dict], edge, out_dir, questions_file, questions_sha: str) -> list[dict]:
    """Each student's PyTorch fp32 route and its quantized candidates (`quantized_candidates`), as they ran in
    `variants` (benchmark_variants' rows), timed in turn with the fp32 teacher, question by question in one
    process (`kdstudy bench --baseline`, the candidates by `--also`: the teacher answers once for all): the
    speed-ups that metrics.json and Table 2 quote. The separate runs give each route's own memory, but a
    ratio of two separate runs drifts with the machine's load. Memoised per (student, routes, teacher,
    questions). One row per student and route."""

    teacher = trained["runs"]["teacher"]
    rows = []
    for name, run in trained["runs"].items():
        mine = {(v["runtime"], v["precision"]): v for v in variants if v["model"] == name and v["status"] == "ok"}
        if name == "teacher" or ("torch", "fp32") not in mine:
            continue
        folder = Path(run["model_dir"])
        routes = [("torch", "fp32")]
        also = []
        for route in quantized_candidates(variants, name):
            # what the variant ran: torch the model folder; a graph file, which for OpenVINO sits in a
            # subfolder of the route's folder
            also.append(folder if route[0] == "torch" else
                        next((folder / "-".join(route)).rglob(mine[route]["artifact"])))
            routes.append(route)
        key = memo.unit_key("qa-bench-pair", ("core.squad", "inference.bench", *RUNTIME_CODE),
                            weights_fingerprint(folder), routes, weights_fingerprint(teacher["model_dir"]), questions_sha,
                            memo.machine(bench_threads(edge)))
        args = ["--runtime", "torch", "--precision", "fp32", "--baseline", teacher["model_dir"],
                "--data", str(questions_file), "--threads", str(edge.threads)]
        for path, (runtime, precision) in zip(also, routes[1:]):
            args += ["--also", str(path), runtime, precision]
        r = _bench_unit(Path(out_dir) / "bench" / f"{name}-vs-teacher", key, folder, args)
        if r["status"] != "ok":
            rows += [{"model": name, "runtime": rt, "precision": prec, "status": r["status"]} for rt, prec in routes]
            continue
        b = r["baseline"]
        for measured, (runtime, precision) in zip([r, *r.get("also", [])], routes):
            rows.append({"model": name, "runtime": runtime, "precision": precision, "status": "ok",
                         "threads": r["threads"], "questions": r["questions"], "f1": measured["f1"],
                         "teacher_f1": b["f1"], "seconds": measured["total_seconds"],
                         "teacher_seconds": b["total_seconds"], "p50_ms": measured["p50_ms"],
                         "teacher_p50_ms": b["p50_ms"], "speedup": measured["speedup_vs_baseline"]})
    return rows


def table2(scores, pairs, device, names: list[str], half_name: str, has_half: bool):
    """Seed 004's Table 2 with ours beside it: EM and F1 of the teacher and each KD student (`names`), their
    time over the questions and speed-up from the runs timed in turn with the teacher (paired_speedups; the
    teacher's time is the one beside `half_name`), the paper's columns for the teacher and, with
    `has_half`, for the half-depth student (DistilBERT), and a device column when a device was measured."""

    torch_pairs = pairs.query("runtime == 'torch' and status == 'ok'").set_index("model") if len(pairs) else None
    sc = scores.set_index("model")
    rows = []
    for name in names:
        timed_with = half_name if name == "teacher" else name  # the pair that timed this model
        pair = torch_pairs.loc[timed_with] if torch_pairs is not None and timed_with in torch_pairs.index else None
        role = "teacher" if name == "teacher" else "half" if has_half and name == half_name else ""
        paper = papers.SEED004_TABLE2.get(role, (None,) * 4)
        row = {"model": name, "layers": int(sc.loc[name, "layers"]), "EM": sc.loc[name, "exact_match"],
               "F1": sc.loc[name, "f1"],
               "time_s": None if pair is None else pair["teacher_seconds" if name == "teacher" else "seconds"],
               "speedup": 1.0 if name == "teacher" else None if pair is None else pair["speedup"],
               "paper_model": paper[0], "paper_EM": paper[1], "paper_F1": paper[2], "paper_time_s": paper[3],
               "paper_speedup": papers.SEED004_TABLE2["teacher"][3] / paper[3] if paper[3] else None}
        if len(device):
            d = device.query("model == @name and runtime == 'torch' and precision == 'fp32'")
            row["device_time_s"] = d["total_seconds"].iloc[0] if len(d) else None
        rows.append(row)
    return pd.DataFrame(rows)


def device_results(folder) -> list[dict]:
    """Every `kdstudy bench` JSON in `folder` (results measured on a device, copied back by the user)."""

    rows = []
    for path in sorted(Path(folder).glob("*.json")):
        r = json.loads(path.read_text())
        m = r.get("machine", {})
        rows.append({"file": path.name, "model": r.get("model"), "runtime": r.get("runtime"),
                     "precision": r.get("precision"), "device": m.get("board") or m.get("cpu"),
                     "threads": r.get("threads"), "questions": r.get("questions"),
                     "exact_match": r.get("exact_match"), "f1": r.get("f1"), "total_seconds": r.get("total_seconds"),
                     "p50_ms": r.get("p50_ms"), "p95_ms": r.get("p95_ms"), "peak_rss_mb": r.get("peak_rss_mb")})
    return rows


# ----------------------------------------------------------------------------------------------------
# teaching figures


def temperature_table(logits, temperatures=(1.0, 3.0, 10.0), top: int = 15):
    """softmax(logits / T) of one logit vector at each T, over its `top` largest entries (tidy frame)."""

    logits = np.asarray(logits, dtype=np.float64)
    order = np.argsort(logits)[::-1][:top]
    rows = []
    for t in temperatures:
        z = logits / t
        p = np.exp(z - z.max())
        p /= p.sum()
        rows += [{"T": t, "rank": r + 1, "token": int(i), "logit": logits[i], "probability": p[i]}
                 for r, i in enumerate(order)]
    return pd.DataFrame(rows)


def temperature_figure(table, title: str):
    fig, ax = plt.subplots(figsize=(6.5, 3.5))
    sns.barplot(data=table.assign(T=table["T"].map(lambda t: f"T = {t:g}")), x="rank", y="probability", hue="T",
                ax=ax)
    # A log axis: on a linear one the small probabilities at T = 3 and T = 10, the soft targets' point, vanish.
    ax.set(xlabel="token position, by the teacher's start logit (rank)", ylabel="softmax(z / T), log scale",
           title=title, yscale="log")
    return fig


def triple_loss_terms(teacher_dir_or_name: str, windows_ds, n_layers: int, seed: int = 0,
                      batch_size: int = 8, mask_rate: float = 0.15):
    """DistilBERT's three loss terms (kdlib.core.losses.distilbert_triple_loss) on one batch of windows, for a
    student of `n_layers` made from the teacher's encoder. MiniLM ships without a masked-LM head, so both
    models get the same freshly initialised head (BertForMaskedLM's, decoder tied to the word embeddings):
    the terms are computed exactly as in training, but on an untrained head."""


    torch.manual_seed(seed)
    teacher = BertForMaskedLM.from_pretrained(resolve_model(teacher_dir_or_name)).eval()
    student = make_student(teacher, n_layers, seed=seed).eval()
    rows = windows_ds.select(range(min(batch_size, len(windows_ds))))
    width = max(len(r) for r in rows["input_ids"])
    ids = torch.zeros(len(rows), width, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, r in enumerate(rows["input_ids"]):
        ids[i, :len(r)], mask[i, :len(r)] = torch.tensor(r), 1
    gen = torch.Generator().manual_seed(seed)
    chosen = (torch.rand(ids.shape, generator=gen) < mask_rate) & mask.bool() & (ids > 103)  # not [CLS]/[SEP]
    labels = torch.where(chosen, ids, torch.full_like(ids, -100))
    masked = torch.where(chosen, torch.full_like(ids, 103), ids)  # 103: [MASK] in bert-base-uncased
    with torch.no_grad():
        t = teacher(input_ids=masked, attention_mask=mask, output_hidden_states=True)
        s = student(input_ids=masked, attention_mask=mask, output_hidden_states=True)
        terms = distilbert_triple_loss(s.logits, t.logits, labels, s.hidden_states[-1], t.hidden_states[-1], mask)
    return {k: float(v) for k, v in terms.items()}, int(chosen.sum())


def triple_loss_figure(terms: dict, temperature: float = 2.0):
    """The three terms raw, weighted 5/2/1 (Hugging Face's DistilBERT), and as seed 004 writes the loss
    (weights summing to 1 - here 5/8, 2/8, 1/8 - and no T^2 on the distillation term)."""

    raw = {"distillation (KL)": terms["kd"], "masked LM (CE)": terms["mlm"], "cosine": terms["cos"]}
    kl_without_t2 = terms["kd"] / temperature ** 2  # distilbert_triple_loss includes T^2
    rows = [{"weighting": "raw term", "term": k, "value": v} for k, v in raw.items()]
    rows += [{"weighting": "5 / 2 / 1, with T²\n(HF DistilBERT)", "term": k, "value": w * v}
             for (k, v), w in zip(raw.items(), (5, 2, 1))]
    rows += [{"weighting": "5/8, 2/8, 1/8, no T²\n(seed 004's form)", "term": k, "value": w * v}
             for (k, v), w in zip(zip(raw, (kl_without_t2, terms["mlm"], terms["cos"])), (5 / 8, 2 / 8, 1 / 8))]
    frame = pd.DataFrame(rows)
    fig, ax = plt.subplots(figsize=(7, 3.5))
    sns.barplot(data=frame, x="weighting", y="value", hue="term", ax=ax)
    ax.set(xlabel="", ylabel="loss contribution", title=f"DistilBERT's triple loss on one batch (T = {temperature:g})")
    ax.tick_params(axis="x", labelsize="small")
    return fig, frame


def variants_figure(table):
    """Total time over the questions per (model, route), F1 written on each bar."""

    ok = table[table["status"] == "ok"].copy()
    ok["variant"] = ok["model"] + "  " + ok["runtime"] + " " + ok["precision"]
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(ok) + 1.2))
    sns.barplot(data=ok, y="variant", x="total_seconds", color="steelblue", ax=ax)
    for i, (t, f) in enumerate(zip(ok["total_seconds"], ok["f1"])):
        ax.annotate(f" F1 {f:.1f}", (t, i), ha="left", va="center", fontsize="x-small")
    ax.set_xlim(0, ok["total_seconds"].max() * 1.2)
    ax.set(ylabel="", xlabel="seconds over the questions (batch 1)",
           title=f"pi5 profile: {int(ok['threads'].iloc[0])} threads, {int(ok['questions'].iloc[0])} questions")
    return fig
