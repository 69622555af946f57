"""Turn the training steps' summaries into the tables, figures' data and metrics that notebooks write."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from kdlib.evaluate import confusion_matrix_frame

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


def benchmark_models(named_models: dict, bench, baseline: str | None = None) -> pd.DataFrame:
    """Latency and size of several models at each batch size and precision of `bench` (BenchmarkParams).

    Models are measured one after another inside the same loop, so a speed-up column (baseline median /
    model median, same batch size and precision) compares numbers taken in one process on one machine.
    Precisions this CPU cannot run (bf16 without AVX512-BF16/AMX) are left out, and said so.
    """
    from kdlib.evaluate import Benchmark, BenchmarkSettings, bf16_supported, results_frame

    precisions = [p for p in bench.precisions if p != "bf16" or bf16_supported()]
    skipped = sorted(set(bench.precisions) - set(precisions))
    if skipped:
        print(f"skipped precisions this CPU cannot run: {', '.join(skipped)}")
    rows = []
    for precision in precisions:
        for batch_size in bench.batch_sizes:
            settings = BenchmarkSettings(batch_size=batch_size, seq_len=bench.seq_len, threads=bench.threads,
                                         precision=precision, warmup=bench.warmup, repeats=bench.repeats)
            for name, model in named_models.items():
                rows.append(Benchmark(model, name).run(settings))
    frame = results_frame(rows)
    if baseline is not None:
        base = frame[frame["name"] == baseline].set_index(["precision", "batch_size"])["latency_ms_median"]
        frame["speedup_vs_" + baseline] = [
            base[(p, b)] / m for p, b, m in zip(frame["precision"], frame["batch_size"], frame["latency_ms_median"])
        ]
    return frame
