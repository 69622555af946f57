"""Pictures of the ideas the notebooks use, drawn from the study's own numbers: soft targets at several
temperatures (02), which teacher layers a student copies (02), and the temperature's effect (06)."""
from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import torch

from kdlib.core.models import select_teacher_layers

TEMPERATURES = (1, 2, 4, 10)


def soft_targets(logits: torch.Tensor, class_names: list[str], temperatures=TEMPERATURES) -> pd.DataFrame:
    """softmax(logits / T) of each row of `logits`, for each T: one row per (example, T, class)."""
    rows = []
    for t in temperatures:
        probs = torch.softmax(logits.float() / t, dim=-1)
        for i, row in enumerate(probs.tolist()):
            rows += [{"example": i, "T": t, "class": c, "probability": p} for c, p in zip(class_names, row)]
    return pd.DataFrame(rows)


def soft_target_figure(frame: pd.DataFrame, texts: list[str] | None = None):
    """One panel per example: each class's probability against T, on log axes (on a linear axis the small
    probabilities, the "dark knowledge", are invisible)."""
    examples = sorted(frame["example"].unique())
    fig, axes = plt.subplots(1, len(examples), figsize=(3.6 * len(examples), 3.2), sharey=True, squeeze=False)
    for ax, i in zip(axes[0], examples):
        part = frame[frame["example"] == i]
        for name, group in part.groupby("class", sort=False):
            ax.plot(group["T"], group["probability"], marker="o", label=name)
        ax.set(xscale="log", yscale="log", xlabel="temperature T", xticks=sorted(part["T"].unique()))
        ax.set_xticklabels([str(t) for t in sorted(part["T"].unique())])
        title = f"example {i}" if not texts else (texts[i][:44] + ("…" if len(texts[i]) > 44 else ""))
        ax.set_title(title, fontsize="small")
    axes[0][0].set_ylabel("softmax(logits / T)")
    axes[0][-1].legend(fontsize="small")
    fig.tight_layout()
    return fig


def layer_copy_figure(n_teacher: int, depths: list[int], init: str = "alternate"):
    """Which teacher layers initialise a student of each depth: a filled cell is a copied layer."""
    fig, ax = plt.subplots(figsize=(0.55 * n_teacher + 2.2, 0.45 * len(depths) + 1.2))
    for row, depth in enumerate(depths):
        chosen = set(select_teacher_layers(n_teacher, depth, init))
        for layer in range(n_teacher):
            ax.add_patch(plt.Rectangle((layer, row), 0.9, 0.8, color="tab:blue" if layer in chosen else "0.9"))
    ax.set(xlim=(0, n_teacher), ylim=(0, len(depths)), xlabel="teacher layer",
           title=f"Teacher layers each student copies ({init})")
    ax.set_xticks([i + 0.45 for i in range(n_teacher)], [str(i) for i in range(n_teacher)])
    ax.set_yticks([r + 0.4 for r in range(len(depths))], [f"{d}-layer student" for d in depths])
    ax.invert_yaxis()
    for side in ("top", "right", "left", "bottom"):
        ax.spines[side].set_visible(False)
    fig.tight_layout()
    return fig


@torch.no_grad()
def example_logits(teacher, tokenizer, dsd, tokenized, names: list[str], split: str = "validation"
                   ) -> tuple[torch.Tensor, list[str]]:
    """The teacher's logits for the first example of each class in `split`, and a title for each: its true
    class and the start of its text."""
    labels = list(tokenized[split]["label"])
    rows = [labels.index(c) for c in sorted(set(labels))]
    keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in tokenized[split].column_names]
    batch = tokenizer.pad([{k: tokenized[split][i][k] for k in keys} for i in rows], return_tensors="pt")
    texts = [str(dsd[split][i]["text"]) if "text" in dsd[split].column_names else f"row {i}" for i in rows]
    return teacher.eval()(**batch).logits, [f"{names[labels[i]]}: {t}" for i, t in zip(rows, texts)]
