"""Seed 003 (Yu & Kim 2022): heterogeneous KD with small dense networks on cached document embeddings.

Models (all `kdlib.core.heads.DenseTwoHead`):
- teachers, trained from scratch: coarse (6 newsgroup families) and fine (20 newsgroups);
- students with a prediction head (20 labels) and, for A and B, a distillation head:
  A learns from the coarse teacher (6 outputs), B from the fine teacher (20 outputs), C has no
  distillation head and learns from hard labels only.
The loss is the `hetero` entry of kdlib.core.losses, in either convention ("ours": alpha*CE + (1-alpha)*T^2*KL;
"paper": seed 003's, no T^2, its Fig. 9).

Training is a small plain-PyTorch loop: the data are ~9k x 384 floats held in memory, a step costs well under a
millisecond of arithmetic, so a transformers.Trainer (data loaders, checkpoints, callbacks) would cost more
than the training itself. Each run uses one thread, and the independent runs (teachers, search, seeds) are
spread over worker processes (`map_jobs`): each teacher with the alpha/T search of the student that learns
from it, then the seeds. A run listed twice is trained once: at T = 1 the two loss conventions are one loss.
One run records every epoch's validation and test metrics, so a
single run gives both the early-stopped result (the epoch with the best validation accuracy, patience as
configured) and the per-epoch curves without early stopping that seed 003's Tables 5 and 6 show (runs last
at least `curve_epochs`; the weights do not depend on whether stopping was on, so both views are exact).
"""
from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file, save_file
from scipy import stats

from kdlib.core import data
from kdlib.core.fingerprint import arrays_fingerprint
from kdlib.core.heads import DenseTwoHead, DenseTwoHeadConfig
from kdlib.core.losses import get_loss
from kdlib.core.metrics import classification_metrics
from kdlib.pipeline import memo
from kdlib.pipeline.workers import map_jobs

MODELS = ("A", "B", "C")
# which teacher each student learns from, and the size of its distillation head
TEACHER_OF = {"A": "coarse", "B": "fine", "C": None}


def dense_model(input_dim: int, hidden: list[int], num_labels: int, num_distill_labels: int = 0) -> DenseTwoHead:
    return DenseTwoHead(DenseTwoHeadConfig(input_dim=input_dim, hidden_sizes=hidden, num_labels=num_labels,
                                           num_distill_labels=num_distill_labels))


def n_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


@dataclass
class Split:
    """One split of cached embeddings with its fine and coarse labels (torch tensors)."""
    x: torch.Tensor
    fine: torch.Tensor
    coarse: torch.Tensor

    def __len__(self) -> int:
        return len(self.fine)


@dataclass
class DenseRun:
    history: list[dict]           # one row per epoch: train_loss, val_*, test_* (accuracy, macro_f1)
    best_epoch: int               # the epoch early stopping keeps (best validation accuracy)
    stop_epoch: int               # where early stopping would have stopped
    params: int
    model: DenseTwoHead | None = field(default=None, repr=False)  # best-epoch weights, when asked for

    def at(self, epoch: int) -> dict:
        return self.history[epoch - 1]

    @property
    def best(self) -> dict:
        return self.at(self.best_epoch)


def early_stop(val_accuracy: list[float], patience: int) -> tuple[int, int]:
    """(best epoch, stop epoch), 1-based: training stops once `patience` epochs pass without a new best
    validation accuracy (ties keep the earlier epoch)."""
    best, best_epoch = -math.inf, 0
    for epoch, acc in enumerate(val_accuracy, start=1):
        if acc > best:
            best, best_epoch = acc, epoch
        elif epoch - best_epoch >= patience:
            return best_epoch, epoch
    return best_epoch, len(val_accuracy)


@torch.no_grad()
def _scores(model, split: Split, coarse: bool) -> dict:
    model.eval()
    pred = model(split.x).logits.argmax(-1).numpy()
    return classification_metrics(pred, (split.coarse if coarse else split.fine).numpy())


