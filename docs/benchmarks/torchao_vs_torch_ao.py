"""Run from the repository root with torchao installed (`pip install torchao`), after the quick study:
`python docs/benchmarks/torchao_vs_torch_ao.py 32 8` (batch sizes, timed rounds). torch.ao dynamic int8 (the study's torch/int8 route) against torchao's int8 dynamic-activation config,
eager and compiled, interleaved beside torch fp32, on the quick profile's teacher and half-depth student."""
import copy, json, platform, sys, time, warnings
import torch
from transformers import AutoModelForSequenceClassification
from kdlib.inference.timing import BenchmarkSettings, time_interleaved
from kdlib.inference.runtimes.torch_route import torch_dynamic_int8
from kdlib.inference import machine
import torchao
from torchao.quantization import quantize_, Int8DynamicActivationInt8WeightConfig

torch.set_num_threads(2)
BATCHES = [int(b) for b in sys.argv[1].split(",")] if len(sys.argv) > 1 else [1, 32]
REPEATS = int(sys.argv[2]) if len(sys.argv) > 2 else 30
out = []
for name, path in [("teacher", "reports/quick/01_teacher/model"), ("L3_F1536", "reports/quick/03_grid/models/L3_F1536")]:
    model = AutoModelForSequenceClassification.from_pretrained(path).eval()
    ao = torch_dynamic_int8(model)
    tao = copy.deepcopy(model).eval(); quantize_(tao, Int8DynamicActivationInt8WeightConfig())
    taoc = torch.compile(tao, dynamic=False)
    fp32c = torch.compile(model, dynamic=False)
    mods = {"torch/fp32": model, "torch.ao/int8": ao, "torchao/int8": tao, "torchao/int8+compile": taoc, "torch_compile/fp32": fp32c}
    def runner(m):
        def run(inputs):
            with torch.inference_mode():
                return m(**{k: torch.from_numpy(v) for k, v in inputs.items()}).logits
        run.input_names = ["input_ids", "attention_mask", "token_type_ids"]
        return run
    for bs in BATCHES:
        s = BenchmarkSettings(batch_size=bs, seq_len=64, threads=2, warmup=3, repeats=REPEATS, tolerance=0.03)
        res = time_interleaved({k: runner(m) for k, m in mods.items()}, s, model.config.vocab_size)
        base = res["torch/fp32"]["latency_ms_median"]
        for k, r in res.items():
            row = dict(model=name, batch=bs, route=k, median_ms=round(r["latency_ms_median"], 2),
                       ci95_pct=round(r["median_ci95_pct"], 1), calls=r["timed_calls"], speedup=round(base / r["latency_ms_median"], 2))
            print(row, flush=True); out.append(row)
    # agreement with fp32 on one random batch
    ids = torch.randint(1000, model.config.vocab_size, (32, 64))
    with torch.inference_mode():
        ref = model(input_ids=ids).logits
        for k in ("torch.ao/int8", "torchao/int8"):
            l = mods[k](input_ids=ids).logits
            row = dict(model=name, route=k, argmax_agreement_with_fp32=(l.argmax(-1) == ref.argmax(-1)).float().mean().item(),
                       max_abs_logit_difference=(l - ref).abs().max().item())
            print(row, flush=True); out.append(row)
info = dict(cpu=platform.processor(), torch=torch.__version__, torchao=torchao.__version__)
try: info.update(machine.describe())
except Exception as e: info["machine"] = str(e)
json.dump(dict(info=info, rows=out), open(f"docs/benchmarks/torchao_vs_torch_ao_bs{'_'.join(map(str, BATCHES))}.json", "w"), indent=1, default=str)
