"""Step 04's figures (seaborn): accuracy against latency with the Pareto front, what each model saves, and
the teacher's head importance."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from kdlib.studies.compare.tables import BASELINE, pareto_front


def pareto_figure(frame: pd.DataFrame, batch_sizes=(1, 32)):
    """Accuracy against median latency, one panel per batch size, every measured row; the Pareto front
    joined and its points numbered, with a key under each panel (names beside the points overlap where the
    front is dense)."""
    ok = frame[frame["status"] == "ok"].copy()
    ok["route"] = ok["runtime"] + "/" + ok["precision"]
    fig, axes = plt.subplots(1, len(batch_sizes), figsize=(6.5 * len(batch_sizes), 6.5), squeeze=False)
    for ax, b in zip(axes[0], batch_sizes):
        col = f"latency_bs{b}_ms_median"
        sns.scatterplot(data=ok, x=col, y="accuracy", hue="family", style="route", s=70, ax=ax)
        front = ok[pareto_front(ok["accuracy"], ok[col])].sort_values(col)
        ax.plot(front[col], front["accuracy"], color="black", linewidth=1, linestyle="--", label="Pareto front")
        key = []
        for i, (_, r) in enumerate(front.iterrows(), start=1):
            ax.annotate(str(i), (r[col], r["accuracy"]), fontsize=8, fontweight="bold",
                        xytext=(-4, 5), textcoords="offset points", ha="right")
            key.append(f"{i}: {r['name']} on {r['route']} ({r[col]:.3g} ms, {r['accuracy']:.3f})")
        ax.set(xscale="log", xlabel=f"median latency at batch {b} (ms, log scale)", ylabel="test accuracy",
               title=f"Accuracy vs latency, batch {b}")
        ax.margins(x=0.15)
        ax.get_legend().remove()
        ax.text(0.0, -0.14, "Pareto front:\n" + "\n".join(key), transform=ax.transAxes, fontsize=7, va="top")
    handles, labels = axes[0][-1].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 0.95), frameon=False)
    fig.tight_layout()
    return fig


def families_figure(frame: pd.DataFrame):
    """Per model on PyTorch fp32: parameters (total and nonzero), size on disk and latency at batch 1 and
    32, each relative to the teacher: what each family saves, and what it does not."""
    rows = frame[(frame["runtime"] == "torch") & (frame["precision"] == "fp32") & (frame["status"] == "ok")]
    teacher = rows[rows["name"] == BASELINE].iloc[0]
    measures = {"parameters": "params", "nonzero parameters": "params_nonzero", "size on disk": "size_mb",
                "latency, batch 1": "latency_bs1_ms_median", "latency, batch 32": "latency_bs32_ms_median"}
    long = pd.concat([pd.DataFrame({"model": rows["name"].str.slice(0, 45), "measure": label,
                                    "relative to teacher": rows[col] / teacher[col]})
                      for label, col in measures.items()], ignore_index=True)
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(rows) * 1.6 + 1.5))
    sns.barplot(data=long, y="model", x="relative to teacher", hue="measure", ax=ax)
    ax.axvline(1.0, color="grey", linestyle=":")
    ax.set(ylabel="", title="What each model saves (PyTorch fp32; teacher = 1)")
    sns.move_legend(ax, "upper left", bbox_to_anchor=(1, 1), title="", frameon=False)
    return fig


def importance_figure(importance) -> object:
    """Head importance (Michel et al.), layers x heads, as a heat map."""
    data = np.asarray(importance)
    fig, ax = plt.subplots(figsize=(0.5 * data.shape[1] + 2, 0.4 * data.shape[0] + 1.5))
    sns.heatmap(data, annot=True, fmt=".2f", cmap="viridis", cbar=False, ax=ax, annot_kws={"fontsize": 7})
    ax.set(xlabel="head", ylabel="layer", title="Head importance (normalised per layer)")
    return fig
