"""Step 04: every compression family measured side by side: the models and their measurements.

- The models: the teacher, 03's best half-depth and best 1-layer students and the fastest one within 97% of
  the teacher (chosen on validation accuracy), 02's KD student and its no-KD twin, and the families of
  kdlib.compress.pruning applied to the teacher (head pruning, magnitude pruning, low-rank factorisation, an
  ALBERT-style shared-weight student), each recovered (or distilled) from the teacher's cached logits, plus a
  head-pruned half-depth student (KD + pruning). Training runs and head importances are memoised units.
- The measurements (`measure`): one memoised unit per route (runtime, precision), all its models timed
  together through `kdlib.inference.timing.time_runner` at each benchmark batch size, and their accuracy and
  total prediction time over the test split taken through the same prepared runner. Routes come from
  `kdlib.inference.runtimes.ROUTES`; a route this machine refuses is a row with the reason.
- The contenders (`head_to_head`): the rows a headline choice picks among, timed again side by side in one
  unit with the teacher, so that the choice compares speed-ups from one run.

The tables built from these rows are in kdlib.studies.compare.tables, seed 001's KD-position table in
kdlib.studies.compare.kd_positions, the figures in kdlib.studies.compare.plots.
"""
from __future__ import annotations

import copy
import dataclasses
import inspect
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

import pandas as pd
import torch
from safetensors.torch import load_file
from transformers import AutoModelForSequenceClassification, DataCollatorWithPadding, set_seed

from kdlib.compress import factorize, pruning, share
from kdlib.core.distill import _pad_collator, fit, teacher_logits, with_teacher_logits
from kdlib.core.fingerprint import dataset_fingerprint, model_fingerprint
from kdlib.core.io import read_json
from kdlib.core.metrics import classification_metrics
from kdlib.core.models import count_parameters
from kdlib.core.task import task_data as profile_task_data
from kdlib.inference import machine, peak
from kdlib.inference import runtimes as rt
from kdlib.inference.routes import RUNTIME_CODE
from kdlib.inference.runtimes import GRAPH_RUNTIMES, ROUTES, refusal
from kdlib.inference.timing import BenchmarkSettings, predict, round_ratios, time_interleaved
from kdlib.pipeline import memo
from kdlib.pipeline.config import TrainParams, to_plain
from kdlib.pipeline.paths import cache_root, step_dir
from kdlib.pipeline.workers import JOB_THREADS, map_jobs, torch_threads
from kdlib.studies import grid, train

GRID_STEP = "03_grid"
# Units are keyed by the modules that compute them and, from this module, by the syntax tree of the functions
# that do (so an edit to a table or a figure here re-trains and re-times nothing).
CODE = (*train.TRAINING_CODE, "compress.pruning", "compress.factorize", "compress.share")
MEASURE_CODE = ("inference.timing", *RUNTIME_CODE, "compress.pruning")


def pick_students(grid_summary: dict, teacher_layers: int, teacher_validation_accuracy: float | None = None,
                  retention: float = 0.97) -> dict[str, str]:
    """03's students for this step, chosen on *validation* accuracy (the test split only reports):
    {"half_depth": the best half-depth one, "one_layer": the best 1-layer one, "fast": the cheapest one (fewest
    layers, then the narrowest FFN) whose best validation accuracy is at least `retention` of the teacher's}.
    "fast" is left out when no teacher accuracy is given or no student keeps that much. Any route counts
    (layer copy or general distillation)."""
    runs = {n: r for n, r in grid_summary["runs"].items() if r.get("history")}

    def val_accuracy(name):
        return grid.validation_accuracy(runs[name])

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
    return grid.validation_accuracy(teacher_summary["result"])


def load_classifier_dir(folder: Path):
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
    _, names, tok = profile_task_data(cfg, tokenizer)
    cache = teacher_logits(teacher, tok["train"], tokenizer, cache_root() / "teacher_outputs",
                           batch_size=cfg.grid.eval_batch_size)
    return TaskData(tokenizer, names, tok, with_teacher_logits(tok["train"], cache.logits), cache.path.name)


