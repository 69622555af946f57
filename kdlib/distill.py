"""Fine-tuning and distillation on `transformers.Trainer`, and the teacher-output cache.

One trainer serves all three kinds of run:
- teacher fine-tuning and the no-KD twin: hard labels only (alpha = 1, no teacher);
- cached KD: each training row carries its teacher logits (a `teacher_logits` column), computed once
  per (teacher, tokenised dataset) by `teacher_logits` below and stored on disk under a content key;
- online KD: the teacher runs on every batch (for comparison, and for inputs that change per epoch).

Because it is a plain Trainer, the same code runs on one CPU, one GPU, or several processes under
`torchrun` / `accelerate launch`.
"""
from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from transformers import DataCollatorWithPadding, Trainer, TrainerCallback, TrainingArguments

from kdlib import losses
from kdlib.outputs import atomic_path

TEACHER_LOGITS = "teacher_logits"


# ----------------------------------------------------------------------------------------------------
# the teacher-output cache


def model_fingerprint(model: torch.nn.Module) -> str:
    """A content hash of a model's weights (names, shapes and values)."""
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(str(tuple(tensor.shape)).encode())
        h.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()


def dataset_fingerprint(dataset, columns=("input_ids", "token_type_ids", "attention_mask")) -> str:
    """A content hash of the token ids a model would see (so max length and tokenizer are included)."""
    h = hashlib.sha256()
    for col in columns:
        if col not in dataset.column_names:
            continue
        h.update(col.encode())
        for row in dataset[col]:
            h.update(np.asarray(row, dtype=np.int32).tobytes())
            h.update(b"|")
    return h.hexdigest()


def _pad_collator(tokenizer):
    """Pads the token columns; passes `teacher_logits` through as a float tensor."""
    pad = DataCollatorWithPadding(tokenizer)

    def collate(features):
        extra = [f.pop(TEACHER_LOGITS) for f in features] if TEACHER_LOGITS in features[0] else None
        batch = pad(features)
        if extra is not None:
            batch[TEACHER_LOGITS] = torch.tensor(extra, dtype=torch.float32)
        return batch

    return collate


def compute_logits(model, dataset, tokenizer, batch_size: int = 64) -> torch.Tensor:
    """Logits of `model` on every row of a tokenised dataset, in row order (eval mode, no grad).

    Rows are run shortest first, so each batch is padded little; the result is put back in row order.
    """
    from kdlib.evaluate import predict

    order = np.argsort([len(ids) for ids in dataset["input_ids"]], kind="stable")
    cols = [c for c in ("input_ids", "token_type_ids", "attention_mask", "label") if c in dataset.column_names]
    sorted_logits, _ = predict(model, dataset.select_columns(cols).select(order), batch_size,
                               collate_fn=DataCollatorWithPadding(tokenizer), desc="teacher logits")
    logits = torch.empty(len(order), sorted_logits.shape[1])
    logits[torch.from_numpy(order)] = torch.from_numpy(sorted_logits)
    return logits


@dataclass
class CacheResult:
    logits: torch.Tensor
    path: Path
    hit: bool
    seconds: float


def teacher_logits(teacher, dataset, tokenizer, cache_dir: str | Path, batch_size: int = 64) -> CacheResult:
    """Teacher logits for `dataset`, read from the cache or computed once and stored there.

    The key hashes the teacher's weights and the token ids, so a different teacher, dataset, subset,
    tokenizer or max length gets its own entry, and a changed one can never be served stale.
    """
    from safetensors.torch import load_file, save_file

    t0 = time.perf_counter()
    key = hashlib.sha256(f"{model_fingerprint(teacher)}:{dataset_fingerprint(dataset)}".encode()).hexdigest()[:24]
    path = Path(cache_dir) / f"logits-{key}.safetensors"
    if path.exists():
        logits = load_file(str(path))["logits"]
        if len(logits) == len(dataset):
            return CacheResult(logits, path, True, time.perf_counter() - t0)
    logits = compute_logits(teacher, dataset, tokenizer, batch_size)
    with atomic_path(path) as tmp:
        save_file({"logits": logits.contiguous()}, str(tmp), metadata={"rows": str(len(dataset))})
    return CacheResult(logits, path, False, time.perf_counter() - t0)


def with_teacher_logits(dataset, logits: torch.Tensor):
    """The dataset with a `teacher_logits` column, so shuffling and sharding keep rows and logits together."""
    if len(logits) != len(dataset):
        raise ValueError(f"{len(logits)} teacher logits for {len(dataset)} rows")
    if TEACHER_LOGITS in dataset.column_names:
        dataset = dataset.remove_columns(TEACHER_LOGITS)
    return dataset.add_column(TEACHER_LOGITS, logits.tolist())


# ----------------------------------------------------------------------------------------------------
# the trainer


