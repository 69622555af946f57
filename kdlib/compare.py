"""Step 04: every compression family measured side by side, and the tables that place them beside the seeds.

- The models: the teacher, 03's best half-depth and best 1-layer students (chosen on validation accuracy),
  02's KD student and its no-KD twin, and the families of kdlib.compress applied to the teacher (head
  pruning, magnitude pruning, low-rank factorisation, an ALBERT-style shared-weight student), each
  recovered (or distilled) from the teacher's cached logits, plus a head-pruned half-depth student
  (KD + pruning). Training runs and head importances are memoised units.
- The measurements (`measure`): one memoised unit per route (runtime, precision), all its models timed
  together through `kdlib.evaluate.time_runner` at each benchmark batch size, and their accuracy and
  total prediction time over the test split taken through the same prepared runner. Routes come from
  `kdlib.runtimes.ROUTES`; a route this machine refuses is a row with the reason.
- The tables: table6 (our rows, with seed 000's Table 6 and seed 001's comparison in attributed columns),
  the Pareto front, seed 001's KD-position table with our methods probed from `kdlib.losses`' registry,
  seed 002's taxonomy with our measured row per family, per-family conclusions, and the headline metrics.
"""
from __future__ import annotations

import copy
import dataclasses
import inspect
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from kdlib import compress, memo, train
from kdlib.config import TrainParams
from kdlib.outputs import read_json, step_dir

COMPARE_STEP = "04_compare"
GRID_STEP = "03_grid"
# Units are keyed by the modules that compute them and, from this module, by the source of the functions
# that do (so an edit to a table or a figure here re-trains and re-times nothing).
CODE = (*train.TRAINING_CODE, "compress")
MEASURE_CODE = ("evaluate", "runtimes", "compress")
BASELINE = "teacher"


def _source(*functions) -> str:
    """The source text of `functions`, for unit keys."""
    return "\n".join(inspect.getsource(f) for f in functions)


# ----------------------------------------------------------------------------------------------------
# the upstream students


