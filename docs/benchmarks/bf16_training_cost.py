"""What bf16 autocast training costs in accuracy, against fp32, on a CPU with native bf16.

Run from the repository root after `kdstudy run --params params/quick.yaml` (it needs 01's teacher):
    python docs/benchmarks/bf16_training_cost.py 42,43
It trains step 02's half-depth student and its no-KD twin (the quick profile's settings, online KD off) once
with `compute.precision: fp32` and once with `bf16` per seed, and writes each run's validation accuracy (its
best epoch's), test accuracy and training time, with the machine, to `bf16_training_cost.json` beside it.
The runs are memoised units under .cache/bf16_training_cost/ (a run whose key step 02 holds is adopted).
"""
import dataclasses
import json
import sys
from pathlib import Path

from kdlib.inference import machine
from kdlib.pipeline.config import load_params
from kdlib.pipeline.paths import step_dir
from kdlib.studies import train

SEEDS = [int(s) for s in sys.argv[1].split(",")] if len(sys.argv) > 1 else [42, 43]
cfg = load_params("params/quick.yaml")
if not machine.bf16_supported():
    sys.exit("this CPU has no native bf16: `auto` trains in fp32 here, there is nothing to compare")

rows = []
for seed in SEEDS:
    for precision in ("fp32", "bf16"):
        c = dataclasses.replace(cfg, seed=seed, compute=dataclasses.replace(cfg.compute, precision=precision),
                                distill=dataclasses.replace(cfg.distill, compare_online_kd=False))
        out = Path(".cache/bf16_training_cost") / f"{precision}_seed{seed}"
        runs = train.distill_student(c, out_dir=out, same_as=step_dir(cfg.profile, train.DISTILL_STEP, create=False))["runs"]
        for name, r in runs.items():
            best = next(h for h in r["history"] if h["epoch"] == r["best_epoch"])  # the epoch the run kept
            row = {"seed": seed, "precision": precision, "run": name, "bf16": r["params"]["bf16"],
                   "val_accuracy": best["accuracy"], "test_accuracy": r["test"]["accuracy"],
                   "train_wall_seconds": round(r["train_wall_seconds"], 1), "reused": r["reused"]}
            print(row, flush=True)
            rows.append(row)

pairs = {}
for r in rows:
    pairs.setdefault((r["seed"], r["run"]), {})[r["precision"]] = r
diffs = [{"seed": s, "run": n, "val_bf16_minus_fp32_pp": round(100 * (p["bf16"]["val_accuracy"] - p["fp32"]["val_accuracy"]), 2),
          "test_bf16_minus_fp32_pp": round(100 * (p["bf16"]["test_accuracy"] - p["fp32"]["test_accuracy"]), 2),
          "time_fp32_over_bf16": round(p["fp32"]["train_wall_seconds"] / p["bf16"]["train_wall_seconds"], 2)}
         for (s, n), p in pairs.items()]
for d in diffs:
    print(d)
Path("docs/benchmarks/bf16_training_cost.json").write_text(
    json.dumps({"machine": machine.describe(), "profile": cfg.profile, "rows": rows, "paired": diffs}, indent=1))
