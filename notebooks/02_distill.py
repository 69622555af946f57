# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 02 · Distilling one student
#
# The student has **half the teacher's layers**, initialised from every other teacher layer (DistilBERT's
# recipe: layers 0, 2, 4, 7, 9, 11 of 12; here 0, 3, 5 of MiniLM's 6), and the teacher's embeddings,
# pooler and classifier. It is trained three ways from the same initial weights and the same seed:
#
# | run | loss | teacher |
# |---|---|---|
# | **KD (cached teacher)** | α·CE(labels) + (1−α)·T²·KL(teacher ‖ student) | logits computed once, read from disk |
# | **KD (online teacher)** | the same | the teacher runs on every batch |
# | **no KD (twin)** | CE(labels) only | none |
#
# The KL term is summed over classes and averaged over the batch, and multiplied by T² (Hinton et al., 2015)
# so that its gradients keep their size as the temperature changes.
#
# Teacher outputs depend only on the teacher, the token ids and the maximum length, so the study computes
# them **once** and stores them under a key that hashes all three; every student reads them from there.
# Cached and online KD see the same numbers, so they should train alike, step for step; what differs is the
# cost. A profile with `distill.online_kd_epochs` set checks that on a part of an epoch only (online KD and a
# cached run of the same steps), which is all it takes to see it and to time it; otherwise online KD trains as
# long as the cached run.
#
# *The words of this notebook are explained in the [glossary](../docs/glossary.md).*

# %% tags=["parameters"]
# Parameters (papermill replaces this cell's values; see params/*.yaml)
params_file = "../params/quick.yaml"
# The sandbox: overrides merged into the profile (for example {"distill": {"temperature": 8.0}}) and an
# experiment name; either one makes this notebook write under reports/sandbox/<experiment>/ only.
overrides = {}
experiment = None

# %%
from kdlib.pipeline.notebook import read_json, save_figure, start, step_dir, write_csv, write_metrics

STEP, cfg, out = start("02_distill", params_file, overrides=overrides, experiment=experiment)

# %% [markdown]
# ## Before training: what the student learns from
#
# A classifier ends in **logits**, one score per class; the softmax turns them into probabilities. A
# fine-tuned teacher puts most of the probability on its answer, but not all of it: the small probabilities
# it gives the other classes say which wrong answers are *nearly* right ("neutral" is closer to "positive"
# than "negative" is). Hinton et al. (2015) call this **dark knowledge**, and train the student on the whole
# distribution, the **soft targets**, as well as on the labels.
#
# The **temperature** T divides the logits before the softmax: T = 1 gives the teacher's probabilities,
# larger T flattens them, so the small ones grow and carry more of the signal. Here are this teacher's own
# soft targets for one validation sentence of each class, titled with its true class (log axes: on a linear
# axis the small probabilities, the point of it all, would be invisible). Where the teacher is wrong, how
# much probability does the true class keep, and what does a higher T do to it?

# %%
import torch

from kdlib.core import task
from kdlib.studies import train
from kdlib.teach import primer

teacher, tokenizer = train.load_teacher(cfg)
dsd, names, tok = task.task_data(cfg, tokenizer)
logits, texts = primer.example_logits(teacher, tokenizer, dsd, tok, names)
soft = primer.soft_targets(logits, names)
fig = primer.soft_target_figure(soft, texts)
save_figure(fig, out, "soft_targets")

# %% [markdown]
# ### The loss, in plain torch
#
# The student's loss mixes the two signals with a weight α:
#
# $$\mathcal{L} = \alpha \cdot \mathrm{CE}(y, p_s) + (1-\alpha) \cdot T^2 \cdot
# \mathrm{KL}\big(p_t^{(T)} \,\|\, p_s^{(T)}\big)$$
#
# where $p^{(T)} = \mathrm{softmax}(z / T)$ for the teacher's logits $z_t$ and the student's $z_s$. The
# soft-target term is four lines of torch; below it is checked against the loss the study trains with (the
# `soft_target` entry of kdlib's loss registry, at α = 0 so that only this term is left).

# %%
import torch.nn.functional as F

from kdlib.core.losses import get_loss


