"""The notebooks' exercises and their checks. Each check takes the student's function (or answer), compares
it with the library's own computation on several inputs, prints one line, and returns True or False; a
check never reveals the answer. Reference solutions, for teachers and the tests, are in `solutions`.

    EXERCISES["02_distill"]  # the exercises of a notebook: (name, what to write)
    check("soft_target_loss", my_loss)
"""
from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import f1_score
from transformers import BertConfig, BertForSequenceClassification

from kdlib.core import losses, squad
from kdlib.core.models import count_parameters
from kdlib.studies.compare import tables as compare_tables

Z95 = 1.959963984540054  # the normal quantile of a two-sided 95% interval

# What each notebook asks; the function's name is the check's name.
EXERCISES = {
    "00_data_prep": {
        "majority_baseline": "majority_baseline(labels) -> the accuracy of always predicting the most common label",
        "truncated_share": "truncated_share(lengths, max_length) -> the share of texts longer than max_length tokens",
    },
    "01_teacher": {
        "accuracy_interval": "accuracy_interval(accuracy, n) -> (low, high), the 95% normal interval of an accuracy "
                             "measured on n examples",
        "macro_f1": "macro_f1(confusion) -> macro-averaged F1 from a confusion matrix (rows: true, columns: predicted)",
    },
    "02_distill": {
        "soften": "soften(logits, T) -> the class probabilities at temperature T",
        "kd_loss": "kd_loss(student_logits, teacher_logits, labels, alpha, T) -> alpha · CE(labels) + (1 - alpha) · "
                   "T² · KL(teacher ‖ student) at temperature T, each averaged over the batch",
    },
    "03_grid": {
        "bert_parameters": "bert_parameters(vocab, positions, hidden, layers, ffn, labels) -> the parameters of a BERT "
                           "classifier (embeddings with 2 token types, layers, pooler, classifier)",
        "really_differ": "really_differ(acc_a, acc_b, n) -> True when the 95% interval of the difference of two "
                         "accuracies, each on its own n examples, excludes zero",
    },
    "04_compare": {
        "fastest_within": "fastest_within(measurements, points) -> (name, runtime, precision) of the fastest row at "
                          "batch 1 whose validation accuracy is within `points` of the PyTorch fp32 teacher's",
        "paired_speedup": "paired_speedup(teacher_ms, student_ms) -> the speed-up from timings taken in turn: the "
                          "median of the per-round ratios",
    },
    "05_hetero_kd": {
        "paired_difference": "paired_difference(a, b) -> (mean, standard deviation) of the per-seed differences a - b",
    },
    "06_edge_benchmark": {
        "squad_f1": "squad_f1(prediction, answer) -> SQuAD's token F1 after its normalisation (lower case, no "
                    "punctuation, no articles)",
        "exact_match": "exact_match(prediction, answer) -> 1.0 when the normalised texts are equal, else 0.0",
    },
}


def _close(a, b, tol=1e-4) -> bool:  # 1.96 or the exact quantile: both right
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return a.shape == b.shape and bool(np.allclose(a, b, rtol=tol, atol=tol))


def _cases_majority():
    return [["a", "b", "a", "c"], [2, 2, 2, 0, 1], ["pos"] * 7 + ["neg"] * 3]


def _cases_lengths():
    return [([10, 70, 64, 65], 64), ([1, 2, 3], 2), (list(range(200)), 128)]


def _confusions():
    return [np.array([[5, 1, 0], [2, 7, 1], [0, 3, 9]]), np.array([[10, 0], [4, 6]]), np.array([[0, 2], [0, 8]])]


def _logit_pairs():
    g = torch.Generator().manual_seed(0)
    return [(torch.randn(4, 3, generator=g) * 3, torch.randn(4, 3, generator=g) * 3, t) for t in (1.0, 2.0, 4.0, 10.0)]


def _measurements() -> pd.DataFrame:
    rows = [("teacher", "torch", "fp32", 0.85, 1.0), ("teacher", "onnxruntime", "int8", 0.846, 3.1),
            ("student", "torch", "fp32", 0.84, 1.9), ("student", "openvino", "int8_static", 0.838, 7.4),
            ("tiny", "onnxruntime", "int8", 0.70, 20.0), ("student", "onnxruntime", "fp32", 0.841, 4.0)]
    return pd.DataFrame(rows, columns=["name", "runtime", "precision", "val_accuracy",
                                       "speedup_vs_torch_fp32_teacher_bs1"]).assign(status="ok")


