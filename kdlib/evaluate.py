"""Evaluation and benchmarking: accuracy, size on disk and CPU latency.

In the spirit of the PerformanceBenchmark class from the compression chapter
of "Natural Language Processing with Transformers": one object measures the
three quantities a compressed model trades against each other.

Sizes are reported in MB = 1e6 bytes. Latencies are wall-clock milliseconds
of one forward pass over a fixed random batch.
"""

from __future__ import annotations

import contextlib
import os
import platform
import tempfile
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

# CPU flags that matter for transformer inference speed on CPU.
RELEVANT_CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_int8", "amx_tile")
PRECISIONS = ("fp32", "bf16")
# Keys of a tokenised example that are fed to the model; anything else
# (raw text, ids) is dropped before collation.
MODEL_INPUT_KEYS = ("input_ids", "attention_mask", "token_type_ids")
LABEL_KEYS = ("label", "labels")


# --------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------


def classification_metrics(predictions: Sequence[int], labels: Sequence[int]) -> dict[str, float]:
    """Accuracy and macro-averaged F1 of integer class predictions."""
    predictions, labels = np.asarray(predictions), np.asarray(labels)
    return {
        "accuracy": float(accuracy_score(labels, predictions)),
        # zero_division=0: a class never predicted counts as F1 0, not a warning.
        "macro_f1": float(f1_score(labels, predictions, average="macro", zero_division=0)),
    }


def compute_metrics(eval_pred: Any) -> dict[str, float]:
    """`compute_metrics` hook for `transformers.Trainer`.

    Accepts an `EvalPrediction` or a `(logits, labels)` tuple.
    """
    if hasattr(eval_pred, "predictions"):
        logits, labels = eval_pred.predictions, eval_pred.label_ids
    else:
        logits, labels = eval_pred
    # Models that also return hidden states give a tuple; logits come first.
    if isinstance(logits, (tuple, list)):
        logits = logits[0]
    return classification_metrics(np.asarray(logits).argmax(axis=-1), labels)


def confusion_matrix_frame(
    predictions: Sequence[int], labels: Sequence[int], label_names: Sequence[str]
) -> pd.DataFrame:
    """Confusion matrix as a DataFrame: rows are true labels, columns predicted."""
    # Fixing the label order keeps absent classes as all-zero rows/columns.
    matrix = confusion_matrix(labels, predictions, labels=list(range(len(label_names))))
    return pd.DataFrame(
        matrix,
        index=pd.Index(list(label_names), name="true"),
        columns=pd.Index(list(label_names), name="predicted"),
    )


# --------------------------------------------------------------------------
# Machine description
# --------------------------------------------------------------------------


def _proc_cpuinfo() -> dict[str, str]:
    """First processor block of /proc/cpuinfo (empty off Linux)."""
    info: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if not line.strip():
                    break  # end of the first processor block
                key, _, value = line.partition(":")
                info[key.strip()] = value.strip()
    except OSError:
        pass
    return info


def _cpu_flags() -> set[str]:
    info = _proc_cpuinfo()
    # x86 calls the field "flags", arm64 calls it "Features".
    return set((info.get("flags") or info.get("Features") or "").split())


def cpu_info() -> dict[str, Any]:
    """Describe the CPU and torch threading, to embed in every result."""
    flags = _cpu_flags()
    return {
        "model": _proc_cpuinfo().get("model name") or platform.processor() or "unknown",
        "logical_cores": os.cpu_count(),
        # A space-separated string keeps the CSV one column wide.
        "flags": " ".join(f for f in RELEVANT_CPU_FLAGS if f in flags),
        "bf16": bf16_supported(),
        "torch_version": torch.__version__,
        # Threads torch uses by default in this process (not necessarily
        # the count a benchmark ran with; see the result's "threads").
        "torch_threads": torch.get_num_threads(),
    }


def bf16_supported() -> bool:
    """True only if the CPU reports native bf16 instructions (AMX or AVX-512 BF16).

    torch will still run bf16 without them, but emulated and usually slower
    than fp32, which is not a precision worth benchmarking.
    """
    return bool(_cpu_flags() & {"amx_bf16", "avx512_bf16"})


# --------------------------------------------------------------------------
# Size
# --------------------------------------------------------------------------


