"""kdlib.studies.compare.models: the Pareto front, speed-up columns, the headline metrics, table 6's attributed paper
columns, the KD-position probe of the loss registry, and the measurement of routes on a tiny model."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kdlib.studies import papers
from kdlib.studies.compare import kd_positions
from kdlib.studies.compare import models as compare
from kdlib.studies.compare import tables as compare_report


def test_pareto_front_by_hand():
    accuracy = [0.80, 0.85, 0.70, 0.85, 0.60, math.nan]
    latency = [10.0, 20.0, 5.0, 25.0, 6.0, 1.0]
    # 0: fastest at 0.80; 1: most accurate, fastest among those; 2: fastest of all; 3 dominated by 1 (same
    # accuracy, slower); 4 dominated by 2; 5 has no accuracy
    assert compare_report.pareto_front(accuracy, latency).tolist() == [True, True, True, False, False, False]


def test_pareto_front_keeps_exact_ties():
    assert compare_report.pareto_front([0.9, 0.9], [3.0, 3.0]).tolist() == [True, True]


def _frame():
    rows = [
        # name, runtime, precision, accuracy, bs1 ms, bs32 ms
        ("teacher", "torch", "fp32", 0.80, 10.0, 100.0),
        ("teacher", "onnxruntime", "int8", 0.795, 4.0, 50.0),
        ("student", "torch", "fp32", 0.79, 5.0, 40.0),
        ("student", "onnxruntime", "int8", 0.78, 1.0, 20.0),
        ("tiny", "onnxruntime", "int8", 0.70, 0.5, 5.0),
    ]
    frame = pd.DataFrame(rows, columns=["name", "runtime", "precision", "accuracy", "latency_bs1_ms_median",
                                        "latency_bs32_ms_median"])
    frame["val_accuracy"] = frame["accuracy"]  # validation agrees with test here; see the test after
    frame["status"] = "ok"
    # The speed-ups a measurement writes (ratios over rounds timed in turn); here, as the latencies imply.
    for b in (1, 32):
        lat = frame[f"latency_bs{b}_ms_median"]
        base = frame[frame["name"] == "teacher"].set_index("runtime")[f"latency_bs{b}_ms_median"]
        frame[f"speedup_vs_torch_fp32_teacher_bs{b}"] = base["torch"] / lat
        frame[f"speedup_vs_same_route_teacher_bs{b}"] = frame["runtime"].map(base) / lat
    refused = {"name": "teacher", "runtime": "openvino", "precision": "int8", "status": "refused",
               "reason": "package(s) not installed: nncf"}
    return pd.concat([frame, pd.DataFrame([refused])], ignore_index=True)


def test_speedups_come_from_the_measurement_never_from_dividing_rows():
    measured = _frame().drop(columns=["speedup_vs_same_route_teacher_bs32"])
    frame = compare_report.with_speedups(measured, [1, 32])
    # a column the measurement did not write stays empty: no ratio of timings from two units is made up
    assert frame["speedup_vs_same_route_teacher_bs32"].isna().all()
    assert frame["speedup_vs_torch_fp32_teacher_bs1_p25"].isna().all()


def test_speedups_against_both_baselines():
    frame = compare_report.with_speedups(_frame(), [1, 32])
    student_int8 = frame[(frame["name"] == "student") & (frame["precision"] == "int8")].iloc[0]
    assert student_int8["speedup_vs_torch_fp32_teacher_bs1"] == pytest.approx(10.0)
    assert student_int8["speedup_vs_same_route_teacher_bs1"] == pytest.approx(4.0)
    assert student_int8["speedup_vs_torch_fp32_teacher_bs32"] == pytest.approx(5.0)
    assert student_int8["speedup_vs_same_route_teacher_bs32"] == pytest.approx(2.5)
    assert student_int8["pct_of_teacher"] == pytest.approx(97.5)
    tiny = frame[frame["name"] == "tiny"].iloc[0]
    assert math.isnan(tiny["speedup_vs_torch_fp32_teacher_bs1"]) is False
    refused = frame[frame["status"] == "refused"].iloc[0]
    assert math.isnan(refused["speedup_vs_torch_fp32_teacher_bs1"])


def test_headline_metrics_by_hand():
    metrics = compare_report.headline_metrics(compare_report.with_speedups(_frame(), [1, 32]))
    # fastest int8 row: tiny (20x) at 0.70, 10 points below the teacher
    assert metrics["best_quantized_speedup"] == pytest.approx(20.0)
    assert metrics["best_quantized_accuracy_drop_pp"] == pytest.approx(10.0)
    # within 1 point (>= 0.79): student on int8 is 0.78, out; student fp32 (2x) and teacher int8 (2.5x) in
    assert metrics["best_speedup_within_1pp"] == pytest.approx(2.5)
    assert metrics["best_route_within_1pp"] == "teacher on onnxruntime/int8"
    # within 97% (>= 0.776): the student on int8, 10x at batch 1, 5x at batch 32
    assert metrics["best_speedup_within_3pct"] == pytest.approx(10.0)
    assert metrics["best_speedup_within_3pct_bs32"] == pytest.approx(5.0)
    assert metrics["n_refused"] == 1


def test_headline_choices_are_made_on_validation_and_scored_on_test():
    frame = _frame()
    # The student's int8 row passes the 1-point bound on test but not on validation; the teacher's int8 row
    # the other way round. Chosen on validation (teacher 0.82, bound 0.81): the teacher's int8 row, reported
    # with its own test accuracy even though that is below the bound.
    frame["val_accuracy"] = [0.82, 0.815, 0.80, 0.805, 0.70, np.nan]
    frame.loc[1, "accuracy"], frame.loc[3, "accuracy"] = 0.785, 0.795
    metrics = compare_report.headline_metrics(compare_report.with_speedups(frame, [1, 32]))
    assert metrics["best_route_within_1pp"] == "teacher on onnxruntime/int8"
    assert metrics["best_speedup_within_1pp"] == pytest.approx(2.5)
    assert metrics["best_test_accuracy_within_1pp"] == pytest.approx(0.785)
    # within 97% of 0.82 (>= 0.7954): the student's int8 row (0.805), 10x, test 0.795
    assert metrics["best_route_within_3pct"] == "student on onnxruntime/int8"
    assert metrics["best_test_accuracy_within_3pct"] == pytest.approx(0.795)
    assert metrics["teacher_val_accuracy"] == pytest.approx(0.82)
    with pytest.raises(ValueError, match="val_accuracy"):
        compare_report.headline_metrics(compare_report.with_speedups(_frame().drop(columns="val_accuracy"), [1]))


def test_table6_puts_each_paper_figure_beside_its_analog_and_attributes_it():
    frame = compare_report.with_speedups(_frame(), [1, 32])
    table = compare_report.table6(frame, {"teacher": "teacher", "half_depth": "student"})
    teacher = table[(table["name"] == "teacher") & (table["runtime"] == "torch")].iloc[0]
    assert teacher["seed000_model"] == "KcBERT-base" and teacher["seed000_accuracy"] == pytest.approx(0.967)
    assert teacher["seed001_model"] == "BERT-base"
    student = table[(table["name"] == "student") & (table["runtime"] == "torch")].iloc[0]
    assert student["seed000_model"] == "distil-KcBERT" and student["seed000_total_time_s"] == 330
    assert student["seed001_speed"] == "1.6x"
    q8 = table[(table["name"] == "teacher") & (table["precision"] == "int8")].iloc[0]
    assert q8["seed001_model"] == "Q-BERT (8 bit)"
    # Paper models without an analog here (and ALBERT, not in this frame) get rows of their own.
    published = table[table["source"] != "measured here"]
    assert set(published["seed000_model"].dropna()) == {"KoBERT", "mBERT", "ALBERT-base"}
    assert published["name"].isna().all()
    # Every published figure appears exactly once.
    assert table["seed000_model"].notna().sum() == len(papers.SEED000_TABLE6)
    assert table["seed001_model"].notna().sum() == len(papers.SEED001_TABLE)


def test_loss_signals_probed_from_the_registry():
    assert kd_positions.loss_signals("ce") == set()  # no teacher: distils nothing
    assert kd_positions.loss_signals("soft_target") == {"prediction"}
    assert kd_positions.loss_signals("hetero") == {"prediction"}
    assert kd_positions.loss_signals("tinybert") == {"embedding", "attention", "hidden"}
    assert kd_positions.loss_signals("triple") == {"hidden", "prediction"}


def test_kd_position_table_has_the_papers_rows_then_ours():
    table = kd_positions.kd_position_table([{"name": "ours", "init": True, "pretraining": "tinybert",
                                        "finetuning": "soft_target"}])
    assert list(table["method"])[:4] == ["Distilled BiLSTM (soft)", "BERT-PKD", "DistilBERT", "TinyBERT"]
    ours = table.iloc[-1]
    assert ours[["pre_embedding", "pre_attention", "pre_hidden"]].all() and not ours["pre_prediction"]
    assert ours["fine_prediction"] and not ours[["fine_embedding", "fine_attention", "fine_hidden"]].any()
    assert ours["losses"] == "tinybert + soft_target"


def test_pick_students_by_validation_not_test():
    def run(layers, val, test):
        return {"layers": layers, "param_count": 1, "history": [{"accuracy": val}], "test": {"accuracy": test}}

    summary = {"runs": {"A3": run(3, 0.80, 0.90), "B3": run(3, 0.85, 0.70), "A1": run(1, 0.6, 0.6)}}
    assert compare.pick_students(summary, 6) == {"half_depth": "B3", "one_layer": "A1"}


def test_pick_fast_student_is_the_cheapest_within_97_percent_on_validation():
    def run(layers, ffn, val):
        return {"layers": layers, "ffn": ffn, "param_count": layers * ffn, "history": [{"accuracy": val}]}

    summary = {"runs": {"L3_F1536": run(3, 1536, 0.85), "L2_F1536": run(2, 1536, 0.84), "L2_F384": run(2, 384, 0.83),
                        "L2_F96": run(2, 96, 0.80), "L1_F1536": run(1, 1536, 0.70)}}
    # 97% of 0.8536 is 0.828: L2_F384 is the cheapest that keeps it (L2_F96 and L1 do not).
    picked = compare.pick_students(summary, 6, teacher_validation_accuracy=0.8536)
    assert picked == {"half_depth": "L3_F1536", "one_layer": "L1_F1536", "fast": "L2_F384"}
    assert "fast" not in compare.pick_students(summary, 6, teacher_validation_accuracy=0.99)
    # One model picked for two roles is one row.
    assert compare_report.student_rows({"half_depth": "L3_F96", "one_layer": "L1_F96", "fast": "L3_F96"}) == {
        "half_depth": "half-depth student L3_F96 (03)", "one_layer": "1-layer student L1_F96 (03)"}


def test_label_rows_and_the_no_kd_twin():
    measured = pd.DataFrame({"name": ["teacher", "teacher", "S", "KD student (02)", "pruned"],
                             "runtime": ["torch", "onnxruntime", "onnxruntime", "torch", "torch"],
                             "precision": ["fp32", "int8", "int8", "fp32", "fp32"], "accuracy": [0.8, 0.8, 0.7, 0.75, 0.7],
                             "macro_f1": [0.7] * 5, "test_prediction_seconds": [1.0] * 5})
    catalogue = pd.DataFrame({"name": ["pruned"], "family": ["pruning"], "method": ["heads"]})
    labelled = compare_report.label_rows(measured, catalogue, ["S"])
    assert list(labelled["family"]) == ["teacher", "quantization", "knowledge distillation + int8",
                                        "knowledge distillation", "pruning"]
    twin = compare_report.no_kd_twin_row(labelled, {"accuracy": 0.6, "macro_f1": 0.5}, 0.62)
    assert len(twin) == 1 and twin.iloc[0]["name"] == "no-KD twin (02)" and twin.iloc[0]["accuracy"] == 0.6
    assert twin.iloc[0]["val_accuracy"] == 0.62
    assert np.isnan(twin.iloc[0]["test_prediction_seconds"]) and "02's record" in twin.iloc[0]["note"]


def test_measure_a_tiny_model_on_torch_and_a_refused_route(tiny_bert_config, tiny_tokenizer, tmp_path):
    """Rows with sizes, latencies and test accuracy through the route; a refused route is a row with its reason;
    a rerun reads the memoised unit."""
    import torch
    from datasets import Dataset
    from transformers import BertForSequenceClassification

    from kdlib.pipeline.config import BenchmarkParams

    torch.manual_seed(0)
    model = BertForSequenceClassification(tiny_bert_config(num_labels=3)).eval()
    rng = np.random.default_rng(0)
    test = Dataset.from_dict({"input_ids": [list(rng.integers(1000 - 900, 999, size=6)) for _ in range(10)],
                              "attention_mask": [[1] * 6] * 10, "label": list(rng.integers(0, 3, size=10))})
    bench = BenchmarkParams(batch_sizes=[1, 4], seq_len=8, threads=1, warmup=1, repeats=2)
    routes = [("torch", "fp32"), ("no_such_runtime", "fp32")]
    validation = test.select(range(4))
    frame = compare.measure({"m": model}, routes, bench, test, tiny_tokenizer, tmp_path, validation_ds=validation)
    ok = frame[frame["status"] == "ok"].iloc[0]
    assert ok["params"] == sum(p.numel() for p in model.parameters())
    assert ok["latency_bs1_ms_median"] > 0 and ok["latency_bs4_ms_p95"] > 0 and ok["size_mb"] > 0
    with torch.no_grad():
        expected = model(input_ids=torch.tensor(test["input_ids"]),
                         attention_mask=torch.tensor(test["attention_mask"])).logits.argmax(-1).numpy()
    assert ok["accuracy"] == pytest.approx(float((expected == np.array(test["label"])).mean()))
    assert ok["val_accuracy"] == pytest.approx(float((expected[:4] == np.array(test["label"][:4])).mean()))
    refused = frame[frame["runtime"] == "no_such_runtime"].iloc[0]
    assert refused["status"] == "refused" and "unknown runtime" in refused["reason"]
    again = compare.measure({"m": model}, routes[:1], bench, test, tiny_tokenizer, tmp_path,
                            validation_ds=validation)
    assert again.iloc[0]["latency_bs1_ms_median"] == ok["latency_bs1_ms_median"]  # reused, not re-timed
    # the same weights under a second name: measured once (the unit above is reused), the row under both names
    import copy

    both = compare.measure({"m": model, "same weights": copy.deepcopy(model)}, routes[:1], bench, test,
                           tiny_tokenizer, tmp_path, validation_ds=validation).set_index("name")
    assert list(both.index) == ["m", "same weights"]
    assert both.loc["same weights", "latency_bs1_ms_median"] == ok["latency_bs1_ms_median"]


def test_every_route_is_timed_in_turn_with_the_pytorch_fp32_teacher(tiny_bert_config, tiny_tokenizer, tmp_path):
    """Each route's unit times its models and the teacher's PyTorch fp32 runner call by call: the speed-ups
    are ratios within that unit (the teacher against itself exactly 1), with their spread over rounds."""
    import torch
    from datasets import Dataset
    from transformers import BertForSequenceClassification

    from kdlib.inference.routes import refusal
    from kdlib.pipeline.config import BenchmarkParams

    torch.manual_seed(0)
    teacher = BertForSequenceClassification(tiny_bert_config(num_labels=3)).eval()
    student = BertForSequenceClassification(tiny_bert_config(num_labels=3, num_hidden_layers=1)).eval()
    test = Dataset.from_dict({"input_ids": [[101, 7, 8, 102]] * 4, "attention_mask": [[1] * 4] * 4,
                              "label": [0, 1, 2, 0]})
    bench = BenchmarkParams(batch_sizes=[1], seq_len=8, threads=1, warmup=1, repeats=4)
    routes = [("torch", "fp32")] + ([("onnxruntime", "fp32")] if refusal("onnxruntime", "fp32") is None else [])
    frame = compare.measure({"teacher": teacher, "student": student}, routes, bench, test, tiny_tokenizer, tmp_path)
    ok = frame[frame["status"] == "ok"].set_index(["name", "runtime"])
    assert ok.loc[("teacher", "torch"), "speedup_vs_torch_fp32_teacher_bs1"] == 1.0
    assert ok.loc[("teacher", "torch"), "speedup_vs_same_route_teacher_bs1"] == 1.0
    assert (ok["speedup_vs_torch_fp32_teacher_bs1_p25"] <= ok["speedup_vs_torch_fp32_teacher_bs1"]).all()
    assert (ok["speedup_vs_torch_fp32_teacher_bs1"] <= ok["speedup_vs_torch_fp32_teacher_bs1_p75"]).all()
    assert ok["speedup_vs_torch_fp32_teacher_bs1"].notna().all() and len(ok) == 2 * len(routes)


def test_each_batch_size_names_its_own_winner():
    frame = _frame()
    # at batch 32 the student's torch row (0.79, within 1 point) becomes faster than the teacher's int8 row
    frame.loc[2, "latency_bs32_ms_median"] = 30.0
    frame.loc[2, "speedup_vs_torch_fp32_teacher_bs32"] = 100.0 / 30.0
    metrics = compare_report.headline_metrics(compare_report.with_speedups(frame, [1, 32]))
    assert metrics["best_route_within_1pp"] == "teacher on onnxruntime/int8"  # 2.5x at batch 1
    assert metrics["best_route_within_1pp_bs32"] == "student on torch/fp32"
    assert metrics["best_speedup_within_1pp_bs32"] == pytest.approx(100.0 / 30.0)
    # the teacher's own best route within 1 point, and how much the winner gains on its own route
    assert metrics["best_route_teacher_within_1pp"] == "teacher on onnxruntime/int8"
    assert metrics["best_speedup_teacher_within_1pp"] == pytest.approx(2.5)
    assert metrics["best_same_route_speedup_within_3pct"] == pytest.approx(4.0)  # student int8 over teacher int8


def test_contenders_are_the_fastest_few_of_each_choice_pool_at_each_batch_size():
    frame = compare_report.with_speedups(_frame(), [1, 32])
    picked = compare_report.contenders(frame, [1, 32], per_pool=1)
    at1 = set(map(tuple, picked[picked["batch_size"] == 1][["name", "runtime", "precision"]].values))
    # quantized: tiny int8 (20x); within 1 point: teacher int8 (2.5x); within 97%: student int8 (10x); the
    # teacher's own rows within 1 point: its int8 row again
    assert at1 == {("tiny", "onnxruntime", "int8"), ("teacher", "onnxruntime", "int8"),
                   ("student", "onnxruntime", "int8")}
    extra = frame[frame["name"] == "student"]
    with_extra = compare_report.contenders(frame, [1], extra_pools=[extra], per_pool=2)
    assert ("student", "torch", "fp32") in set(map(tuple, with_extra[["name", "runtime", "precision"]].values))
    assert set(picked["batch_size"]) == {1, 32}


def test_choices_are_made_and_quoted_from_the_head_to_head_run():
    """Two rows' speed-ups from their own routes' runs rank them one way; timed side by side, the other: the
    choice, its quoted speed-up and the model to ship follow the side-by-side run."""
    from kdlib.studies.compare import ship

    frame = compare_report.with_speedups(_frame(), [1, 32])
    h2h = pd.DataFrame([
        {"name": "student", "runtime": "onnxruntime", "precision": "int8", "batch_size": 1, "h2h_speedup_bs1": 6.0,
         "h2h_latency_bs1_ms_median": 2.0, "h2h_reference_latency_bs1_ms_median": 12.0},
        {"name": "teacher", "runtime": "onnxruntime", "precision": "int8", "batch_size": 1, "h2h_speedup_bs1": 7.0,
         "h2h_latency_bs1_ms_median": 1.7, "h2h_reference_latency_bs1_ms_median": 12.0},
    ])
    merged = compare_report.with_head_to_head(frame, h2h)
    assert len(merged) == len(frame) and merged["h2h_speedup_bs1"].notna().sum() == 2
    metrics = compare_report.headline_metrics(merged)
    assert metrics["best_route_within_3pct"] == "teacher on onnxruntime/int8"  # 10x > 2.5x apart, 6x < 7x together
    assert metrics["best_speedup_within_3pct"] == pytest.approx(7.0)
    assert metrics["best_speedup_within_3pct_bs32"] == pytest.approx(5.0)  # no side-by-side run at 32: as measured
    merged["macro_f1"], merged["size_mb"], merged["params"] = 0.7, 1.0, 10
    model_dirs = {"teacher": Path("teacher"), "student": Path("student")}
    rec = ship.recommend(merged, model_dirs, margin_pp=5.0)  # both int8 rows within 5 points
    assert rec["route"] == "onnxruntime/int8" and rec["model"] == "teacher"
    assert rec["speedup_vs_torch_fp32_teacher_bs1"] == pytest.approx(7.0)
    assert rec["speedup_measured_in_bs1"] == "head-to-head run" and rec["speedup_measured_in_bs32"] == "route run"


def test_head_to_head_times_every_contender_in_one_run_with_the_teacher(tiny_bert_config, tmp_path):
    import copy

    import torch
    from transformers import BertForSequenceClassification

    from kdlib.pipeline.config import BenchmarkParams

    torch.manual_seed(0)
    teacher = BertForSequenceClassification(tiny_bert_config(num_labels=3)).eval()
    student = BertForSequenceClassification(tiny_bert_config(num_labels=3, num_hidden_layers=1)).eval()
    models = {"teacher": teacher, "student": student, "same weights": copy.deepcopy(student)}
    contenders = pd.DataFrame([("teacher", "torch", "fp32", 1), ("student", "torch", "fp32", 1),
                               ("student", "torch", "fp32", 4), ("no weights here", "torch", "fp32", 1)],
                              columns=["name", "runtime", "precision", "batch_size"])
    bench = BenchmarkParams(batch_sizes=[1, 4], seq_len=8, threads=1, warmup=1, repeats=4)
    rows = compare.head_to_head(models, contenders, bench, tmp_path)
    at1 = rows[rows["batch_size"] == 1].set_index("name")
    assert set(at1.index) == {"teacher", "student", "same weights"}  # the twin-like row without weights: left out
    assert at1.loc["teacher", "h2h_speedup_bs1"] == 1.0  # the reference against itself
    assert at1["h2h_reference_latency_bs1_ms_median"].nunique() == 1  # one run, one teacher measurement
    assert at1.loc["same weights", "h2h_latency_bs1_ms_median"] == at1.loc["student", "h2h_latency_bs1_ms_median"]
    at4 = rows[rows["batch_size"] == 4]
    assert set(at4["name"]) == {"student", "same weights"} and (at4["h2h_timed_calls_bs4"] >= 1).all()
    again = compare.head_to_head(models, contenders, bench, tmp_path)  # the memoised unit, not re-timed
    pd.testing.assert_frame_equal(rows, again)


def test_route_runs_take_their_own_budget_and_the_side_by_side_run_keeps_the_benchmarks():
    import dataclasses

    from kdlib.pipeline.config import load_params

    cfg = load_params(Path(__file__).parents[1] / "params" / "quick.yaml", check_models=False)
    assert cfg.compare.route_seconds < cfg.benchmark.max_seconds
    routes_bench = compare.route_bench(cfg)
    assert routes_bench.max_seconds == cfg.compare.route_seconds
    assert dataclasses.replace(routes_bench, max_seconds=cfg.benchmark.max_seconds) == cfg.benchmark
    unset = dataclasses.replace(cfg, compare=dataclasses.replace(cfg.compare, route_seconds=None))
    assert compare.route_bench(unset) is unset.benchmark
