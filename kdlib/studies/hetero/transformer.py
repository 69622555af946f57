"""Beyond seed 003: heterogeneous KD with a transformer student.

The student is a small BERT (its layers copied from the encoder's first ones) with the two heads of
`kdlib.core.heads.BertForTwoHeadClassification`, fine-tuned on the 20 fine labels. Two variants, with the same
initial weights, the same seed and the same batches:
- "hetero KD": its extra head learns the coarse teacher's distribution (loss `hetero`, our convention);
- "plain KD": its prediction head learns the fine teacher's distribution (loss `soft_target`).
The teachers are step 05's dense teachers, read on the cached embeddings of the same documents, so their
logits cost nothing here.

What makes a one-layer student learn within the step's budget (measured; see params/quick.yaml):
- its heads read the mean of the last hidden states over the real tokens (`MeanPooledTwoHead`), the
  encoder's own sentence embedding. After one layer the [CLS] state, which the pooler reads, is almost the
  same for every post (pairwise cosine 1.0000 over 256 posts; its spread across posts is 0.4% of its size):
  heads on it cannot tell posts apart, and the first version stayed at chance whatever its learning rate;
- the new heads learn faster than the body (`head_learning_rate`): they start from random weights, and a
  short run gives them few steps;
- the word embeddings are frozen (their AdamW update was about a third of a step), bf16 autocast where the
  CPU has native bf16;
- many posts at a short length, one epoch.

Training is a plain PyTorch loop (AdamW, linear warm-up and decay, like transformers.Trainer's defaults)
without the Trainer's per-epoch checkpoints. Each run is a memoised unit; the runs are spread over worker
processes (`kdlib.pipeline.workers.map_jobs`), one thread each, so a run's numbers do not depend on how many there are.
"""
from __future__ import annotations

import copy
import hashlib
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from transformers import AutoConfig, get_linear_schedule_with_warmup
from transformers.utils import logging

from kdlib.core.data import _largest_remainder
from kdlib.core.heads import BertForTwoHeadClassification, TwoHeadOutput
from kdlib.core.losses import get_loss
from kdlib.core.metrics import classification_metrics
from kdlib.core.models import load_tokenizer, resolve_model
from kdlib.pipeline import memo
from kdlib.studies.hetero import dense as hetero
from kdlib.studies.train import source_fingerprint

VARIANTS = {"hetero KD": ("hetero", "coarse"), "plain KD": ("soft_target", "fine")}
PAD_ID = 0  # padding is masked out of attention and of the mean, so its id does not matter


class MeanPooledTwoHead(BertForTwoHeadClassification):
    """BertForTwoHeadClassification whose heads read the attention-masked mean of the last hidden states
    instead of the pooler on [CLS] (see the module docstring for why)."""

    def forward(self, input_ids=None, attention_mask=None, **kwargs) -> TwoHeadOutput:
        hidden = self.bert(input_ids, attention_mask=attention_mask, return_dict=True).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = self.dropout((hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0))
        return TwoHeadOutput(logits=self.classifier(pooled), distill_logits=self.distill_classifier(pooled))


def load_student(encoder: str, layers: int) -> MeanPooledTwoHead:
    """The encoder's first `layers` layers with fresh heads: 20 fine labels and 6 coarse ones (plain KD leaves
    the coarse head unused, so both variants start from the same weights). Word embeddings frozen."""

    previous = logging.get_verbosity()
    logging.set_verbosity_error()  # the heads are new and the dropped layers unused: expected, not news
    try:
        config = AutoConfig.from_pretrained(resolve_model(encoder), num_hidden_layers=layers, num_labels=20)
        config.num_distill_labels = 6
        model = MeanPooledTwoHead.from_pretrained(resolve_model(encoder), config=config)
    finally:
        logging.set_verbosity(previous)
    model.bert.pooler = None  # unused: the heads read the mean
    model.bert.embeddings.word_embeddings.requires_grad_(False)
    return model


def _subset_rows(labels: np.ndarray, n: int | None, seed: int) -> np.ndarray:
    """Row indices of a stratified, seeded subset of size n (all rows when n is None or too large)."""

    if n is None or n >= len(labels):
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    take = _largest_remainder(counts, n)
    return np.sort(np.concatenate([rng.choice(np.flatnonzero(labels == c), k, replace=False)
                                   for c, k in zip(classes, take)]))


def _padded(rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask) of token-id lists, padded to the longest."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), PAD_ID, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, :len(r)] = torch.tensor(r)
        mask[i, :len(r)] = 1
    return ids, mask


@torch.no_grad()
def predict(model, ids: list[list[int]], bf16: bool, batch_size: int = 128) -> np.ndarray:
    """Predicted fine labels, in row order (rows run shortest first, so batches carry little padding)."""
    model.eval()
    order = np.argsort([len(r) for r in ids], kind="stable")
    out = np.empty(len(ids), dtype=np.int64)
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = model(*_padded([ids[i] for i in rows])).logits
        out[rows] = logits.float().argmax(-1).numpy()
    return out


def _optimiser(model, tp, steps: int):
    """AdamW with the heads at tp.head_learning_rate (tp.learning_rate when None) and the body at
    tp.learning_rate; linear warm-up over 10% of the steps, then linear decay to 0."""

    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    heads = [p for n, p in trainable if "classifier" in n]
    body = [p for n, p in trainable if "classifier" not in n]
    optimiser = torch.optim.AdamW([{"params": body, "lr": tp.learning_rate},
                                   {"params": heads, "lr": tp.head_learning_rate or tp.learning_rate}],
                                  weight_decay=0.01)
    return optimiser, get_linear_schedule_with_warmup(optimiser, int(0.1 * steps), steps)