def pick_students(grid_summary: dict, teacher_layers: int, teacher_validation_accuracy: float | None = None,
                  retention: float = 0.97) -> dict[str, str]:
    """03's students for this step, chosen on *validation* accuracy (the test split only reports):
    {"half_depth": the best half-depth one, "one_layer": the best 1-layer one, "fast": the cheapest one (fewest
    layers, then the narrowest FFN) whose best validation accuracy is at least `retention` of the teacher's}.
    "fast" is left out when no teacher accuracy is given or no student keeps that much. Any route counts
    (layer copy or general distillation)."""
    runs = {n: r for n, r in grid_summary["runs"].items() if r.get("history")}

    def val_accuracy(name):
        return max(h["accuracy"] for h in runs[name]["history"])

    def best(layers):
        of_depth = [n for n in runs if runs[n]["layers"] == layers]
        if not of_depth:
            raise ValueError(f"03_grid trained no {layers}-layer student")
        return max(of_depth, key=lambda n: (val_accuracy(n), -runs[n]["param_count"]))

    picked = {"half_depth": best(max(1, teacher_layers // 2)), "one_layer": best(1)}
    if teacher_validation_accuracy is not None:
        kept = [n for n in runs if val_accuracy(n) >= retention * teacher_validation_accuracy]
        if kept:
            picked["fast"] = min(kept, key=lambda n: (runs[n]["layers"], runs[n]["ffn"], -val_accuracy(n)))
    return picked


def teacher_validation_accuracy(teacher_summary: dict) -> float:
    """The teacher's best validation accuracy (01's record): the yardstick of pick_students' "fast" role."""
    return max(h["accuracy"] for h in teacher_summary["result"]["history"])


def load_classifier_dir(folder: Path):
    from transformers import AutoModelForSequenceClassification

    if not (Path(folder) / "config.json").exists():
        raise FileNotFoundError(f"no model in {folder}: run the step that writes it first")
    return AutoModelForSequenceClassification.from_pretrained(folder)


# ----------------------------------------------------------------------------------------------------
# compressed models, memoised


@dataclasses.dataclass
class TaskData:
    """What every recovery run reads: the tokeniser, the label names, the tokenised splits and the
    training split with the teacher's cached logits."""
    tokenizer: object
    names: list
    tok: dict
    cached_train: object
    cache_file: str


def task_data(cfg, teacher, tokenizer) -> TaskData:
    from kdlib.distill import teacher_logits, with_teacher_logits
    from kdlib.outputs import cache_root

    _, names, tok = train.task_data(cfg, tokenizer)
    cache = teacher_logits(teacher, tok["train"], tokenizer, cache_root() / "teacher_outputs",
                           batch_size=cfg.grid.eval_batch_size)
    return TaskData(tokenizer, names, tok, with_teacher_logits(tok["train"], cache.logits), cache.path.name)


def head_importance_unit(cfg, model, name: str, data: TaskData, out_dir: Path, batches: int = 8) -> dict:
    """Michel et al.'s head importance of `model` on the first `batches` training batches (memoised):
    {"importance": [[...] per layer]}."""
    from kdlib.distill import _pad_collator, model_fingerprint

    size = cfg.grid.batch_size
    params = {"model": model_fingerprint(model)[:16], "batches": batches, "batch_size": size,
              "data": dataclasses.asdict(cfg.data), "seed": cfg.seed}
    key = memo.unit_key("head_importance", CODE, params, _source(head_importance_unit))

    def build(_folder):
        collate = _pad_collator(data.tokenizer)
        rows = data.tok["train"].select_columns([c for c in ("input_ids", "token_type_ids", "attention_mask",
                                                              "label") if c in data.tok["train"].column_names])
        chunks = [collate([rows[i] for i in range(s, min(s + size, len(rows)))])  # label -> labels
                  for s in range(0, min(batches * size, len(rows)), size)]
        return {"importance": compress.head_importance(model, chunks).tolist()}

    return memo.run_unit(out_dir / "runs" / f"{name}_importance", key, build, params=params)


def load_weights(model, folder: Path):
    """Load a saved model.safetensors into `model` (a rebuilt architecture). Keys missing from the file are
    allowed only where they are shared layers stored once (weight sharing); anything else is an error."""
    from safetensors.torch import load_file

    state = load_file(Path(folder) / "model.safetensors")
    missing, unexpected = model.load_state_dict(state, strict=False)
    current = model.state_dict()
    stored = {current[k].data_ptr() for k in state if k in current}
    really_missing = [k for k in missing if current[k].data_ptr() not in stored]
    if unexpected or really_missing:
        raise ValueError(f"{folder}: weights do not fit the model (unexpected {unexpected[:3]}, "
                         f"missing {really_missing[:3]})")
    return model.eval()


def recover(cfg, model, name: str, spec: dict, data: TaskData, out_dir: Path, epochs: float, bf16: bool):
    """Fine-tune a compressed `model` with KD from the teacher's cached logits (the grid's loss, alpha,
    temperature and optimiser settings, for `epochs`), memoised by `spec` (what built the model) and the
    training settings. Returns (trained model, run record). epochs = 0 keeps the model as it is."""
    from transformers import set_seed

    from kdlib.distill import fit

    if epochs <= 0:
        return model.eval(), None
    g = cfg.grid
    hp = dataclasses.replace(g, epochs=epochs)
    params = {"spec": spec, "seed": cfg.seed, "data": dataclasses.asdict(cfg.data),
              "train": {f.name: getattr(hp, f.name) for f in dataclasses.fields(TrainParams)},
              "loss": g.loss, "alpha": g.alpha, "temperature": g.temperature, "teacher_outputs": data.cache_file,
              "bf16": bf16, "group_by_length": cfg.compute.group_by_length}
    key = memo.unit_key("compressed", CODE, params, _source(recover))
    model_dir = out_dir / "models" / name

    def fit_run(ckpt_dir):
        set_seed(cfg.seed)
        return fit(copy.deepcopy(model), data.tokenizer, data.cached_train, data.tok["validation"], data.tok["test"],
                   ckpt_dir, hp, cfg.seed, alpha=g.alpha, temperature=g.temperature, loss=g.loss, bf16=bf16,
                   group_by_length=cfg.compute.group_by_length, history_csv=ckpt_dir.parent / "history.csv",
                   run_name=name)

    record = train.run_training(name, out_dir, key, fit_run, data.names, params, save_to=model_dir,
                                tokenizer=data.tokenizer)
    return load_weights(copy.deepcopy(model), model_dir), record


def compressed_models(cfg, teacher, students: dict, data: TaskData, out_dir: Path) -> tuple[dict, pd.DataFrame]:
    """Every compression family of the profile, built and recovered: ({row name: model}, catalogue with
    each row's family, method and settings). `students`: {"half_depth": model} for KD + pruning."""
    from kdlib.distill import model_fingerprint
    from kdlib.grid import training_bf16

    c = cfg.compare
    bf16 = training_bf16(cfg)
    base = {"teacher": model_fingerprint(teacher)[:16]}
    models, rows = {}, []

    def add(name, family, method, model, setting, record):
        models[name] = model
        rows.append({"name": name, "family": family, "method": method, "setting": setting,
                     "recovery_epochs": c.recovery_epochs if record is not None else 0.0})

    importance = torch.tensor(head_importance_unit(cfg, teacher, "teacher", data, out_dir)["importance"])
    for fraction in c.head_prune_fractions:
        heads = compress.heads_to_prune(importance, fraction)
        pruned = compress.prune_heads(copy.deepcopy(teacher), heads)
        n = sum(len(h) for h in heads.values())
        spec = {**base, "method": "head_pruning", "heads": {str(k): v for k, v in heads.items()}}
        model, record = recover(cfg, pruned, f"heads_{fraction:g}", spec, data, out_dir, c.recovery_epochs, bf16)
        add(f"teacher, {n} of {importance.numel()} heads pruned", "pruning", "attention heads by importance "
            "(Michel et al. 2019) + KD recovery", model, f"fraction {fraction:g}", record)
    for sparsity in c.magnitude_sparsities:
        # No recovery: fine-tuning would refill the zeros (the masks are removed to make the pruning permanent).
        model = compress.magnitude_prune(copy.deepcopy(teacher), sparsity).eval()
        add(f"teacher, {sparsity:.0%} of encoder weights zeroed", "pruning", "unstructured magnitude (L1), "
            "no recovery", model, f"sparsity {sparsity:g}", None)
    for rank in c.svd_ranks:
        factorised = compress.factorize_embeddings(compress.factorize_ffn(copy.deepcopy(teacher), rank), rank)
        spec = {**base, "method": "svd", "rank": rank}
        model, record = recover(cfg, factorised, f"svd_r{rank}", spec, data, out_dir, c.recovery_epochs, bf16)
        add(f"teacher, FFN and embeddings at rank {rank}", "factorization", "truncated SVD + KD recovery", model,
            f"rank {rank}", record)
    albert = compress.albert_student(teacher, c.albert_embedding_size, c.albert_layers or None)
    spec = {**base, "method": "albert", "embedding_size": c.albert_embedding_size, "layers": c.albert_layers}
    model, record = recover(cfg, albert, "albert", spec, data, out_dir, c.recovery_epochs, bf16)
    depth = len(compress.encoder_layers(albert))
    add(f"ALBERT-style student ({depth} shared layers, E={c.albert_embedding_size})", "weight sharing",
        "one teacher layer shared by all positions, factorised embeddings, KD", model,
        f"E {c.albert_embedding_size}", record)

    half = students["half_depth"]
    student_importance = torch.tensor(head_importance_unit(cfg, half, "half_depth", data, out_dir)["importance"])
    fraction = c.head_prune_fractions[0]
    heads = compress.heads_to_prune(student_importance, fraction)
    spec = {"student": model_fingerprint(half)[:16], "method": "head_pruning",
            "heads": {str(k): v for k, v in heads.items()}}
    model, record = recover(cfg, compress.prune_heads(copy.deepcopy(half), heads), f"student_heads_{fraction:g}",
                            spec, data, out_dir, c.recovery_epochs, bf16)
    add(f"half-depth student, {sum(len(h) for h in heads.values())} heads pruned", "KD + pruning",
        "03's half-depth student, heads pruned by importance + KD recovery", model, f"fraction {fraction:g}", record)
    return models, pd.DataFrame(rows)


# ----------------------------------------------------------------------------------------------------
# measuring


def routes(runtimes: list[str], precisions: list[str]) -> list[tuple[str, str]]:
    """The (runtime, precision) pairs the profile asks for that ROUTES offers; an unknown runtime keeps
    its pairs (it becomes refused rows, so a typo shows in the table)."""
    from kdlib.runtimes import ROUTES

    return [(r, p) for r in runtimes for p in precisions if r not in ROUTES or p in ROUTES[r]]


def _prepare(model, runtime, precision, workdir, threads, calibration):
    """runtimes.prepare, passing calibration inputs to routes whose prepare takes them (static int8)."""
    from kdlib import runtimes as rt

    kwargs = {}
    accepted = inspect.signature(rt.prepare).parameters
    for name in ("calibration", "calibration_inputs", "calibration_data"):
        if name in accepted and calibration is not None:
            kwargs[name] = calibration
    return rt.prepare(model, runtime, precision, workdir, threads, **kwargs)


def _measure_one(model, name, runtime, precision, bench, test_ds, collate, workdir, calibration) -> dict:
    from kdlib import evaluate
    from kdlib.evaluate import BenchmarkSettings, classification_metrics, predict, time_runner

    row = {"name": name, "runtime": runtime, "precision": precision, "status": "ok", "reason": None}
    threads = bench.threads or torch.get_num_threads()
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        runner = _prepare(model, runtime, precision, workdir, threads, calibration)
        row.update(size_mb=runner.size_mb, runtime_version=runner.version, threads=threads)
        for b in bench.batch_sizes:
            settings = BenchmarkSettings(b, bench.seq_len, threads, bench.warmup, bench.repeats, bench.max_seconds)
            timing = time_runner(runner, settings, model.config.vocab_size)
            row.update({f"latency_bs{b}_ms_median": timing["latency_ms_median"],
                        f"latency_bs{b}_ms_p95": timing["latency_ms_p95"]})
        t0 = time.perf_counter()
        logits, labels = predict(runner, test_ds, max(bench.batch_sizes), collate)
        row["test_prediction_seconds"] = time.perf_counter() - t0
        row.update(classification_metrics(logits.argmax(axis=-1), labels))
    except Exception as error:  # a route that breaks on this model is a row, not a crash
        text = str(error).strip().splitlines()
        row.update(status="failed", reason=f"{type(error).__name__}: {text[0] if text else ''}")
    finally:
        torch.set_num_threads(previous)
    row["cpu_flags"] = evaluate.cpu_info()["flags"]
    return row


def measure(named_models: dict, route_list: list[tuple[str, str]], bench, test_ds, tokenizer, max_length: int,
            cache_dir: Path, calibration=None) -> pd.DataFrame:
    """One row per (model, route): size, latency (median, p95) at each benchmark batch size, accuracy,
    macro-F1 and wall seconds to predict the whole test split (batches of the largest batch size, padded
    to `max_length` so every route sees the same shapes). Each route is a memoised unit of all its models,
    timed one after another in one process; a refused route gives rows with the reason."""
    from transformers import DataCollatorWithPadding

    from kdlib import evaluate
    from kdlib.distill import dataset_fingerprint, model_fingerprint
    from kdlib.runtimes import refusal

    from kdlib.models import count_parameters

    collate = DataCollatorWithPadding(tokenizer, padding="max_length", max_length=max_length, return_tensors="pt")
    sizes = {n: {"params": count_parameters(m)["total"], "params_nonzero": compress.count_nonzero(m)}
             for n, m in named_models.items()}
    rows = []
    for runtime, precision in route_list:
        reason = refusal(runtime, precision)
        if reason:
            rows += [{"name": n, "runtime": runtime, "precision": precision, "status": "refused", "reason": reason,
                      "cpu_flags": evaluate.cpu_info()["flags"]} for n in named_models]
            continue
        params = {"models": {n: model_fingerprint(m)[:16] for n, m in named_models.items()}, "runtime": runtime,
                  "precision": precision, "batch_sizes": list(bench.batch_sizes), "seq_len": bench.seq_len,
                  "threads": bench.threads, "warmup": bench.warmup, "repeats": bench.repeats,
                  "max_seconds": bench.max_seconds,
                  "test": dataset_fingerprint(test_ds)[:16], "max_length": max_length,
                  "calibration": None if calibration is None else len(calibration)}
        key = memo.unit_key("compare_route", MEASURE_CODE, params, memo.machine(),
                            _source(measure, _measure_one, _prepare))

        def block(_folder, runtime=runtime, precision=precision):
            with tempfile.TemporaryDirectory(prefix="kd-compare-") as work:
                return {"rows": [_measure_one(m, n, runtime, precision, bench, test_ds, collate,
                                              Path(work) / f"{i}", calibration)
                                 for i, (n, m) in enumerate(named_models.items())]}

        rows += memo.run_unit(cache_dir / f"{runtime}-{precision}", key, block, params=params)["rows"]
    return pd.DataFrame([{**r, **sizes[r["name"]]} for r in rows])


def calibration_inputs(test_or_train_ds, tokenizer, size: int, max_length: int) -> list[dict]:
    """`size` rows (the first ones) as int64 numpy batches of 1, padded to max_length: what a static
    quantiser reads to fix its activation ranges."""
    from transformers import DataCollatorWithPadding

    collate = DataCollatorWithPadding(tokenizer, padding="max_length", max_length=max_length, return_tensors="np")
    cols = [c for c in ("input_ids", "token_type_ids", "attention_mask") if c in test_or_train_ds.column_names]
    rows = test_or_train_ds.select_columns(cols).select(range(min(size, len(test_or_train_ds))))
    return [{k: np.asarray(v, dtype=np.int64) for k, v in collate([rows[i]]).items()} for i in range(len(rows))]


# ----------------------------------------------------------------------------------------------------
# the comparison table


def with_speedups(measured: pd.DataFrame, batch_sizes, baseline: str = BASELINE) -> pd.DataFrame:
    """Add, per batch size, the speed-up over the PyTorch fp32 baseline and over the baseline on the
    same runtime and precision (what the compression alone buys there), and % of the baseline's accuracy
    (its PyTorch fp32 accuracy)."""
    frame = measured.copy()
    base = frame[frame["name"] == baseline].set_index(["runtime", "precision"])
    ref = ("torch", "fp32")
    for b in batch_sizes:
        col = f"latency_bs{b}_ms_median"
        if col not in frame:
            continue
        torch_fp32 = base[col].get(ref, math.nan)
        frame[f"speedup_vs_torch_fp32_teacher_bs{b}"] = torch_fp32 / frame[col]
        same = [base[col].get((r, p), math.nan) for r, p in zip(frame["runtime"], frame["precision"])]
        frame[f"speedup_vs_same_route_teacher_bs{b}"] = np.asarray(same, dtype=float) / frame[col]
    if "accuracy" in frame and ref in base.index:
        frame["pct_of_teacher"] = 100 * frame["accuracy"] / base.loc[ref, "accuracy"]
    return frame


ROLE_LABELS = {"half_depth": "half-depth student {} (03)", "one_layer": "1-layer student {} (03)",
               "fast": "fastest student within 97% {} (03)"}


def student_rows(picked: dict[str, str]) -> dict[str, str]:
    """{role: row name} for pick_students' choice; a student picked for two roles is one row (its first)."""
    rows, seen = {}, set()
    for role, name in picked.items():
        if name not in seen:
            rows[role] = ROLE_LABELS[role].format(name)
            seen.add(name)
    return rows


def label_rows(measured: pd.DataFrame, catalogue: pd.DataFrame, student_names: list[str]) -> pd.DataFrame:
    """Each measured row's family and method: from the catalogue for compressed models, "knowledge
    distillation" for the students, "teacher" for the teacher. A row on another precision than fp32 adds
    the precision to its family ("knowledge distillation + int8"); the teacher's such rows are "quantization"."""
    info = catalogue.set_index("name")
    upstream = {"teacher": ("teacher", "fine-tuned (01)"),
                "KD student (02)": ("knowledge distillation", "soft-target KD, layer copy (02)"),
                **{n: ("knowledge distillation", "soft-target KD from 03's grid") for n in student_names}}
    frame = measured.copy()
    frame["family"] = [upstream[n][0] if n in upstream else info.loc[n, "family"] for n in frame["name"]]
    frame["method"] = [upstream[n][1] if n in upstream else info.loc[n, "method"] for n in frame["name"]]
    other = frame["precision"] != "fp32"
    frame.loc[other & (frame["name"] != BASELINE), "family"] = frame["family"] + " + " + frame["precision"]
    frame.loc[other & (frame["name"] == BASELINE), "family"] = "quantization"
    return frame


def no_kd_twin_row(measured: pd.DataFrame, nokd_test: dict) -> pd.DataFrame:
    """02's no-KD twin as a row: 02 does not save it, so its accuracy is 02's record and its size and speed
    are those of the same architecture (02's KD student, PyTorch fp32); the `note` column says so."""
    twin = measured[(measured["name"] == "KD student (02)") & (measured["runtime"] == "torch")
                    & (measured["precision"] == "fp32")].copy()
    return twin.assign(name="no-KD twin (02)", method="fine-tuned without a teacher (02)",
                       accuracy=nokd_test["accuracy"], macro_f1=nokd_test["macro_f1"], test_prediction_seconds=np.nan,
                       note="accuracy from 02's record; latency and size of the same architecture (02's KD student)")


# Published numbers, each attributed to its seed. Accuracy as a fraction, time in seconds.
SEED000_TABLE6 = [  # Jang (2021), Table 6: accuracy and total prediction time over the 5,000 items
    {"model": "KoBERT", "accuracy": 0.969, "total_time_s": 36 * 60 + 15, "analog": None},
    {"model": "KcBERT-base", "accuracy": 0.967, "total_time_s": 36 * 60 + 20, "analog": "teacher"},
    {"model": "mBERT", "accuracy": 0.943, "total_time_s": 42 * 60 + 30, "analog": None},
    {"model": "distil-KcBERT", "accuracy": 0.924, "total_time_s": 5 * 60 + 30, "analog": "half_depth"},
    {"model": "ALBERT-base", "accuracy": 0.892, "total_time_s": 10 * 60, "analog": "albert"},
]
SEED001_TABLE = [  # Park, GLUE poster: parameters, speed, GLUE score (its column mixes scores and % of BERT)
    {"model": "BERT-base", "params": "110M", "speed": "1x", "glue": "79.6", "analog": "teacher"},
    {"model": "BERT-large", "params": "340M", "speed": "0.2x", "glue": "82.1", "analog": None},
    {"model": "Pruning BERT", "params": "60% of BERT heads", "speed": "1.2x", "glue": "79.4", "analog": "heads"},
    {"model": "ALBERT", "params": "1/18 of BERT-large", "speed": "1.7x of BERT-large (training)", "glue": "89.4",
     "analog": "albert"},
    {"model": "Q-BERT (8 bit)", "params": "1/4 of BERT-base", "speed": "3.7x", "glue": "99.3% of BERT",
     "analog": "teacher_int8"},
    {"model": "DistilBERT", "params": "66M (6 layers)", "speed": "1.6x", "glue": "97% of BERT",
     "analog": "half_depth"},
    {"model": "TinyBERT", "params": "14.5M (4 layers)", "speed": "9.4x", "glue": "96.8% of BERT",
     "analog": "one_layer"},
]

TABLE6_COLUMNS = ["name", "family", "method", "runtime", "precision", "status", "accuracy", "macro_f1",
                  "pct_of_teacher", "params", "params_nonzero", "size_mb", "latency_bs1_ms_median",
                  "latency_bs1_ms_p95", "latency_bs32_ms_median", "latency_bs32_ms_p95", "test_prediction_seconds",
                  "speedup_vs_torch_fp32_teacher_bs1", "speedup_vs_torch_fp32_teacher_bs32",
                  "speedup_vs_same_route_teacher_bs1", "speedup_vs_same_route_teacher_bs32", "threads",
                  "runtime_version", "cpu_flags", "reason", "note"]


def _analog_rows(frame: pd.DataFrame, analogs: dict[str, str]) -> dict[str, int]:
    """Which row of ours stands beside each paper analog key: {key: row index}."""
    found = {}
    for key, name in analogs.items():
        if key == "teacher_int8":  # the teacher's first measured int8 route
            hits = frame[(frame["name"] == analogs.get("teacher")) & frame["precision"].str.startswith("int8")
                         & (frame["status"] == "ok")]
        else:
            hits = frame[(frame["name"] == name) & (frame["runtime"] == "torch") & (frame["precision"] == "fp32")]
        if len(hits):
            found[key] = hits.index[0]
    return found


def table6(frame: pd.DataFrame, analogs: dict[str, str]) -> pd.DataFrame:
    """Our rows (TABLE6_COLUMNS) with seed 000's Table 6 and seed 001's comparison in their own columns
    (seed000_*, seed001_*), each paper model beside the row of ours that is its analog (`analogs`:
    {"teacher": row name, "half_depth": ..., "one_layer": ..., "albert": ..., "heads": ...}); a paper
    model without an analog here gets a row of its own with only the paper's columns."""
    ours = frame.reindex(columns=TABLE6_COLUMNS).reset_index(drop=True)
    ours.insert(0, "source", "measured here")
    where = _analog_rows(ours, {**analogs, "teacher_int8": None})
    extra = []
    for seed, table, fields in (("seed000", SEED000_TABLE6, ("model", "accuracy", "total_time_s")),
                                ("seed001", SEED001_TABLE, ("model", "params", "speed", "glue"))):
        for col in fields:
            ours[f"{seed}_{col}"] = None
        for paper in table:
            values = {f"{seed}_{col}": paper[col] for col in fields}
            index = where.get(paper["analog"]) if paper["analog"] else None
            if index is not None and ours.loc[index, f"{seed}_model"] is None:
                for col, value in values.items():
                    ours.loc[index, col] = value
            else:
                extra.append({"source": f"{seed} (published)", **values})
    return pd.concat([ours, pd.DataFrame(extra)], ignore_index=True)


def pareto_front(accuracy, latency) -> np.ndarray:
    """True for the rows no other row beats: none is at least as accurate and at least as fast, and
    better in one of the two. NaNs are never on the front."""
    acc, lat = np.asarray(accuracy, dtype=float), np.asarray(latency, dtype=float)
    ok = ~(np.isnan(acc) | np.isnan(lat))
    front = np.zeros(len(acc), dtype=bool)
    for i in np.flatnonzero(ok):
        dominated = ok & (acc >= acc[i]) & (lat <= lat[i]) & ((acc > acc[i]) | (lat < lat[i]))
        front[i] = not dominated.any()
    return front


def headline_metrics(frame: pd.DataFrame, baseline: str = BASELINE, batch: int = 1) -> dict:
    """metrics.json: speed-ups over the PyTorch fp32 teacher at `batch` (and the same numbers at batch 32)
    for the best int8 row, the fastest row within 1 point of the teacher's accuracy and the fastest within
    97% of it. "Best quantized" is the fastest int8 row (dynamic or static) of any model."""
    ok = frame[frame["status"] == "ok"]
    teacher = ok[(ok["name"] == baseline) & (ok["runtime"] == "torch") & (ok["precision"] == "fp32")].iloc[0]
    acc0 = teacher["accuracy"]
    col = f"speedup_vs_torch_fp32_teacher_bs{batch}"

    def fastest(rows):
        return rows.loc[rows[col].idxmax()] if len(rows) else None

    def route(row):
        return f"{row['name']} on {row['runtime']}/{row['precision']}"

    metrics = {"teacher_accuracy": float(acc0), "speedup_batch_size": batch}
    quantized = fastest(ok[ok["precision"].str.startswith("int8")])
    within_1pp = fastest(ok[ok["accuracy"] >= acc0 - 0.01])
    within_3pct = fastest(ok[ok["accuracy"] >= 0.97 * acc0])
    metrics.update({
        "best_quantized_speedup": float(quantized[col]) if quantized is not None else None,
        "best_quantized_speedup_bs32": float(quantized["speedup_vs_torch_fp32_teacher_bs32"])
        if quantized is not None else None,
        "best_quantized_route": route(quantized) if quantized is not None else None,
        "best_quantized_accuracy_drop_pp": float(100 * (acc0 - quantized["accuracy"])) if quantized is not None
        else None,
        "best_speedup_within_1pp": float(within_1pp[col]),
        "best_speedup_within_1pp_bs32": float(within_1pp["speedup_vs_torch_fp32_teacher_bs32"]),
        "best_route_within_1pp": route(within_1pp),
        "best_speedup_within_3pct": float(within_3pct[col]),
        "best_speedup_within_3pct_bs32": float(within_3pct["speedup_vs_torch_fp32_teacher_bs32"]),
        "best_route_within_3pct": route(within_3pct),
        "n_rows": int(len(frame)), "n_refused": int((frame["status"] == "refused").sum()),
        "n_failed": int((frame["status"] == "failed").sum()),
    })
    return metrics


# ----------------------------------------------------------------------------------------------------
# where each method distils (seed 001's table), probed from the loss registry

SIGNALS = ("embedding", "attention", "hidden", "prediction")
SEED001_KD_POSITIONS = [  # its table (after TinyBERT's paper): (init, pre-training signals, fine-tuning signals, DA)
    ("Distilled BiLSTM (soft)", False, (), ("prediction",), True),
    ("BERT-PKD", True, (), ("hidden", "prediction"), False),
    ("DistilBERT", True, ("prediction",), (), False),
    ("TinyBERT", False, ("embedding", "attention", "hidden"), ("embedding", "attention", "hidden", "prediction"), True),
]


def _probe_outputs(layers=2, heads=2, seq=5, hidden=8, classes=3, batch=4, token_level=False, seed=0):
    """Synthetic student or teacher outputs with every signal a loss might read (hidden states include
    the embedding output first, as transformers gives them)."""
    g = torch.Generator().manual_seed(seed)
    out = {
        "hidden_states": tuple(torch.randn(batch, seq, hidden, generator=g) for _ in range(layers + 1)),
        "attentions": tuple(torch.randn(batch, heads, seq, seq, generator=g).softmax(-1) for _ in range(layers)),
        "attention_mask": torch.ones(batch, seq, dtype=torch.long),
    }
    shape = (batch, seq, classes) if token_level else (batch, classes)
    out["logits"] = torch.randn(*shape, generator=g)
    out["distill_logits"] = torch.randn(*shape, generator=g)
    return out


def loss_signals(name: str) -> set[str]:
    """Which student signals a registered loss of kdlib.losses distils: embedding (hidden_states[0]), hidden
    (later hidden states), attention, prediction (logits and a distillation head). Found by calling the loss
    on synthetic outputs with two different teachers: a signal is distilled when its gradient depends on
    the teacher (a hard-label term's does not). A loss on token-level outputs (DistilBERT's MLM) is probed
    with those. A loss without a teacher distils nothing."""
    from kdlib.losses import get_loss

    spec = get_loss(name)
    if not spec.needs_teacher:
        return set()
    for token_level in (False, True):
        grads = []
        try:
            for teacher_seed in (1, 3):
                student = _probe_outputs(token_level=token_level, seed=0)
                leaves = {"embedding": [student["hidden_states"][0]], "hidden": list(student["hidden_states"][1:]),
                          "attention": list(student["attentions"]),
                          "prediction": [student["logits"], student["distill_logits"]]}
                flat = [t.requires_grad_(True) for ts in leaves.values() for t in ts]
                teacher = _probe_outputs(token_level=token_level, seed=teacher_seed)
                labels = {"labels": torch.randint(0, 3, student["logits"].shape[:-1],
                                                  generator=torch.Generator().manual_seed(2))}
                options = {"alpha": 0.5} if "alpha" in spec.options else {}
                loss = spec(student, teacher, labels, **options)["loss"]
                got = torch.autograd.grad(loss, flat, allow_unused=True)
                grads.append([torch.zeros_like(t) if g is None else g for t, g in zip(flat, got)])
        except (RuntimeError, ValueError, IndexError):
            continue  # wrong output shapes for this loss: try token-level outputs
        changed = [not torch.allclose(a, b) for a, b in zip(*grads)]
        signals, i = set(), 0
        for signal, tensors in leaves.items():
            if any(changed[i:i + len(tensors)]):
                signals.add(signal)
            i += len(tensors)
        return signals
    raise ValueError(f"loss {name!r} could not be probed")


def kd_position_table(methods: list[dict]) -> pd.DataFrame:
    """Seed 001's "where does each method distil" table: its rows as published, then ours, whose signal
    columns come from `loss_signals` of the losses each stage uses. `methods`: dicts with name, init
    (bool), pretraining (loss name or None), finetuning (loss name or None), augmentation (bool)."""
    rows = []
    for name, init, pre, fine, da in SEED001_KD_POSITIONS:
        rows.append({"method": name, "source": "seed 001 (published)", "init": init,
                     **{f"pre_{s}": s in pre for s in SIGNALS}, **{f"fine_{s}": s in fine for s in SIGNALS},
                     "augmentation": da, "losses": ""})
    for m in methods:
        pre = loss_signals(m["pretraining"]) if m.get("pretraining") else set()
        fine = loss_signals(m["finetuning"]) if m.get("finetuning") else set()
        rows.append({"method": m["name"], "source": "kd-study (probed from kdlib.losses)", "init": m["init"],
                     **{f"pre_{s}": s in pre for s in SIGNALS}, **{f"fine_{s}": s in fine for s in SIGNALS},
                     "augmentation": m.get("augmentation", False),
                     "losses": " + ".join(x for x in (m.get("pretraining"), m.get("finetuning")) if x)})
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------------------------------
# seed 002's taxonomy and the per-family conclusions

SEED002_QUOTES = {
    "pruning": "Sixteen Heads: 50-60% of heads removed, 1.2x, same accuracy",
    "weight factorization": "ALBERT's factorised embeddings (with sharing: 90-95% smaller)",
    "knowledge distillation": "DistilBERT 40% smaller, 2.5x, 97%; TinyBERT 87% smaller, 9.4x, 96%",
    "weight sharing": "ALBERT 90-95% smaller, 6-20x",
    "quantization": "Q8BERT: 75% of the bits, negligible loss (speed-ups need hardware support)",
    "pre-training versus downstream": "compress before fine-tuning (general) or after (downstream)",
}


def _ratio(row, col):
    value = row.get(col)
    return float(value) if value is not None and not pd.isna(value) else math.nan


def family_rows(frame: pd.DataFrame, catalogue: dict[str, str]) -> dict[str, pd.Series]:
    """The row that measures each family here: {family: row}. `catalogue`: {family: row name}; quantization
    picks the fastest int8 row of the teacher."""
    ok = frame[frame["status"] == "ok"]
    picked = {}
    for family, name in catalogue.items():
        if family == "quantization":
            rows = ok[(ok["name"] == name) & ok["precision"].str.startswith("int8")]
            if len(rows):
                picked[family] = rows.loc[rows["latency_bs1_ms_median"].idxmin()]
            continue
        rows = ok[(ok["name"] == name) & (ok["runtime"] == "torch") & (ok["precision"] == "fp32")]
        if len(rows):
            picked[family] = rows.iloc[0]
    return picked


def taxonomy_table(frame: pd.DataFrame, catalogue: dict[str, str], general_distill_gain_pp: float | None) -> pd.DataFrame:
    """Seed 002's six families, each with its quoted figures and the row of ours that measures it:
    params and size relative to the teacher, speed-ups at batch 1 and 32, % of teacher accuracy."""
    teacher = frame[(frame["name"] == BASELINE) & (frame["runtime"] == "torch") & (frame["precision"] == "fp32")].iloc[0]
    picked = family_rows(frame, catalogue)
    rows = []
    for family, quote in SEED002_QUOTES.items():
        row = {"family": family, "seed002_quote": quote, "our_row": None}
        if family in picked:
            r = picked[family]
            row.update(our_row=f"{r['name']} ({r['runtime']}/{r['precision']})",
                       params_vs_teacher=_ratio(r, "params") / teacher["params"],
                       nonzero_vs_teacher=_ratio(r, "params_nonzero") / teacher["params_nonzero"],
                       size_vs_teacher=_ratio(r, "size_mb") / teacher["size_mb"],
                       speedup_bs1=_ratio(r, "speedup_vs_torch_fp32_teacher_bs1"),
                       speedup_bs32=_ratio(r, "speedup_vs_torch_fp32_teacher_bs32"),
                       pct_of_teacher=_ratio(r, "pct_of_teacher"))
        if family == "pre-training versus downstream" and general_distill_gain_pp is not None:
            row.update(our_row="03_grid: general distillation before task KD vs task KD alone",
                       accuracy_gain_pp=general_distill_gain_pp)
        rows.append(row)
    return pd.DataFrame(rows)


def conclusions(taxonomy: pd.DataFrame, frame: pd.DataFrame) -> pd.DataFrame:
    """One sentence per family, generated from the taxonomy's numbers (nothing typed in)."""
    out = []
    for _, r in taxonomy.iterrows():
        family = r["family"]
        if family == "pre-training versus downstream":
            gain = r.get("accuracy_gain_pp")
            text = ("not measured" if gain is None or pd.isna(gain) else
                    f"General distillation before task KD changed the half-depth student's test accuracy by "
                    f"{gain:+.1f} points against task KD alone (03_grid, one seed).")
        elif r["our_row"] is None:
            text = "not measured in this run (its rows were refused or failed; see table6.csv)."
        else:
            text = (f"{r['our_row']}: {r['params_vs_teacher']:.0%} of the teacher's parameters "
                    f"({r['nonzero_vs_teacher']:.0%} of its nonzero ones), {r['size_vs_teacher']:.0%} of its size "
                    f"on disk, {r['speedup_bs1']:.2f}x / {r['speedup_bs32']:.2f}x its PyTorch fp32 speed at batch "
                    f"1 / 32, {r['pct_of_teacher']:.1f}% of its accuracy.")
            if family == "pruning":
                sparse = frame[frame["method"].fillna("").str.startswith("unstructured")
                               & (frame["status"] == "ok")]
                for _, s in sparse.iterrows():
                    text += (f" Unstructured sparsity ({s['name']}) leaves {s['params_nonzero'] / s['params']:.0%} "
                             f"of the weights nonzero but runs at {s['speedup_vs_torch_fp32_teacher_bs1']:.2f}x / "
                             f"{s['speedup_vs_torch_fp32_teacher_bs32']:.2f}x and is {s['size_mb']:.1f} MB on disk: "
                             "dense kernels multiply the zeros too.")
        out.append({"family": family, "conclusion": text})
    return pd.DataFrame(out)


# ----------------------------------------------------------------------------------------------------
# figures


def pareto_figure(frame: pd.DataFrame, batch_sizes=(1, 32)):
    """Accuracy against median latency, one panel per batch size, every measured row; the Pareto front
    joined and its points labelled."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    ok = frame[frame["status"] == "ok"].copy()
    ok["route"] = ok["runtime"] + "/" + ok["precision"]
    fig, axes = plt.subplots(1, len(batch_sizes), figsize=(6.5 * len(batch_sizes), 5), squeeze=False)
    for ax, b in zip(axes[0], batch_sizes):
        col = f"latency_bs{b}_ms_median"
        sns.scatterplot(data=ok, x=col, y="accuracy", hue="family", style="route", s=70, ax=ax)
        front = ok[pareto_front(ok["accuracy"], ok[col])].sort_values(col)
        ax.plot(front[col], front["accuracy"], color="black", linewidth=1, linestyle="--", label="Pareto front")
        for _, r in front.iterrows():
            ax.annotate(f"{r['name'][:24]}\n{r['route']}", (r[col], r["accuracy"]), fontsize=6,
                        xytext=(4, -8), textcoords="offset points")
        ax.set(xscale="log", xlabel=f"median latency at batch {b} (ms, log scale)", ylabel="test accuracy",
               title=f"Accuracy vs latency, batch {b}")
        ax.margins(x=0.15)
        ax.get_legend().remove()
    handles, labels = axes[0][-1].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 0.95), frameon=False)
    fig.tight_layout()
    return fig


def families_figure(frame: pd.DataFrame):
    """Per model on PyTorch fp32: parameters (total and nonzero), size on disk and latency at batch 1 and
    32, each relative to the teacher: what each family saves, and what it does not."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    rows = frame[(frame["runtime"] == "torch") & (frame["precision"] == "fp32") & (frame["status"] == "ok")]
    teacher = rows[rows["name"] == BASELINE].iloc[0]
    measures = {"parameters": "params", "nonzero parameters": "params_nonzero", "size on disk": "size_mb",
                "latency, batch 1": "latency_bs1_ms_median", "latency, batch 32": "latency_bs32_ms_median"}
    long = pd.concat([pd.DataFrame({"model": rows["name"].str.slice(0, 45), "measure": label,
                                    "relative to teacher": rows[col] / teacher[col]})
                      for label, col in measures.items()], ignore_index=True)
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(rows) * 1.6 + 1.5))
    sns.barplot(data=long, y="model", x="relative to teacher", hue="measure", ax=ax)
    ax.axvline(1.0, color="grey", linestyle=":")
    ax.set(ylabel="", title="What each model saves (PyTorch fp32; teacher = 1)")
    sns.move_legend(ax, "upper left", bbox_to_anchor=(1, 1), title="", frameon=False)
    return fig


def importance_figure(importance) -> object:
    """Head importance (Michel et al.), layers x heads, as a heat map."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    data = np.asarray(importance)
    fig, ax = plt.subplots(figsize=(0.5 * data.shape[1] + 2, 0.4 * data.shape[0] + 1.5))
    sns.heatmap(data, annot=True, fmt=".2f", cmap="viridis", cbar=False, ax=ax, annot_kws={"fontsize": 7})
    ax.set(xlabel="head", ylabel="layer", title="Head importance (normalised per layer)")
    return fig


def upstream_records(cfg) -> dict:
    """What 01, 02 and 03 recorded that this step reads: the teacher's metrics and run summary, 02's runs,
    03's summary and metrics."""
    return {"teacher": read_json(step_dir(cfg.profile, "01_teacher", create=False) / "metrics.json"),
            "teacher_run": read_json(step_dir(cfg.profile, "01_teacher", create=False) / "runs" / "summary.json"),
            "distill": read_json(step_dir(cfg.profile, "02_distill", create=False) / "runs" / "summary.json"),
            "grid": read_json(step_dir(cfg.profile, GRID_STEP, create=False) / "runs" / "summary.json"),
            "grid_metrics": read_json(step_dir(cfg.profile, GRID_STEP, create=False) / "metrics.json")}
