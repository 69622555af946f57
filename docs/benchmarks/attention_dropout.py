"""What dropout on the attention probabilities costs a training step on the CPU, at step 06's shape and at 01-03's.

Run from the repository root:
    python docs/benchmarks/attention_dropout.py        # writes attention_dropout.json beside this file
With any attention dropout, PyTorch's scaled_dot_product_attention on the CPU leaves its fused kernel for the
unfused one, which builds the whole attention matrix and draws a random mask over it. At each shape, two copies
of MiniLM (the study's teacher, bf16 autocast as the study trains on a CPU with native bf16, fused AdamW), one
with attention dropout 0.1 (BERT's) and one with 0, take training steps in turn on the same batch (a quarter of
its rows padded); medians in ms and the median of the per-round ratios, with the machine.
"""
import json
import time
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModelForQuestionAnswering, AutoModelForSequenceClassification

# (head, sequence length, batch): 06's longest QA windows and a typical one; 01-03's sentences
SHAPES = [("qa", 256, 16), ("qa", 160, 16), ("classification", 64, 32)]
ROUNDS, DROPOUTS = 10, (0.1, 0.0)


def time_shape(head: str, seq: int, batch: int, threads: int) -> dict:
    from kdlib.core.models import resolve_model
    from kdlib.inference.machine import bf16_supported

    loader = AutoModelForQuestionAnswering if head == "qa" else AutoModelForSequenceClassification
    models = {}
    for p in DROPOUTS:
        torch.manual_seed(0)
        extra = {} if head == "qa" else {"num_labels": 3}
        model = loader.from_pretrained(resolve_model("minilm"), attention_probs_dropout_prob=p, **extra).train()
        models[p] = (model, torch.optim.AdamW(model.parameters(), lr=1e-5, fused=True))
    ids = torch.randint(1000, 20000, (batch, seq))
    mask = torch.ones_like(ids)
    mask[: batch // 4, seq // 2:] = 0
    labels = ({"start_positions": torch.randint(0, seq, (batch,)), "end_positions": torch.randint(0, seq, (batch,))}
              if head == "qa" else {"labels": torch.randint(0, 3, (batch,))})
    bf16 = bf16_supported()

    def step(p):
        model, opt = models[p]
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = model(input_ids=ids, attention_mask=mask, **labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad()

    for p in DROPOUTS:  # warm-up
        step(p)
        step(p)
    seconds = {p: [] for p in DROPOUTS}
    for _ in range(ROUNDS):
        for p in DROPOUTS:
            start = time.perf_counter()
            step(p)
            seconds[p].append(time.perf_counter() - start)
    ratio = np.array(seconds[0.1]) / np.array(seconds[0.0])
    return {"head": head, "seq_len": seq, "batch_size": batch, "threads": threads, "bf16_autocast": bf16,
            **{f"step_ms_dropout_{p:g}": float(np.median(s) * 1e3) for p, s in seconds.items()},
            "ratio_median": float(np.median(ratio)), "ratio_p25": float(np.percentile(ratio, 25)),
            "ratio_p75": float(np.percentile(ratio, 75))}


def main() -> None:
    from kdlib.inference import machine

    threads = min(2, torch.get_num_threads())
    torch.set_num_threads(threads)
    rows = []
    for shape in SHAPES:
        rows.append(time_shape(*shape, threads))
        print(rows[-1], flush=True)
    out = Path(__file__).with_name("attention_dropout.json")
    out.write_text(json.dumps({"machine": machine.describe(), "torch": torch.__version__, "rounds": ROUNDS,
                               "shapes": rows}, indent=1, default=str) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
