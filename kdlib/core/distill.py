"""Fine-tuning and distillation on `transformers.Trainer`, the predictor, and the teacher-output cache.

One trainer, one predictor and one cache serve every kind of model: what a model outputs and which labels
it takes come from its task's adaptor (kdlib/core/adaptors.py: classification, two_head, qa), the loss from the
registry in kdlib/core/losses.py (ce, soft_target, hetero, triple, tinybert). A run is one of:
- fine-tuning (the teacher, the no-KD twin): loss "ce", no teacher;
- cached KD: each training row carries its teacher outputs in `teacher_<output>` columns (`teacher_logits`;
  `teacher_start_logits` and `teacher_end_logits` for QA), computed once per (teacher, dataset) by
  `teacher_outputs` and stored on disk under a content key;
- online KD: the teacher runs on every batch (for comparison, for inputs that change per epoch, and for
  losses on hidden states or attentions, which are not cached).
Evaluation runs no teacher: it scores the hard-label loss ("ce") and the adaptor's metrics. A NaN or
infinite loss stops the run at once (`NonFiniteLossError`), naming the run, the step and the term.

Because it is a plain Trainer, the same code runs on one CPU, one GPU, or several processes under
`torchrun` / `accelerate launch`.
"""
from __future__ import annotations

import hashlib
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from tqdm.auto import tqdm
from transformers import DataCollatorWithPadding, Trainer, TrainerCallback, TrainingArguments, default_data_collator
from transformers.trainer_pt_utils import nested_gather
from transformers.trainer_utils import get_last_checkpoint

from kdlib.core import losses
from kdlib.core.adaptors import MASK_VALUE, get_adaptor
from kdlib.core.fingerprint import code_fingerprint, dataset_fingerprint, model_fingerprint
from kdlib.core.io import atomic_path, write_csv

TEACHER_PREFIX = "teacher_"  # batch columns teacher_<output> hold the teacher's outputs
TOKEN_KEYS = ("input_ids", "token_type_ids", "attention_mask")
MODEL_INPUT_KEYS = (*TOKEN_KEYS, "embeddings")


class NonFiniteLossError(RuntimeError):
    """A loss or one of its terms became NaN or infinite: the run stops, nothing is recorded."""


# ----------------------------------------------------------------------------------------------------
# batches and predictions


def _is_float(value) -> bool:
    if isinstance(value, (list, tuple)):
        return len(value) > 0 and _is_float(value[0])
    if isinstance(value, torch.Tensor):
        return value.is_floating_point()
    if isinstance(value, np.ndarray):
        return np.issubdtype(value.dtype, np.floating)
    return isinstance(value, float)


def _pad_collator(tokenizer, per_token: tuple[str, ...] = ()):
    """Pads the token columns (DataCollatorWithPadding, `label` -> `labels`); passes float columns (teacher
    outputs, embeddings) through as float32 tensors. Columns named in `per_token` hold one value per token
    and are padded to the batch's length with MASK_VALUE."""
    pad = DataCollatorWithPadding(tokenizer) if tokenizer is not None else None

    def collate(features):
        floats = [k for k, v in features[0].items() if _is_float(v)]
        rest = [{k: v for k, v in f.items() if k not in floats} for f in features]
        batch = pad(rest) if pad is not None and "input_ids" in rest[0] else default_data_collator(rest)
        for k in floats:
            values = [f[k] for f in features]
            if k in per_token:
                padded = torch.full((len(values), batch["input_ids"].shape[1]), MASK_VALUE)
                for row, v in zip(padded, values):
                    row[:len(v)] = torch.as_tensor(v, dtype=torch.float32)
                batch[k] = padded
            else:
                batch[k] = torch.tensor(values, dtype=torch.float32)
        return batch

    return collate


def _pad_to(x: torch.Tensor, width: int) -> torch.Tensor:
    return torch.nn.functional.pad(x, (0, width - x.shape[-1]), value=MASK_VALUE)