def head_importance_unit(cfg, model, name: str, data: TaskData, out_dir: Path, batches: int = 8) -> dict:
    """Michel et al.'s head importance of `model` on the first `batches` training batches (memoised):
    {"importance": [[...] per layer]}."""

    size = cfg.grid.batch_size
    params = {"model": model_fingerprint(model)[:16], "batches": batches, "batch_size": size,
              "data": to_plain(cfg.data), "seed": cfg.seed}
    key = memo.unit_key("head_importance", (*CODE, head_importance_unit), params)

    def build(_folder):
        collate = _pad_collator(data.tokenizer)
        rows = data.tok["train"].select_columns([c for c in ("input_ids", "token_type_ids", "attention_mask",
                                                              "label") if c in data.tok["train"].column_names])
        chunks = [collate([rows[i] for i in range(s, min(s + size, len(rows)))])  # label -> labels
                  for s in range(0, min(batches * size, len(rows)), size)]
        return {"importance": pruning.head_importance(model, chunks).tolist()}

    return memo.run_unit(out_dir / "runs" / f"{name}_importance", key, build, params=params)


def load_weights(model, folder: Path):
    """Load a saved model.safetensors into `model` (a rebuilt architecture). Keys missing from the file are
    allowed only where they are shared layers stored once (weight sharing); anything else is an error."""

    state = load_file(Path(folder) / "model.safetensors")
    missing, unexpected = model.load_state_dict(state, strict=False)
    current = model.state_dict()
    stored = {current[k].data_ptr() for k in state if k in current}
    really_missing = [k for k in missing if current[k].data_ptr() not in stored]
    if unexpected or really_missing:
        raise ValueError(f"{folder}: weights do not fit the model (unexpected {unexpected[:3]}, "
                         f"missing {really_missing[:3]})")
    return model.eval()


def recover(cfg, model, name: str, spec: dict, data: TaskData, out_dir: Path, epochs: float, bf16: bool) -> dict:
    """Fine-tune a compressed `model` with KD from the teacher's cached logits (the grid's loss, alpha,
    temperature and optimiser settings, for `epochs`), with JOB_THREADS torch threads, memoised by `spec`
    (what built the model) and the training settings; the trained weights are saved in out_dir/models/name.
    Returns the run record (a job for kdlib.pipeline.workers.map_jobs)."""

    g = cfg.grid
    hp = dataclasses.replace(g, epochs=epochs)
    params = {"spec": spec, "seed": cfg.seed, "data": to_plain(cfg.data),
              "train": {f.name: getattr(hp, f.name) for f in dataclasses.fields(TrainParams)},
              "loss": g.loss, "alpha": g.alpha, "temperature": g.temperature, "teacher_outputs": data.cache_file,
              "bf16": bf16, "group_by_length": cfg.compute.group_by_length, "threads": JOB_THREADS}
    key = memo.unit_key("compressed", (*CODE, recover), params)

    def fit_run(ckpt_dir):
        set_seed(cfg.seed)
        with torch_threads(JOB_THREADS):
            return fit(copy.deepcopy(model), data.tokenizer, data.cached_train, data.tok["validation"],
                       data.tok["test"], ckpt_dir, hp, cfg.seed, alpha=g.alpha, temperature=g.temperature,
                       loss=g.loss, bf16=bf16, group_by_length=cfg.compute.group_by_length,
                       history_csv=ckpt_dir.parent / "history.csv", run_name=name)

    return train.run_training(name, out_dir, key, fit_run, data.names, params, save_to=out_dir / "models" / name,
                              tokenizer=data.tokenizer)


class Built(NamedTuple):
    """One row of the catalogue, before recovery: `run` names its KD recovery (None: no recovery), `spec`
    what decides that run besides the profile."""
    name: str
    family: str
    method: str
    model: torch.nn.Module
    setting: str
    run: str | None
    spec: dict | None


