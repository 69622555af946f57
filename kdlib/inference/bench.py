"""The standalone SQuAD benchmark (`kdstudy bench`): one model, one runtime, questions one at a time.

    kdstudy bench --model DIR_OR_ONNX --data questions.json --profile pi5 --out result.json

It is meant to run on a small device (a Raspberry Pi 5: ARM64, Debian 12) with only what it needs:
numpy, `tokenizers`, and either torch + transformers (a saved model folder) or onnxruntime / openvino
(an .onnx or OpenVINO .xml file, with the model folder's tokenizer.json beside it or one level up).
Nothing here imports pandas, plotting, datasets or the training code.

Per question it times the whole answer: tokenising into windows, one forward pass per window (batch 1),
and the span extraction. It writes EM and F1 (the official SQuAD v1.1 rules), the total time over the
questions (what seed 004 calls inference time), p50/p95 per question, the peak resident memory of the
process (ru_maxrss: the process reads nothing else, so this is the model's footprint plus the runtime's),
the model's size on disk and the machine's description.

    kdstudy bench --model STUDENT --baseline TEACHER --data questions.json --out pair.json

times two models in one run, question by question in turn, and writes the first one's speed-up over the
second: a ratio that two separate runs on a busy machine would give far less reliably. `--also MODEL RUNTIME
PRECISION` (repeatable) adds more models to the same turns, each with its own speed-up over the baseline: the
baseline then answers the questions once for all of them.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np

from kdlib.core import squad as qa
from kdlib.inference import machine
from kdlib.inference.openvino_calls import openvino_call
from kdlib.inference.routes import onnxruntime_options

# Benchmark profiles: batch 1 and the thread count of the target (capped at this machine's cores).
PROFILES = {"pi5": {"batch_size": 1, "threads": 4, "description": "Raspberry Pi 5: batch 1, 4 threads"}}
# Window settings when the data file names none (transformers' run_qa uses 384/128; see params/*.yaml).
DEFAULT_SETTINGS = {"max_length": 256, "stride": 128, "n_best": 20, "max_answer_length": 30}
RUNTIMES = ("torch", "onnxruntime", "openvino")
TORCH_PRECISIONS = ("fp32", "bf16")


def load_questions(path: str | Path) -> tuple[list[dict], dict]:
    """Questions (id, question, context, answers{text}) and window settings from a JSON or JSONL file.

    Accepted: {"settings": {...}, "questions": [...]}; a list of questions; the official SQuAD layout
    {"data": [{"paragraphs": [{"context", "qas": [...]}]}]}; or JSONL, one question a line."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    settings = dict(DEFAULT_SETTINGS)
    if path.suffix == ".jsonl":
        questions = [json.loads(line) for line in text.splitlines() if line.strip()]
    else:
        raw = json.loads(text)
        if isinstance(raw, list):
            questions = raw
        elif "questions" in raw:
            questions = raw["questions"]
            settings.update(raw.get("settings", {}))
        elif "data" in raw:  # the official SQuAD JSON
            questions = [{"id": q["id"], "question": q["question"], "context": p["context"],
                          "answers": {"text": [a["text"] for a in q["answers"]]}}
                         for article in raw["data"] for p in article["paragraphs"] for q in p["qas"]]
        else:
            raise ValueError(f"{path}: expected a list of questions, {{'questions': [...]}} or SQuAD's {{'data': [...]}}")
    for i, q in enumerate(questions):
        missing = [k for k in ("id", "question", "context", "answers") if k not in q]
        if missing:
            raise ValueError(f"{path}: question {i} has no {', '.join(missing)}")
    return questions, settings


def _tokenizer_file(model: Path, tokenizer: str | Path | None) -> Path:
    candidates = [Path(tokenizer)] if tokenizer else []
    folder = model if model.is_dir() else model.parent
    candidates += [folder, folder.parent, folder.parent.parent]
    for c in candidates:
        f = c / "tokenizer.json" if c.is_dir() else c
        if f.is_file():
            return f
    raise FileNotFoundError(f"no tokenizer.json beside {model} (or give --tokenizer)")


def _size_mb(files: list[Path]) -> float:
    return sum(f.stat().st_size for f in files) / 1e6


