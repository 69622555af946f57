"""What reusing freed memory (kdlib/core/allocator.py) saves in the study's training steps.

Run from the repository root:
    python docs/benchmarks/allocator.py          # the quick profile's shapes: allocator.json
    python docs/benchmarks/allocator.py --full   # the full profile's BERT-base shapes: allocator_full.json
Times training steps (bf16 autocast where the CPU has native bf16, AdamW fused, as the study trains) of
MiniLM-width BERTs at the study's shapes: a 1-layer and a half-depth classifier student and the 6-layer
teacher (batch 32, 32 tokens, about a quick-profile sentence), and the QA teacher of step 06 (batch 16, 256
tokens). Each shape runs in a fresh process with glibc's default allocator and in one that imports kdlib
(which raises the thresholds), in turn, over several rounds; the median ms per step of each is kept, and
its largest peak resident memory. Writes `allocator.json` beside this file, with the machine.

`--full` does the same at the full profile's shapes (BERT-base, hidden 768: the classifier at 128 tokens and
step 06's QA model at 384, batch 32 each), with fewer steps: there the question is what the thresholds cost in
peak memory, where a step's blocks are largest.
"""
import json
import statistics
import subprocess
import sys
from pathlib import Path

from kdlib.inference import machine

FULL = "--full" in sys.argv[1:]
SHAPES = [  # (name, layers, ffn, batch, tokens, hidden)
    ("1-layer student L1_F96", 1, 96, 32, 32, 384),
    ("half-depth student L3_F1536", 3, 1536, 32, 32, 384),
    ("teacher (6 layers)", 6, 1536, 32, 32, 384),
    ("QA teacher at 256 tokens", 6, 1536, 16, 256, 384),
]
FULL_SHAPES = [  # params/full.yaml: bert-base-uncased, data.max_length 128, edge.max_length 384, batch 32
    ("BERT-base classifier at 128 tokens", 12, 3072, 32, 128, 768),
    ("BERT-base QA at 384 tokens", 12, 3072, 32, 384, 768),
]
SHAPES, ROUNDS, STEPS = (FULL_SHAPES, 2, 3) if FULL else (SHAPES, 3, 12)

CHILD = """
import resource, sys, time
if sys.argv[1] == "reuse":
    import kdlib  # noqa: F401  (raises glibc's thresholds on import)
import torch
from transformers import BertConfig, BertForSequenceClassification
layers, ffn, batch, tokens, hidden, steps, bf16 = map(int, sys.argv[2:])
torch.manual_seed(0)
cfg = BertConfig(vocab_size=30522, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=12,
                 intermediate_size=ffn, num_labels=3)
model = BertForSequenceClassification(cfg).train()
opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
x, y = torch.randint(0, 30000, (batch, tokens)), torch.randint(0, 3, (batch,))
def step():
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bool(bf16)):
        loss = model(input_ids=x, labels=y).loss
    loss.backward(); opt.step(); opt.zero_grad()
for _ in range(1 if steps < 5 else 3):
    step()
t = time.perf_counter()
for _ in range(steps):
    step()
print((time.perf_counter() - t) / steps * 1000, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""


def ms_per_step(mode: str, shape: tuple, bf16: bool) -> tuple[float, float]:
    """(ms per step, the process's peak resident memory in MB) of one fresh process."""
    _, layers, ffn, batch, tokens, hidden = shape
    args = [str(v) for v in (layers, ffn, batch, tokens, hidden, STEPS, int(bf16))]
    done = subprocess.run([sys.executable, "-c", CHILD, mode, *args], check=True, capture_output=True, text=True)
    ms, peak_mb = done.stdout.strip().splitlines()[-1].split()
    return float(ms), float(peak_mb)


bf16 = machine.bf16_supported()
rows = []
for shape in SHAPES:
    times, peaks = {"default": [], "reuse": []}, {"default": [], "reuse": []}
    for r in range(ROUNDS):  # alternate the order, so neither setting always runs first
        for mode in (["default", "reuse"] if r % 2 == 0 else ["reuse", "default"]):
            ms, peak_mb = ms_per_step(mode, shape, bf16)
            times[mode].append(ms)
            peaks[mode].append(peak_mb)
    default, reuse = statistics.median(times["default"]), statistics.median(times["reuse"])
    rows.append({"shape": shape[0], "layers": shape[1], "ffn": shape[2], "batch": shape[3], "tokens": shape[4],
                 "hidden": shape[5],
                 "ms_per_step_default": round(default, 1), "ms_per_step_reuse": round(reuse, 1),
                 "speedup": round(default / reuse, 2), "peak_rss_mb_default": round(max(peaks["default"])),
                 "peak_rss_mb_reuse": round(max(peaks["reuse"])), "rounds": times})
    print(rows[-1]["shape"], rows[-1]["ms_per_step_default"], rows[-1]["ms_per_step_reuse"], rows[-1]["speedup"])

out = Path(__file__).with_name("allocator_full.json" if FULL else "allocator.json")
out.write_text(json.dumps({"machine": machine.describe(), "bf16_autocast": bf16, "steps": STEPS, "rounds": ROUNDS,
                           "rows": rows}, indent=1) + "\n")
print("wrote", out)