def train_dense(model: DenseTwoHead, train: Split, evals: dict[str, Split], *, seed: int, epochs: int,
                patience: int, min_epochs: int = 0, batch_size: int = 128, learning_rate: float = 1e-3,
                coarse: bool = False, teacher_logits: torch.Tensor | None = None, alpha: float = 1.0,
                temperature: float = 1.0, convention: str = "ours", keep_best: bool = False) -> DenseRun:
    """Adam on mini-batches in a seeded order; metrics on every split of `evals` ("val" decides) after each
    epoch. Trains until early stopping would stop AND at least `min_epochs` have run (at most `epochs`).
    `coarse`: the targets are the coarse labels (the coarse teacher). With `teacher_logits` (one row per
    training row) the loss is kdlib.core.losses' `hetero`; without, plain CE."""
    generator = torch.Generator().manual_seed(seed)
    optimiser = torch.optim.Adam(model.parameters(), lr=learning_rate, fused=True)  # one kernel: ~18% less time per run
    loss_fn = get_loss("hetero")
    targets = train.coarse if coarse else train.fine
    history, best_acc, best_state = [], -math.inf, None
    for epoch in range(1, epochs + 1):
        model.train()
        total = 0.0
        for rows in torch.randperm(len(train), generator=generator).split(batch_size):
            out = model(train.x[rows])
            teacher = None if teacher_logits is None else {"logits": teacher_logits[rows]}
            terms = loss_fn({"logits": out.logits, "distill_logits": out.distill_logits}, teacher,
                            {"labels": targets[rows]}, alpha=alpha, temperature=temperature, convention=convention)
            optimiser.zero_grad(set_to_none=True)
            terms["loss"].backward()
            optimiser.step()
            total += terms["loss"].item() * len(rows)
        row = {"epoch": epoch, "train_loss": total / len(train)}
        for name, split in evals.items():
            row.update({f"{name}_{k}": v for k, v in _scores(model, split, coarse).items()})
        history.append(row)
        if keep_best and row["val_accuracy"] > best_acc:
            best_acc, best_state = row["val_accuracy"], copy.deepcopy(model.state_dict())
        _, stop = early_stop([h["val_accuracy"] for h in history], patience)
        if stop < epoch and epoch >= min_epochs:
            break
    best_epoch, stop_epoch = early_stop([h["val_accuracy"] for h in history], patience)
    if keep_best:
        model.load_state_dict(best_state)
    return DenseRun(history, best_epoch, stop_epoch, n_params(model), model if keep_best else None)


@torch.no_grad()
def logits_of(model, x: torch.Tensor) -> torch.Tensor:
    model.eval()
    return model(x).logits


# ----------------------------------------------------------------------------------------------------
# statistics


def paired_test(a, b) -> dict:
    """Paired t-test of a vs b across seeds (scipy's ttest_rel): mean and std of the differences, t, p.
    With fewer than 2 pairs, or identical pairs, t and p are NaN."""

    d = np.asarray(a, float) - np.asarray(b, float)
    out = {"n": len(d), "mean_diff": float(d.mean()) if len(d) else math.nan,
           "std_diff": float(d.std(ddof=1)) if len(d) > 1 else math.nan, "t": math.nan, "p": math.nan}
    if len(d) > 1 and np.ptp(d) > 0:
        res = stats.ttest_rel(a, b)
        out.update(t=float(res.statistic), p=float(res.pvalue))
    return out


def epochs_to_target(curves: pd.DataFrame, targets) -> pd.DataFrame:
    """For each model, seed and target accuracy: the first epoch whose test accuracy reaches it (NaN if none).
    `curves` has columns model, seed, epoch, test_accuracy."""
    rows = []
    for (model, seed), run in curves.sort_values("epoch").groupby(["model", "seed"]):
        acc, epochs = run["test_accuracy"].to_numpy(), run["epoch"].to_numpy()
        for target in targets:
            hit = np.flatnonzero(acc >= target)
            rows.append({"model": model, "seed": seed, "target": float(target),
                         "epochs": float(epochs[hit[0]]) if len(hit) else math.nan})
    return pd.DataFrame(rows)


def ordering(values: dict[str, float]) -> str:
    """'A > C > B' from {'A': .., 'B': .., 'C': ..}, highest first."""
    return " > ".join(sorted(values, key=lambda k: -values[k]))


# ----------------------------------------------------------------------------------------------------
# data


def load_data(hp, seed: int):
    """The profile's 20 Newsgroups (cleaned as in seed 003), subset to hp's sizes (stratified, seeded)."""

    dsd = data.load(hp.dataset)
    sizes = {"train": hp.train_size, "validation": hp.validation_size, "test": hp.test_size}
    return data.stratified_subset(dsd, sizes, seed=seed)


def splits_from(dsd, embeddings: dict[str, np.ndarray]) -> dict[str, Split]:
    """Cached embeddings and labels as Splits: train, val, test."""
    names = {"train": "train", "validation": "val", "test": "test"}
    return {names[s]: Split(torch.from_numpy(embeddings[s]), torch.tensor(dsd[s]["label"]),
                            torch.tensor(dsd[s]["coarse_label"])) for s in names}


# ----------------------------------------------------------------------------------------------------
# the experiment: teachers, the alpha/T search, the seeds