def train_run(model, data: dict, teacher_logits: torch.Tensor, loss: str, tp, seed: int, bf16: bool) -> dict:
    """Train one student. data[split] = (token-id lists, fine labels); teacher_logits cover data["train"] row
    for row. Batches in a seeded order; over several epochs, validation accuracy after each and the test
    metrics with the best epoch's weights. Returns test metrics, best epoch, history and the training time."""

    ids, labels = data["train"]
    labels = torch.as_tensor(labels)
    loss_fn, options = get_loss(loss), {"alpha": tp.alpha, "temperature": tp.temperature}
    steps = tp.epochs * math.ceil(len(ids) / tp.batch_size)
    optimiser, schedule = _optimiser(model, tp, steps)
    generator = torch.Generator().manual_seed(seed)
    history, best, best_state, seconds = [], -1.0, None, 0.0
    for epoch in range(1, tp.epochs + 1):
        model.train()
        started, total = time.perf_counter(), 0.0
        for rows in torch.randperm(len(ids), generator=generator).split(tp.batch_size):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                out = model(*_padded([ids[i] for i in rows]))
            terms = loss_fn({"logits": out.logits.float(), "distill_logits": out.distill_logits.float()},
                            {"logits": teacher_logits[rows]}, {"labels": labels[rows]}, **options)
            optimiser.zero_grad(set_to_none=True)
            terms["loss"].backward()
            optimiser.step()
            schedule.step()
            total += terms["loss"].item() * len(rows)
        seconds += time.perf_counter() - started
        history.append({"epoch": epoch, "train_loss": total / len(ids)})
        if tp.epochs > 1:  # with one epoch there is no epoch to choose
            val = classification_metrics(predict(model, data["validation"][0], bf16), data["validation"][1])
            history[-1].update({f"val_{k}": v for k, v in val.items()})
            if val["accuracy"] > best:
                best, best_state = val["accuracy"], copy.deepcopy(model.state_dict())
    if best_state is not None:
        model.load_state_dict(best_state)
    test = classification_metrics(predict(model, data["test"][0], bf16), data["test"][1])
    best_epoch = max(history, key=lambda h: h.get("val_accuracy", 0.0))["epoch"]
    return {"test": test, "best_epoch": best_epoch, "history": history, "train_seconds": seconds}


def run_unit(folder: Path, key: str, encoder: str, tp, variant: str, seed: int, data: dict,
             teacher_logits: dict[str, torch.Tensor], bf16: bool) -> dict:
    """One variant at one seed as a memoised unit (a job for kdlib.pipeline.workers.map_jobs)."""
    loss, teacher = VARIANTS[variant]

    def build(unit: Path) -> dict:
        torch.manual_seed(seed)  # the same seed gives both variants the same heads
        model = load_student(encoder, tp.layers)
        out = train_run(model, data, teacher_logits[teacher], loss, tp, seed, bf16)
        return {**out, "params": sum(p.numel() for p in model.parameters()),
                "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad)}

    return memo.run_unit(folder, key, build)


def run_transformer_students(tp, encoder: str, dsd, teacher_logits: dict[str, torch.Tensor], seed: int,
                             folder: Path, workers: int = 1, bf16: bool = False) -> pd.DataFrame:
    """Every variant x seed (tp: config.HeteroTransformerParams). `teacher_logits[name]` covers dsd["train"]
    row for row; `bf16`: the profile's training precision (compute.bf16). One row per run: test accuracy and
    macro-F1 at the best validation epoch, training time."""

    tokenizer = load_tokenizer(encoder)
    sizes = {"train": tp.train_size, "validation": tp.test_size, "test": tp.test_size}
    splits = ("train", "validation", "test") if tp.epochs > 1 else ("train", "test")  # validation picks an epoch
    picks = {s: _subset_rows(np.asarray(dsd[s]["label"]), sizes[s], seed) for s in splits}
    data = {s: (tokenizer(list(dsd[s].select(rows)["text"]), truncation=True, max_length=tp.max_length)["input_ids"],
                np.asarray(dsd[s]["label"])[rows]) for s, rows in picks.items()}
    logits = {name: t[picks["train"]] for name, t in teacher_logits.items()}
    digest = hashlib.sha256(b"".join(t.numpy().tobytes() for t in logits.values())).hexdigest()[:16]
    runs = [(variant, s) for variant in VARIANTS for s in range(seed, seed + tp.seeds)]
    jobs = []
    for variant, s in runs:
        key = memo.unit_key("hetero_transformer", ["studies.hetero.transformer", "core.losses", "core.heads"], tp,
                            source_fingerprint(encoder), variant, s, digest, [list(map(int, r)) for r in picks.values()],
                            bf16)
        jobs.append({"folder": Path(folder) / f"{variant.replace(' ', '_')}-seed{s}", "key": key,
                     "variant": variant, "seed": s})
    shared = {"encoder": encoder, "tp": tp, "data": data, "teacher_logits": logits, "bf16": bf16}
    todo = [job for job in jobs if memo.load_unit(job["folder"], job["key"], ()) is None]
    hetero.map_jobs(run_unit, todo, shared, workers)  # records each unit; recorded ones are read below
    rows = []
    for job in jobs:
        done = run_unit(**shared, **job)
        rows.append({"variant": job["variant"], "seed": job["seed"], "test_accuracy": done["test"]["accuracy"],
                     "test_macro_f1": done["test"]["macro_f1"], "best_epoch": done["best_epoch"],
                     "train_seconds": done["train_seconds"], "params": done["params"],
                     "trainable_params": done["trainable_params"], "train_rows": len(picks["train"]),
                     "test_rows": len(picks["test"]), "max_length": tp.max_length, "layers": tp.layers,
                     "precision": "bf16" if bf16 else "fp32"})
    return pd.DataFrame(rows)
