"""Evaluation and benchmarking: accuracy, size on disk and CPU latency, on any inference runtime.

In the spirit of the PerformanceBenchmark class from the compression chapter of "Natural Language
Processing with Transformers": one object measures the three quantities a compressed model trades
against each other. The harness is runtime-neutral: `kdlib.inference.runtimes.prepare` turns a PyTorch model into
a `Runner` for a route (PyTorch fp32/bf16, torch.compile, ONNX Runtime fp32/int8, OpenVINO), and
`time_runner` times every route through the same call on the same fixed random int64 batch.

A result is one flat row (`benchmark_row`): the route (runtime, precision), its `status` ("ok",
"refused" with the machine's `reason`, or "failed" with the error), the settings (batch size, sequence
length, threads, warm-up, repeats), size on disk, latency (median, p95, mean) and throughput, and the
CPU (model, relevant flags) it ran on.

Sizes are reported in MB = 1e6 bytes. Latencies are wall-clock milliseconds of one forward pass.
Only compare latencies measured in one process on one machine: CPU timings drift between runs and hosts.
"""

from __future__ import annotations

import contextlib
import math
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm
from transformers import DataCollatorWithPadding

from kdlib.core import metrics
from kdlib.core.models import count_parameters
from kdlib.inference import machine
from kdlib.inference import runtimes as rt

# Keys of a tokenised example that are fed to the model; anything else
# (raw text, ids) is dropped before collation.
MODEL_INPUT_KEYS = rt.INPUT_NAMES
LABEL_KEYS = ("label", "labels")


# --------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------








# --------------------------------------------------------------------------
# Machine description
# --------------------------------------------------------------------------




# --------------------------------------------------------------------------
# Size
# --------------------------------------------------------------------------




# --------------------------------------------------------------------------
# Latency
# --------------------------------------------------------------------------


MIN_REPEATS = 5  # timed calls before max_seconds may stop a measurement