def _reference(name: str):
    """The library's answer to each exercise, as a function of the exercise's inputs."""
    def interval(acc, n):
        half = Z95 * math.sqrt(acc * (1 - acc) / n)
        return acc - half, acc + half

    def fastest(table, points):
        floor = compare_tables.teacher_row(table)["val_accuracy"] - points / 100
        best = compare_tables.fastest(table[(table["status"] == "ok") & (table["val_accuracy"] >= floor)])
        return best["name"], best["runtime"], best["precision"]

    def parameters(vocab, positions, hidden, layers, ffn, labels):
        heads = 2 if hidden % 2 == 0 else 1
        model = BertForSequenceClassification(BertConfig(
            vocab_size=vocab, max_position_embeddings=positions, hidden_size=hidden, num_hidden_layers=layers,
            num_attention_heads=heads, intermediate_size=ffn, num_labels=labels))
        return count_parameters(model)["total"]

    def differ(a, b, n):
        half = Z95 * math.sqrt(a * (1 - a) / n + b * (1 - b) / n)
        return abs(a - b) > half

    return {
        "majority_baseline": lambda labels: pd.Series(labels).value_counts(normalize=True).iloc[0],
        "truncated_share": lambda lengths, m: float(np.mean(np.asarray(lengths) > m)),
        "accuracy_interval": interval,
        "macro_f1": lambda c: f1_score(*_pairs(c), average="macro", zero_division=0),
        "soften": lambda logits, t: torch.softmax(logits / t, dim=-1),
        "soft_target_loss": losses.soft_target_kd,
        "kd_loss": losses.kd_loss,
        "bert_parameters": parameters,
        "really_differ": differ,
        "fastest_within": fastest,
        "paired_speedup": lambda t, s: float(np.median(np.asarray(t) / np.asarray(s))),
        "paired_difference": lambda a, b: (float(np.mean(np.subtract(a, b))), float(np.std(np.subtract(a, b), ddof=1))),
        "squad_f1": squad.f1,
        "exact_match": squad.exact_match,
    }[name]


def _pairs(confusion):
    """(true, predicted) label lists that give `confusion`."""
    true, pred = [], []
    for i, row in enumerate(np.asarray(confusion)):
        for j, count in enumerate(row):
            true += [i] * int(count)
            pred += [j] * int(count)
    return true, pred


def _cases(name: str) -> list[tuple]:
    return {
        "majority_baseline": [(c,) for c in _cases_majority()],
        "truncated_share": _cases_lengths(),
        "accuracy_interval": [(0.83, 485), (0.5, 100), (0.97, 1000)],
        "macro_f1": [(c,) for c in _confusions()],
        "soften": [(s, t) for s, _, t in _logit_pairs()],
        "soft_target_loss": _logit_pairs(),
        "kd_loss": [(s, t, torch.tensor([0, 2, 1, 1]), a, temp) for (s, t, temp), a in zip(_logit_pairs(), (0.0, 0.3, 0.5, 1.0))],
        "bert_parameters": [(100, 40, 32, 2, 64, 3), (50, 16, 8, 1, 12, 2), (120, 64, 16, 3, 48, 5)],
        "really_differ": [(0.83, 0.81, 485), (0.83, 0.75, 485), (0.9, 0.88, 20000), (0.6, 0.5, 50)],
        "fastest_within": [(_measurements(), 1.0), (_measurements(), 0.1), (_measurements(), 20.0)],
        "paired_speedup": [([10.0, 11.0, 30.0], [5.0, 5.0, 6.0]), ([2.0, 2.2, 2.1, 9.0], [1.0, 1.0, 1.0, 1.0])],
        "paired_difference": [([0.8, 0.82, 0.81], [0.79, 0.8, 0.83]), ([1.0, 2.0, 4.0, 8.0], [1.0, 1.0, 1.0, 1.0])],
        "squad_f1": [("the Eiffel Tower", "Eiffel tower"), ("in 1889", "1889"), ("Paris, France", "London")],
        "exact_match": [("The Eiffel Tower!", "eiffel tower"), ("in 1889", "1889")],
    }[name]


def _same(got, want) -> bool:
    if isinstance(want, torch.Tensor):
        return isinstance(got, torch.Tensor) and got.shape == want.shape and torch.allclose(got.float(), want.float(),
                                                                                            atol=1e-5)
    if isinstance(want, (bool, np.bool_)):
        return isinstance(got, (bool, np.bool_)) and bool(got) == bool(want)
    if isinstance(want, tuple) and want and isinstance(want[0], str):
        return tuple(got) == tuple(want)
    try:
        return _close(got, want)
    except (TypeError, ValueError):
        return False


class Checked:
    """A check's result: true when the answer is right. Shown as nothing in a notebook (its line is printed
    already), so a cell that ends with a check shows no stray True or False."""

    def __init__(self, ok: bool):
        self.ok = ok

    def __bool__(self) -> bool:
        return self.ok

    def __repr__(self) -> str:
        return repr(self.ok)

    def _ipython_display_(self) -> None:
        pass


def check(name: str, answer: Callable) -> Checked:
    """Run the student's `answer` for exercise `name` on the check's cases; print one line; true when every
    case agrees with the library."""
    known = {n for ex in EXERCISES.values() for n in ex} | {"soft_target_loss"}
    if name not in known:
        raise ValueError(f"no exercise {name!r}; the exercises: {', '.join(sorted(known))}")
    reference = _reference(name)
    for args in _cases(name):
        want = reference(*args)
        try:
            got = answer(*args)
        except NotImplementedError:
            print(f"· {name}: not written yet")
            return Checked(False)
        except Exception as e:  # the student's code failing is an answer too
            print(f"✗ {name}: raised {type(e).__name__}: {e}")
            return Checked(False)
        if not _same(got, want):
            shown = ", ".join(_short(a) for a in args)
            print(f"✗ {name}: wrong for ({shown}): got {_short(got)}")
            return Checked(False)
    print(f"✓ {name}: right on {len(_cases(name))} cases")
    return Checked(True)


def _short(value) -> str:
    text = repr(value).replace("\n", " ")
    return text if len(text) <= 60 else text[:57] + "..."