def compressed_models(cfg, teacher, students: dict, data: TaskData, out_dir: Path) -> tuple[dict, pd.DataFrame]:
    """Every compression family of the profile, built and recovered: ({row name: model}, catalogue with
    each row's family, method and settings). `students`: {"half_depth": model} for KD + pruning. The
    recovery runs go side by side on compute.workers processes, one thread each."""

    c = cfg.compare
    base = {"teacher": model_fingerprint(teacher)[:16]}
    built: list[Built] = []  # in the catalogue's order

    importance = torch.tensor(head_importance_unit(cfg, teacher, "teacher", data, out_dir)["importance"])
    for fraction in c.head_prune_fractions:
        heads = pruning.heads_to_prune(importance, fraction)
        pruned = pruning.prune_heads(copy.deepcopy(teacher), heads)
        n = sum(len(h) for h in heads.values())
        spec = {**base, "method": "head_pruning", "heads": {str(k): v for k, v in heads.items()}}
        built.append(Built(f"teacher, {n} of {importance.numel()} heads pruned", "pruning", "attention heads by "
                      "importance (Michel et al. 2019) + KD recovery", pruned, f"fraction {fraction:g}",
                      f"heads_{fraction:g}", spec))
    for sparsity in c.magnitude_sparsities:
        # No recovery: fine-tuning would refill the zeros (the masks are removed to make the pruning permanent).
        model = pruning.magnitude_prune(copy.deepcopy(teacher), sparsity).eval()
        built.append(Built(f"teacher, {sparsity:.0%} of encoder weights zeroed", "pruning", "unstructured magnitude "
                      "(L1), no recovery", model, f"sparsity {sparsity:g}", None, None))
    for rank in c.svd_ranks:
        factorised = factorize.factorize_embeddings(factorize.factorize_ffn(copy.deepcopy(teacher), rank), rank)
        built.append(Built(f"teacher, FFN and embeddings at rank {rank}", "factorization", "truncated SVD + KD recovery",
                      factorised, f"rank {rank}", f"svd_r{rank}", {**base, "method": "svd", "rank": rank}))
    albert = share.albert_student(teacher, c.albert_embedding_size, c.albert_layers or None)
    spec = {**base, "method": "albert", "embedding_size": c.albert_embedding_size, "layers": c.albert_layers}
    built.append(Built(f"ALBERT-style student ({len(pruning.encoder_layers(albert))} shared layers, "
                  f"E={c.albert_embedding_size})", "weight sharing",
                  "one teacher layer shared by all positions, factorised embeddings, KD", albert,
                  f"E {c.albert_embedding_size}", "albert", spec))

    half = students["half_depth"]
    student_importance = torch.tensor(head_importance_unit(cfg, half, "half_depth", data, out_dir)["importance"])
    fraction = c.head_prune_fractions[0]
    heads = pruning.heads_to_prune(student_importance, fraction)
    spec = {"student": model_fingerprint(half)[:16], "method": "head_pruning",
            "heads": {str(k): v for k, v in heads.items()}}
    built.append(Built(f"half-depth student, {sum(len(h) for h in heads.values())} heads pruned", "KD + pruning",
                  "03's half-depth student, heads pruned by importance + KD recovery",
                  pruning.prune_heads(copy.deepcopy(half), heads), f"fraction {fraction:g}",
                  f"student_heads_{fraction:g}", spec))

    recovered = [b for b in built if b.run is not None and c.recovery_epochs > 0]
    map_jobs(recover, [{"model": b.model, "name": b.run, "spec": b.spec} for b in recovered],
             {"cfg": cfg, "data": data, "out_dir": out_dir, "epochs": c.recovery_epochs, "bf16": cfg.compute.bf16},
             cfg.compute.workers)
    done = {b.run for b in recovered}
    models, rows = {}, []
    for name, family, method, model, setting, run, _ in built:
        models[name] = load_weights(copy.deepcopy(model), out_dir / "models" / run) if run in done else model.eval()
        rows.append({"name": name, "family": family, "method": method, "setting": setting,
                     "recovery_epochs": c.recovery_epochs if run in done else 0.0})
    return models, pd.DataFrame(rows)


# ----------------------------------------------------------------------------------------------------
# measuring


def routes(runtimes: list[str], precisions: list[str], skip: list[str] | None = None) -> list[tuple[str, str]]:
    """The (runtime, precision) pairs the profile asks for that ROUTES offers, less those in `skip`
    ("runtime/precision"); an unknown runtime keeps its pairs (it becomes refused rows, so a typo shows in
    the table)."""

    return [(r, p) for r in runtimes for p in precisions
            if (r not in ROUTES or p in ROUTES[r]) and f"{r}/{p}" not in (skip or ())]


# The teacher's PyTorch fp32 runner, timed beside the models of every route.
REFERENCE = "teacher@torch/fp32"


