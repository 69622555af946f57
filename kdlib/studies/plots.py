"""The study's figures (seaborn). Each function returns a matplotlib Figure; notebooks save it with
kdlib.core.io.save_figure, which writes PNG and PDF."""
from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from matplotlib.ticker import MaxNLocator

sns.set_theme(style="whitegrid", context="notebook")


def class_balance(balance: pd.DataFrame, title: str = "Class balance per split"):
    """Bars of the share of each class in each split (from kdlib.core.data.class_balance)."""
    fig, ax = plt.subplots(figsize=(6.5, 3.5))
    sns.barplot(data=balance, x="split", y="percent", hue="label", ax=ax)
    ax.set(ylabel="share of rows (%)", xlabel="", title=title)
    sns.move_legend(ax, "upper left", bbox_to_anchor=(1, 1), title="", frameon=False)
    return fig


def token_lengths(lengths: pd.DataFrame, max_length: int):
    """Histogram of token counts per split, with the truncation length marked."""
    fig, ax = plt.subplots(figsize=(6.5, 3.5))
    sns.histplot(data=lengths, x="tokens", hue="split", element="step", stat="density", common_norm=False,
                 bins=40, ax=ax)
    ax.axvline(max_length, color="black", linestyle="--", linewidth=1)
    ax.annotate(f"max_length = {max_length}", (max_length, ax.get_ylim()[1] * 0.9), xytext=(4, 0),
                textcoords="offset points", fontsize="small")
    ax.set(xlabel="tokens per text (with [CLS] and [SEP])", title="Text length")
    return fig


def training_curves(history: pd.DataFrame, metric: str = "accuracy", title: str | None = None,
                    hue: str = "run", reference: float | None = None, reference_label: str = "teacher"):
    """Validation `metric` per epoch, one line per value of `hue` (history has columns epoch, metric, hue)."""
    fig, ax = plt.subplots(figsize=(6.5, 3.5))
    # Dashes as well as colours: runs that coincide (cached and online KD) stay visible on top of each other.
    sns.lineplot(data=history, x="epoch", y=metric, hue=hue, style=hue, markers=True, dashes=True, ax=ax)
    if reference is not None:
        ax.axhline(reference, color="grey", linestyle=":", linewidth=1.2, label=reference_label)
    # Whole epochs only, one tick being enough, and half an epoch of room either side: a run of one epoch is
    # then a point above its tick, not a lone marker on an axis of fractions
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    ax.set_xlim(history["epoch"].min() - 0.5, history["epoch"].max() + 0.5)
    name = "score" if metric == "value" else metric.replace("_", " ")
    ax.set(xlabel="epoch", ylabel=f"validation {name}", title=title or f"Validation {name} per epoch")
    sns.move_legend(ax, "upper left", bbox_to_anchor=(1, 1), title="", frameon=False)
    return fig


def confusion(matrix: pd.DataFrame, title: str = "Confusion matrix (test)"):
    """Heat map of a confusion matrix frame (rows true, columns predicted)."""
    fig, ax = plt.subplots(figsize=(4.2, 3.6))
    sns.heatmap(matrix, annot=True, fmt="d", cmap="Blues", cbar=False, ax=ax)
    ax.set(xlabel="predicted", ylabel="true", title=title)
    return fig


def metric_bars(frame: pd.DataFrame, x: str, y: str, title: str, ylabel: str | None = None,
                hue: str | None = None, annotate: str = "{:.3f}", errors: str | None = None):
    """Bars with their values written on them; with `errors` (a column of half-widths, bars without hue),
    an error bar on each, so that a single run's value is read with its uncertainty."""
    fig, ax = plt.subplots(figsize=(6.5, 3.5))
    sns.barplot(data=frame, x=x, y=y, hue=hue, ax=ax)
    for container in ax.containers:
        ax.bar_label(container, fmt=annotate.format if "{" in annotate else annotate, fontsize="small", padding=2,
                     label_type="center" if errors is not None else "edge")
    if errors is not None:  # after the labels: bar_label reads only the bars' containers
        ax.errorbar(range(len(frame)), frame[y], yerr=frame[errors], fmt="none", ecolor="black", capsize=4)
    ax.set(xlabel="", ylabel=ylabel or y, title=title)
    ax.margins(y=0.15)
    if hue is not None:
        sns.move_legend(ax, "upper left", bbox_to_anchor=(1, 1), title="", frameon=False)
    return fig


def grid_heatmap(frame: pd.DataFrame, value: str, title: str, fmt: str = ".3f", cmap: str = "viridis",
                 label: str | None = None):
    """A layers x FFN-size heat map of `value` (one row per student, columns layers, ffn and value)."""
    table = frame.pivot_table(index="layers", columns="ffn", values=value).sort_index(ascending=False)
    fig, ax = plt.subplots(figsize=(4.6, 3.4))
    sns.heatmap(table, annot=True, fmt=fmt, cmap=cmap, cbar_kws={"label": label or value.replace("_", " ")}, ax=ax)
    ax.set(xlabel="FFN size", ylabel="layers", title=title)
    return fig


def time_vs_shape(long: pd.DataFrame):
    """Latency against FFN size, one line per depth, one panel per batch size (columns layers, ffn, batch, ms)."""
    g = sns.relplot(data=long, x="ffn", y="ms", hue="layers", col="batch", kind="line", marker="o",
                    facet_kws={"sharey": False}, height=3.2, aspect=1.1, palette="viridis")
    g.set_axis_labels("FFN size", "median latency (ms)")
    g.set_titles("{col_name}")
    sizes = sorted(long["ffn"].unique())
    for ax in g.axes.flat:
        ax.set_xscale("log", base=2)
        ax.set_xticks(sizes, [f"{int(s):,}" for s in sizes])  # the FFN sizes themselves, not powers of two
        ax.minorticks_off()
        ax.set_ylim(bottom=0)
    return g.figure
