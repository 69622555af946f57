"""Step summaries into headline metrics: the numbers notebooks quote, computed where tests reach them."""
from __future__ import annotations

import math

import pandas as pd
import pytest

from kdlib.studies.results import distill_metrics, online_vs_cached_table


def run(accuracy, seconds, train_loss=0.3):
    return {"test": {"accuracy": accuracy, "macro_f1": accuracy - 0.1}, "train_step_seconds": seconds,
            "train_loss": train_loss}


SUMMARY = {
    "runs": {"kd_cached": run(0.80, 100.0), "nokd": run(0.75, 80.0), "kd_online": run(0.80, 160.0)},
    "student_params": {"total": 17_000_000}, "teacher_params": {"total": 22_000_000},
    "cache": {"build_seconds": 27.5, "built_now": False}, "epochs": 2,
}


def bench_rows():
    rows = []
    for name, ms in (("teacher", 20.0), ("student", 10.0)):
        for runtime, factor in (("torch", 1.0), ("onnxruntime", 0.5)):
            for batch in (1, 32):
                rows.append({"name": name, "runtime": runtime, "precision": "fp32", "status": "ok", "batch_size": batch,
                             "latency_ms_median": ms * factor * batch, "speedup_vs_teacher": 20.0 / ms})
    rows.append({"name": "student", "runtime": "torch", "precision": "bf16", "status": "refused", "batch_size": 1,
                 "latency_ms_median": float("nan"), "speedup_vs_teacher": float("nan")})
    return pd.DataFrame(rows)


def test_distill_metrics_from_a_hand_built_summary():
    m = distill_metrics(SUMMARY, bench_rows(), teacher_accuracy=0.84)
    assert m["student_test_accuracy"] == 0.80 and m["nokd_test_accuracy"] == 0.75
    assert m["student_retention"] == pytest.approx(0.80 / 0.84)
    assert m["kd_gain_pp"] == pytest.approx(5.0)
    assert m["cached_over_nokd_cost"] == pytest.approx(1.25) and m["online_over_nokd_cost"] == pytest.approx(2.0)
    assert m["online_matches_cached"] is True and m["online_kd_epochs"] == 2
    # the cache's build time is reported even when this run only read it
    assert m["cache_build_seconds"] == 27.5 and m["cache_built_now"] is False
    # one speed-up per batch size, from the PyTorch fp32 rows only (other runtimes and refused rows ignored)
    assert {k: v for k, v in m.items() if k.startswith("student_speedup")} == {
        "student_speedup_fp32_bs1": 2.0, "student_speedup_fp32_bs32": 2.0}


def test_online_kd_as_a_probe_is_compared_with_the_cached_run_of_the_same_steps():
    """A probe's seconds are set against its cached twin's, not the full runs' (its first steps are slower
    than a run's average), and its accuracy is not the online student's: only whether it matched."""
    probe = {"epochs": 0.1, "runs": {"kd_cached": run(0.5, 10.0, 0.9), "kd_online": run(0.5, 16.0, 0.9)}}
    summary = {**SUMMARY, "runs": {k: v for k, v in SUMMARY["runs"].items() if k != "kd_online"},
               "online_probe": probe}
    m = distill_metrics(summary, bench_rows(), teacher_accuracy=0.84)
    assert m["online_over_nokd_cost"] == pytest.approx(16 / 10 * 100 / 80)
    assert m["online_matches_cached"] is True and m["online_kd_epochs"] == 0.1
    assert m["online_kd_test_accuracy"] is None and m["online_kd_train_seconds"] == 16.0
    probe["runs"]["kd_online"] = run(0.5, 16.0, 0.8)  # another loss: the teacher's outputs differed
    assert distill_metrics(summary, bench_rows(), teacher_accuracy=0.84)["online_matches_cached"] is False


def test_online_vs_cached_table_reads_the_probe_or_the_full_runs():
    probe = {"epochs": 0.1, "runs": {"kd_cached": run(0.5, 10.0, 0.9), "kd_online": run(0.5, 16.0, 0.9)}}
    table = online_vs_cached_table({**SUMMARY, "online_probe": probe})
    assert list(table["run"]) == ["KD (cached teacher)", "KD (online teacher)"]
    assert list(table["epochs"]) == [0.1, 0.1] and list(table["train_step_seconds"]) == [10.0, 16.0]
    full = online_vs_cached_table(SUMMARY)  # no probe: the full runs, at the summary's epochs
    assert list(full["epochs"]) == [2, 2] and list(full["train_step_seconds"]) == [100.0, 160.0]
    without = online_vs_cached_table({**SUMMARY, "runs": {"kd_cached": run(0.8, 100.0), "nokd": run(0.75, 80.0)}})
    assert without.empty and list(without.columns) == ["run", "epochs", "train_loss", "test_accuracy",
                                                       "train_step_seconds"]


def test_distill_metrics_without_online_kd():
    summary = {**SUMMARY, "runs": {k: v for k, v in SUMMARY["runs"].items() if k != "kd_online"}}
    m = distill_metrics(summary, bench_rows(), teacher_accuracy=0.84)
    assert m["online_kd_test_accuracy"] is None and math.isnan(m["online_kd_train_seconds"])
    assert m["online_matches_cached"] is None and m["online_kd_epochs"] is None


def test_benchmark_columns_follow_the_schema_whatever_the_key_order():
    from kdlib.inference.timing import ROW_COLUMNS, results_frame
    from kdlib.studies.results import schema_order

    row = {"name": "m", "runtime": "torch", "precision": "fp32", "status": "ok", "batch_size": 1,
           "latency_ms_median": 2.0, "cpu_model": "x", "cpu_flags": "avx2"}
    fresh, reread = (schema_order(results_frame([r])) for r in (row, dict(sorted(row.items()))))
    assert list(fresh.columns) == list(reread.columns)
    assert list(fresh.columns) == [c for c in ROW_COLUMNS if c in row] + ["cpu_model", "cpu_flags"]


def test_a_one_epoch_curve_sits_on_its_own_integer_tick():
    import matplotlib.pyplot as plt
    import pandas as pd

    from kdlib.studies import plots

    one = pd.DataFrame({"epoch": [1.0, 1.0], "accuracy": [0.8, 0.82], "run": ["KD", "no KD"]})
    fig = plots.training_curves(one)
    ax = fig.axes[0]
    lo, hi = ax.get_xlim()
    assert (lo, hi) == (0.5, 1.5)
    assert [t for t in ax.get_xticks() if lo <= t <= hi] == [1.0]
    plt.close(fig)