def route_bench(cfg):
    """The timing settings of each route's run (`measure`): the benchmark's, with compare.route_seconds as the
    budget where it is set. The choices read the side-by-side run (`head_to_head`), which keeps the benchmark's."""
    seconds = cfg.compare.route_seconds
    return cfg.benchmark if seconds is None else dataclasses.replace(cfg.benchmark, max_seconds=seconds)


def _prepare(model, runtime, precision, workdir, threads, calibration):
    """runtimes.prepare, passing calibration inputs to routes whose prepare takes them (static int8)."""

    kwargs = {}
    accepted = inspect.signature(rt.prepare).parameters
    for name in ("calibration", "calibration_inputs", "calibration_data"):
        if name in accepted and calibration is not None:
            kwargs[name] = calibration
    return rt.prepare(model, runtime, precision, workdir, threads, **kwargs)


def _prepare_one(model, name, runtime, precision, bench, workdir, calibration) -> tuple[dict, object]:
    """A model's row on a route before timing, and the route's runner (None when preparing it failed)."""
    row = {"name": name, "runtime": runtime, "precision": precision, "status": "ok", "reason": None,
           "cpu_flags": machine.cpu_info()["flags"]}
    threads = bench.threads or torch.get_num_threads()
    try:
        runner = _prepare(model, runtime, precision, workdir, threads, calibration)
    except Exception as error:  # a route that breaks on this model is a row, not a crash
        return _failed(row, error), None
    return {**row, "size_mb": runner.size_mb, "runtime_version": runner.version, "threads": threads}, runner


def _failed(row: dict, error: Exception) -> dict:
    text = str(error).strip().splitlines()
    return {**row, "status": "failed", "reason": f"{type(error).__name__}: {text[0] if text else ''}"}


def _time_route(runners: dict, reference, bench, vocab_size: int, baseline: str) -> dict[str, dict]:
    """Every runner of a route timed in turn with the reference (the teacher on PyTorch fp32; None on that
    route itself, where the baseline's runner is the reference), per batch size: latencies, and the speed-ups
    over the reference and over the baseline on this route, as medians over the rounds of that one timing,
    with their spread."""
    timed = dict(runners)
    ref_name = baseline if baseline in runners else None
    if reference is not None:
        timed[REFERENCE], ref_name = reference, REFERENCE
    out = {name: {} for name in runners}
    threads = bench.threads or torch.get_num_threads()
    for b in bench.batch_sizes:
        settings = BenchmarkSettings(b, bench.seq_len, threads, bench.warmup, bench.repeats, bench.max_seconds,
                                     bench.tolerance)
        stats = time_interleaved(timed, settings, vocab_size, reference=ref_name)
        for name in runners:
            s = stats[name]
            out[name].update({f"latency_bs{b}_ms_median": s["latency_ms_median"],
                              f"latency_bs{b}_ms_p95": s["latency_ms_p95"],
                              f"timed_calls_bs{b}": s["timed_calls"],  # fewer than repeats: the spread settled
                              f"median_ci95_pct_bs{b}": s["median_ci95_pct"]})
            if ref_name is not None:
                r = round_ratios(stats[ref_name]["rounds"], s["rounds"])
                # the reference's own median in this unit: the milliseconds the speed-up is measured against
                out[name].update({f"reference_latency_bs{b}_ms_median": stats[ref_name]["latency_ms_median"],
                                  f"speedup_vs_torch_fp32_teacher_bs{b}": r["median"],
                                  f"speedup_vs_torch_fp32_teacher_bs{b}_p25": r["p25"],
                                  f"speedup_vs_torch_fp32_teacher_bs{b}_p75": r["p75"]})
            if baseline in runners:
                out[name][f"speedup_vs_same_route_teacher_bs{b}"] = round_ratios(
                    stats[baseline]["rounds"], s["rounds"])["median"]
    return out


def _score_one(runner, row: dict, bench, test_ds, validation_ds, collate) -> dict:
    """Accuracy and macro-F1 on the test split through the route's runner, its wall time, and the validation
    accuracy (what choices among rows read: the test split only reports)."""
    try:
        t0 = time.perf_counter()
        logits, labels = predict(runner, test_ds, max(bench.batch_sizes), collate)
        row = {**row, "test_prediction_seconds": time.perf_counter() - t0,
               **classification_metrics(logits.argmax(axis=-1), labels)}
        if validation_ds is not None:
            logits, labels = predict(runner, validation_ds, max(bench.batch_sizes), collate)
            row["val_accuracy"] = classification_metrics(logits.argmax(axis=-1), labels)["accuracy"]
    except Exception as error:  # noqa: BLE001
        return _failed(row, error)
    return row