def train_teacher(hp, splits: dict[str, Split], name: str, seed: int) -> DenseRun:
    """The coarse (6 labels) or the fine (20 labels) teacher, with its best epoch's weights."""
    torch.manual_seed(seed)
    model = dense_model(splits["train"].x.shape[1], hp.teacher_hidden, 6 if name == "coarse" else 20)
    return train_dense(model, splits["train"], {"val": splits["val"], "test": splits["test"]}, seed=seed,
                       epochs=hp.epochs, patience=hp.patience, batch_size=hp.batch_size,
                       learning_rate=hp.learning_rate, coarse=name == "coarse", keep_best=True)


def train_student(hp, splits, kind: str, seed: int, teacher_logits: dict, alpha: float = 1.0,
                  temperature: float = 1.0, convention: str = "ours", min_epochs: int = 0,
                  test: bool = True) -> DenseRun:
    """Student A, B or C (see TEACHER_OF). The same seed gives A, B and C the same body and prediction head.
    `test=False` scores validation only (the search, which must not look at the test split anyway)."""
    teacher = TEACHER_OF[kind]
    torch.manual_seed(seed)
    model = dense_model(splits["train"].x.shape[1], hp.student_hidden, 20,
                        teacher_logits[teacher].shape[1] if teacher else 0)
    evals = {"val": splits["val"], "test": splits["test"]} if test else {"val": splits["val"]}
    return train_dense(model, splits["train"], evals, seed=seed,
                       epochs=hp.epochs, patience=hp.patience, min_epochs=min_epochs, batch_size=hp.batch_size,
                       learning_rate=hp.learning_rate, teacher_logits=teacher_logits[teacher] if teacher else None,
                       alpha=alpha, temperature=temperature, convention=convention)


def same_loss_convention(convention: str, temperature: float) -> str:
    """At T = 1 the two conventions are one loss (T^2 = 1, the same arithmetic): such runs are named "ours",
    so a run listed under both is trained once."""
    return "ours" if temperature == 1 else convention


def map_distinct(fn, jobs: list[dict], shared: dict, workers: int, desc: str | None = None) -> list:
    """`map_jobs` over the distinct jobs only (a job listed twice runs once), results in the order of `jobs`."""
    keys = [tuple(sorted(job.items())) for job in jobs]
    distinct = list(dict.fromkeys(keys))
    runs = dict(zip(distinct, map_jobs(fn, [dict(key) for key in distinct], shared, workers, desc)))
    return [runs[key] for key in keys]


def teacher_and_search(hp, splits, name: str, seed: int) -> dict:
    """One job: the coarse or fine teacher (best-epoch weights), its logits on the train split, and the
    validation accuracy (early-stopped) of the student that learns from it (A from coarse, B from fine) over
    hp.alphas x hp.temperatures, per convention. A student's search needs only its own teacher, so each
    worker trains one teacher and searches its student: the coarse teacher stops sooner, and A's runs fill
    the time the fine teacher still trains."""
    teacher = train_teacher(hp, splits, name, seed)
    logits = {name: logits_of(teacher.model, splits["train"].x)}
    kind = next(k for k, t in TEACHER_OF.items() if t == name)
    grid = [(c, a, t) for c in hp.conventions for a in hp.alphas for t in hp.temperatures]
    jobs = [{"kind": kind, "seed": seed, "alpha": a, "temperature": t, "convention": same_loss_convention(c, t),
             "test": False} for c, a, t in grid]
    runs = map_distinct(train_student, jobs, {"hp": hp, "splits": splits, "teacher_logits": logits}, 1)
    search = [{"convention": c, "model": kind, "alpha": a, "temperature": t, "val_accuracy": run.best["val_accuracy"],
               "best_epoch": run.best_epoch} for (c, a, t), run in zip(grid, runs)]
    return {"teacher": teacher, "logits": logits[name], "search": search}


def teachers_and_search(hp, splits, seed: int, workers: int = 1, progress: bool = True
                        ) -> tuple[dict, dict, pd.DataFrame]:
    """Both teachers (DenseRun with best-epoch weights), their train-split logits ({"coarse", "fine"}) and the
    alpha/T search of A and B (one row per convention, model, alpha and T), one teacher per worker."""
    names = ("fine", "coarse")  # the fine teacher trains longer: first
    jobs = map_jobs(teacher_and_search, [{"name": name} for name in names], {"hp": hp, "splits": splits, "seed": seed},
                    workers, "teachers, alpha/T search" if progress else None)
    rows = {(r["convention"], r["model"], r["alpha"], r["temperature"]): r for job in jobs for r in job["search"]}
    # in the order convention, model, alpha, T (best_settings keeps the first of ties)
    search = pd.DataFrame([rows[(c, k, a, t)] for c in hp.conventions for k in ("A", "B") for a in hp.alphas
                           for t in hp.temperatures])
    by_name = dict(zip(names, jobs))
    return ({name: by_name[name]["teacher"] for name in ("coarse", "fine")},
            {name: by_name[name]["logits"] for name in ("coarse", "fine")}, search)