def soft_target_loss(student_logits, teacher_logits, T):
    """T² · KL(teacher ‖ student) at temperature T, averaged over the batch."""
    log_p_student = F.log_softmax(student_logits / T, dim=-1)
    p_teacher = F.softmax(teacher_logits / T, dim=-1)
    return T**2 * F.kl_div(log_p_student, p_teacher, reduction="batchmean")


torch.manual_seed(0)
student_logits = torch.randn(len(logits), len(names))
study_loss = get_loss("soft_target")
for T in (1.0, 2.0, 4.0, 10.0):
    ours = soft_target_loss(student_logits, logits, T)
    theirs = study_loss({"logits": student_logits}, {"logits": logits}, {}, alpha=0.0, temperature=T)["loss"]
    print(f"T = {T:>4}: {ours.item():.6f}, the study's {theirs.item():.6f}, equal: {torch.allclose(ours, theirs)}")

# %% [markdown]
# ### Why T²
#
# At temperature T the soft term's gradient with respect to the student's logits shrinks like 1/T² (the
# logits are divided by T, and the softened probabilities differ by about 1/T). Without a correction, raising
# T would quietly turn the soft term down against the CE term. Multiplying by T² gives it back its size, so
# α alone sets the balance. Five lines of autograd show it:

# %%
z_s = student_logits.clone().requires_grad_()
for T in (1.0, 2.0, 4.0, 8.0):
    (with_t2,) = torch.autograd.grad(soft_target_loss(z_s, logits, T), z_s)
    without = with_t2 / T**2  # the same term without the T² factor
    print(f"T = {T:>3}: gradient norm without T² {without.norm():.5f}, with T² {with_t2.norm():.4f}")

# %% [markdown]
# ### Which teacher layers the student starts from
#
# The student is not random: it copies the teacher's embeddings, heads and a subset of its layers, spread
# from the bottom to the top (DistilBERT's recipe). This notebook's student is the half-depth row.

# %%
depth = teacher.config.num_hidden_layers
fig = primer.layer_copy_figure(depth, sorted({1, cfg.distill.student.num_layers, depth}), cfg.distill.student.init)
save_figure(fig, out, "layer_copy")

# %% [markdown]
# ## Distilling the student

# %%
from kdlib.studies import plots, results

summary = train.launch("distill", cfg)
runs = summary["runs"]
teacher_metrics = read_json(step_dir(cfg.profile, STEP.needs[0]) / "metrics.json")
print(f"student: {cfg.distill.student.num_layers} layers copied from teacher layers {summary['student_layers']}, "
      f"{summary['student_params']['total']:,} parameters (teacher {summary['teacher_params']['total']:,})")
cache = summary["cache"]
print(f"teacher-output cache: {cache['rows']} rows, " + (f"built now in {cache['build_seconds']:.1f} s" if cache["built_now"]
      else f"read from disk in {cache['seconds']:.1f} s (it took {cache['build_seconds']:.1f} s to build)"))

# %% [markdown]
# ## Accuracy and cost
#
# Each run keeps its epoch with the best validation accuracy; that model is evaluated once on the test split.
# `cost_vs_nokd` is the training time (optimisation steps only: forward, backward and update) relative to
# the no-KD twin. Cached KD adds only the KL term; online KD adds a teacher forward pass per batch. The cache
# itself is built once (its time is printed above) and then serves every student of this teacher.
#
# Each run is one seed, scored once on the test split: the error bars are the 95% intervals of such an
# accuracy. Two bars whose intervals overlap this much are not shown to differ by one run; the study's
# verdicts (`kdstudy verdicts`) repeat the comparison over seeds.

# %%
table = results.runs_table(runs)
write_csv(out / "tables" / "runs.csv", table)
table

# %% [markdown]
# Online against cached KD, on the same steps: the same train loss and the same test accuracy say the teacher's
# cached outputs are exactly what it computes online; the seconds say what running it on every batch costs.

# %%
online_vs_cached = results.online_vs_cached_table(summary)
write_csv(out / "tables" / "online_vs_cached.csv", online_vs_cached)
online_vs_cached

# %%
from kdlib.teach import takeaways

n_test = takeaways.test_rows(cfg)
bars = table.assign(run=table["run"].str.replace(" (", "\n(", regex=False),
                    ci95=takeaways.ci95(table["test_accuracy"], n_test))
fig = plots.metric_bars(bars, x="run", y="test_accuracy", title=f"Test accuracy (95% intervals, {n_test} rows)",
                        ylabel="test accuracy", errors="ci95")
