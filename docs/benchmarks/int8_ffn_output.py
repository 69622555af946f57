"""Why the ONNX Runtime int8 routes keep each FFN output matrix in fp32 and quantise weights per channel.

Run from the repository root after `kdstudy run --params params/quick.yaml` (it reads 06's half-depth SQuAD
student, its questions, and 03's L2_F384 classifier):
    python docs/benchmarks/int8_ffn_output.py
Four recipes of onnxruntime/int8 (dynamic): every MatMul with one weight scale per tensor (the recipe before),
per-channel weights only, the FFN output MatMuls in fp32 only, and both (the route today). For the QA student:
F1 and EM on 06's validation questions and the time over them through `kdstudy bench`, in rounds with ONNX
Runtime fp32, recipe by recipe (the median over rounds). For the classifier: latency at batch 1 and 32,
the recipes and fp32 timed in turn in one unit. Writes `int8_ffn_output.json` beside this file, with the
machine.
"""
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime.quantization as ort_quantization
from transformers import AutoModelForQuestionAnswering, AutoModelForSequenceClassification

from kdlib.inference import machine
from kdlib.inference.runtimes import onnx_route, prepare
from kdlib.inference.timing import BenchmarkSettings, time_interleaved

QA = Path("reports/quick/06_edge_benchmark/models/L3_ffn1536_kd")
QUESTIONS = Path("reports/quick/06_edge_benchmark/device/questions.json")
CLASSIFIER = Path("reports/quick/03_grid/models/L2_F384")
RECIPES = {"all int8, per-tensor": (False, False), "per-channel": (True, False),
           "FFN output fp32": (False, True), "per-channel + FFN output fp32 (the route)": (True, True)}
ROUNDS = 3


def build(model, recipe: str, folder: Path):
    """onnxruntime/int8 of `model` under one recipe: the route's code with its two choices switched."""
    per_channel, keep_ffn = RECIPES[recipe]
    real_dynamic, real_find = ort_quantization.quantize_dynamic, onnx_route.ffn_output_matmuls
    ort_quantization.quantize_dynamic = lambda *a, **k: real_dynamic(*a, **{**k, "per_channel": per_channel})
    onnx_route.ffn_output_matmuls = real_find if keep_ffn else (lambda proto: [])
    try:
        folder.mkdir(parents=True, exist_ok=True)
        return prepare(model, "onnxruntime", "int8", folder, threads=2)
    finally:
        ort_quantization.quantize_dynamic, onnx_route.ffn_output_matmuls = real_dynamic, real_find


def bench_qa(model_file: Path, precision: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "kdlib.inference.bench", "--model", str(model_file), "--tokenizer",
                        str(QA), "--data", str(QUESTIONS), "--runtime", "onnxruntime", "--precision", precision,
                        "--threads", "2", "--profile", "pi5", "--out", f"{tmp}/b.json"], check=True,
                       capture_output=True)
        return json.loads(Path(f"{tmp}/b.json").read_text())


with tempfile.TemporaryDirectory() as work:
    work = Path(work)
    qa = AutoModelForQuestionAnswering.from_pretrained(QA).eval()
    files = {r: build(qa, r, work / f"qa{i}").files[0] for i, r in enumerate(RECIPES)}
    files["fp32"] = prepare(qa, "onnxruntime", "fp32", work / "qa_fp32", threads=2).files[0]
    runs = {name: [] for name in files}
    for _ in range(ROUNDS):
        for name, f in files.items():
            runs[name].append(bench_qa(f, "fp32" if name == "fp32" else "int8"))
    qa_rows = [{"recipe": name, "f1": r[0]["f1"], "exact_match": r[0]["exact_match"],
                "total_seconds_median": float(np.median([x["total_seconds"] for x in r])),
                "seconds_over_fp32": float(np.median([x["total_seconds"] / f["total_seconds"]
                                                      for x, f in zip(r, runs["fp32"])]))}
               for name, r in runs.items()]

    clf = AutoModelForSequenceClassification.from_pretrained(CLASSIFIER).eval()
    runners = {r: build(clf, r, work / f"clf{i}") for i, r in enumerate(RECIPES)}
    runners["fp32"] = prepare(clf, "onnxruntime", "fp32", work / "clf_fp32", threads=2)
    clf_rows = []
    for b in (1, 32):
        stats = time_interleaved(runners, BenchmarkSettings(b, 64, 2, 5, 200 if b == 1 else 40, None, None),
                                 clf.config.vocab_size)
        clf_rows += [{"recipe": n, "batch_size": b, "latency_ms_median": s["latency_ms_median"],
                      "median_ci95_pct": s["median_ci95_pct"]} for n, s in stats.items()]

for row in qa_rows + clf_rows:
    print(row)
Path(__file__).with_suffix(".json").write_text(json.dumps(
    {"machine": machine.describe(), "qa_student": str(QA), "questions": str(QUESTIONS), "rounds": ROUNDS,
     "qa": qa_rows, "classifier": str(CLASSIFIER), "classification": clf_rows}, indent=1))
