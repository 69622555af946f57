"""The report's own figure for page 1: accuracy against latency, from 04's table6.csv, drawn for print.

Drawn at the page's text width (7 in) so that its 8 pt type stays 8 pt in the PDF. The Pareto front (no
other row both faster and more accurate) is drawn strong, its points numbered and named in a key under each
panel; the other rows are faint. Colour
says what kind of model a row is (four kinds), the marker which runtime ran it.
"""
from __future__ import annotations

import re

import matplotlib.pyplot as plt
import matplotlib.ticker as ticker
import pandas as pd

from kdlib.studies.compare.tables import pareto_front

KINDS = {"teacher": "#222222", "distilled student": "#1f77b4", "compressed teacher": "#ff7f0e"}
MARKERS = {"torch": "o", "onnxruntime": "s", "openvino": "^"}
FONT = 8


def kind_of(row: pd.Series) -> str:
    if row["name"] == "teacher":
        return "teacher"
    return "distilled student" if "student" in row["name"] else "compressed teacher"


def short(name: str) -> str:
    """'half-depth student L3_F1536 (03)' -> 'L3_F1536'; 'KD student (02)' -> 'KD student'; other names whole
    ('teacher, 36 of 72 heads pruned' is not the teacher)."""
    hit = re.search(r"\bL\d+_F\d+(_gd)?\b", name)
    return hit.group(0) if hit else re.sub(r" \(0\d\)$", "", name)


def answer_figure(table6: pd.DataFrame, shipped: tuple[str, str] | None = None):
    """Two panels (batch 1, batch 32) of test accuracy (%) against median latency (ms, log scale); `shipped`
    = (model, route) is ringed."""
    rows = table6[(table6["source"] == "measured here") & (table6["status"] == "ok")].copy()
    rows["route"] = rows["runtime"] + "/" + rows["precision"]
    rows["kind"] = [kind_of(r) for _, r in rows.iterrows()]
    rows["acc"] = 100 * rows["accuracy"]
    with plt.rc_context({"font.size": FONT, "axes.titlesize": FONT + 1, "axes.labelsize": FONT,
                         "xtick.labelsize": FONT - 1, "ytick.labelsize": FONT - 1, "legend.fontsize": FONT - 1}):
        fig, axes = plt.subplots(1, 2, figsize=(7.0, 4.9), sharey=True)
        for ax, batch in zip(axes, (1, 32)):
            col = f"latency_bs{batch}_ms_median"
            front = pareto_front(rows["acc"].to_numpy(), rows[col].to_numpy())
            for on, alpha in ((False, 0.22), (True, 1.0)):
                for (kind, runtime), part in rows[front == on].groupby(["kind", "runtime"]):
                    ax.scatter(part[col], part["acc"], color=KINDS[kind], marker=MARKERS.get(runtime, "D"),
                               s=30 if on else 18, alpha=alpha, edgecolor="white" if on else "none", linewidth=0.5,
                               zorder=3 if on else 2)
            line = rows[front].sort_values(col)
            ax.plot(line[col], line["acc"], color="#555555", linewidth=0.8, zorder=1)
            # the front's points numbered on the plot and named in a key under it: labels never overlap
            key = []
            for i, (_, r) in enumerate(line.iterrows(), start=1):
                ax.annotate(str(i), (r[col], r["acc"]), fontsize=FONT - 1, fontweight="bold",
                            xytext=(-3, 5), textcoords="offset points", ha="right")
                key.append(f"{i}  {short(r['name'])} · {r['route']}: {r[col]:.3g} ms, {r['acc']:.1f}%")
            ax.annotate("\n".join(key), xy=(0, 0), xycoords="axes fraction", xytext=(0, -30),
                        textcoords="offset points", va="top", fontsize=FONT - 1)
            if shipped is not None:
                hit = rows[(rows["name"] == shipped[0]) & (rows["route"] == shipped[1])]
                ax.scatter(hit[col], hit["acc"], s=110, facecolor="none", edgecolor="#d62728", linewidth=1.4,
                           zorder=4, label="recommended")
            ax.set_xscale("log")
            ax.xaxis.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
            ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda x, _: f"{x:g}"))
            ax.xaxis.set_minor_formatter(ticker.NullFormatter())
            ax.set(title=f"batch {batch}", xlabel="median latency (ms, log scale)")
            ax.grid(alpha=0.3, which="both", linewidth=0.4)
        axes[0].set_ylabel("test accuracy (%)")
        handles = [plt.Line2D([], [], color=c, marker="o", linestyle="", label=k) for k, c in KINDS.items()]
        handles += [plt.Line2D([], [], color="#777777", marker=m, linestyle="", label=r) for r, m in MARKERS.items()]
        if shipped is not None:
            handles.append(plt.Line2D([], [], color="#d62728", marker="o", markerfacecolor="none", linestyle="",
                                      label="recommended"))
        fig.legend(handles=handles, loc="upper center", ncol=len(handles), frameon=False,
                   bbox_to_anchor=(0.5, 1.0), handletextpad=0.2, columnspacing=1.0)
        fig.tight_layout(rect=(0, 0.25, 1, 0.95))
    return fig
