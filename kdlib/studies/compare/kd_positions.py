"""Seed 001's "where does each method distil" table (embedding, attention, hidden, prediction; pre-training
or fine-tuning), with our methods' rows probed from kdlib.core.losses' registry rather than typed in."""
from __future__ import annotations

import pandas as pd
import torch

from kdlib.core.losses import get_loss
from kdlib.studies import papers

SIGNALS = ("embedding", "attention", "hidden", "prediction")


def _probe_outputs(layers=2, heads=2, seq=5, hidden=8, classes=3, batch=4, token_level=False, seed=0):
    """Synthetic student or teacher outputs with every signal a loss might read (hidden states include
    the embedding output first, as transformers gives them)."""
    g = torch.Generator().manual_seed(seed)
    out = {
        "hidden_states": tuple(torch.randn(batch, seq, hidden, generator=g) for _ in range(layers + 1)),
        "attentions": tuple(torch.randn(batch, heads, seq, seq, generator=g).softmax(-1) for _ in range(layers)),
        "attention_mask": torch.ones(batch, seq, dtype=torch.long),
    }
    shape = (batch, seq, classes) if token_level else (batch, classes)
    out["logits"] = torch.randn(*shape, generator=g)
    out["distill_logits"] = torch.randn(*shape, generator=g)
    return out


def loss_signals(name: str) -> set[str]:
    """Which student signals a registered loss of kdlib.core.losses distils: embedding (hidden_states[0]), hidden
    (later hidden states), attention, prediction (logits and a distillation head). Found by calling the loss
    on synthetic outputs with two different teachers: a signal is distilled when its gradient depends on
    the teacher (a hard-label term's does not). A loss on token-level outputs (DistilBERT's MLM) is probed
    with those. A loss without a teacher distils nothing."""

    spec = get_loss(name)
    if not spec.needs_teacher:
        return set()
    for token_level in (False, True):
        grads = []
        try:
            for teacher_seed in (1, 3):
                student = _probe_outputs(token_level=token_level, seed=0)
                leaves = {"embedding": [student["hidden_states"][0]], "hidden": list(student["hidden_states"][1:]),
                          "attention": list(student["attentions"]),
                          "prediction": [student["logits"], student["distill_logits"]]}
                flat = [t.requires_grad_(True) for ts in leaves.values() for t in ts]
                teacher = _probe_outputs(token_level=token_level, seed=teacher_seed)
                labels = {"labels": torch.randint(0, 3, student["logits"].shape[:-1],
                                                  generator=torch.Generator().manual_seed(2))}
                options = {"alpha": 0.5} if "alpha" in spec.options else {}
                loss = spec(student, teacher, labels, **options)["loss"]
                got = torch.autograd.grad(loss, flat, allow_unused=True)
                grads.append([torch.zeros_like(t) if g is None else g for t, g in zip(flat, got)])
        except (RuntimeError, ValueError, IndexError):
            continue  # wrong output shapes for this loss: try token-level outputs
        changed = [not torch.allclose(a, b) for a, b in zip(*grads)]
        signals, i = set(), 0
        for signal, tensors in leaves.items():
            if any(changed[i:i + len(tensors)]):
                signals.add(signal)
            i += len(tensors)
        return signals
    raise ValueError(f"loss {name!r} could not be probed")


def kd_position_table(methods: list[dict]) -> pd.DataFrame:
    """Seed 001's "where does each method distil" table: its rows as published, then ours, whose signal
    columns come from `loss_signals` of the losses each stage uses. `methods`: dicts with name, init
    (bool), pretraining (loss name or None), finetuning (loss name or None), augmentation (bool)."""
    rows = []
    for name, init, pre, fine, da in papers.SEED001_KD_POSITIONS:
        rows.append({"method": name, "source": "seed 001 (published)", "init": init,
                     **{f"pre_{s}": s in pre for s in SIGNALS}, **{f"fine_{s}": s in fine for s in SIGNALS},
                     "augmentation": da, "losses": ""})
    for m in methods:
        pre = loss_signals(m["pretraining"]) if m.get("pretraining") else set()
        fine = loss_signals(m["finetuning"]) if m.get("finetuning") else set()
        rows.append({"method": m["name"], "source": "kd-study (probed from kdlib.core.losses)", "init": m["init"],
                     **{f"pre_{s}": s in pre for s in SIGNALS}, **{f"fine_{s}": s in fine for s in SIGNALS},
                     "augmentation": m.get("augmentation", False),
                     "losses": " + ".join(x for x in (m.get("pretraining"), m.get("finetuning")) if x)})
    return pd.DataFrame(rows)


