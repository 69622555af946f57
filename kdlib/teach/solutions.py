"""Reference solutions of the notebooks' exercises (kdlib.teach.exercises), written as a student would: for
teachers, and for the test that every check accepts them. Not imported by any notebook."""
from __future__ import annotations

import math
import re
import string
from collections import Counter

import numpy as np
import torch


def majority_baseline(labels):
    return Counter(labels).most_common(1)[0][1] / len(labels)


def truncated_share(lengths, max_length):
    return sum(n > max_length for n in lengths) / len(lengths)


def accuracy_interval(accuracy, n):
    half = 1.96 * math.sqrt(accuracy * (1 - accuracy) / n)
    return accuracy - half, accuracy + half


def macro_f1(confusion):
    c = np.asarray(confusion, dtype=float)
    scores = []
    for k in range(len(c)):
        tp, predicted, true = c[k, k], c[:, k].sum(), c[k, :].sum()
        scores.append(0.0 if tp == 0 else 2 * tp / (predicted + true))
    return float(np.mean(scores))


def soften(logits, temperature):
    z = logits / temperature
    z = z - z.max(dim=-1, keepdim=True).values  # no overflow
    return z.exp() / z.exp().sum(dim=-1, keepdim=True)


def soft_target_loss(student_logits, teacher_logits, temperature):
    p_teacher = torch.softmax(teacher_logits / temperature, dim=-1)
    log_p_student = torch.log_softmax(student_logits / temperature, dim=-1)
    kl = (p_teacher * (torch.log(p_teacher) - log_p_student)).sum(dim=-1)
    return temperature**2 * kl.mean()


def kd_loss(student_logits, teacher_logits, labels, alpha, temperature):
    ce = torch.nn.functional.cross_entropy(student_logits, labels)
    return alpha * ce + (1 - alpha) * soft_target_loss(student_logits, teacher_logits, temperature)


def bert_parameters(vocab, positions, hidden, layers, ffn, labels):
    embeddings = (vocab + positions + 2) * hidden + 2 * hidden
    attention = 4 * (hidden * hidden + hidden) + 2 * hidden
    feed_forward = 2 * hidden * ffn + ffn + hidden + 2 * hidden
    return embeddings + layers * (attention + feed_forward) + hidden * hidden + hidden + hidden * labels + labels


def really_differ(acc_a, acc_b, n):
    standard_error = math.sqrt(acc_a * (1 - acc_a) / n + acc_b * (1 - acc_b) / n)
    return abs(acc_a - acc_b) > 1.96 * standard_error


def fastest_within(measurements, points):
    m = measurements
    teacher = m[(m["name"] == "teacher") & (m["runtime"] == "torch") & (m["precision"] == "fp32")].iloc[0]
    close = m[(m["status"] == "ok") & (m["val_accuracy"] >= teacher["val_accuracy"] - points / 100)]
    best = close.loc[close["speedup_vs_torch_fp32_teacher_bs1"].idxmax()]
    return best["name"], best["runtime"], best["precision"]


def paired_speedup(teacher_ms, student_ms):
    return float(np.median([t / s for t, s in zip(teacher_ms, student_ms)]))


def paired_difference(a, b):
    d = np.asarray(a) - np.asarray(b)
    return float(d.mean()), float(d.std(ddof=1))


def _normalise(text):
    text = "".join(ch for ch in text.lower() if ch not in set(string.punctuation))
    return " ".join(re.sub(r"\b(a|an|the)\b", " ", text).split())


def squad_f1(prediction, answer):
    p, a = _normalise(prediction).split(), _normalise(answer).split()
    common = sum((Counter(p) & Counter(a)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(p), common / len(a)
    return 2 * precision * recall / (precision + recall)


def exact_match(prediction, answer):
    return float(_normalise(prediction) == _normalise(answer))
