"""Task adaptors: what a model of each kind outputs, which labels it learns from, how it is scored.

The trainer, the predictor and the teacher-output cache (kdlib/core/distill.py) are written once, against an
`Adaptor`, for three kinds of model:

    task            outputs                     labels                          metrics (first: best model)
    classification  logits                      labels                          accuracy, macro_f1
    two_head        logits, distill_logits      labels                          accuracy, macro_f1 (of logits)
    qa              start_logits, end_logits    start_positions, end_positions  span_exact, start_accuracy,
                                                                                end_accuracy

A model's inputs are whatever else the batch holds: token ids for BERT models, `embeddings` for the dense
networks of kdlib/core/heads.py. A two-head student (Yu & Kim 2022) learns from a plain classifier over the coarse
labels, so its `teacher_task` is classification; the other tasks distil from a teacher of their own kind.

QA outputs are per token. At padding positions (attention_mask 0) they are set to MASK_VALUE, for student
and teacher alike: a softmax over the tokens gives padding no mass, and cached and online teacher outputs
agree however a batch was padded. `span_exact` is the share of rows whose argmax start and argmax end both
hit the gold token positions: a training-time score, not SQuAD's EM/F1 (no answer post-processing).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from kdlib.core.metrics import compute_metrics

# Per-token logits at padding positions: exp(MASK_VALUE / T) is 0 in float32 for any T the study uses,
# yet finite, so 0 * log-probability stays 0 (a -inf would make the KL NaN).
MASK_VALUE = -1e4


def _split(eval_pred):
    """(predictions, label_ids) from an EvalPrediction or a tuple."""
    if hasattr(eval_pred, "predictions"):
        return eval_pred.predictions, eval_pred.label_ids
    return eval_pred


def classification_metrics(eval_pred) -> dict[str, float]:
    """Accuracy and macro-F1 of the first output (`logits`), by kdlib.inference.timing."""

    return compute_metrics(eval_pred)


def span_metrics(eval_pred) -> dict[str, float]:
    """Token-span scores of extractive QA: exact (start and end both right), start and end accuracy."""
    (start_logits, end_logits), (gold_start, gold_end) = _split(eval_pred)
    start_ok = np.asarray(start_logits).argmax(-1) == np.asarray(gold_start)
    end_ok = np.asarray(end_logits).argmax(-1) == np.asarray(gold_end)
    return {"span_exact": float(np.mean(start_ok & end_ok)), "start_accuracy": float(np.mean(start_ok)),
            "end_accuracy": float(np.mean(end_ok))}


@dataclass(frozen=True)
class Adaptor:
    task: str
    outputs: tuple[str, ...]  # the model outputs the trainer, predictor and cache read, in this order
    labels: tuple[str, ...]  # batch keys of the gold labels
    metrics: tuple[str, ...]  # names `score` returns; the first selects the best epoch
    score: Callable[..., dict[str, float]]  # a Trainer compute_metrics hook
    teacher_task: str  # the kind of model that teaches this one
    per_token: bool = False  # outputs are [B, L]: padded with MASK_VALUE

    @property
    def best_metric(self) -> str:
        return self.metrics[0]

    @property
    def teacher(self) -> Adaptor:
        return ADAPTORS[self.teacher_task]

    def model_outputs(self, model_output, attention_mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """The adaptor's outputs of one forward pass as float32 (padding masked for per-token outputs)."""
        missing = [k for k in self.outputs if getattr(model_output, k, None) is None]
        if missing:
            raise ValueError(f"a {self.task} model must output {', '.join(self.outputs)}; "
                             f"{type(model_output).__name__} has no {', '.join(missing)}")
        out = {k: getattr(model_output, k).float() for k in self.outputs}
        if self.per_token and attention_mask is not None:
            pad = attention_mask == 0
            out = {k: v.masked_fill(pad, MASK_VALUE) for k, v in out.items()}
        return out


ADAPTORS = {
    "classification": Adaptor("classification", ("logits",), ("labels",), ("accuracy", "macro_f1"),
                              classification_metrics, "classification"),
    "two_head": Adaptor("two_head", ("logits", "distill_logits"), ("labels",), ("accuracy", "macro_f1"),
                        classification_metrics, "classification"),
    "qa": Adaptor("qa", ("start_logits", "end_logits"), ("start_positions", "end_positions"),
                  ("span_exact", "start_accuracy", "end_accuracy"), span_metrics, "qa", per_token=True),
}


def get_adaptor(task: str) -> Adaptor:
    if task not in ADAPTORS:
        raise ValueError(f"unknown task {task!r}; known tasks: {', '.join(ADAPTORS)}")
    return ADAPTORS[task]