def shortest_first(dataset):
    """A tokenised dataset's rows shortest first, and the permutation that puts results back in row order
    (`results[back]`): a batch is padded to its longest row, so sorted batches carry little padding. Rows
    without token ids (embeddings) keep their order."""
    if "input_ids" not in dataset.column_names:
        return dataset, np.arange(len(dataset))
    order = np.argsort([len(ids) for ids in dataset["input_ids"]], kind="stable")
    return dataset.select(order), np.argsort(order)


def predict_outputs(model, dataset, tokenizer, task: str = "classification", batch_size: int = 64,
                    desc: str | None = None, bf16: bool = False) -> dict[str, torch.Tensor]:
    """The task's outputs of `model` on every row of a dataset, in row order (eval mode, no grad), float32
    (computed under bf16 autocast with `bf16`).

    Rows of token ids are run shortest first, so each batch is padded little; the results are put back in
    row order. Per-token outputs (QA) come back [rows, longest row], padded with MASK_VALUE.
    """

    adaptor = get_adaptor(task)
    cols = [c for c in MODEL_INPUT_KEYS if c in dataset.column_names]
    rows, back = shortest_first(dataset.select_columns(cols))
    collate = _pad_collator(tokenizer)
    device = next(model.parameters()).device
    modes = [(m, m.training) for m in model.modules()]
    chunks = {k: [] for k in adaptor.outputs}
    model.eval()
    try:
        with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            for start in tqdm(range(0, len(rows), batch_size), desc=desc, disable=desc is None, leave=False):
                batch = collate([rows[i] for i in range(start, min(start + batch_size, len(rows)))])
                batch = {k: v.to(device) for k, v in batch.items()}
                out = adaptor.model_outputs(model(**batch), batch.get("attention_mask"))
                for k, v in out.items():
                    chunks[k].append(v.float().cpu())
    finally:
        for m, training in modes:
            m.training = training
    result = {}
    for k, parts in chunks.items():
        if adaptor.per_token:
            width = max(p.shape[1] for p in parts)
            parts = [_pad_to(p, width) for p in parts]
        result[k] = torch.cat(parts)[torch.from_numpy(back)]
    return result


def compute_logits(model, dataset, tokenizer, batch_size: int = 64) -> torch.Tensor:
    """Logits of a classifier on every row of a tokenised dataset, in row order (see predict_outputs)."""
    return predict_outputs(model, dataset, tokenizer, "classification", batch_size, desc="teacher logits")["logits"]


# ----------------------------------------------------------------------------------------------------
# the teacher-output cache


@dataclass
class CacheResult:
    logits: torch.Tensor | None  # outputs["logits"], for classification teachers
    path: Path
    hit: bool  # read from the file (not built by this call)
    seconds: float  # this call's wall time
    build_seconds: float | None = None  # what building the entry took (hashing and teacher pass), whenever
    built_now: bool = False
    outputs: dict[str, torch.Tensor] = field(default_factory=dict)


def _read_cache(path: Path, names, rows: int) -> tuple[dict[str, torch.Tensor], float | None]:
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
        outputs = {k: f.get_tensor(k) for k in names}
    if any(len(v) != rows for v in outputs.values()):
        raise ValueError(f"it holds {len(next(iter(outputs.values())))} rows, the dataset {rows}")
    build = meta.get("build_seconds")
    return outputs, None if build is None else float(build)