def _measure_route(named_models: dict, runtime: str, precision: str, bench, test_ds, validation_ds, collate,
                   calibration, baseline: str, workdir: Path) -> list[dict]:
    """One route: every model prepared, timed in turn with the teacher on PyTorch fp32, then scored."""
    previous = torch.get_num_threads()
    torch.set_num_threads(bench.threads or previous)
    try:
        prepared = {n: _prepare_one(m, n, runtime, precision, bench, workdir / f"{i}", calibration)
                    for i, (n, m) in enumerate(named_models.items())}
        runners = {n: runner for n, (_, runner) in prepared.items() if runner is not None}
        reference = None
        if baseline in named_models and (runtime, precision) != ("torch", "fp32"):
            reference = _prepare_one(named_models[baseline], baseline, "torch", "fp32", bench, workdir / "reference",
                                     None)[1]
        vocab = next(iter(named_models.values())).config.vocab_size
        try:
            timings = _time_route(runners, reference, bench, vocab, baseline) if runners else {}
        except Exception as error:  # noqa: BLE001 - a route that breaks while timing is a row, not a crash
            return [_failed(row, error) if row["status"] == "ok" else row for row, _ in prepared.values()]
        return [_score_one(runner, {**row, **timings[name]}, bench, test_ds, validation_ds, collate)
                if runner is not None else row for name, (row, runner) in prepared.items()]
    finally:
        torch.set_num_threads(previous)


def measure(named_models: dict, route_list: list[tuple[str, str]], bench, test_ds, tokenizer, cache_dir: Path,
            calibration=None, validation_ds=None, baseline: str = "teacher", workers: int = 1) -> pd.DataFrame:
    """One row per (model, route): size, latency (median, p95) at each benchmark batch size, accuracy,
    macro-F1 and wall seconds to predict the whole test split (batches of the largest batch size, sentences
    sorted by length and each batch padded to its longest, so every route sees the same batches), and, given
    `validation_ds`, `val_accuracy` through the same runner (what a choice among rows reads). Each route is a
    memoised unit of all its models, timed in turn, call by call, with `baseline` on PyTorch fp32, so each
    speed-up is a ratio within that one unit (`speedup_vs_torch_fp32_teacher_bs<b>` with its 25th and 75th
    percentiles over rounds, and `speedup_vs_same_route_teacher_bs<b>`); a refused route gives rows with the
    reason. Models with the same weights under two names are measured once; the second name gets the rows.
    `workers` > 1: the graphs the routes still to run need (exports, quantised graphs) are built first, a model
    per worker (`build_graphs`); each route's run then finds them built (nothing timed runs meanwhile)."""
    # Padding every batch to the data's max_length would double the work: most sentences are far shorter
    # (and `predict` runs them shortest first).
    collate = DataCollatorWithPadding(tokenizer, padding="longest", pad_to_multiple_of=8, return_tensors="pt")
    sizes = {n: {"params": count_parameters(m)["total"], "params_nonzero": pruning.count_nonzero(m),
                 "flops_per_sample": peak.model_flops(m, bench.seq_len)} for n, m in named_models.items()}
    first_of = {}  # weights -> the first name they came under
    aliases = {n: first_of.setdefault(model_fingerprint(m), n) for n, m in named_models.items()}
    named_models = {n: m for n, m in named_models.items() if aliases[n] == n}
    units = {}  # route -> (params, key) of its memoised unit
    for runtime, precision in route_list:
        params = {"models": {n: model_fingerprint(m)[:16] for n, m in named_models.items()}, "runtime": runtime,
                  "precision": precision, "batch_sizes": list(bench.batch_sizes), "seq_len": bench.seq_len,
                  "threads": bench.threads, "warmup": bench.warmup, "repeats": bench.repeats,
                  "max_seconds": bench.max_seconds, "tolerance": bench.tolerance,
                  "test": dataset_fingerprint(test_ds)[:16],
                  "validation": None if validation_ds is None else dataset_fingerprint(validation_ds)[:16],
                  "calibration": None if calibration is None else len(calibration), "baseline": baseline}
        units[runtime, precision] = params, memo.unit_key(
            "compare_route", (*MEASURE_CODE, measure, _measure_route, _prepare_one, _time_route, _score_one,
                              _prepare), params, memo.machine(bench.threads))
    to_build = [r for r in route_list if r[0] in GRAPH_RUNTIMES and not refusal(*r)
                and memo.load_unit(cache_dir / f"{r[0]}-{r[1]}", units[r][1]) is None]
    if workers > 1 and to_build:
        _build_graphs(named_models, to_build, bench.threads or torch.get_num_threads(), calibration, workers)
    rows = []
    for runtime, precision in route_list:
        reason = refusal(runtime, precision)
        if reason:
            rows += [{"name": n, "runtime": runtime, "precision": precision, "status": "refused", "reason": reason,
                      "cpu_flags": machine.cpu_info()["flags"]} for n in named_models]
            continue
        params, key = units[runtime, precision]

        def block(_folder, runtime=runtime, precision=precision):
            with tempfile.TemporaryDirectory(prefix="kd-compare-") as work:
                return {"rows": _measure_route(named_models, runtime, precision, bench, test_ds, validation_ds,
                                               collate, calibration, baseline, Path(work))}

        # A route that failed on some model is kept out of the memo: the next run tries it again.
        rows += memo.run_unit(cache_dir / f"{runtime}-{precision}", key, block, params=params,
                              keep=lambda r: all(row["status"] != "failed" for row in r["rows"]))["rows"]
    rows = [{**r, "name": alias} for r in rows for alias, name in aliases.items() if name == r["name"]]
    return pd.DataFrame([{**r, **sizes[r["name"]]} for r in rows])