def size_on_disk_mb(model: torch.nn.Module) -> float:
    """Size of the model's state_dict saved with safetensors, in MB (1e6 bytes).

    Shared (tied) tensors are stored once. State dicts safetensors cannot
    hold (e.g. torch's dynamically quantised Linear layers, which keep
    packed params) fall back to `torch.save`.
    """
    from safetensors.torch import save_model

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.bin")
        try:
            # save_model drops duplicate names of shared storage and makes
            # tensors contiguous, which save_file alone would refuse.
            save_model(model, path)
        except (AttributeError, TypeError, ValueError, RuntimeError):
            torch.save(model.state_dict(), path)
        return os.path.getsize(path) / 1e6


def _num_parameters(model: torch.nn.Module) -> int:
    # parameters() already yields each shared parameter once.
    return sum(p.numel() for p in model.parameters())


# --------------------------------------------------------------------------
# Latency
# --------------------------------------------------------------------------


@dataclass
class BenchmarkSettings:
    """How to time a model. `threads=None` keeps torch's current thread count."""

    batch_size: int = 32
    seq_len: int = 64
    threads: int | None = None
    precision: str = "fp32"
    warmup: int = 3
    repeats: int = 10

    def __post_init__(self) -> None:
        for name in ("batch_size", "seq_len", "repeats"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.warmup < 0:
            raise ValueError(f"warmup must be >= 0, got {self.warmup}")
        if self.threads is not None and self.threads <= 0:
            raise ValueError(f"threads must be > 0 or None, got {self.threads}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.precision == "bf16" and not bf16_supported():
            raise ValueError(
                "precision='bf16' requested but this CPU has no native bf16 "
                "(no amx_bf16 or avx512_bf16 flag); bf16 would be emulated."
            )


@contextlib.contextmanager
def _num_threads(threads: int | None) -> Iterator[int]:
    """Temporarily set torch's intra-op thread count; yields the count in use."""
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(previous)


@contextlib.contextmanager
def _eval_mode(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """Put a model in eval mode, restoring each submodule's mode afterwards."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, training in modes:
            module.training = training


def _precision_context(precision: str) -> contextlib.AbstractContextManager:
    if precision == "bf16":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _random_inputs(batch_size: int, seq_len: int, vocab_size: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """A fixed random batch: same ids for every run with the same shape."""
    generator = torch.Generator().manual_seed(seed)
    # In BERT vocabularies ids below ~1000 are special/unused tokens; avoid them.
    low = 1000 if vocab_size > 1000 else 0
    input_ids = torch.randint(low, vocab_size, (batch_size, seq_len), generator=generator)
    return {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids)}


def benchmark_latency(
    model: torch.nn.Module, settings: BenchmarkSettings | None = None, vocab_size: int | None = None
) -> dict[str, Any]:
    """Time forward passes of `model` on a fixed random [batch, seq_len] batch.

    Returns median/p95/mean latency in ms, throughput (examples/s at the
    median), the settings and the thread count actually used.
    """
    settings = settings or BenchmarkSettings()
    if vocab_size is None:
        vocab_size = model.config.vocab_size
    inputs = _random_inputs(settings.batch_size, settings.seq_len, vocab_size)
    device = next(model.parameters()).device
    inputs = {k: v.to(device) for k, v in inputs.items()}

    timings = []
    with _num_threads(settings.threads) as threads, _eval_mode(model), torch.inference_mode():
        with _precision_context(settings.precision):
            for _ in range(settings.warmup):
                model(**inputs)
            for _ in range(settings.repeats):
                start = time.perf_counter()
                model(**inputs)
                timings.append(time.perf_counter() - start)

    timings_ms = np.asarray(timings) * 1e3
    median_ms = float(np.median(timings_ms))
    return {
        **asdict(settings),
        "threads": threads,
        "latency_ms_median": median_ms,
        "latency_ms_p95": float(np.percentile(timings_ms, 95, method="linear")),
        "latency_ms_mean": float(timings_ms.mean()),
        "throughput_per_s": settings.batch_size / (median_ms / 1e3),
    }


def speedup(baseline: dict[str, Any], other: dict[str, Any]) -> float:
    """How many times faster `other` is than `baseline` (ratio of median latencies).

    Only compare results measured in the same process on the same machine:
    CPU timings drift between runs, thread settings and hosts.
    """
    return baseline["latency_ms_median"] / other["latency_ms_median"]


# --------------------------------------------------------------------------
# Predictions on an evaluation set
# --------------------------------------------------------------------------


def _label_of(example: dict[str, Any]) -> Any:
    for key in LABEL_KEYS:
        if key in example:
            return example[key]
    raise KeyError(f"example has none of the label keys {LABEL_KEYS}: {sorted(example)}")


def pad_collate(examples: list[dict[str, Any]], pad_token_id: int = 0) -> dict[str, torch.Tensor]:
    """Right-pad tokenised examples to the longest one; returns tensors incl. `labels`."""
    longest = max(len(ex["input_ids"]) for ex in examples)
    batch: dict[str, torch.Tensor] = {}
    for key in MODEL_INPUT_KEYS:
        if key not in examples[0]:
            continue
        # Padding positions get mask 0; other fields are padded with pad id / 0.
        fill = pad_token_id if key == "input_ids" else 0
        rows = [list(ex[key]) + [fill] * (longest - len(ex[key])) for ex in examples]
        batch[key] = torch.tensor(rows, dtype=torch.long)
    if "attention_mask" not in batch:
        lengths = torch.tensor([len(ex["input_ids"]) for ex in examples])
        batch["attention_mask"] = (torch.arange(longest)[None, :] < lengths[:, None]).long()
    batch["labels"] = torch.tensor([_label_of(ex) for ex in examples], dtype=torch.long)
    return batch


def predict(
    model: torch.nn.Module,
    dataset: Any,
    batch_size: int = 32,
    collate_fn: Callable[[list[dict[str, Any]]], dict[str, Any]] | None = None,
    precision: str = "fp32",
    desc: str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Logits and labels of a tokenised dataset, in dataset order.

    `dataset` is a `datasets.Dataset` or a list of dicts with `input_ids`,
    optionally `attention_mask`/`token_type_ids`, and `label` (or `labels`).
    `collate_fn` gets lists of such dicts and must return tensors with a
    `labels` entry (e.g. `DataCollatorWithPadding`); default: `pad_collate`.
    With `desc`, a progress bar of that name is shown.
    """
    from tqdm.auto import tqdm

    if collate_fn is None:
        pad_id = getattr(getattr(model, "config", None), "pad_token_id", None) or 0
        collate_fn = lambda examples: pad_collate(examples, pad_id)  # noqa: E731
    device = next(model.parameters()).device
    all_logits, all_labels = [], []
    with _eval_mode(model), torch.inference_mode(), _precision_context(precision):
        for start in tqdm(range(0, len(dataset), batch_size), desc=desc, disable=desc is None, leave=False):
            examples = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
            # Keep only model inputs and the label so collators never see raw text.
            examples = [
                {**{k: ex[k] for k in MODEL_INPUT_KEYS if k in ex}, "label": _label_of(ex)}
                for ex in examples
            ]
            batch = collate_fn(examples)
            labels = batch.pop("labels")
            batch = {k: v.to(device) for k, v in batch.items()}
            # float() first: numpy has no bf16.
            all_logits.append(model(**batch).logits.float().cpu().numpy())
            all_labels.append(np.asarray(labels))
    return np.concatenate(all_logits), np.concatenate(all_labels)


# --------------------------------------------------------------------------
# The benchmark
# --------------------------------------------------------------------------


class Benchmark:
    """Measure one model's size, latency and (optionally) accuracy.

    `eval_dataset`: tokenised examples (see `predict`). With a `tokenizer`,
    batches are padded by `DataCollatorWithPadding`, otherwise by `pad_collate`.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        name: str,
        eval_dataset: Any = None,
        tokenizer: Any = None,
    ) -> None:
        self.model = model
        self.name = name
        self.eval_dataset = eval_dataset
        self.collate_fn = None
        if tokenizer is not None:
            from transformers import DataCollatorWithPadding

            self.collate_fn = DataCollatorWithPadding(tokenizer, return_tensors="pt")

    def run(self, settings: BenchmarkSettings | None = None) -> dict[str, Any]:
        """One flat result dict (plus nested `cpu` info); see `results_frame`."""
        settings = settings or BenchmarkSettings()
        result: dict[str, Any] = {
            "name": self.name,
            "params": _num_parameters(self.model),
            "size_mb": size_on_disk_mb(self.model),
            **benchmark_latency(self.model, settings),
        }
        if self.eval_dataset is not None:
            # Accuracy is measured at the benchmarked precision and thread count.
            with _num_threads(settings.threads):
                logits, labels = predict(
                    self.model, self.eval_dataset, settings.batch_size, self.collate_fn, settings.precision
                )
            result.update(classification_metrics(logits.argmax(axis=-1), labels))
        result["cpu"] = cpu_info()
        return result


def results_frame(results: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per result; nested `cpu` info becomes `cpu_*` columns."""
    rows = []
    for result in results:
        row = {k: v for k, v in result.items() if k != "cpu"}
        row.update({f"cpu_{k}": v for k, v in result.get("cpu", {}).items()})
        rows.append(row)
    return pd.DataFrame(rows)
