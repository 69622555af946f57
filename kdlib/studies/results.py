"""Turn the training steps' summaries into the tables, figures' data and metrics that notebooks write."""
from __future__ import annotations

import math
import tempfile
from pathlib import Path

import pandas as pd

from kdlib.core.fingerprint import model_fingerprint
from kdlib.core.metrics import confusion_matrix_frame
from kdlib.inference.machine import cpu_info
from kdlib.inference.routes import RUNTIME_CODE
from kdlib.inference.runtimes import ROUTES
from kdlib.inference.timing import (
    ROW_COLUMNS,
    Benchmark,
    BenchmarkSettings,
    results_frame,
    round_ratios,
    time_interleaved,
)
from kdlib.pipeline import memo

RUN_LABELS = {"kd_cached": "KD (cached teacher)", "kd_online": "KD (online teacher)", "nokd": "no KD (twin)",
              "teacher": "teacher"}


def history_frame(runs: dict[str, dict]) -> pd.DataFrame:
    """Per-epoch validation metrics of several runs, long format (run, epoch, accuracy, macro_f1, ...)."""
    frames = [pd.DataFrame(r["history"]).assign(run=RUN_LABELS.get(name, name)) for name, r in runs.items()]
    return pd.concat(frames, ignore_index=True)[["run", "epoch", "accuracy", "macro_f1", "loss", "train_loss"]]


def runs_table(runs: dict[str, dict], baseline: str = "nokd") -> pd.DataFrame:
    """One row per run: test accuracy and macro-F1, training time, and cost relative to `baseline`."""
    rows = []
    for name, r in runs.items():
        rows.append({
            "run": RUN_LABELS.get(name, name),
            "best_epoch": r.get("best_epoch"),
            "test_accuracy": r["test"]["accuracy"],
            "test_macro_f1": r["test"]["macro_f1"],
            "train_step_seconds": r["train_step_seconds"],
            "train_wall_seconds": r["train_wall_seconds"],
        })
    table = pd.DataFrame(rows)
    if baseline in runs:
        base = runs[baseline]["train_step_seconds"]
        table["cost_vs_nokd"] = table["train_step_seconds"] / base
    return table


def confusion_from_predictions(path: str | Path, label_names: list[str]) -> pd.DataFrame:
    """The confusion matrix of a run's test_predictions.csv."""
    pred = pd.read_csv(path)
    return confusion_matrix_frame(pred["prediction"].to_numpy(), pred["label"].to_numpy(), label_names)


def schema_order(frame: pd.DataFrame) -> pd.DataFrame:
    """Benchmark rows with their columns in the schema's order (evaluate.ROW_COLUMNS, then the CPU's), whatever
    the rows' key order: rows read back from a memoised unit come with sorted keys."""

    schema = [*ROW_COLUMNS, *(f"cpu_{k}" for k in cpu_info())]
    first = [c for c in schema if c in frame.columns]
    return frame[first + sorted(c for c in frame.columns if c not in first)]


# The baseline's PyTorch fp32 runner, timed beside the models of every other route.
REFERENCE = "baseline@torch/fp32"


