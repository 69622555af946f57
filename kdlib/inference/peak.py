"""How close a route runs to this machine's peak: the matrix-product peak per precision, measured, and each
timed row's achieved GFLOP/s against it (a roofline share).

The peak is what torch's own matrix product reaches on square operands large enough to be compute-bound
(2·n³ FLOPs per product), with the benchmark's thread count: fp32 always; bf16 where the CPU has native
bf16 (elsewhere it is emulated, and no route computes in it); int8 through ONNX Runtime's MatMulInteger
(uint8 × int8 -> int32, the kernel its int8 routes run). A model's FLOPs are counted by torch's FLOP counter on one
forward pass of the fp32 model (matrix products, 2 FLOPs per multiply-add), so pruned or factorised models
are counted as they are, not from their configuration; the counter does not see inside fused attention
(scaled_dot_product_attention), so the count, and each share of the peak, is a lower bound.
"""
from __future__ import annotations

import time

import numpy as np
import pandas as pd
import torch
from torch.utils.flop_counter import FlopCounterMode

from kdlib.inference import machine, routes
from kdlib.inference.runtimes import example_inputs

SIZE = 1024  # a 1024³ product: compute-bound, ~2 GFLOP, a few ms to a few hundred ms
# Which peak a route's row is held against: its precision's arithmetic.
PEAK_OF = {"fp32": "fp32", "bf16": "bf16", "int8": "int8", "int8_static": "int8"}


def _int8_product(n: int, threads: int):
    """ONNX Runtime's int8 matrix product (MatMulInteger, uint8 × int8 -> int32), the kernel its int8 routes
    run: torch's own CPU int8 product has no fast kernel on every CPU."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("MatMulInteger", ["a", "b"], ["c"])], "int8_product",
        [helper.make_tensor_value_info("a", TensorProto.UINT8, [n, n]),
         helper.make_tensor_value_info("b", TensorProto.INT8, [n, n])],
        [helper.make_tensor_value_info("c", TensorProto.INT32, [n, n])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    session = ort.InferenceSession(model.SerializeToString(), routes.onnxruntime_options(threads),
                                   providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    feeds = {"a": rng.integers(0, 255, (n, n), dtype=np.uint8), "b": rng.integers(-128, 127, (n, n), dtype=np.int8)}
    return lambda: session.run(None, feeds)


def _product(precision: str, n: int, threads: int):
    if precision == "int8":
        return _int8_product(n, threads)
    g = torch.Generator().manual_seed(0)
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[precision]
    a, b = (torch.randn(n, n, generator=g).to(dtype) for _ in range(2))
    return lambda: torch.mm(a, b)


def matmul_peak(precision: str, threads: int, n: int = SIZE, seconds: float = 2.0) -> float:
    """GFLOP/s of torch's n×n matrix product in `precision` with `threads` threads: its fastest call of those
    made over about `seconds`, after two untimed ones. A peak is the most the machine does: on a shared VM
    the median of calls under-read it, by a different amount in each run."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        run = _product(precision, n, threads)
        run(), run()
        times, start = [], time.perf_counter()
        while len(times) < 5 or time.perf_counter() - start < seconds:
            t0 = time.perf_counter()
            run()
            times.append(time.perf_counter() - t0)
        return 2 * n ** 3 / min(times) / 1e9
    finally:
        torch.set_num_threads(previous)


def peaks(threads: int) -> pd.DataFrame:
    """One row per precision: its measured peak (GFLOP/s), or the reason it is not measured here."""
    rows = []
    for precision in ("fp32", "bf16", "int8"):
        if precision == "bf16" and not machine.bf16_supported():
            rows.append({"precision": precision, "peak_gflops": np.nan, "threads": threads,
                         "reason": "no native bf16 on this CPU: no route computes in bf16 here"})
            continue
        rows.append({"precision": precision, "peak_gflops": matmul_peak(precision, threads), "threads": threads,
                     "reason": ""})
    return pd.DataFrame(rows)


def model_flops(model, seq_len: int) -> int:
    """FLOPs of one sample's forward pass at `seq_len` tokens, counted by torch on the model itself."""
    inputs = {k: torch.from_numpy(v) for k, v in example_inputs(model, 1, seq_len).items()}
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model.eval()(**inputs)
    return int(counter.get_total_flops())


def roofline(frame: pd.DataFrame, peak: pd.DataFrame, batch_sizes) -> pd.DataFrame:
    """`frame` (rows with `flops_per_sample`, `precision` and latencies) with, per batch size, the achieved
    GFLOP/s and its share of the peak of the row's precision (NaN where that peak is not measured)."""
    frame = frame.copy()
    by_precision = peak.set_index("precision")["peak_gflops"]
    held = frame["precision"].map(PEAK_OF).map(by_precision)
    for b in batch_sizes:
        achieved = frame["flops_per_sample"] * b / (frame[f"latency_bs{b}_ms_median"] / 1e3) / 1e9
        frame[f"gflops_bs{b}"] = achieved
        frame[f"peak_share_bs{b}"] = achieved / held
    return frame