fig.axes[0].axhline(teacher_metrics["teacher_test_accuracy"], color="grey", linestyle=":", label="teacher")
fig.axes[0].legend(fontsize="small", loc="lower right")
save_figure(fig, out, "test_accuracy")

# %%
history = results.history_frame(runs)
write_csv(out / "tables" / "history.csv", history)
fig = plots.training_curves(history, "accuracy", title="Students: validation accuracy per epoch")
save_figure(fig, out, "history")

# %% [markdown]
# ## Speed on this machine
#
# Size and inference latency of the teacher and the student, timed in turn, call by call, on each route
# (warm-up passes, then timed rounds; median and p95): the speed-up is the median over rounds of the
# teacher's time over the student's in the same round. The CPU and thread count are part of every row.

# %%
from transformers import AutoModelForSequenceClassification

student = AutoModelForSequenceClassification.from_pretrained(out / "student_model")
bench = results.benchmark_models({"teacher": teacher, "student": student}, cfg.benchmark, baseline="teacher",
                                 cache_dir=out / "benchmarks")
write_csv(out / "tables" / "benchmark.csv", bench)
bench[[c for c in ("name", "runtime", "precision", "batch_size", "seq_len", "threads", "params", "size_mb",
                   "latency_ms_median", "latency_ms_p95", "throughput_per_s", "speedup_vs_teacher", "status")
       if c in bench.columns]]

# %%
timed = bench[bench["latency_ms_median"].notna()]
print(timed[["cpu_model", "cpu_flags", "threads"]].iloc[0].to_dict())
fig = plots.metric_bars(timed.assign(setting=timed["runtime"] + " " + timed["precision"] + ", batch "
                                     + timed["batch_size"].astype(str)),
                        x="setting", y="latency_ms_median", hue="name", title="Median latency",
                        ylabel="ms per batch", annotate="{:.1f}")
save_figure(fig, out, "latency")

# %% [markdown]
# ## Headline numbers
#
# `metrics.json` holds the numbers the report quotes. `cache_build_seconds` is the time it took to
# compute the teacher-output cache (when it was built in an earlier run, the time recorded then), and
# `cache_built_now` says whether this run built it.

# %%
metrics = results.distill_metrics(summary, bench, teacher_metrics["teacher_test_accuracy"])
write_metrics(out, metrics, required=STEP.metrics)

# %% [markdown]
# ## Your turn: the sandbox
#
# `sandbox.distil` trains one student of any depth, FFN width, T and α from the cached teacher outputs, on a
# subset of the training rows, in well under a minute here, and scores it on validation (the number to choose
# by) and test. It writes under `reports/sandbox/<experiment>/` only; asking again for the same student reads
# it back. (To re-run this whole notebook with other settings, set `overrides` in the parameters cell.)

# %%
import pandas as pd

from kdlib.teach import sandbox

tried = sandbox.distil(cfg, layers=1, temperature=4.0, alpha=0.5, rows=1000, epochs=2)
pd.DataFrame([tried])

# %% [markdown]
# ## Exercises
#
# Write each function and run its cell: `check` tries it on several cases against the library and says
# right or wrong, never the answer (a teacher's solutions: `kdlib/teach/solutions.py`).
#
# 1. `soften(logits, T)`: the class probabilities at temperature T (a tensor of logits in, probabilities out; no
#    `torch.softmax`).
#
# 2. `kd_loss(student_logits, teacher_logits, labels, alpha, T)`: the whole loss of the primer, α · CE with the
#    labels plus (1 − α) · T² · KL at temperature T (you may use `soft_target_loss` from the primer).
#
# 3. Predict first, then run: does T = 8 with α = 0.1 help the 1-layer student above, or hurt it? Run
#    `sandbox.distil(cfg, layers=1, temperature=8.0, alpha=0.1, rows=1000, epochs=2)` and compare validation
#    accuracies. Is the difference larger than the standard error of an accuracy on the validation split?

# %%
from kdlib.teach.exercises import check


def soften(logits, T):
    raise NotImplementedError("your code here")


check("soften", soften)


def kd_loss(student_logits, teacher_logits, labels, alpha, T):
    raise NotImplementedError("your code here")


check("kd_loss", kd_loss)

# %%
takeaways.show(takeaways.distill(metrics, n_test))