def teacher_outputs(teacher, dataset, tokenizer, cache_dir: str | Path, batch_size: int = 64,
                    task: str = "classification", bf16: bool = False) -> CacheResult:
    """The teacher's outputs (those of `task`'s adaptor) on `dataset`, read from the cache or computed once
    and stored there (safetensors; per-token outputs padded to the longest row with MASK_VALUE). `bf16`:
    computed under bf16 autocast (its own cache entries).

    The key hashes the teacher's weights, the inputs and the code that computes the outputs, so a different
    teacher, dataset, subset, tokenizer, max length or prediction code gets its own entry, and a changed one can
    never be served stale. An entry that cannot be
    read (truncated, corrupt, wrong size) is rebuilt, with a warning.
    """

    t0 = time.perf_counter()
    adaptor = get_adaptor(task)
    # The teacher's weights, the inputs, the task, the precision and the code that computes the outputs.
    code = code_fingerprint(predict_outputs, _pad_collator, _pad_to, "core.adaptors")
    content = f"{model_fingerprint(teacher)}:{dataset_fingerprint(dataset)}:{task}:{bf16}:{code}"
    tag = "logits" if task == "classification" else task
    path = Path(cache_dir) / f"{tag}-{hashlib.sha256(content.encode()).hexdigest()[:24]}.safetensors"
    if path.exists():
        try:
            outputs, build = _read_cache(path, adaptor.outputs, len(dataset))
            return CacheResult(outputs.get("logits"), path, True, time.perf_counter() - t0, build, False, outputs)
        except Exception as e:  # any unusable entry is rebuilt: it is only a cache
            warnings.warn(f"teacher-output cache {path} cannot be used ({str(e).splitlines()[0]}); rebuilding it",
                          stacklevel=2)
    outputs = predict_outputs(teacher, dataset, tokenizer, task, batch_size, desc="teacher outputs", bf16=bf16)
    build = time.perf_counter() - t0
    with atomic_path(path) as tmp:
        save_file({k: v.contiguous() for k, v in outputs.items()}, str(tmp),
                  metadata={"rows": str(len(dataset)), "task": task, "build_seconds": repr(build)})
    return CacheResult(outputs.get("logits"), path, False, time.perf_counter() - t0, build, True, outputs)


def teacher_logits(teacher, dataset, tokenizer, cache_dir: str | Path, batch_size: int = 64) -> CacheResult:
    """Teacher logits of a classifier for `dataset`, cached (teacher_outputs with task="classification")."""
    return teacher_outputs(teacher, dataset, tokenizer, cache_dir, batch_size, "classification")


def with_teacher_outputs(dataset, outputs: dict[str, torch.Tensor], task: str = "classification"):
    """The dataset with a `teacher_<output>` column per output, so shuffling and sharding keep rows and
    teacher outputs together. Per-token outputs are cut to each row's length."""
    per_token = get_adaptor(task).per_token
    lengths = [len(ids) for ids in dataset["input_ids"]] if per_token else None
    for name, values in outputs.items():
        if len(values) != len(dataset):
            raise ValueError(f"{len(values)} teacher {name.replace('_', ' ')} for {len(dataset)} rows")
        column = TEACHER_PREFIX + name
        if column in dataset.column_names:
            dataset = dataset.remove_columns(column)
        rows = [v[:n] for v, n in zip(values.tolist(), lengths)] if per_token else values.tolist()
        dataset = dataset.add_column(column, rows)
    return dataset


def with_teacher_logits(dataset, logits: torch.Tensor):
    """The dataset with a `teacher_logits` column (with_teacher_outputs for a classifier's logits)."""
    return with_teacher_outputs(dataset, {"logits": logits})


# ----------------------------------------------------------------------------------------------------
# the trainer


def default_loss(alpha: float) -> str:
    """The loss when none is named: soft-target KD when the teacher has weight, else plain CE."""
    return "ce" if alpha >= 1 else "soft_target"


def resolve_loss_options(spec: losses.LossSpec, alpha: float, temperature: float, options: dict | None) -> dict:
    """fit's alpha and temperature where the loss takes them, overridden by explicit `options`."""
    resolved = {k: v for k, v in (("alpha", alpha), ("temperature", temperature)) if k in spec.options}
    resolved.update(options or {})
    unknown = set(resolved) - spec.options
    if unknown:
        raise ValueError(f"loss {spec.name!r} takes no option {', '.join(sorted(unknown))} "
                         f"(its options: {', '.join(sorted(spec.options)) or 'none'})")
    return resolved