def load_model(model: str | Path, runtime: str, precision: str, threads: int):
    """(forward(inputs) -> (start_logits, end_logits) of one window, input names, files on disk, version)."""
    model = Path(model)
    # Each runtime is imported only when asked for: a small device installs just the one it runs.
    if runtime == "torch":
        import torch
        from transformers import AutoModelForQuestionAnswering

        torch.set_num_threads(threads)
        net = AutoModelForQuestionAnswering.from_pretrained(model).eval()
        dtype = {"fp32": None, "bf16": torch.bfloat16}[precision]

        def forward(inputs):
            with torch.inference_mode(), torch.autocast("cpu", dtype=dtype, enabled=dtype is not None):
                out = net(**{k: torch.from_numpy(v) for k, v in inputs.items()})
            return out.start_logits[0].float().numpy(), out.end_logits[0].float().numpy()

        files = sorted(model.glob("*.safetensors")) or sorted(model.glob("*.bin"))
        return forward, ("input_ids", "token_type_ids", "attention_mask"), files, torch.__version__
    if runtime == "onnxruntime":
        import onnxruntime as ort

        session = ort.InferenceSession(str(model), onnxruntime_options(threads), providers=["CPUExecutionProvider"])
        names = tuple(i.name for i in session.get_inputs())
        outputs = [o.name for o in session.get_outputs()]

        def forward(inputs):
            got = dict(zip(outputs, session.run(outputs, inputs)))
            return got["start_logits"][0], got["end_logits"][0]

        return forward, names, [model], ort.__version__
    if runtime == "openvino":
        import openvino as ov

        core = ov.Core()
        names = tuple(i.get_any_name() for i in core.read_model(str(model)).inputs)
        call = openvino_call(core, model, precision, threads, ("start_logits", "end_logits"))

        def forward(inputs):  # one window at a time: the latency-mode graph, as the study calls it
            got = call(inputs)
            return got["start_logits"][0].copy(), got["end_logits"][0].copy()

        files = [model, model.with_suffix(".bin")] if model.suffix == ".xml" else [model]
        return forward, names, [f for f in files if f.exists()], ov.__version__
    raise ValueError(f"unknown runtime {runtime!r} (kdstudy bench runs {', '.join(RUNTIMES)})")