class DistillTrainer(Trainer):
    """A Trainer whose loss is alpha * CE + (1 - alpha) * T^2 * KL(teacher || student).

    Teacher logits come from the batch (cached KD) or from `teacher` run on the batch (online KD).
    With neither, or alpha = 1, the loss is plain cross-entropy. Evaluation always reports CE.
    """

    def __init__(self, *args, teacher=None, alpha: float = 1.0, temperature: float = 1.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.alpha, self.temperature = alpha, temperature
        self.teacher = teacher
        if teacher is not None:
            teacher.eval().requires_grad_(False).to(self.args.device)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        inputs = dict(inputs)  # the caller reads labels from its own dict afterwards
        labels = inputs.pop("labels")
        t_logits = inputs.pop(TEACHER_LOGITS, None)
        outputs = model(**inputs)
        logits = outputs.logits.float()
        if t_logits is None and self.teacher is not None and model.training and self.alpha < 1:
            with torch.no_grad():
                t_logits = self.teacher(**inputs).logits
        if t_logits is not None and self.alpha < 1:
            loss = losses.kd_loss(logits, t_logits.float(), labels, self.alpha, self.temperature)
        else:
            loss = losses.hard_ce(logits, labels)
        return (loss, outputs) if return_outputs else loss


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

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def on_evaluate(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            import pandas as pd

            from kdlib.outputs import write_csv

            write_csv(self.path, pd.DataFrame(epoch_history(state.log_history)))


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
        remove_unused_columns=False,  # keep the teacher_logits column
        train_sampling_strategy="group_by_length" if group_by_length else "random",
        dataloader_num_workers=0,
        dataloader_pin_memory=torch.cuda.is_available(),
        disable_tqdm=False,
    )
    if distributed and not torch.cuda.is_available():
        # Without use_cpu, accelerate treats CPU processes as independent (no DDP): each rank would train
        # its own copy on its shard of the data.
        kwargs.update(ddp_backend="gloo", use_cpu=True)
    if distributed:
        kwargs["ddp_find_unused_parameters"] = False  # every weight of a BERT classifier is used each step
    kwargs.update(overrides)
    return TrainingArguments(**kwargs)


def epoch_history(log_history: list[dict]) -> list[dict]:
    """One row per epoch: training loss and the evaluation metrics logged at that epoch's end."""
    rows: dict[float, dict] = {}
    for entry in log_history:
        if "epoch" not in entry:
            continue
        epoch = round(float(entry["epoch"]), 4)
        row = rows.setdefault(epoch, {"epoch": epoch})
        if "loss" in entry:
            row["train_loss"] = entry["loss"]
        for k, v in entry.items():
            if k.startswith("eval_") and not k.endswith(("_runtime", "_per_second")):
                row[k[len("eval_"):]] = v
    return [rows[e] for e in sorted(rows) if len(rows[e]) > 1 and "accuracy" in rows[e]]


def fit(model, tokenizer, train_ds, eval_ds, test_ds, output_dir, hp, seed: int, *, teacher=None,
        alpha: float = 1.0, temperature: float = 1.0, bf16: bool = False, group_by_length: bool = False,
        compute_metrics=None, history_csv: str | Path | None = None) -> dict:
    """Train `model`, evaluating every epoch; return history, test metrics and timings.

    Resumes from the last checkpoint in `output_dir` if one exists (an interrupted run loses at most
    one epoch). Test predictions (logits) are returned under "test_logits".
    """
    from transformers.trainer_utils import get_last_checkpoint

    from kdlib.evaluate import compute_metrics as default_metrics

    Path(output_dir).mkdir(parents=True, exist_ok=True)
    timer = StepTimer()
    trainer = DistillTrainer(
        model=model,
        args=training_arguments(output_dir, hp, seed, bf16, group_by_length),
        train_dataset=train_ds,
        eval_dataset=eval_ds,
        data_collator=_pad_collator(tokenizer),
        compute_metrics=compute_metrics or default_metrics,
        callbacks=[timer] + ([HistoryWriter(history_csv)] if history_csv else []),
        teacher=teacher,
        alpha=alpha,
        temperature=temperature,
    )
    last = get_last_checkpoint(str(output_dir)) if Path(output_dir).is_dir() else None
    t0 = time.perf_counter()
    train_out = trainer.train(resume_from_checkpoint=last)
    wall = time.perf_counter() - t0
    pred = trainer.predict(test_ds, metric_key_prefix="test")
    history = epoch_history(trainer.state.log_history)
    best = max(history, key=lambda row: row["accuracy"]) if history else {}
    return {
        "history": history,
        "best_epoch": best.get("epoch"),
        "test": {k[len("test_"):]: v for k, v in pred.metrics.items() if k.startswith("test_")},
        "test_logits": pred.predictions,
        "test_labels": pred.label_ids,
        "train_step_seconds": timer.seconds,
        "train_wall_seconds": wall,
        "train_loss": train_out.training_loss,
        "resumed_from": last,
        "world_size": trainer.args.world_size,
        "parallel_mode": trainer.args.parallel_mode.value,
        "trainer": trainer,
    }
