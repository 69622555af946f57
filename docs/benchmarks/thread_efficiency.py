"""Two threads on one training run, or one thread each on two runs side by side: which trains students sooner.

Run from the repository root:
    python docs/benchmarks/thread_efficiency.py        # writes thread_efficiency.json beside this file
Steps 02, 03 and 04 train many small students (MiniLM's width, 1 to 6 layers, batches of 32 sentences). For
each shape, in rounds, three ways take the same training steps (bf16 autocast where the CPU has native bf16,
as the study trains; AdamW; one batch of 32 rows of 48 tokens):
- one process with 2 torch threads;
- one process with 1 thread;
- two processes with 1 thread each, side by side (they start their timed steps together).
Each way runs in fresh processes that build the model and warm up before the clock starts. The result per
shape: steps per second of each way (medians over rounds), and `side_by_side_over_two_threads`, the median
per-round ratio of the two processes' steps per second together over the 2-thread process's: above 1, two
workers of one thread finish a list of runs sooner than one run after the other on two threads.
"""
import json
import multiprocessing
import time
from pathlib import Path

import numpy as np

# (layers, ffn) of the grid's smallest and largest students, and the teacher's shape
SHAPES = [(1, 96), (3, 1536), (6, 1536)]
STEPS, ROUNDS, BATCH, SEQ = 10, 3, 32, 48


def _run(layers: int, ffn: int, threads: int, barrier, results) -> None:
    import torch
    from transformers import AutoModelForSequenceClassification

    from kdlib.core.models import make_student, resolve_model
    from kdlib.inference.machine import bf16_supported

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    teacher = AutoModelForSequenceClassification.from_pretrained(resolve_model("minilm"), num_labels=3)
    model = (teacher if layers == teacher.config.num_hidden_layers else make_student(teacher, layers, ffn)).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=True)
    ids = torch.randint(1000, 20000, (BATCH, SEQ))
    labels = torch.randint(0, 3, (BATCH,))
    bf16 = bf16_supported()

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = model(input_ids=ids, labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad()

    for _ in range(3):
        step()
    barrier.wait()
    start = time.perf_counter()
    for _ in range(STEPS):
        step()
    results.put(time.perf_counter() - start)


def steps_per_second(layers: int, ffn: int, threads: int, processes: int) -> float:
    """Training steps per second of `processes` side by side with `threads` each, all processes together."""
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(processes), ctx.Queue()
    procs = [ctx.Process(target=_run, args=(layers, ffn, threads, barrier, results)) for _ in range(processes)]
    for p in procs:
        p.start()
    seconds = [results.get() for _ in procs]
    for p in procs:
        p.join()
    return processes * STEPS / max(seconds)


def main() -> None:
    import torch

    from kdlib.inference import machine

    ways = {"two_threads": (2, 1), "one_thread": (1, 1), "side_by_side": (1, 2)}
    rows = []
    for layers, ffn in SHAPES:
        rates = {w: [] for w in ways}
        for _ in range(ROUNDS):  # the ways in turn, so a change in the machine's load hits all of them
            for w, (threads, processes) in ways.items():
                rates[w].append(steps_per_second(layers, ffn, threads, processes))
        ratio = np.array(rates["side_by_side"]) / np.array(rates["two_threads"])
        rows.append({"layers": layers, "ffn": ffn,
                     **{f"steps_per_s_{w}": float(np.median(r)) for w, r in rates.items()},
                     "two_threads_over_one": float(np.median(np.array(rates["two_threads"]) / np.array(rates["one_thread"]))),
                     "side_by_side_over_two_threads": float(np.median(ratio)),
                     "side_by_side_over_two_threads_p25": float(np.percentile(ratio, 25)),
                     "side_by_side_over_two_threads_p75": float(np.percentile(ratio, 75))})
        print(rows[-1], flush=True)
    out = Path(__file__).with_name("thread_efficiency.json")
    out.write_text(json.dumps({"machine": machine.describe(), "torch": torch.__version__, "rounds": ROUNDS,
                               "steps": STEPS, "batch_size": BATCH, "seq_len": SEQ, "shapes": rows},
                              indent=1, default=str) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