class DistillTrainer(Trainer):
    """A Trainer whose training loss is a registered loss (kdlib.core.losses) on the adaptor's outputs.

    Teacher outputs come from the batch (`teacher_<output>` columns: cached KD) or from `teacher` run on
    the batch (online KD, needed for hidden states and attentions). The default loss is alpha * CE +
    (1 - alpha) * T^2 * KL(teacher || student), plain CE when alpha = 1 or there are no teacher outputs.
    Evaluation runs no teacher, so it reports CE (evaluation sets carry no teacher outputs).
    """

    def __init__(self, *args, teacher=None, alpha: float = 1.0, temperature: float = 1.0,
                 task: str = "classification", loss: str | None = None, loss_options: dict | None = None,
                 run_name: str | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.alpha, self.temperature = alpha, temperature
        self.adaptor = get_adaptor(task)
        self.loss_spec = losses.get_loss(loss or default_loss(alpha))
        self.loss_options = resolve_loss_options(self.loss_spec, alpha, temperature, loss_options)
        self.run_name = run_name or str(self.args.output_dir)
        self.loss_is_scaled_for_ga = False  # our losses are per-batch means
        self._term_sums: dict[str, torch.Tensor] = {}
        self._term_steps = 0
        self.teacher = teacher
        if teacher is not None:
            teacher.eval().requires_grad_(False).to(self.args.device)

    def _forward(self, model, adaptor, inputs, spec) -> dict:
        """One forward pass; its outputs by name (plus hidden states / attentions when the loss needs them)."""
        extra = {}
        if spec.hidden_states:
            extra["output_hidden_states"] = True
        if spec.attentions:
            extra["output_attentions"] = True
        out = model(**inputs, **extra)
        named = adaptor.model_outputs(out, inputs.get("attention_mask"))
        if spec.hidden_states:
            named["hidden_states"] = out.hidden_states
        if spec.attentions:
            if not out.attentions:
                raise ValueError(f"loss {spec.name!r} needs attentions: load the models with "
                                 "attn_implementation='eager' (sdpa returns none)")
            named["attentions"] = out.attentions
        if "attention_mask" in inputs:
            named["attention_mask"] = inputs["attention_mask"]
        return named

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        inputs = dict(inputs)  # the caller reads labels from its own dict afterwards
        labels = {k: inputs.pop(k) for k in self.adaptor.labels if k in inputs}
        cached = {k[len(TEACHER_PREFIX):]: inputs.pop(k) for k in list(inputs) if k.startswith(TEACHER_PREFIX)}
        training = model.training
        # Evaluation runs no teacher: the loss where the batch carries teacher outputs, else CE.
        spec = self.loss_spec if training or (cached and self.loss_spec.cacheable) else losses.get_loss("ce")
        student = self._forward(model, self.adaptor, inputs, spec)
        teacher = None
        # A teacher with weight 0 (alpha = 1) is not asked.
        if spec.needs_teacher and self.loss_options.get("alpha", 0.0) < 1:
            if cached and spec.cacheable:
                teacher = {k: v.float() for k, v in cached.items()}
            elif self.teacher is not None and training:
                with torch.no_grad():
                    teacher = self._forward(self.teacher, self.adaptor.teacher, inputs, spec)
        terms = spec(student, teacher, labels, **(self.loss_options if spec is self.loss_spec else {}))
        self._check_finite(terms, training)
        if training:
            self._add_terms(terms)
        loss = terms["loss"]
        # Predictions are the adaptor's outputs, in its order (QA padding masked).
        return (loss, {k: student[k] for k in self.adaptor.outputs}) if return_outputs else loss

    def _check_finite(self, terms: dict[str, torch.Tensor], training: bool) -> None:
        if bool(torch.isfinite(torch.stack([v.detach().float().reshape(()) for v in terms.values()])).all()):
            return
        where = f"step {self.state.global_step + 1}" if training else f"evaluation after step {self.state.global_step}"
        # Name a term before the total, so the message says where the NaN came from.
        for name in [k for k in terms if k != "loss"] + ["loss"]:
            value = terms[name].detach().float()
            if not bool(torch.isfinite(value).all()):
                raise NonFiniteLossError(f"run {self.run_name!r}: {where}: loss term {name!r} is {value.item()}")

    def _add_terms(self, terms: dict[str, torch.Tensor]) -> None:
        for k, v in terms.items():
            if k != "loss":
                self._term_sums[k] = self._term_sums.get(k, 0.0) + v.detach().float()
        self._term_steps += 1

    def log(self, logs: dict[str, float], *args, **kwargs) -> None:
        # With each training-loss log, the mean of every loss term since the last one (over all processes).
        if "loss" in logs and self._term_steps:
            names = sorted(self._term_sums)
            means = torch.stack([self._term_sums[k] for k in names]) / self._term_steps
            means = nested_gather(means.to(self.args.device), self.args.parallel_mode).view(-1, len(names)).mean(0)
            logs.update({f"loss_{k}": float(v) for k, v in zip(names, means)})
            self._term_sums, self._term_steps = {}, 0
        super().log(logs, *args, **kwargs)


class StepTimer(TrainerCallback):
    """Sums the wall time of optimisation steps only (forward, backward, update), not evaluation or saving."""

    def __init__(self):
        self.seconds, self._t0 = 0.0, None

    def on_step_begin(self, args, state, control, **kwargs):
        self._t0 = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        if self._t0 is not None:
            self.seconds += time.perf_counter() - self._t0
            self._t0 = None


class HistoryWriter(TrainerCallback):
    """After every evaluation, (re)write the per-epoch history so far to a CSV (atomically): a long run can
    be followed while it trains, and a killed one still shows how far it got."""

    def __init__(self, path: str | Path, metric: str = "accuracy"):
        self.path, self.metric = Path(path), metric

    def on_evaluate(self, args, state, control, **kwargs):
        if state.is_world_process_zero:


            write_csv(self.path, pd.DataFrame(epoch_history(state.log_history, self.metric)))


def training_arguments(output_dir, hp, seed: int, bf16: bool = False, group_by_length: bool = False,
                       **overrides) -> TrainingArguments:
    """TrainingArguments for one run: evaluate and checkpoint every epoch (so a killed run resumes)."""
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    kwargs = dict(
        output_dir=str(output_dir),
        num_train_epochs=hp.epochs,
        learning_rate=hp.learning_rate,
        per_device_train_batch_size=hp.batch_size,
        per_device_eval_batch_size=hp.eval_batch_size,
        weight_decay=hp.weight_decay,
        warmup_steps=hp.warmup_ratio,  # a float < 1 is a ratio of the total steps
        eval_strategy="epoch",
        logging_strategy="epoch",
        save_strategy="epoch",
        save_total_limit=1,
        # Model selection on the validation split: the test split is read once, by the best epoch.
        load_best_model_at_end=True,
        metric_for_best_model="accuracy",
        greater_is_better=True,
        seed=seed,
        data_seed=seed,
        bf16=bf16,
        report_to="none",
        remove_unused_columns=False,  # keep the teacher_<output> columns
        train_sampling_strategy="group_by_length" if group_by_length else "random",
        dataloader_num_workers=0,
        dataloader_pin_memory=torch.cuda.is_available(),
        disable_tqdm=False,
    )
    if bf16 and not torch.cuda.is_available():
        kwargs["use_cpu"] = True  # bf16 autocast on the CPU (transformers refuses it on a CPU otherwise)
    if distributed and not torch.cuda.is_available():
        # Without use_cpu, accelerate treats CPU processes as independent (no DDP): each rank would train
        # its own copy on its shard of the data.
        kwargs.update(ddp_backend="gloo", use_cpu=True)
    if distributed:
        kwargs["ddp_find_unused_parameters"] = False  # every weight of a BERT classifier is used each step
    kwargs.update(overrides)
    return TrainingArguments(**kwargs)


def epoch_history(log_history: list[dict], metric: str = "accuracy") -> list[dict]:
    """One row per epoch: training loss (and its terms, train_<term>) and the evaluation metrics logged at
    that epoch's end. Rows without `metric` (no evaluation yet) are left out."""
    rows: dict[float, dict] = {}
    for entry in log_history:
        if "epoch" not in entry:
            continue
        epoch = round(float(entry["epoch"]), 4)
        row = rows.setdefault(epoch, {"epoch": epoch})
        for k, v in entry.items():
            if k == "loss":
                row["train_loss"] = v
            elif k.startswith("loss_"):
                row["train_" + k[len("loss_"):]] = v
            elif k.startswith("eval_") and not k.endswith(("_runtime", "_per_second")):
                row[k[len("eval_"):]] = v
    return [rows[e] for e in sorted(rows) if len(rows[e]) > 1 and metric in rows[e]]


def _named(values, names: tuple[str, ...]) -> dict:
    """Trainer predictions / label ids (an array, or a tuple in the adaptor's order) as a dict."""
    values = values if isinstance(values, (tuple, list)) else (values,)
    return dict(zip(names, values))


def fit(model, tokenizer, train_ds, eval_ds, test_ds, output_dir, hp, seed: int, *, teacher=None,
        alpha: float = 1.0, temperature: float = 1.0, bf16: bool = False, group_by_length: bool = False,
        compute_metrics=None, history_csv: str | Path | None = None, task: str = "classification",
        loss: str | None = None, loss_options: dict | None = None, run_name: str | None = None) -> dict:
    """Train `model`, evaluating every epoch; return history, test metrics and timings.

    task: the adaptor (classification, two_head, qa); its first metric picks the best epoch.
    loss: a name from kdlib.core.losses.LOSSES; None means "ce" at alpha = 1, else "soft_target". The loss gets
    alpha and temperature if it takes them, and `loss_options` (which override them).
    Teacher outputs come from `teacher_<output>` columns of train_ds, or from `teacher` run online.

    Resumes from the last checkpoint in `output_dir` if one exists (an interrupted run loses at most
    one epoch). Test predictions are returned under "test_logits" (the `logits` output; None for QA) and,
    for tasks with several outputs, all of them under "test_outputs". A NaN or infinite loss raises
    NonFiniteLossError.
    """

    adaptor = get_adaptor(task)
    spec = losses.get_loss(loss or default_loss(alpha))
    if (spec.hidden_states or spec.attentions) and teacher is None:
        raise ValueError(f"loss {spec.name!r} needs the teacher's hidden states or attentions, which are not "
                         "cached: pass teacher=")
    Path(output_dir).mkdir(parents=True, exist_ok=True)
    timer = StepTimer()
    metric = adaptor.best_metric
    per_token = tuple(TEACHER_PREFIX + k for k in adaptor.teacher.outputs) if adaptor.per_token else ()
    trainer = DistillTrainer(
        model=model,
        args=training_arguments(output_dir, hp, seed, bf16, group_by_length, metric_for_best_model=metric,
                                label_names=list(adaptor.labels)),
        train_dataset=train_ds,
        eval_dataset=shortest_first(eval_ds)[0],  # its scores do not depend on the order of its rows
        data_collator=_pad_collator(tokenizer, per_token),
        compute_metrics=compute_metrics or adaptor.score,
        callbacks=[timer] + ([HistoryWriter(history_csv, metric)] if history_csv else []),
        teacher=teacher,
        alpha=alpha,
        temperature=temperature,
        task=task,
        loss=spec.name,
        loss_options=loss_options,
        run_name=run_name or str(output_dir),
    )
    last = get_last_checkpoint(str(output_dir)) if Path(output_dir).is_dir() else None
    t0 = time.perf_counter()
    train_out = trainer.train(resume_from_checkpoint=last)
    wall = time.perf_counter() - t0
    test_rows, back = shortest_first(test_ds)
    pred = trainer.predict(test_rows, metric_key_prefix="test")
    history = epoch_history(trainer.state.log_history, metric)
    best = max(history, key=lambda row: row[metric]) if history else {}
    outputs = {k: v[back] for k, v in _named(pred.predictions, adaptor.outputs).items()}  # back in row order
    labels = {k: v[back] for k, v in _named(pred.label_ids, adaptor.labels).items()}
    result = {
        "history": history,
        "best_epoch": best.get("epoch"),
        "test": {k[len("test_"):]: v for k, v in pred.metrics.items() if k.startswith("test_")},
        "test_logits": outputs.get("logits"),
        "test_labels": labels["labels"] if len(labels) == 1 and "labels" in labels else labels,
        "train_step_seconds": timer.seconds,
        "train_wall_seconds": wall,
        "train_loss": train_out.training_loss,
        "resumed_from": last,
        "world_size": trainer.args.world_size,
        "parallel_mode": trainer.args.parallel_mode.value,
        "trainer": trainer,
    }
    if len(adaptor.outputs) > 1:
        result["test_outputs"] = outputs
    return result
