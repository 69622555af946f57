"""A batch on OpenVINO: one call in latency mode (both threads on it), or split over two streams of one thread.

Run from the repository root, after the quick study (it reads 01's teacher and 03's students):
    python docs/benchmarks/openvino_streams.py        # writes openvino_streams.json beside this file
For the teacher, the half-depth student (L3_F1536) and the fastest student within 97% (L2_F384), on OpenVINO
int8_static and bf16 at batch 32, 64 tokens, 2 threads: the graph compiled for latency and called on the whole
batch (the study's OpenVINO call before 2026-12-04), against the study's call now (kdlib.inference.
openvino_calls: the batch split in two, each half on a stream of one thread), and the latency graph on one
thread. Each round times every way once (after two untimed calls of its own), and the PyTorch fp32 teacher;
per way: the median, p25 and p75 in ms over the rounds, and the median per-round speed-up over the teacher.
The spread of the latency-mode rows shows the two states of openvino_states.json; the split rows do not.
"""
import json
import time
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModelForSequenceClassification

ROUNDS, BATCH, SEQ = 30, 32, 64
REPORTS = Path("reports/quick")
MODELS = {"teacher": REPORTS / "01_teacher" / "model", "L3_F1536": REPORTS / "03_grid" / "models" / "L3_F1536",
          "L2_F384": REPORTS / "03_grid" / "models" / "L2_F384"}


def main() -> None:
    import openvino as ov

    from kdlib.inference import machine, routes
    from kdlib.inference import runtimes as rt

    threads = min(2, torch.get_num_threads())
    torch.set_num_threads(threads)
    core = ov.Core()
    loaded = {name: AutoModelForSequenceClassification.from_pretrained(path).eval() for name, path in MODELS.items()}
    vocab = loaded["teacher"].config.vocab_size
    batch = rt.random_batch(BATCH, SEQ, vocab, rt.INPUT_NAMES)
    calibration = [rt.random_batch(8, SEQ, vocab, rt.INPUT_NAMES) for _ in range(4)]  # speed only
    work = Path("/tmp/kd-openvino-streams")
    reference = rt.prepare(loaded["teacher"], "torch", "fp32", work / "teacher", threads)
    ways = {}
    for name, model in loaded.items():
        for precision in ("int8_static", "bf16"):
            split = rt.prepare(model, "openvino", precision, work / f"{name}-{precision}", threads,
                               calibration=calibration)
            xml = next(p for p in split.files if p.suffix == ".xml")
            for label, n in (("latency", threads), ("latency_1_thread", 1)):
                request = core.compile_model(str(xml), "CPU", routes.openvino_config(precision, n)).create_infer_request()
                ways[(name, precision, label)] = lambda request=request: request.infer(batch)
            ways[(name, precision, "split_streams")] = lambda split=split: split(batch)
    seconds = {way: [] for way in ways}
    teacher = []
    for _ in range(ROUNDS):
        reference(batch)
        reference(batch)
        start = time.perf_counter()
        reference(batch)
        teacher.append(time.perf_counter() - start)
        for way, fn in ways.items():
            fn()
            fn()
            start = time.perf_counter()
            fn()
            seconds[way].append(time.perf_counter() - start)
    teacher = np.array(teacher)
    rows = []
    for (name, precision, label), s in seconds.items():
        s = np.array(s)
        rows.append({"model": name, "precision": precision, "way": label, "median_ms": float(np.median(s) * 1e3),
                     "p25_ms": float(np.percentile(s, 25) * 1e3), "p75_ms": float(np.percentile(s, 75) * 1e3),
                     "speedup_vs_torch_fp32_teacher": float(np.median(teacher / s))})
        print(rows[-1], flush=True)
    out = Path(__file__).with_name("openvino_streams.json")
    out.write_text(json.dumps({"machine": machine.describe(), "openvino": ov.__version__, "threads": threads,
                               "batch_size": BATCH, "seq_len": SEQ, "rounds": ROUNDS,
                               "teacher_torch_fp32_median_ms": float(np.median(teacher) * 1e3), "rows": rows},
                              indent=1, default=str) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
