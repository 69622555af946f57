"""Step 05's tables and its plain-words verdict, built from the runs of kdlib.studies.hetero.dense, with seed 003's
published numbers in their own columns."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd

from kdlib.studies import papers
from kdlib.studies.hetero import dense as hetero
from kdlib.studies.hetero.dense import MODELS
from kdlib.studies.papers import SEED003_TABLE4 as PAPER_TABLE4
from kdlib.studies.papers import SEED003_TEACHERS as PAPER_TEACHERS


def table3(teachers: dict, hp, input_dim: int) -> pd.DataFrame:
    """Both teachers: architecture, parameters (ours, and the same architecture on 768-d input as the paper's),
    test accuracy at the early-stopped epoch, and the paper's numbers."""
    rows = []
    for name, labels in (("coarse", 6), ("fine", 20)):
        run = teachers[name]
        rows.append({"teacher": name, "labels": labels,
                     "architecture": "-".join(map(str, [input_dim, *hp.teacher_hidden, labels])),
                     "params": run.params,
                     "params_at_768": hetero.n_params(hetero.dense_model(768, hp.teacher_hidden, labels)),
                     "params_paper": PAPER_TEACHERS[name]["params"],
                     "test_accuracy": run.best["test_accuracy"], "accuracy_paper": PAPER_TEACHERS[name]["accuracy"],
                     "best_epoch": run.best_epoch, "stop_epoch": run.stop_epoch})
    return pd.DataFrame(rows)


def table4(results: pd.DataFrame) -> pd.DataFrame:
    """A, B (per convention) and C at their early-stopped epochs over seeds: mean and std, the paper beside."""
    rows = []
    for (model, convention), g in results.groupby(["model", "convention"], sort=True):
        paper = PAPER_TABLE4[model]
        rows.append({"model": model, "convention": convention, "alpha": g["alpha"].iloc[0],
                     "temperature": g["temperature"].iloc[0], "n_seeds": len(g),
                     "accuracy_mean": g["test_accuracy"].mean(), "accuracy_std": g["test_accuracy"].std(ddof=1),
                     "macro_f1_mean": g["test_macro_f1"].mean(), "macro_f1_std": g["test_macro_f1"].std(ddof=1),
                     "best_epoch_mean": g["best_epoch"].mean(), "params": g["params"].iloc[0],
                     "accuracy_paper": paper["accuracy"], "macro_f1_paper": paper["macro_f1"],
                     "epoch_paper": paper["epoch"]})
    return pd.DataFrame(rows)


def _by_seed(results: pd.DataFrame, model: str, convention: str, metric: str) -> pd.Series:
    rows = results[(results["model"] == model) & (results["convention"].isin([convention, "none"]))]
    return rows.set_index("seed")[metric].sort_index()


def paired_tests(results: pd.DataFrame, conventions) -> pd.DataFrame:
    """Paired t-tests across seeds: A vs B, B vs C, A vs C, per convention and metric."""
    rows = []
    for convention in conventions:
        for metric in ("test_accuracy", "test_macro_f1"):
            for a, b in (("A", "B"), ("B", "C"), ("A", "C")):
                x, y = _by_seed(results, a, convention, metric), _by_seed(results, b, convention, metric)
                x, y = x.align(y, join="inner")
                # scipy warns when the differences are nearly equal: the test is unreliable there, and the
                # table says so in its note rather than on the notebook's stderr.
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always", RuntimeWarning)
                    test = hetero.paired_test(x.to_numpy(), y.to_numpy())
                note = "differences nearly identical: p unreliable" if caught else ""
                rows.append({"convention": convention, "metric": metric, "comparison": f"{a} vs {b}", **test,
                             "note": note})
    return pd.DataFrame(rows)


def per_epoch(curves: pd.DataFrame, convention: str, metric: str, epochs: int, paper: dict) -> pd.DataFrame:
    """Seed 003's Table 5 (metric test_accuracy) or 6 (test_macro_f1): mean and std per epoch of A, B (this
    convention) and C, with the paper's values (NaN where it gives none)."""
    rows = curves[curves["convention"].isin([convention, "none"]) & (curves["epoch"] <= epochs)]
    stats = rows.groupby(["epoch", "model"])[metric].agg(["mean", "std"]).unstack("model")
    table = pd.DataFrame({"epoch": stats.index})
    for model in MODELS:
        table[f"{model}_mean"] = stats[("mean", model)].to_numpy()
        table[f"{model}_std"] = stats[("std", model)].to_numpy()
    for i, model in enumerate(MODELS):
        table[f"{model}_paper"] = [paper.get(e, (math.nan,) * 3)[i] for e in table["epoch"]]
    return table


def epoch_choice(curves: pd.DataFrame, results: pd.DataFrame, convention: str) -> pd.DataFrame:
    """Does the epoch at which each model is read change the ordering? Our seed means at epoch 19, at
    epoch 22, at the paper's mix (A and B at 19, C at 22) and at the early-stopped epoch; the paper's
    orderings beside."""
    rows = curves[curves["convention"].isin([convention, "none"])]
    mean_at = {e: rows[rows["epoch"] == e].groupby("model")["test_accuracy"].mean() for e in (19, 22)}
    es = results[results["convention"].isin([convention, "none"])].groupby("model")["test_accuracy"].mean()
    choices = {"epoch 19": mean_at[19], "epoch 22": mean_at[22],
               "paper's mix (A, B at 19; C at 22)": pd.Series({"A": mean_at[19].get("A"), "B": mean_at[19].get("B"),
                                                                "C": mean_at[22].get("C")}),
               "early stopping (validation)": es}
    paper = {"epoch 19": {m: papers.SEED003_TABLE5[19][i] for i, m in enumerate(MODELS)},
             "epoch 22": {m: papers.SEED003_TABLE5[22][i] for i, m in enumerate(MODELS)},
             "paper's mix (A, B at 19; C at 22)": {m: PAPER_TABLE4[m]["accuracy"] for m in MODELS}}
    out = []
    for name, values in choices.items():
        values = values.dropna().to_dict()
        out.append({"read at": name, **{m: values.get(m, math.nan) for m in MODELS},
                    "ordering": hetero.ordering(values) if len(values) == 3 else "",
                    "ordering_paper": hetero.ordering(paper[name]) if name in paper else ""})
    return pd.DataFrame(out)


def epochs_to_target_table(curves: pd.DataFrame, convention: str, n_targets: int = 25) -> pd.DataFrame:
    """Seed 003's Fig. 15 over a range of targets: per target and model, the median (over seeds) first
    epoch whose test accuracy reaches it, and how many seeds reach it at all."""
    rows = curves[curves["convention"].isin([convention, "none"])]
    hi = rows.groupby(["model", "seed"])["test_accuracy"].max().min()  # reachable by every run
    lo = rows[rows["epoch"] == 1]["test_accuracy"].min()
    targets = np.round(np.linspace(lo, hi, n_targets), 4)
    per_seed = hetero.epochs_to_target(rows, targets)
    return (per_seed.groupby(["target", "model"])["epochs"]
            .agg(epochs_median="median", epochs_mean="mean", seeds_reached="count").reset_index())


def verdict(table4_: pd.DataFrame, tests: pd.DataFrame, choice: pd.DataFrame, convention: str) -> str:
    """Plain-words reading of the numbers: the ordering, the gaps against seed-to-seed noise, the epoch choice."""
    t = table4_[table4_["convention"].isin([convention, "none"])].set_index("model")
    acc = t["accuracy_mean"].to_dict()
    n = int(t["n_seeds"].min())
    lines = [f"Convention '{convention}', {n} seeds, test accuracy at the early-stopped epoch: "
             + ", ".join(f"{m} {acc[m]:.4f} ± {t.loc[m, 'accuracy_std']:.4f}" for m in MODELS) + "."]
    holds = acc["A"] > acc["B"] > acc["C"]
    lines.append(f"Ordering {hetero.ordering(acc)}: the paper's A > B > C "
                 + ("holds on the means." if holds else "does not hold on the means."))
    for comp in ("A vs B", "B vs C"):
        r = tests[(tests["convention"] == convention) & (tests["metric"] == "test_accuracy")
                  & (tests["comparison"] == comp)].iloc[0]
        a, b = comp.split(" vs ")
        noise = np.nanmean([t.loc[a, "accuracy_std"], t.loc[b, "accuracy_std"]])
        significant = r["p"] < 0.05 if not math.isnan(r["p"]) else False
        lines.append(f"{comp}: mean difference {100 * r['mean_diff']:+.2f} points (paired std "
                     f"{100 * r['std_diff']:.2f}; seed-to-seed std of one model about {100 * noise:.2f}), paired "
                     f"t-test p = {r['p']:.3g}: " + ("larger than seed noise at the 5% level." if significant
                                                     else "not distinguishable from seed noise."))
    paper_gap = 100 * (PAPER_TABLE4["A"]["accuracy"] - PAPER_TABLE4["B"]["accuracy"])
    lines.append(f"The paper's A-B gap is {paper_gap:.2f} points from one run; the binomial standard error of one "
                 "accuracy on 7,274 test documents is about 0.58 points.")
    c = choice.set_index("read at")
    mix, e19 = c.loc["paper's mix (A, B at 19; C at 22)"], c.loc["epoch 19"]
    if not mix["ordering"]:
        lines.append("Epoch choice: not measured (the runs of this profile are shorter than 22 epochs).")
        return "\n\n".join(lines) + "\n"
    lines.append(f"Epoch choice: read as the paper does (A, B at epoch 19, C at 22) our ordering is {mix['ordering']};"
                 f" all at epoch 19 it is {e19['ordering']}; at epoch 22 {c.loc['epoch 22', 'ordering']}. In the "
                 f"paper's own Table 5 the ordering at epoch 19 is {e19['ordering_paper']}, so its epoch choice "
                 f"{'changes' if e19['ordering_paper'] != mix['ordering_paper'] else 'does not change'} its ordering.")
    return "\n\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------------------
# beyond the paper: the transformer student


def transformer_summary(results: pd.DataFrame) -> pd.DataFrame:
    """Per variant: seeds, test accuracy and macro-F1 (mean and std over seeds), training seconds per run."""
    return (results.groupby("variant")
            .agg(n_seeds=("seed", "count"), accuracy_mean=("test_accuracy", "mean"),
                 accuracy_std=("test_accuracy", "std"), macro_f1_mean=("test_macro_f1", "mean"),
                 macro_f1_std=("test_macro_f1", "std"), train_seconds_mean=("train_seconds", "mean"))
            .reset_index())


def transformer_test(results: pd.DataFrame, metric: str = "test_accuracy") -> dict:
    """hetero KD vs plain KD, paired by seed (hetero.paired_test: differences are hetero minus plain)."""
    by_seed = results.pivot_table(index="seed", columns="variant", values=metric).dropna()
    return hetero.paired_test(by_seed["hetero KD"].to_numpy(), by_seed["plain KD"].to_numpy())


def transformer_verdict(results: pd.DataFrame) -> str:
    """Plain-words reading of the transformer runs: the sizes, both variants' accuracy, the paired test."""
    s = transformer_summary(results).set_index("variant")
    t = transformer_test(results)
    r = results.iloc[0]
    line = (f"Transformer student ({r['layers']}-layer BERT, {r['train_rows']:,} training posts at {r['max_length']} "
            f"tokens; test accuracy on {r['test_rows']:,} posts, seeds: {t['n']}): "
            + ", ".join(f"{v} {s.loc[v, 'accuracy_mean']:.4f} ± {s.loc[v, 'accuracy_std']:.4f}"
                        for v in ("hetero KD", "plain KD"))
            + f". Hetero minus plain: {100 * t['mean_diff']:+.2f} points (paired std {100 * t['std_diff']:.2f}), "
            f"paired t-test p = {t['p']:.3g}: ")
    if math.isnan(t["p"]) or t["p"] >= 0.05:
        return line + "not distinguishable from seed noise; hetero KD does not measurably help here.\n"
    return line + ("hetero KD helps the transformer student.\n" if t["mean_diff"] > 0
                   else "hetero KD does worse than plain KD here.\n")
