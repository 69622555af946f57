"""kdlib.inference.peak: the FLOPs torch counts on a model, the roofline arithmetic, and a measured peak that
is a plausible number (timings are not asserted)."""
from __future__ import annotations

import math

import pandas as pd
import torch
from transformers import BertConfig, BertForSequenceClassification

from kdlib.compress.flops import bert_flops
from kdlib.inference import peak


def _bert(layers=2, ffn=64):
    torch.manual_seed(0)
    return BertForSequenceClassification(BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=layers,
                                                    num_attention_heads=2, intermediate_size=ffn, num_labels=3))


def test_counted_flops_are_the_linear_maps_of_the_model_as_it_is():
    n = 16
    counted = peak.model_flops(_bert(), n)
    # every linear map is counted; the attention scores inside fused attention are not (a lower bound)
    expected = bert_flops(32, 2, 64, n, 3)["total"] - 2 * bert_flops(32, 2, 64, n, 3)["layer_attention_scores"]
    assert counted == expected
    # a narrower FFN is counted as it is, not from a configuration
    assert peak.model_flops(_bert(ffn=16), n) < counted


def test_roofline_divides_the_work_by_the_time_and_by_the_peak_of_the_row_precision():
    rows = pd.DataFrame({"precision": ["fp32", "int8_static", "bf16"], "flops_per_sample": [2e9, 2e9, 2e9],
                         "latency_bs1_ms_median": [10.0, 5.0, 4.0], "latency_bs32_ms_median": [100.0, 50.0, 40.0]})
    peaks = pd.DataFrame({"precision": ["fp32", "bf16", "int8"], "peak_gflops": [400.0, math.nan, 1000.0]})
    out = peak.roofline(rows, peaks, [1, 32])
    assert out["gflops_bs1"].tolist() == [200.0, 400.0, 500.0]
    assert out["peak_share_bs1"].iloc[0] == 0.5 and out["peak_share_bs1"].iloc[1] == 0.4
    assert math.isnan(out["peak_share_bs1"].iloc[2])  # no bf16 peak measured here
    assert out["gflops_bs32"].iloc[0] == 2e9 * 32 / 0.1 / 1e9


def test_the_fp32_peak_is_measured_and_bf16_refused_without_native_bf16(monkeypatch):
    from kdlib.inference import machine

    assert peak.matmul_peak("fp32", 1, n=128, seconds=0.05) > 0
    monkeypatch.setattr(machine, "cpu_flags", lambda: {"avx2"})
    monkeypatch.setattr(peak, "matmul_peak", lambda precision, threads: 1.0)
    table = peak.peaks(1).set_index("precision")
    assert math.isnan(table.loc["bf16", "peak_gflops"]) and "bf16" in table.loc["bf16", "reason"]
    assert table.loc["fp32", "peak_gflops"] == 1.0 and table.loc["int8", "peak_gflops"] == 1.0
