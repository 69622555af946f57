"""Classification metrics (accuracy, macro-F1, the confusion matrix), for the trainer and every step.
SQuAD's EM and F1 are in kdlib/core/squad.py."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score


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