@dataclass
class BenchmarkSettings:
    """How to time a route. `threads=None` keeps torch's current thread count (and uses it everywhere).

    At least one untimed call always precedes the timed ones (it compiles/allocates), even with warmup=0.
    """

    batch_size: int = 32
    seq_len: int = 64
    threads: int | None = None
    warmup: int = 3
    repeats: int = 10
    # Stop early once the timed calls add up to this many seconds (after at least MIN_REPEATS): a large
    # batch's calls are long and steady, and 30 of them would cost a minute on a slow route.
    max_seconds: float | None = None
    # Stop early once the 95% confidence interval of every median lies within +-tolerance of it (after at least
    # MIN_REPEATS): no more repeats than the spread needs. None: every repeat.
    tolerance: float | None = None

    def __post_init__(self) -> None:
        for name in ("batch_size", "seq_len", "repeats"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.warmup < 0:
            raise ValueError(f"warmup must be >= 0, got {self.warmup}")
        if self.threads is not None and self.threads <= 0:
            raise ValueError(f"threads must be > 0 or None, got {self.threads}")
        if self.max_seconds is not None and self.max_seconds <= 0:
            raise ValueError(f"max_seconds must be > 0 or None, got {self.max_seconds}")
        if self.tolerance is not None and not 0 < self.tolerance < 1:
            raise ValueError(f"tolerance must be in (0, 1) or None, got {self.tolerance}")


def median_interval(samples: Sequence[float], z: float = 1.96) -> tuple[float, float]:
    """The distribution-free confidence interval of the median (95% at z = 1.96): the order statistics
    n/2 -+ z*sqrt(n)/2 of the sorted samples (a latency's distribution is skewed, so no normal interval)."""
    s = np.sort(np.asarray(samples, dtype=float))
    n, half = len(s), z * math.sqrt(len(s)) / 2
    return float(s[max(math.floor(n / 2 - half), 0)]), float(s[min(math.ceil(n / 2 + half), n - 1)])


def median_spread_pct(samples: Sequence[float]) -> float:
    """How far the median's 95% interval reaches from the median, in % of it (the larger side)."""
    median = float(np.median(samples))
    lo, hi = median_interval(samples)
    return 100 * max(median - lo, hi - median) / median


def _settled(samples: Sequence[float], settings: BenchmarkSettings) -> bool:
    return (settings.tolerance is not None and len(samples) >= MIN_REPEATS
            and median_spread_pct(samples) <= 100 * settings.tolerance)


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


def time_runner(runner: Callable[[dict], Any], settings: BenchmarkSettings, vocab_size: int,
                input_names: Sequence[str] | None = None) -> dict[str, Any]:
    """Time calls of `runner` (anything called with a dict of int64 arrays) on a fixed random batch.

    Torch's thread count is set to `settings.threads` for the duration (graph runtimes got theirs when
    prepared). Returns the settings, the thread count, median/p95/mean latency in ms and throughput
    (examples/s at the median).
    """
    names = input_names or getattr(runner, "input_names", MODEL_INPUT_KEYS)
    inputs = rt.random_batch(settings.batch_size, settings.seq_len, vocab_size, names)
    timings = []
    with _num_threads(settings.threads) as threads:
        for _ in range(max(settings.warmup, 1)):
            runner(inputs)
        for _ in range(settings.repeats):
            start = time.perf_counter()
            runner(inputs)
            timings.append(time.perf_counter() - start)
            if settings.max_seconds and len(timings) >= MIN_REPEATS and sum(timings) >= settings.max_seconds:
                break
            if _settled(timings, settings):
                break
    timings_ms = np.asarray(timings) * 1e3
    median_ms = float(np.median(timings_ms))
    return {
        **asdict(settings),
        "timed_calls": len(timings),
        "threads": getattr(runner, "threads", None) or threads,
        "latency_ms_median": median_ms,
        "latency_ms_p95": float(np.percentile(timings_ms, 95, method="linear")),
        "latency_ms_mean": float(timings_ms.mean()),
        "median_ci95_pct": median_spread_pct(timings_ms),
        "throughput_per_s": settings.batch_size / (median_ms / 1e3),
    }


# A call timed right after another model's call is slower than the same call in a stream of its own: PyTorch's
# OpenMP threads spin on after a call, and the runtime's own threads went idle while the other model ran
# (docs/benchmarks/switch_cost.py). The cost is a large share of a 1-ms call at batch 1, and a batch-32 call
# right after the teacher's paid it too. So before each timed call a runner is called untimed at least once,
# and a runner whose calls are shorter than this as many times as fill it. 0 turns the warm-up off.
SWITCH_WARMUP_S = 0.005
# A call this long is timed without one: the switch costs a few ms (switch_cost.json, `cold` against `alone`),
# under the timings' tolerance for such a call, and speed-ups did not move beyond noise without it (`warmed`
# against `allwarmed`); the teacher's batch-32 calls would otherwise double the time a run spends on them.
UNWARMED_CALL_S = 0.1


def _switch_warmup_calls(call_seconds: float) -> int:
    """Untimed calls before a timed call of `call_seconds`: none for a call of UNWARMED_CALL_S or more, else at
    least one, and as many as fill SWITCH_WARMUP_S."""
    if SWITCH_WARMUP_S <= 0 or call_seconds >= UNWARMED_CALL_S:
        return 0
    return max(1, math.ceil(SWITCH_WARMUP_S / max(call_seconds, 1e-6)))


def time_interleaved(runners: dict[str, Callable[[dict], Any]], settings: BenchmarkSettings, vocab_size: int,
                     input_names: dict[str, Sequence[str]] | None = None,
                     reference: str | None = None) -> dict[str, dict[str, Any]]:
    """Time several runners in turn on batches of one shape: each round calls every runner once, in an order
    reversed every other round, so a drift in the machine's speed falls on all of them alike. A speed-up is
    then a ratio of calls made side by side (`round_ratios`), not of two measurements minutes apart.

    Before each timed call a runner is called untimed at least once, and for SWITCH_WARMUP_S if its calls are
    shorter, unless its calls take UNWARMED_CALL_S or more (`_switch_warmup_calls`), so each call is timed as
    in a stream of its own calls, not cold after another model's.

    Returns, per name, what `time_runner` returns plus `rounds`: the seconds of each of its timed calls.
    `max_seconds` (each runner's budget) stops after a round once the calls, untimed ones included, add up
    to it times the number of runners (after MIN_REPEATS rounds); `tolerance` stops after the round that
    settles every median or, with a `reference` (one of the runners), every other runner's median ratio to
    it (`round_ratios`): the number a speed-up reports, which drift moves less than either latency, since it
    moves both alike.
    """
    names = list(runners)
    inputs = {n: rt.random_batch(settings.batch_size, settings.seq_len, vocab_size,
                                 (input_names or {}).get(n) or getattr(runners[n], "input_names", MODEL_INPUT_KEYS))
              for n in names}
    rounds: dict[str, list[float]] = {n: [] for n in names}
    last: dict[str, float] = {}  # each runner's latest call, in seconds: how many untimed calls warm it
    with _num_threads(settings.threads) as threads:
        for _ in range(max(settings.warmup, 1)):
            for n in names:
                start = time.perf_counter()
                runners[n](inputs[n])
                last[n] = time.perf_counter() - start
        spent = 0.0
        for r in range(settings.repeats):
            for n in (names if r % 2 == 0 else names[::-1]):
                warm_start = time.perf_counter()
                for _ in range(_switch_warmup_calls(last[n])):
                    runners[n](inputs[n])
                start = time.perf_counter()
                runners[n](inputs[n])
                last[n] = time.perf_counter() - start
                rounds[n].append(last[n])
                spent += time.perf_counter() - warm_start
            # max_seconds is each runner's budget, as when it is timed alone
            if settings.max_seconds and r + 1 >= MIN_REPEATS and spent >= settings.max_seconds * len(names):
                break
            if _all_settled(rounds, settings, reference):
                break
    out = {}
    for n in names:
        ms = np.asarray(rounds[n]) * 1e3
        median_ms = float(np.median(ms))
        out[n] = {**asdict(settings), "timed_calls": len(ms), "threads": getattr(runners[n], "threads", None) or threads,
                  "latency_ms_median": median_ms, "latency_ms_p95": float(np.percentile(ms, 95, method="linear")),
                  "latency_ms_mean": float(ms.mean()), "median_ci95_pct": median_spread_pct(ms),
                  "throughput_per_s": settings.batch_size / (median_ms / 1e3), "rounds": rounds[n]}
    return out


def _all_settled(rounds: dict[str, list[float]], settings: BenchmarkSettings, reference: str | None) -> bool:
    if reference is None or reference not in rounds:
        return all(_settled(r, settings) for r in rounds.values())
    base = np.asarray(rounds[reference])
    return all(_settled(base / np.asarray(r), settings) for n, r in rounds.items() if n != reference)


def round_ratios(baseline: Sequence[float], other: Sequence[float]) -> dict[str, float]:
    """The speed-up of `other` over `baseline` round by round (baseline seconds / other seconds of the same
    round of `time_interleaved`): its median and the spread over rounds (25th and 75th percentiles)."""
    ratios = np.asarray(baseline, dtype=float) / np.asarray(other, dtype=float)
    return {"median": float(np.median(ratios)), "p25": float(np.percentile(ratios, 25)),
            "p75": float(np.percentile(ratios, 75)), "rounds": int(len(ratios))}


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


def _runner_logits(runner: rt.Runner, batch: dict[str, Any]) -> np.ndarray:
    """Logits of a Runner on a collated batch: int64 numpy inputs, exactly the ones it takes."""
    inputs = {k: np.asarray(batch[k], dtype=np.int64) for k in runner.input_names if k in batch}
    if "token_type_ids" in runner.input_names and "token_type_ids" not in inputs:
        inputs["token_type_ids"] = np.zeros_like(inputs["input_ids"])  # graphs need every input
    return runner(inputs)["logits"]


def predict(
    model: torch.nn.Module | rt.Runner,
    dataset: Any,
    batch_size: int = 32,
    collate_fn: Callable[[list[dict[str, Any]]], dict[str, Any]] | None = None,
    precision: str = "fp32",
    desc: str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Logits and labels of a tokenised dataset, in dataset order.

    `model` is a PyTorch model (run at `precision`: fp32, or bf16 autocast) or a prepared
    `runtimes.Runner` (which has its precision already; `precision` is then ignored).
    `dataset` is a `datasets.Dataset` or a list of dicts with `input_ids`,
    optionally `attention_mask`/`token_type_ids`, and `label` (or `labels`).
    `collate_fn` gets lists of such dicts and must return tensors with a
    `labels` entry (e.g. `DataCollatorWithPadding`); default: `pad_collate`.
    With `desc`, a progress bar of that name is shown.

    Rows are run shortest first, so each batch is padded little (a collator that pads to its batch's longest
    row then pads about half as much as in dataset order); the results are put back in dataset order.
    """

    is_runner = isinstance(model, rt.Runner)
    if collate_fn is None:
        pad_id = getattr(getattr(model, "config", None), "pad_token_id", None) or 0
        collate_fn = lambda examples: pad_collate(examples, pad_id)  # noqa: E731
    if is_runner:
        forward = lambda batch: _runner_logits(model, batch)  # noqa: E731
    else:
        device = next(model.parameters()).device
        def forward(batch):
            # float() first: numpy has no bf16.
            return model(**{k: v.to(device) for k, v in batch.items()}).logits.float().cpu().numpy()
    ids = dataset["input_ids"] if hasattr(dataset, "column_names") else [ex["input_ids"] for ex in dataset]
    order = np.argsort([len(x) for x in ids], kind="stable")
    all_logits, all_labels = [], []
    with contextlib.ExitStack() as stack:
        if not is_runner:  # a Runner carries its own mode and precision
            stack.enter_context(_eval_mode(model))
            stack.enter_context(torch.inference_mode())
            if precision == "bf16":
                stack.enter_context(torch.autocast("cpu", dtype=torch.bfloat16))
        for start in tqdm(range(0, len(dataset), batch_size), desc=desc, disable=desc is None, leave=False):
            examples = [dataset[int(i)] for i in order[start:start + batch_size]]
            # Keep only model inputs and the label so collators never see raw text.
            examples = [
                {**{k: ex[k] for k in MODEL_INPUT_KEYS if k in ex}, "label": _label_of(ex)}
                for ex in examples
            ]
            batch = collate_fn(examples)
            labels = batch.pop("labels")
            all_logits.append(forward(dict(batch)))
            all_labels.append(np.asarray(labels))
    in_order = np.argsort(order)  # row i of the dataset is row in_order[i] of the run
    return np.concatenate(all_logits)[in_order], np.concatenate(all_labels)[in_order]


# --------------------------------------------------------------------------
# The benchmark
# --------------------------------------------------------------------------

# Columns of every row, in this order; then accuracy/macro_f1 (with an eval set) and cpu_* columns.
# Refused and failed rows keep their settings but have NaN size and latencies.
ROW_COLUMNS = (
    "name", "runtime", "precision", "status", "reason", "batch_size", "seq_len", "threads", "warmup", "repeats",
    "params", "size_mb", "latency_ms_median", "latency_ms_p95", "latency_ms_mean", "throughput_per_s",
    "runtime_version",
)


class Benchmark:
    """Measure one model's size, latency and (optionally) accuracy on any route of `runtimes.ROUTES`.

    Each route is prepared once (exported, quantised, compiled) and reused by later `run`s, e.g. at other
    batch sizes. `eval_dataset`: tokenised examples (see `predict`); accuracy is measured through the
    route's runner, so an int8 route reports int8 accuracy. With a `tokenizer`, batches are padded by
    `DataCollatorWithPadding`, otherwise by `pad_collate`. `workdir`: where routes write their files
    (one sub-folder per route); None uses temporary folders.
    """

    def __init__(self, model: torch.nn.Module, name: str, eval_dataset: Any = None, tokenizer: Any = None,
                 workdir: str | Path | None = None) -> None:
        self.model = model
        self.name = name
        self.eval_dataset = eval_dataset
        self.workdir = Path(workdir) if workdir is not None else None
        self.collate_fn = None
        if tokenizer is not None:

            self.collate_fn = DataCollatorWithPadding(tokenizer, return_tensors="pt")
        # (runtime, precision, threads) -> its Runner, or the exception preparing it raised.
        self._routes: dict[tuple[str, str, int], rt.Runner | Exception] = {}

    def runner(self, runtime: str, precision: str, threads: int | None = None) -> rt.Runner:
        """The route's Runner, prepared on first use (threads: None means torch's current count)."""
        threads = threads or torch.get_num_threads()
        key = (runtime, precision, threads)
        if key not in self._routes:
            folder = self.workdir / f"{runtime}-{precision}" if self.workdir is not None else None
            try:
                with _eval_mode(self.model):
                    self._routes[key] = rt.prepare(self.model, runtime, precision, folder, threads)
            except Exception as error:  # remembered, so a broken route is not rebuilt per batch size
                self._routes[key] = error
        found = self._routes[key]
        if isinstance(found, Exception):
            raise found
        return found

    def prepare_row(self, settings: BenchmarkSettings, runtime: str, precision: str) -> tuple[dict, Any]:
        """The row of this model on a route (see ROW_COLUMNS) before timing, and the route's runner; a route
        this machine cannot run gives status "refused" and the reason, one that raises "failed" and the error
        (with a warning), and no runner."""
        row: dict[str, Any] = dict.fromkeys(ROW_COLUMNS, math.nan)
        row.update(name=self.name, runtime=runtime, precision=precision, status="ok", reason=None,
                   runtime_version=None, params=count_parameters(self.model)["total"], **asdict(settings))
        row.update({f"cpu_{k}": v for k, v in machine.cpu_info().items()})
        reason = rt.refusal(runtime, precision)
        if reason:
            return {**row, "status": "refused", "reason": reason}, None
        try:
            with _num_threads(settings.threads) as threads, _eval_mode(self.model):
                runner = self.runner(runtime, precision, threads)
        except Exception as error:
            return self._failed(row, runtime, precision, error), None
        return {**row, "size_mb": runner.size_mb, "runtime_version": runner.version}, runner

    def _failed(self, row: dict, runtime: str, precision: str, error: Exception) -> dict:
        message = f"{type(error).__name__}: {str(error).strip().splitlines()[0] if str(error).strip() else ''}"
        warnings.warn(f"{self.name} on {runtime}/{precision} failed: {message}", stacklevel=3)
        return {**row, "status": "failed", "reason": message}

    def run(self, settings: BenchmarkSettings | None = None, runtime: str = "torch",
            precision: str = "fp32") -> dict[str, Any]:
        """One flat row (see ROW_COLUMNS), timed alone. A route this machine cannot run gives status "refused"
        and the reason; one that raises gives status "failed" and the error, with a warning."""
        settings = settings or BenchmarkSettings()
        row, runner = self.prepare_row(settings, runtime, precision)
        if runner is None:
            return row
        try:
            with _num_threads(settings.threads), _eval_mode(self.model):
                row.update(time_runner(runner, settings, self.model.config.vocab_size))
                if self.eval_dataset is not None:
                    # Accuracy through the same runner, at the benchmarked thread count.
                    logits, labels = predict(runner, self.eval_dataset, settings.batch_size, self.collate_fn)
                    row.update(metrics.classification_metrics(logits.argmax(axis=-1), labels))
        except Exception as error:
            return self._failed(row, runtime, precision, error)
        return row


def benchmark_row(model: torch.nn.Module, name: str, runtime: str, precision: str,
                  settings: BenchmarkSettings | None = None, workdir: str | Path | None = None) -> dict[str, Any]:
    """One flat result row for `model` on one route and one setting (prepares the route, then times it).

    Never raises for a route: refused/failed routes come back as rows with `status` and `reason`.
    To time several settings of one route without re-preparing it, use one `Benchmark` object.
    """
    return Benchmark(model, name, workdir=workdir).run(settings, runtime, precision)


def results_frame(results: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per result; a nested `cpu` dict (older results) becomes `cpu_*` columns."""
    rows = []
    for result in results:
        row = {k: v for k, v in result.items() if k != "cpu"}
        row.update({f"cpu_{k}": v for k, v in result.get("cpu", {}).items()})
        rows.append(row)
    return pd.DataFrame(rows)