def best_settings(search: pd.DataFrame) -> pd.DataFrame:
    """Per convention and model, the (alpha, T) with the highest validation accuracy (first on ties)."""
    idx = search.groupby(["convention", "model"], sort=False)["val_accuracy"].idxmax()
    return search.loc[idx].reset_index(drop=True)


def run_seeds(hp, splits, teacher_logits: dict, chosen: pd.DataFrame, seeds, progress: bool = True,
              workers: int = 1):
    """A and B (per convention, at the chosen alpha/T) and C, for every seed, each trained at least
    hp.curve_epochs. Returns (curves: one row per model, convention, seed and epoch; results: one row per
    run at its early-stopped epoch)."""
    plans = [(seed, "C", "none", 1.0, 1.0) for seed in seeds]
    plans += [(seed, r.model, r.convention, r.alpha, r.temperature) for seed in seeds for r in chosen.itertuples()]
    jobs = [{"kind": kind, "seed": seed, "alpha": alpha, "temperature": temperature,
             "convention": same_loss_convention(convention, temperature) if convention != "none" else "ours",
             "min_epochs": hp.curve_epochs}
            for seed, kind, convention, alpha, temperature in plans]
    shared = {"hp": hp, "splits": splits, "teacher_logits": teacher_logits}
    runs = map_distinct(train_student, jobs, shared, workers, "seeds" if progress else None)
    curves, results = [], []
    for (seed, kind, convention, alpha, temperature), run in zip(plans, runs):
        tag = {"model": kind, "convention": convention, "seed": seed}
        curves += [{**tag, **row} for row in run.history]
        results.append({**tag, "alpha": alpha, "temperature": temperature, "best_epoch": run.best_epoch,
                        "stop_epoch": run.stop_epoch, "params": run.params,
                        **{k: v for k, v in run.best.items() if k.startswith(("val_", "test_"))}})
    return pd.DataFrame(curves), pd.DataFrame(results)


def splits_fingerprint(splits: dict[str, Split]) -> str:
    """The content of the embeddings and labels the dense runs train and score on."""
    return arrays_fingerprint({f"{name}.{part}": getattr(s, part) for name, s in splits.items()
                               for part in ("x", "fine", "coarse")})[:16]


def run_dense_study(hp, splits: dict[str, Split], seed: int, folder, progress: bool = True) -> dict:
    """Teachers, the alpha/T search and the seeds, as one memoised unit in `folder` (keyed by the content of
    the embeddings and labels, the parameters and this code: embeddings recomputed on another CPU or route
    differ slightly, and the runs on them are redone). Returns teachers (DenseRun, no weights), search, chosen,
    curves, results
    (frames) and teacher_logits (train split, {"coarse", "fine"})."""



    def build(unit: Path) -> dict:
        unit.mkdir(parents=True, exist_ok=True)
        # every run is small: one thread each, the runs spread over hp.workers processes
        teachers, logits, search = teachers_and_search(hp, splits, seed, hp.workers, progress)
        chosen = best_settings(search)
        curves, results = run_seeds(hp, splits, logits, chosen, range(seed, seed + hp.seeds), progress, hp.workers)
        save_file({k: v.contiguous() for k, v in logits.items()}, str(unit / "teacher_logits.safetensors"))
        return {"teachers": {k: {"history": r.history, "best_epoch": r.best_epoch, "stop_epoch": r.stop_epoch,
                                 "params": r.params} for k, r in teachers.items()},
                **{name: frame.to_dict("records") for name, frame in
                   (("search", search), ("chosen", chosen), ("curves", curves), ("results", results))}}


    # the transformer runs are units of their own; the worker count changes no number
    params = {k: v for k, v in dataclasses.asdict(hp).items() if k not in ("transformer", "workers")}
    key = memo.unit_key("hetero_dense", ["studies.hetero.dense", "core.heads", "core.losses"], params, seed,
                         splits_fingerprint(splits))
    done = memo.run_unit(Path(folder), key, build, files=("teacher_logits.safetensors",))
    out = {name: pd.DataFrame(done[name]) for name in ("search", "chosen", "curves", "results")}
    out["teachers"] = {k: DenseRun(**v) for k, v in done["teachers"].items()}
    out["teacher_logits"] = load_file(str(Path(folder) / "teacher_logits.safetensors"))
    out["reused"] = done["reused"]
    return out