def benchmark_models(named_models: dict, bench, baseline: str | None = None, cache_dir=None) -> pd.DataFrame:
    """Latency and size of several models on each runtime, precision and batch size of `bench` (BenchmarkParams).

    A row per (model, runtime, precision, batch size), for the precisions each runtime offers
    (`runtimes.ROUTES`); a route this machine cannot run is a row with status "refused" and the reason.
    Each route is prepared once per model and reused across batch sizes. On a route, every model (and the
    baseline on PyTorch fp32) is timed in turn, call by call (`timing.time_interleaved`), so each speed-up is
    a ratio of calls made side by side in one unit: `speedup_vs_<baseline>` = baseline / model on the same
    route, `speedup_vs_<baseline>_torch_fp32` = the baseline's PyTorch fp32 / the model (the gain of model
    and route together), each the median over rounds, with the 25th and 75th percentiles beside it.

    With `cache_dir`, each route's block (every model, every batch size) is a memoised unit keyed by the
    models' weights, the route, the settings, the machine and the benchmark code.
    """
    runtimes = getattr(bench, "runtimes", None) or ["torch"]
    rows = []
    with tempfile.TemporaryDirectory(prefix="kd-bench-") as workdir:
        benches = {name: Benchmark(model, name, workdir=f"{workdir}/{name}") for name, model in named_models.items()}
        for runtime in runtimes:
            # An unknown runtime gets (refused) rows for every precision, so a typo shows in the table.
            precisions = [p for p in bench.precisions if runtime not in ROUTES or p in ROUTES[runtime]]
            if not precisions:
                print(f"{runtime} offers none of the precisions {list(bench.precisions)}: skipped")
            for precision in precisions:
                def block(_folder=None, runtime=runtime, precision=precision) -> dict:
                    return {"rows": [row for b in bench.batch_sizes
                                     for row in _route_rows(benches, baseline, runtime, precision, bench, b)]}

                if cache_dir is None:
                    rows.extend(block()["rows"])
                    continue
                params = {"models": {name: model_fingerprint(m)[:16] for name, m in named_models.items()},
                          "baseline": baseline, "runtime": runtime, "precision": precision,
                          "batch_sizes": list(bench.batch_sizes), "seq_len": bench.seq_len, "threads": bench.threads,
                          "warmup": bench.warmup, "repeats": bench.repeats, "tolerance": bench.tolerance,
                          "max_seconds": bench.max_seconds}
                key = memo.unit_key("benchmark", ("inference.timing", *RUNTIME_CODE, _route_rows), params,
                                    memo.machine(bench.threads))
                unit = memo.run_unit(Path(cache_dir) / f"{runtime}-{precision}", key, block, params=params,
                                     keep=lambda r: all(row["status"] != "failed" for row in r["rows"]))
                rows.extend(unit["rows"])
    return schema_order(results_frame(rows))


def _route_rows(benches: dict, baseline: str | None, runtime: str, precision: str, bench, batch_size: int) -> list:
    """One route at one batch size: every model's row, timed in turn with the others and with the baseline's
    PyTorch fp32 runner; the speed-ups are ratios over the rounds of that one timing."""
    settings = BenchmarkSettings(batch_size=batch_size, seq_len=bench.seq_len, threads=bench.threads,
                                 warmup=bench.warmup, repeats=bench.repeats, tolerance=bench.tolerance,
                                 max_seconds=bench.max_seconds)
    rows, runners = {}, {}
    for name, b in benches.items():
        row, runner = b.prepare_row(settings, runtime, precision)
        rows[name] = row
        if runner is not None:
            runners[name] = runner
    reference = None
    if baseline is not None:
        try:
            reference = benches[baseline].runner("torch", "fp32", settings.threads)
        except Exception:  # noqa: BLE001 - without its reference the route has no speed-ups, only latencies
            reference = None
    timed = dict(runners)
    if reference is not None and (runtime, precision) != ("torch", "fp32"):
        timed[REFERENCE] = reference
    vocab = next(iter(benches.values())).model.config.vocab_size
    try:
        ref_name = REFERENCE if REFERENCE in timed else baseline if baseline in timed else None
        stats = time_interleaved(timed, settings, vocab, reference=ref_name) if timed else {}
    except Exception as error:  # noqa: BLE001 - a route that breaks while timing is a row, not a crash
        reason = f"{type(error).__name__}: {(str(error).strip().splitlines() or [''])[0]}"
        return [{**row, "status": "failed", "reason": reason} if row["status"] == "ok" else row for row in rows.values()]
    ref_rounds = stats.get(REFERENCE, stats.get(baseline, {})).get("rounds")
    same_rounds = stats.get(baseline, {}).get("rounds")
    for name in runners:
        rounds = stats[name].pop("rounds")
        rows[name].update(stats[name])
        if baseline is None:
            continue
        if same_rounds is not None:
            rows[name][f"speedup_vs_{baseline}"] = round_ratios(same_rounds, rounds)["median"]
        if ref_rounds is not None:
            r = round_ratios(ref_rounds, rounds)
            rows[name].update({f"speedup_vs_{baseline}_torch_fp32": r["median"],
                               f"speedup_vs_{baseline}_torch_fp32_p25": r["p25"],
                               f"speedup_vs_{baseline}_torch_fp32_p75": r["p75"]})
    return list(rows.values())