def peak_rss_mb() -> float:
    """Peak resident memory of this process, in MB. VmHWM where Linux has it: ru_maxrss would also count
    the parent's memory when this process was started by fork + exec from a large one (a notebook)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024 / 1e6  # kB
    except OSError:
        pass
    # ru_maxrss is in KiB on Linux, bytes on macOS.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024) / 1e6


def unsupported(runtime: str, precision: str) -> str | None:
    """Why `kdstudy bench` cannot run this route (None: it can). Torch runs a saved model folder in fp32 or
    bf16; ONNX Runtime and OpenVINO run whatever precision their model file holds."""
    if runtime not in RUNTIMES:
        return f"kdstudy bench runs {', '.join(RUNTIMES)}"
    if runtime == "torch" and precision not in TORCH_PRECISIONS:
        return f"kdstudy bench runs torch in {' or '.join(TORCH_PRECISIONS)} (a quantised torch model has no saved form)"
    return None


def guess_runtime(model: str | Path) -> str:
    model = Path(model)
    return {".onnx": "onnxruntime", ".xml": "openvino"}.get(model.suffix, "torch")




class Answerer(NamedTuple):
    """A loaded model that answers questions (`_answerer`)."""
    answer: Callable  # question -> (answer text, windows)
    files: list       # what load_model says of the model: its files and runtime version
    version: str
    load_seconds: float
    warm: Callable    # question -> None: an untimed pass over its first window
    warm_lengths: Callable  # questions -> None: an untimed pass per distinct window length


def _answerer(model: str | Path, runtime: str, precision: str, threads: int, tokenizer, settings: dict) -> Answerer:
    tk = qa.window_tokenizer(_tokenizer_file(Path(model), tokenizer), settings["max_length"], settings["stride"])
    t_load = time.perf_counter()
    forward, input_names, files, version = load_model(model, runtime, precision, threads)
    load_seconds = time.perf_counter() - t_load

    def run(window):
        inputs = window.inputs()
        return forward({k: inputs[k] for k in input_names})

    def answer(q):
        windows = qa.encode_windows(tk, [q["question"]], [q["context"]])
        starts, ends = [], []
        for w in windows:  # batch 1: one window per forward pass
            s, e = run(w)
            starts.append(s)
            ends.append(e)
        return qa.extract_answers(windows, [q["context"]], starts, ends, settings["n_best"],
                                  settings["max_answer_length"])[0], len(windows)

    def warm(q):
        run(qa.encode_windows(tk, [q["question"]], [q["context"]])[0])

    def warm_lengths(questions):
        windows = qa.encode_windows(tk, [q["question"] for q in questions], [q["context"] for q in questions])
        for window in {len(w.input_ids): w for w in windows}.values():
            run(window)

    return Answerer(answer, files, version, load_seconds, warm, warm_lengths)


def _summary(predictions: dict, seconds: list[float], questions: list[dict]) -> dict:
    scores = qa.squad_scores(predictions, {q["id"]: list(q["answers"]["text"]) for q in questions})
    ms = np.asarray(seconds) * 1e3
    return {"exact_match": scores["exact_match"], "f1": scores["f1"], "total_seconds": float(ms.sum() / 1e3),
            "p50_ms": float(np.percentile(ms, 50)), "p95_ms": float(np.percentile(ms, 95)),
            "mean_ms": float(ms.mean())}


def run_benchmark(model: str | Path, data: str | Path, profile: str = "pi5", runtime: str | None = None,
                  precision: str = "fp32", threads: int | None = None, tokenizer: str | Path | None = None,
                  limit: int | None = None, warmup: int = 3, baseline: str | Path | None = None,
                  also: list[tuple[str | Path, str, str]] | None = None) -> dict:
    """Answer every question of `data` with `model`, one at a time; return the result JSON's contents.

    With `baseline` (another model: a folder runs in torch fp32, a file on its runtime), both answer every
    question in turn, the order alternating, and the result adds the baseline's numbers and
    `speedup_vs_baseline` (its total time over the model's); each of `also` ((model, runtime, precision),
    only with a baseline) answers in the same turns and adds an entry to `also` with its numbers and its
    own `speedup_vs_baseline`. Timed in one process, interleaved, the two
    share every drift of the machine's speed, which separate runs do not: on a shared machine their ratio
    moved by up to 40% from run to run. Each timed question is preceded by an untimed pass of the same model
    over its first window, as in a stream of its own calls: PyTorch's OpenMP threads spin on after a call and
    took a core from an OpenVINO model called right after, which no deployed model meets. Peak memory then
    covers both models.

    Before any timing, each model runs once, untimed, on one window of every length the questions use:
    OpenVINO compiles for each new input length on first sight (windows are not padded, so a question set
    brings many lengths), which a serving model pays once per length, so the timed questions measure the
    steady state."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r} (known: {', '.join(PROFILES)})")
    runtime = runtime or guess_runtime(model)
    routes = {"model": (model, runtime, precision)}
    if baseline is not None:
        routes["baseline"] = (baseline, guess_runtime(baseline), "fp32")
    if also and baseline is None:
        raise ValueError("--also needs --baseline: the extra models' speed-ups are over it")
    routes |= {f"also{i}": (path, rt, prec) for i, (path, rt, prec) in enumerate(also or [])}
    for path, rt, prec in routes.values():
        reason = unsupported(rt, prec)
        if reason:
            raise ValueError(reason)
    prof = PROFILES[profile]
    threads = min(threads or prof["threads"], os.cpu_count() or 1)
    questions, settings = load_questions(data)
    questions = questions[:limit] if limit else questions
    loaded = {name: _answerer(path, rt, prec, threads, tokenizer, settings)
              for name, (path, rt, prec) in routes.items()}

    for answerer in loaded.values():  # untimed: see the docstring
        answerer.warm_lengths(questions)
    for q in questions[:warmup]:  # warm-up: first-call allocations and kernel selection are not timed
        for answerer in loaded.values():
            answerer.answer(q)
    predictions = {name: {} for name in loaded}
    seconds = {name: [] for name in loaded}
    n_windows = 0
    paired = len(loaded) > 1
    for i, q in enumerate(questions):
        for name in (list(loaded) if i % 2 == 0 else list(loaded)[::-1]):
            if paired:  # as in a stream of its own calls, not right after the other model's (see above)
                loaded[name].warm(q)
            t0 = time.perf_counter()
            predictions[name][q["id"]], n = loaded[name].answer(q)
            seconds[name].append(time.perf_counter() - t0)
        n_windows += n
    files, version, load_seconds = loaded["model"].files, loaded["model"].version, loaded["model"].load_seconds
    result = {
        "model": Path(model).name,
        "runtime": runtime, "precision": precision, "runtime_version": version, "profile": profile,
        "batch_size": prof["batch_size"], "threads": threads, "settings": settings,
        "questions": len(questions), "windows": n_windows,
        **_summary(predictions["model"], seconds["model"], questions),
        "load_seconds": load_seconds,
        "peak_rss_mb": peak_rss_mb(),
        "model_size_mb": _size_mb(files),
        "machine": machine.describe(),
        "predictions": predictions["model"],
    }
    def entry(name: str) -> dict:  # another model of the run: its route, size and numbers
        path, rt, prec = routes[name]
        return {"model": Path(path).name, "runtime": rt, "precision": prec,
                "runtime_version": loaded[name].version, "model_size_mb": _size_mb(loaded[name].files),
                **_summary(predictions[name], seconds[name], questions)}

    if baseline is not None:
        result["baseline"] = entry("baseline")
        result["speedup_vs_baseline"] = result["baseline"]["total_seconds"] / result["total_seconds"]
    if also:
        result["also"] = [entry(f"also{i}") for i in range(len(also))]
        for a in result["also"]:
            a["speedup_vs_baseline"] = result["baseline"]["total_seconds"] / a["total_seconds"]
    return result


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="a saved model folder (torch), or an .onnx / OpenVINO .xml file")
    p.add_argument("--data", required=True, help="questions: JSON or JSONL in SQuAD form (06 writes one)")
    p.add_argument("--profile", default="pi5", choices=sorted(PROFILES))
    p.add_argument("--out", required=True, help="where to write the result JSON")
    p.add_argument("--runtime", choices=RUNTIMES, help="default: from the model (folder: torch, .onnx: onnxruntime)")
    p.add_argument("--precision", default="fp32",
                   help="torch: fp32 or bf16; other runtimes: a label for the precision the model file holds")
    p.add_argument("--threads", type=int, help="default: the profile's, capped at the cores")
    p.add_argument("--tokenizer", help="a tokenizer.json or its folder (default: beside the model)")
    p.add_argument("--limit", type=int, help="only the first N questions")
    p.add_argument("--baseline", help="another model (e.g. the teacher) timed in the same run, question by "
                                      "question in turn with --model; the result adds --model's speed-up over it")
    p.add_argument("--also", nargs=3, action="append", metavar=("MODEL", "RUNTIME", "PRECISION"),
                   help="with --baseline: one more model in the same turns, with its own speed-up over the "
                        "baseline (repeatable)")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="kdstudy bench", description="SQuAD QA benchmark of one model, batch 1.")
    add_arguments(p)
    args = p.parse_args(argv)
    return run_from_args(args)


