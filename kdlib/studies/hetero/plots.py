"""Step 05's figures (seaborn): the alpha/T search, the per-epoch curves, epochs to target, Table 4's bars."""
from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from matplotlib.ticker import MaxNLocator

from kdlib.studies.hetero.dense import MODELS
from kdlib.studies.papers import SEED003_FIG15 as PAPER_FIG15

COLORS = dict(zip(MODELS, sns.color_palette("colorblind", 3)))


def search_heatmaps(search: pd.DataFrame):
    """Validation accuracy over alpha x T: one panel per convention (rows) and student (columns)."""
    conventions = list(dict.fromkeys(search["convention"]))
    fig, axes = plt.subplots(len(conventions), 2, figsize=(9, 3.2 * len(conventions)), squeeze=False)
    lo, hi = search["val_accuracy"].min(), search["val_accuracy"].max()
    for i, convention in enumerate(conventions):
        for j, model in enumerate(("A", "B")):
            part = search[(search["convention"] == convention) & (search["model"] == model)]
            table = part.pivot_table(index="alpha", columns="temperature", values="val_accuracy")
            sns.heatmap(table, annot=True, fmt=".3f", cmap="viridis", vmin=lo, vmax=hi, ax=axes[i, j],
                        cbar=j == 1, cbar_kws={"label": "validation accuracy"})
            axes[i, j].set(title=f"{model}, convention '{convention}'", xlabel="temperature T",
                           ylabel="alpha (weight of the hard-label CE)")
    fig.tight_layout()
    return fig


def per_epoch_curves(table5: pd.DataFrame, table6: pd.DataFrame, convention: str):
    """Test accuracy and macro-F1 per epoch (early stopping off): seed mean with a +-1 std band; the paper's
    single run dashed."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for ax, table, name in ((axes[0], table5, "accuracy"), (axes[1], table6, "macro-F1")):
        for model in MODELS:
            mean, std = table[f"{model}_mean"], table[f"{model}_std"].fillna(0)
            ax.plot(table["epoch"], mean, color=COLORS[model], label=f"{model}: this study, mean ± std")
            ax.fill_between(table["epoch"], mean - std, mean + std, color=COLORS[model], alpha=0.2)
            paper = table[["epoch", f"{model}_paper"]].dropna()
            ax.plot(paper["epoch"], paper[f"{model}_paper"], color=COLORS[model], linestyle="--", linewidth=1,
                    marker=".", label=f"{model}: paper, one run")
        ax.set(xlabel="epoch", ylabel=f"test {name}", title=f"Test {name} per epoch (convention '{convention}')")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[1].legend(loc="upper left", bbox_to_anchor=(1.02, 1), fontsize="small", frameon=False)
    fig.tight_layout()
    return fig


def epochs_to_target(table: pd.DataFrame):
    """Median first epoch reaching each target accuracy (seed 003's Fig. 15 as a curve); the paper's point."""
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    for model in MODELS:
        part = table[table["model"] == model]
        ax.plot(part["target"], part["epochs_median"], marker="o", markersize=3, color=COLORS[model], label=model)
        ax.scatter([PAPER_FIG15["target"]], [PAPER_FIG15[model]], marker="x", s=60, color=COLORS[model],
                   label=f"{model} (paper, target {PAPER_FIG15['target']})")
    ax.set(xlabel="target test accuracy", ylabel="epochs to reach it (median over seeds)",
           title="Epochs to reach a target accuracy")
    ax.legend(fontsize="small", ncol=2)
    return fig


def table4_bars(table4: pd.DataFrame):
    """Test accuracy of each student and convention, seed mean +- std, with the paper's value marked."""
    frame = table4.assign(run=table4["model"] + " (" + table4["convention"] + ")")
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    x = range(len(frame))
    ax.bar(x, frame["accuracy_mean"], yerr=frame["accuracy_std"], capsize=4,
           color=[COLORS[m] for m in frame["model"]])
    ax.scatter(x, frame["accuracy_paper"], marker="_", s=400, color="black", label="paper (one run)", zorder=3)
    ax.set_xticks(list(x), frame["run"], rotation=15)
    lo = min(frame["accuracy_mean"].min(), frame["accuracy_paper"].min())
    ax.set(ylim=(lo - 0.05, None), ylabel="test accuracy", title="Early-stopped test accuracy (mean ± std over seeds)")
    ax.legend(fontsize="small")
    return fig
