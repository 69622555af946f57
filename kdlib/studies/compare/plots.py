"""Step 04's figures (seaborn): accuracy against latency with the Pareto front, what each model saves, and
the teacher's head importance."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib import ticker

from kdlib.studies.compare.tables import BASELINE, pareto_front

# The colours: six kinds of model, a combination coloured by the method it adds to the teacher's.
KINDS = ("teacher", "quantization", "knowledge distillation", "pruning", "factorization", "weight sharing")


def _kind(family: str) -> str:
    """The kind named in `family` ("KD + pruning + int8" is pruning); knowledge distillation when none is."""
    return next((k for k in KINDS if k != "knowledge distillation" and k in family), "knowledge distillation")


def _short(name: str, width: int = 42) -> str:
    return name if len(name) <= width else name[: width - 1] + "…"


def pareto_figure(frame: pd.DataFrame, batch_sizes=(1, 32)):
    """Accuracy against median latency, one panel per batch size (stacked, so each is a page wide). The
    Pareto front (the rows no other row beats on both) is drawn strong, numbered, and named in a key under
    its panel; every other row is a faint dot. One colour per compression family, from a colour-blind-safe
    palette; type of at least 8 pt at the figure's size."""
    ok = frame[frame["status"] == "ok"].copy()
    ok["route"] = ok["runtime"] + "/" + ok["precision"]
    ok["kind"] = ok["family"].map(_kind)
    families = [k for k in KINDS if k in set(ok["kind"])]
    colour = dict(zip(KINDS, sns.color_palette("colorblind", len(KINDS))))
    fig, axes = plt.subplots(len(batch_sizes), 1, figsize=(7.5, 6.2 * len(batch_sizes)), squeeze=False)
    for ax, b in zip(axes[:, 0], batch_sizes):
        col = f"latency_bs{b}_ms_median"
        on_front = pareto_front(ok["accuracy"], ok[col])
        rest, front = ok[~on_front], ok[on_front].sort_values(col)
        ax.scatter(rest[col], 100 * rest["accuracy"], s=22, alpha=0.3, linewidths=0,
                   color=[colour[f] for f in rest["kind"]])
        ax.plot(front[col], 100 * front["accuracy"], color="black", linewidth=1.2, zorder=2)
        ax.scatter(front[col], 100 * front["accuracy"], s=70, edgecolors="black", zorder=3,
                   color=[colour[f] for f in front["kind"]])
        key = []
        for i, (_, r) in enumerate(front.iterrows(), start=1):
            ax.annotate(str(i), (r[col], 100 * r["accuracy"]), fontsize=10, fontweight="bold",
                        xytext=(6, -4), textcoords="offset points")
            key.append(f"{i}. {_short(r['name'])} · {r['route']} · {r[col]:.3g} ms · {r['accuracy']:.1%}")
        ax.set_xscale("log")
        # 1, 2, 5, 10, 20 rather than 2×10¹; every minor tick labelled crowded 0.8/0.9 and 80/90/100
        ax.xaxis.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(ticker.NullFormatter())
        ax.set_xlabel(f"median latency at batch {b} (ms, log scale)", fontsize=10)
        ax.set_ylabel("test accuracy (%)", fontsize=10)
        ax.set_title(f"Accuracy against latency, batch {b}: the Pareto front numbered", fontsize=11)
        ax.tick_params(labelsize=9)
        ax.margins(x=0.12)
        ax.text(0.0, -0.13, "\n".join(key), transform=ax.transAxes, fontsize=8, va="top")
    handles = [plt.Line2D([], [], marker="o", linestyle="", color=colour[f], markersize=8, label=f)
               for f in families]
    axes[0, 0].legend(handles=handles, fontsize=8, loc="lower right", title="family", title_fontsize=8)
    fig.tight_layout(h_pad=2 + 1.2 * max(3, len(key)) / 3)
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