def run_from_args(args) -> int:
    try:
        result = run_benchmark(args.model, args.data, args.profile, args.runtime, args.precision, args.threads,
                               args.tokenizer, args.limit, baseline=args.baseline,
                               also=[tuple(a) for a in args.also or []])
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(json.dumps(result, indent=1), encoding="utf-8")
    os.replace(tmp, out)
    print(f"{result['runtime']}/{result['precision']}: EM {result['exact_match']:.2f}  F1 {result['f1']:.2f}  "
          f"{result['questions']} questions in {result['total_seconds']:.2f} s (p50 {result['p50_ms']:.1f} ms, "
          f"p95 {result['p95_ms']:.1f} ms), peak RSS {result['peak_rss_mb']:.0f} MB -> {out}")
    if "baseline" in result:
        b = result["baseline"]
        print(f"baseline {b['model']}: F1 {b['f1']:.2f} in {b['total_seconds']:.2f} s, timed in turn with the "
              f"model: the model is {result['speedup_vs_baseline']:.2f}x faster")
    for a in result.get("also", []):
        print(f"also {a['model']} ({a['runtime']}/{a['precision']}): F1 {a['f1']:.2f} in {a['total_seconds']:.2f} s, "
              f"{a['speedup_vs_baseline']:.2f}x the baseline")
    return 0


if __name__ == "__main__":
    sys.exit(main())
