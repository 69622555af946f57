"""What a call pays when it is timed right after another model's call, and what timing.SWITCH_WARMUP_S takes back.

Run from the repository root:
    python docs/benchmarks/switch_cost.py        # writes switch_cost.json beside this file, with the machine
The quick study's teacher (all-MiniLM-L6-v2, a 3-way head, PyTorch fp32) and a 2-layer student of FFN 384
(03's L2_F384 shape) on the routes 04 times it on, at batch 1 and 32, 64 tokens, on the study's threads. Each
model is timed four ways, in one process, RUNS times over: alone (its calls back to back, as time_runner does),
in turn with every other model with no untimed call between (`cold`, as timing.time_interleaved did before
SWITCH_WARMUP_S), in turn with it (`warmed`, as time_interleaved does now: no untimed call before a call of
UNWARMED_CALL_S or more), and in turn with an untimed call before every call however long (`allwarmed`, as it
did before UNWARMED_CALL_S). Medians in ms, and the speed-up over the teacher within each way (round by round
for the ways in turn; medians for alone). Weights are the packaged MiniLM's, the
student's copied from its layers: speed does not depend on what they learned.
"""
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from kdlib.core.models import load_classifier, make_student
from kdlib.inference import machine
from kdlib.inference import runtimes as rt
from kdlib.inference import timing
from kdlib.inference.timing import BenchmarkSettings, round_ratios, time_interleaved, time_runner

THREADS = min(2, torch.get_num_threads())
ROUTES = [("openvino", "int8_static"), ("openvino", "bf16"), ("onnxruntime", "int8"), ("torch", "bf16")]
REPEATS = {1: 30, 32: 10}
RUNS = 3  # every way timed three times over, in turn: the host's drift between ways is as large as the effects

torch.set_num_threads(THREADS)
teacher = load_classifier("minilm", ["negative", "neutral", "positive"]).eval()
student = make_student(teacher, 2, 384).eval()
vocab = teacher.config.vocab_size
calibration = [rt.random_batch(8, 64, vocab, rt.INPUT_NAMES) for _ in range(4)]
work = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/kd-switch-cost")
runners = {"teacher@torch/fp32": rt.prepare(teacher, "torch", "fp32", work / "teacher", THREADS)}
for runtime, precision in ROUTES:
    if rt.refusal(runtime, precision) is None:
        runners[f"student@{runtime}/{precision}"] = rt.prepare(student, runtime, precision,
                                                               work / f"{runtime}-{precision}", THREADS,
                                                               calibration=calibration)

results = []
for run, batch in [(run, batch) for run in range(RUNS) for batch in (1, 32)]:
    settings = BenchmarkSettings(batch, 64, THREADS, 3, REPEATS[batch])
    alone = {n: time_runner(r, settings, vocab)["latency_ms_median"] for n, r in runners.items()}
    ways = {}
    # warmed: as time_interleaved does (no untimed call before a call of UNWARMED_CALL_S or more);
    # allwarmed: every call after one of its own, however long (as it did before UNWARMED_CALL_S)
    for way, warmup_s, unwarmed_s in (("in turn, cold", 0.0, timing.UNWARMED_CALL_S),
                                      ("in turn, warmed", timing.SWITCH_WARMUP_S, timing.UNWARMED_CALL_S),
                                      ("in turn, allwarmed", timing.SWITCH_WARMUP_S, float("inf"))):
        saved = timing.SWITCH_WARMUP_S, timing.UNWARMED_CALL_S
        timing.SWITCH_WARMUP_S, timing.UNWARMED_CALL_S = warmup_s, unwarmed_s
        try:
            ways[way] = time_interleaved(runners, settings, vocab)
        finally:
            timing.SWITCH_WARMUP_S, timing.UNWARMED_CALL_S = saved
    reference = "teacher@torch/fp32"
    for name in runners:
        row = {"run": run, "batch_size": batch, "model": name, "alone_ms": alone[name],
               "alone_speedup": alone[reference] / alone[name]}
        for way, stats in ways.items():
            tag = way.split(", ")[1]
            row[f"{tag}_ms"] = stats[name]["latency_ms_median"]
            row[f"{tag}_speedup"] = round_ratios(stats[reference]["rounds"], stats[name]["rounds"])["median"]
        results.append(row)
        print({k: round(v, 2) if isinstance(v, float) else v for k, v in row.items()}, flush=True)

out = Path(__file__).with_name("switch_cost.json")
out.write_text(json.dumps({"machine": machine.describe(), "threads": THREADS, "seq_len": 64,
                           "switch_warmup_s": timing.SWITCH_WARMUP_S, "unwarmed_call_s": timing.UNWARMED_CALL_S,
                           "repeats": REPEATS,
                           "rows": results}, indent=1, default=str) + "\n")
print(f"wrote {out}")