def online_pair(summary: dict) -> tuple[dict, float | None]:
    """Online KD and the cached run of the same steps, with their epochs: the probe pair where the summary has
    one, else the full runs; ({}, None) without online KD."""
    probe = summary.get("online_probe")
    if probe:
        return probe["runs"], probe["epochs"]
    runs = summary["runs"]
    if "kd_online" not in runs:
        return {}, None
    return {k: runs[k] for k in ("kd_cached", "kd_online")}, summary.get("epochs")


def online_vs_cached_table(summary: dict) -> pd.DataFrame:
    """One row per run of the online/cached pair: epochs, train loss, test accuracy, step seconds."""
    pair, epochs = online_pair(summary)
    return pd.DataFrame([{"run": RUN_LABELS[k], "epochs": epochs, "train_loss": r["train_loss"],
                          "test_accuracy": r["test"]["accuracy"], "train_step_seconds": r["train_step_seconds"]}
                         for k, r in pair.items()],
                        columns=["run", "epochs", "train_loss", "test_accuracy", "train_step_seconds"])


def distill_metrics(summary: dict, bench: pd.DataFrame, teacher_accuracy: float) -> dict:
    """The headline numbers of step 02 (its metrics.json), from the distillation summary and the benchmark.

    Training costs are optimisation-step seconds (forward, backward, update; not evaluation), and ratios
    to the no-KD twin. `cache_build_seconds` is the time the teacher-output cache took to build (recorded
    when it was built, so a rerun that reads it reports the same), `cache_built_now` whether this run
    built it. Speed-ups are the PyTorch fp32 student against the PyTorch fp32 teacher at each batch size.

    Online KD is either a full run beside the cached one (`online_kd_test_accuracy`), or a probe: it and a
    cached run of the same steps (the summary's `online_probe`). Either way `online_matches_cached` says
    whether the online run trained as its cached counterpart did (the same test accuracy, and train losses
    equal to float precision), and `online_over_nokd_cost` is the online run's seconds over its cached
    counterpart's, times `cached_over_nokd_cost`: the probe's first steps are slower than a run's average,
    and the ratio of two probes cancels that.
    """
    runs = summary["runs"]

    def seconds(name, pool=runs):
        return pool[name]["train_step_seconds"] if name in pool else float("nan")

    pair, online_epochs = online_pair(summary)  # online KD and the cached run of the same steps
    online = pair.get("kd_online")
    matches = None if online is None else bool(
        online["test"]["accuracy"] == pair["kd_cached"]["test"]["accuracy"]
        and math.isclose(online["train_loss"], pair["kd_cached"]["train_loss"], rel_tol=1e-5))

    kd, nokd = runs["kd_cached"]["test"], runs["nokd"]["test"]
    student = bench[(bench["name"] == "student") & (bench["runtime"] == "torch") & (bench["precision"] == "fp32")
                    & (bench["status"] == "ok")].set_index("batch_size")
    return {
        "student_test_accuracy": kd["accuracy"],
        "student_test_macro_f1": kd["macro_f1"],
        "nokd_test_accuracy": nokd["accuracy"],
        "nokd_test_macro_f1": nokd["macro_f1"],
        "online_kd_test_accuracy": runs["kd_online"]["test"]["accuracy"] if "kd_online" in runs else None,
        "online_matches_cached": matches,
        "online_kd_epochs": online_epochs,
        "student_params": summary["student_params"]["total"],
        "teacher_params": summary["teacher_params"]["total"],
        "student_retention": kd["accuracy"] / teacher_accuracy,
        "kd_gain_pp": 100 * (kd["accuracy"] - nokd["accuracy"]),
        "cached_kd_train_seconds": seconds("kd_cached"),
        "online_kd_train_seconds": seconds("kd_online", pair),
        "nokd_train_seconds": seconds("nokd"),
        "cache_build_seconds": summary["cache"]["build_seconds"],
        "cache_built_now": bool(summary["cache"]["built_now"]),
        "cached_over_nokd_cost": seconds("kd_cached") / seconds("nokd"),
        "online_over_nokd_cost": (seconds("kd_online", pair) / seconds("kd_cached", pair)
                                  * seconds("kd_cached") / seconds("nokd")),
        **{f"student_speedup_fp32_bs{b}": float(student.loc[b, "speedup_vs_teacher"]) for b in student.index},
    }