def _build_graphs(named_models: dict, route_list: list[tuple[str, str]], threads: int, calibration,
                  workers: int) -> None:
    """Every model's graphs for `route_list`, built on `workers` processes into this process's export folder,
    the largest model first (exporting and quantising run mostly in one Python thread)."""
    order = sorted(named_models.values(), key=lambda m: -count_parameters(m)["total"])
    map_jobs(rt.build_graphs, [{"model": m} for m in order],
             {"routes": route_list, "threads": threads, "calibration": calibration, "folder": str(rt.export_dir())},
             workers)


def _time_side_by_side(named_models: dict, entries: list[tuple[str, str, str, int]], bench, calibration,
                       baseline: str, workdir: Path) -> list[dict]:
    """Each (model, runtime, precision) of `entries` prepared once, then, per batch size, the entries of that
    batch size timed in turn with the teacher on PyTorch fp32 in one run: their rows of H2H columns."""
    previous = torch.get_num_threads()
    threads = bench.threads or previous
    torch.set_num_threads(threads)
    try:
        runners = {}
        for i, (n, r, p) in enumerate(dict.fromkeys(e[:3] for e in entries)):
            if (n, r, p) != (baseline, "torch", "fp32"):  # the reference itself, prepared below
                runners[(n, r, p)] = _prepare_one(named_models[n], n, r, p, bench, workdir / f"{i}", calibration)[1]
        reference = _prepare_one(named_models[baseline], baseline, "torch", "fp32", bench, workdir / "reference",
                                 None)[1]
        vocab = named_models[baseline].config.vocab_size
        rows = []
        for b in sorted({e[3] for e in entries}):
            mine = [e[:3] for e in entries if e[3] == b]
            timed = {f"{n}@{r}/{p}": runners[(n, r, p)] for n, r, p in mine if runners.get((n, r, p)) is not None}
            settings = BenchmarkSettings(b, bench.seq_len, threads, bench.warmup, bench.repeats, bench.max_seconds,
                                         bench.tolerance)
            stats = time_interleaved({**timed, REFERENCE: reference}, settings, vocab, reference=REFERENCE)
            ref = stats[REFERENCE]
            for n, r, p in mine:
                label = REFERENCE if (n, r, p) == (baseline, "torch", "fp32") else f"{n}@{r}/{p}"
                if label not in stats:
                    continue  # its route failed to prepare: the route's own run has the row and the reason
                ratio = round_ratios(ref["rounds"], stats[label]["rounds"])
                rows.append({"name": n, "runtime": r, "precision": p, "batch_size": b,
                             f"h2h_speedup_bs{b}": ratio["median"], f"h2h_speedup_bs{b}_p25": ratio["p25"],
                             f"h2h_speedup_bs{b}_p75": ratio["p75"],
                             f"h2h_latency_bs{b}_ms_median": stats[label]["latency_ms_median"],
                             f"h2h_reference_latency_bs{b}_ms_median": ref["latency_ms_median"],
                             f"h2h_timed_calls_bs{b}": stats[label]["timed_calls"]})
        return rows
    finally:
        torch.set_num_threads(previous)


