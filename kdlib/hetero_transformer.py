"""Beyond seed 003: heterogeneous KD with a transformer student.

The student is a small BERT (`kdlib.heads.BertForTwoHeadClassification`, its layers copied from the
encoder's first ones) fine-tuned on the 20 fine labels. Two variants, same initial weights and seed:
- "hetero KD": its extra head learns the coarse teacher's distribution (loss `hetero`, our convention);
- "plain KD": its prediction head learns the fine teacher's distribution (loss `soft_target`).
The teachers are step 05's dense teachers, read on the cached embeddings of the same documents, so their
logits cost nothing here. The runs use kdlib.distill.fit (transformers.Trainer) on a training subset at a
short length, to fit the step's budget; each run is a memoised unit.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from kdlib import memo
from kdlib.config import TrainParams
from kdlib.models import load_tokenizer, resolve_model

VARIANTS = {"hetero KD": ("hetero", "coarse"), "plain KD": ("soft_target", "fine")}


def _subset_rows(labels: np.ndarray, n: int | None, seed: int) -> np.ndarray:
    """Row indices of a stratified, seeded subset of size n (all rows when n is None or too large)."""
    from kdlib.data import _largest_remainder

    if n is None or n >= len(labels):
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    take = _largest_remainder(counts, n)
    return np.sort(np.concatenate([rng.choice(np.flatnonzero(labels == c), k, replace=False)
                                   for c, k in zip(classes, take)]))


def _student(encoder: str, layers: int):
    from transformers import AutoConfig
    from transformers.utils import logging

    from kdlib.heads import BertForTwoHeadClassification

    previous = logging.get_verbosity()
    logging.set_verbosity_error()  # the heads are new and the dropped layers unused: expected, not news
    try:
        config = AutoConfig.from_pretrained(resolve_model(encoder), num_hidden_layers=layers, num_labels=20)
        config.num_distill_labels = 6  # the coarse head (unused by plain KD: the same weights, the same init)
        return BertForTwoHeadClassification.from_pretrained(resolve_model(encoder), config=config)
    finally:
        logging.set_verbosity(previous)


def run_transformer_students(tp, encoder: str, dsd, teacher_logits: dict[str, torch.Tensor], seed: int,
                             folder: Path, workdir: Path) -> pd.DataFrame:
    """Every variant x seed (tp: config.HeteroTransformerParams). `teacher_logits[name]` covers dsd["train"]
    row for row. One row per run: test accuracy and macro-F1 at the best validation epoch, training time."""
    from kdlib.data import tokenize
    from kdlib.distill import fit, with_teacher_logits

    tokenizer = load_tokenizer(encoder)
    picks = {"train": _subset_rows(np.asarray(dsd["train"]["label"]), tp.train_size, seed),
             "validation": _subset_rows(np.asarray(dsd["validation"]["label"]), tp.test_size, seed),
             "test": _subset_rows(np.asarray(dsd["test"]["label"]), tp.test_size, seed)}
    small = type(dsd)({s: dsd[s].select(rows).remove_columns("coarse_label") for s, rows in picks.items()})
    tokens = tokenize(small, tokenizer, tp.max_length)
    hp = TrainParams(epochs=tp.epochs, learning_rate=tp.learning_rate, batch_size=tp.batch_size,
                     eval_batch_size=64)
    logits_digest = hashlib.sha256(b"".join(t.numpy().tobytes() for t in teacher_logits.values())).hexdigest()[:16]
    rows = []
    for variant, (loss, teacher) in VARIANTS.items():
        train = with_teacher_logits(tokens["train"], teacher_logits[teacher][picks["train"]])
        for s in range(seed, seed + tp.seeds):
            name = f"{variant.replace(' ', '_')}-seed{s}"

            def build(unit: Path, s=s, train=train, loss=loss) -> dict:
                torch.manual_seed(s)
                model = _student(encoder, tp.layers)
                out = fit(model, tokenizer, train, tokens["validation"], tokens["test"], workdir / name, hp, s,
                          task="two_head", loss=loss, alpha=tp.alpha, temperature=tp.temperature,
                          run_name=name)
                return {"test": out["test"], "best_epoch": out["best_epoch"],
                        "train_seconds": out["train_step_seconds"],
                        "params": sum(p.numel() for p in model.parameters())}

            key = memo.unit_key("hetero_transformer", ["hetero_transformer", "distill", "losses", "heads"],
                                tp, encoder, variant, s, logits_digest, [list(map(int, r)) for r in picks.values()])
            done = memo.run_unit(folder / name, key, build)
            rows.append({"variant": variant, "seed": s, "test_accuracy": done["test"]["accuracy"],
                         "test_macro_f1": done["test"]["macro_f1"], "best_epoch": done["best_epoch"],
                         "train_seconds": done["train_seconds"], "params": done["params"],
                         "train_rows": len(picks["train"]), "test_rows": len(picks["test"]),
                         "max_length": tp.max_length, "layers": tp.layers})
    return pd.DataFrame(rows)