def head_to_head(named_models: dict, contenders: pd.DataFrame, bench, cache_dir: Path, calibration=None,
                 baseline: str = "teacher") -> pd.DataFrame:
    """The rows that contend for a choice (`tables.contenders`: name, runtime, precision, batch_size) timed
    again side by side: one memoised unit that prepares each contender's route once and, per batch size,
    times that batch's contenders in turn with the teacher on PyTorch fp32, round by round.

    Why: every route's run (`measure`) times the teacher anew, and on a shared machine the teacher's speed
    moves between runs (its batch-1 median differed twofold between two routes' runs of one cold study), so
    speed-ups from two runs cannot rank two rows; speed-ups from one run can. Rows: name, runtime, precision,
    batch_size and the H2H columns (`tables.H2H_COLUMNS`); a contender whose model is not in `named_models`
    (02's no-KD twin, which has no weights here) is left out, and two names with the same weights are timed
    once and given the row under both names."""
    first_of = {}
    aliases = {n: first_of.setdefault(model_fingerprint(m), n) for n, m in named_models.items()}
    entries = list(dict.fromkeys((aliases[n], r, p, int(b)) for n, r, p, b in
                                 contenders[["name", "runtime", "precision", "batch_size"]].itertuples(index=False)
                                 if n in aliases))
    if not entries:
        return pd.DataFrame(columns=["name", "runtime", "precision", "batch_size"])
    params = {"contenders": [[model_fingerprint(named_models[n])[:16], r, p, b] for n, r, p, b in entries],
              "reference": model_fingerprint(named_models[baseline])[:16], "seq_len": bench.seq_len,
              "threads": bench.threads, "warmup": bench.warmup, "repeats": bench.repeats,
              "max_seconds": bench.max_seconds, "tolerance": bench.tolerance,
              "calibration": None if calibration is None else len(calibration)}
    key = memo.unit_key("compare_head_to_head", (*MEASURE_CODE, head_to_head, _time_side_by_side, _prepare_one,
                                                  _prepare), params, memo.machine(bench.threads))

    def block(_folder):
        with tempfile.TemporaryDirectory(prefix="kd-h2h-") as work:
            return {"rows": _time_side_by_side(named_models, entries, bench, calibration, baseline, Path(work))}

    rows = memo.run_unit(Path(cache_dir) / "head-to-head", key, block, params=params)["rows"]
    return pd.DataFrame([{**r, "name": alias} for r in rows for alias, name in aliases.items() if name == r["name"]])


def upstream_records(cfg) -> dict:
    """What 01, 02 and 03 recorded that this step reads: the teacher's metrics and run summary, 02's runs,
    03's summary and metrics."""
    return {"teacher": read_json(step_dir(cfg.profile, "01_teacher", create=False) / "metrics.json"),
            "teacher_run": read_json(step_dir(cfg.profile, "01_teacher", create=False) / "runs" / "summary.json"),
            "distill": read_json(step_dir(cfg.profile, "02_distill", create=False) / "runs" / "summary.json"),
            "grid": read_json(step_dir(cfg.profile, GRID_STEP, create=False) / "runs" / "summary.json"),
            "grid_metrics": read_json(step_dir(cfg.profile, GRID_STEP, create=False) / "metrics.json")}


def measure_peaks(bench, cache_dir: Path) -> pd.DataFrame:
    """This machine's matrix-product peak per precision at the benchmark's threads (kdlib.inference.peak), a
    memoised unit keyed by the machine: measured once per CPU and thread count."""
    threads = bench.threads or torch.get_num_threads()
    key = memo.unit_key("peak", ("inference.peak",), memo.machine(threads))
    done = memo.run_unit(Path(cache_dir) / "peak", key, lambda _folder: {"rows": peak.peaks(threads).to_dict("records")})
    return pd.DataFrame(done["rows"])
