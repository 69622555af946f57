# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 03 · A grid of students
#
# Jang (2021) distils its KcBERT teacher into **nine students**: 1, 3 or 6 layers, each with an
# FFN (intermediate) size of 192, 768 or 3072, the hidden size staying 768. Its Table 4 gives each
# student's parameters and prediction time; its Table 5 (accuracy per epoch) survives only as text:
# *model 5 (3 layers × 768) is best, peaking at epoch 20 with 92.4%, and students with ≥ 3 layers and
# ≥ 768 overfit.* From the timings it draws advice: **adding layers costs far more time than widening the
# FFN, so prefer fewer layers with a wider FFN.**
#
# This notebook rebuilds that grid and tests the advice on this machine:
#
# 1. the seed's nine architectures, rebuilt from configuration alone, against its parameter counts;
# 2. the grid distilled from one teacher through the teacher-output cache (the profile's grid; `quick`
#    scales {1, 3, 6} × {192, 768, 3072} to MiniLM's 6 layers and hidden 384: {1, 2, 3} × {96, 384, 1536});
# 3. two ways to start a student: copying teacher layers (DistilBERT's way), or general distillation on
#    unlabelled text first (the seed's way), both followed by the same task distillation;
# 4. size, latency, FLOPs and accuracy of every student, measured in one process;
# 5. the timing advice, fitted and tested.
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

STEP, cfg, out = start("03_grid", params_file, overrides=overrides, experiment=experiment)

# %% [markdown]
# ## The seed's nine students, from configuration alone
#
# The seed's Table 4 counts come to the unit from DistilBERT's masked-language model with a vocabulary of
# 30,000, 300 positions and hidden size 768 (its output projection tied to the embeddings): the students
# came from *pre-training* distillation (its section 3.1), then fine-tuning. Built from configuration
# only, with no weights, this runs offline on any machine. `params_classifier` is the 3-label classifier
# fine-tuned from each.

# %%
import dataclasses

from kdlib.core.task import task_data
from kdlib.studies import grid, plots, results, train

paper_arch = grid.paper_architecture_table()
write_csv(out / "tables" / "table4_paper_architecture.csv", paper_arch)
matches = int((paper_arch["difference"] == 0).sum())
print(f"{matches} of {len(paper_arch)} parameter counts equal the paper's to the unit")
paper_arch

# %% [markdown]
# ## Distilling the grid
#
# Every student starts as a copy of teacher layers (evenly spaced; a narrower FFN keeps the teacher's first
# neurons) and learns the task from the teacher's cached logits (α·CE + (1−α)·T²·KL, the same loss as step
# 02). Each epoch is evaluated on the validation split; the best epoch is tested once. Finished students
# are reused on a rerun, and a killed run resumes with the students it has not finished.

# %%
summary = grid.distil_grid(cfg)
runs = summary["runs"]
teacher_metrics = read_json(step_dir(cfg.profile, "01_teacher") / "metrics.json")
teacher_accuracy = teacher_metrics["teacher_test_accuracy"]
print(f"{len(runs)} students trained or reused; teacher test accuracy {teacher_accuracy:.4f}")

# %% [markdown]
# ## Configurations (Jang 2021, Table 3)

# %%
teacher, tokenizer = train.load_teacher(cfg)
layer_copy = [n for n, r in runs.items() if r["route"] == "layer copy"]
students = grid.load_students(out, layer_copy)
table3 = grid.table3(teacher, students, f"teacher ({cfg.teacher.model})")
write_csv(out / "tables" / "table3.csv", table3)
table3

# %% [markdown]
# ## Accuracy per epoch (Jang 2021, Table 5)
#
# The seed's Table 5 is lost; its text says model 5 (3 layers × 768) peaks at epoch 20, and that students
# with at least 3 layers and an FFN of at least 768 overfit. Validation accuracy per epoch of every
# student is below; the sentence after the figure says what ours show.

# %%
import pandas as pd

history = pd.concat([pd.DataFrame(r["history"]).assign(student=name, layers=r["layers"], ffn=r["ffn"], route=r["route"])
                     for name, r in runs.items()], ignore_index=True)
write_csv(out / "tables" / "history.csv", history)
fig = plots.training_curves(history, "accuracy", hue="student", title="Students: validation accuracy per epoch")
save_figure(fig, out, "history")

# %%
peaks = history.loc[history.groupby("student")["accuracy"].idxmax(), ["student", "epoch", "accuracy"]]
best = peaks.sort_values("accuracy").iloc[-1]
last_epoch = history["epoch"].max()
declined = [s for s, h in history.groupby("student") if h["accuracy"].iloc[-1] < h["accuracy"].max() - 0.005]
print(f"Best validation accuracy: {best.student}, {best.accuracy:.4f} at epoch {best.epoch:g} of {last_epoch:g}. "
      f"Students whose last epoch is more than half a point below their best (a sign of overfitting): "
      f"{', '.join(declined) or 'none'}. With {last_epoch:g} epoch{'s' if last_epoch != 1 else ''} (the seed trained "
      "20 or more) these curves cannot show overfitting late in training.")

# %% [markdown]
# ## Size and speed
#
# The teacher and every student, timed in turn, call by call, with PyTorch fp32 (warm-up passes, then timed
# rounds; median and p95), at batch 1 and 32: each speed-up is the median over rounds of the teacher's time
# over the student's in the same round. "Prediction time" is the seed's quantity: the
# wall time to predict the whole test split.

# %%
bench_settings = dataclasses.replace(cfg.benchmark, runtimes=["torch"], precisions=["fp32"])
bench = results.benchmark_models({"teacher": teacher, **students}, bench_settings, baseline="teacher",
                                 cache_dir=out / "benchmarks")
write_csv(out / "tables" / "benchmark.csv", bench)
_, names, tok = task_data(cfg, tokenizer)
pred_seconds = grid.prediction_seconds({"teacher": teacher, **students}, tok["test"], tokenizer,
                                       cfg.grid.eval_batch_size, out)
table4 = grid.table4(summary, bench, pred_seconds, teacher_accuracy, cfg.benchmark.seq_len,
                     teacher.config.hidden_size, teacher.config.num_labels)
write_csv(out / "tables" / "table4.csv", table4)
table4

# %% [markdown]
# ## The grid at a glance
#
# Accuracy, latency at batch 1, and accuracy retained per unit of time: (student accuracy / teacher
# accuracy) / (student latency / teacher latency). Above 1, a student gives back more time than accuracy.

# %%
ok_rows = bench[(bench.status == "ok")].set_index(["name", "batch_size"])
lat = ok_rows["latency_ms_median"]
speedup = ok_rows["speedup_vs_teacher"]  # teacher and student timed in turn, the median over rounds
grid_rows = table4[table4.route == "layer copy"].assign(
    retention_per_time=lambda t: t["retention"] * t["student"].map(lambda n: speedup[(n, 1)]))
for value, title, fmt, label in (("test_accuracy", "Test accuracy", ".3f", "accuracy"),
                                 ("latency_bs1_ms_median", "Latency, batch 1 (ms)", ".1f", "ms"),
                                 ("retention_per_time", "Accuracy retained per unit of time", ".2f", "retention / time")):
    fig = plots.grid_heatmap(grid_rows, value, title, fmt=fmt, label=label)
    save_figure(fig, out, {"test_accuracy": "heatmap_accuracy", "latency_bs1_ms_median": "heatmap_latency",
                           "retention_per_time": "heatmap_retention_per_time"}[value])

# %% [markdown]
# ## Does a layer cost more than a wider FFN?
#
# Time is fitted as t = t₀ + L·(a + b·FFN): each layer costs a fixed part (attention, norms) plus a part
# that grows with its FFN. From the fit: the marginal cost of one more layer (at the grid's middle FFN
# size), and the cost of widening a layer's FFN from the smallest to the largest size. Their ratio above 1
# means the seed's advice holds: grow a student by widening, not by deepening. The paper's own Table 4 is
# fitted the same way, in its last row.

# %%
big = max(cfg.benchmark.batch_sizes)  # the profile's large batch (32 in every shipped profile)
teacher_latency = {1: lat[("teacher", 1)], big: lat[("teacher", big)]}
finding = grid.timing_finding(table4, teacher_latency)
write_csv(out / "tables" / "timing_finding.csv", finding)
for row in finding.itertuples():
    print(f"{row.setting}: a layer costs {row.layer_cost_at_middle_ffn:.2f} {row.unit} (FFN {row.middle_ffn:g}), "
          f"widening its FFN across the grid {row.ffn_widening_cost_one_layer:.2f} {row.unit}; ratio "
          f"{row.layer_vs_ffn_time_ratio:.2f}: the advice {'holds' if row.advice_holds else 'does not hold'} (R² {row.r2:.3f})")
finding

# %%
long = table4[table4.route == "layer copy"].melt(id_vars=["layers", "ffn"], value_vars=["latency_bs1_ms_median", "latency_bs32_ms_median"],
                                                 var_name="batch", value_name="ms")
long["batch"] = long["batch"].map({"latency_bs1_ms_median": "batch 1", "latency_bs32_ms_median": "batch 32"})
fig = plots.time_vs_shape(long)
save_figure(fig, out, "time_vs_shape")

# %% [markdown]
# ## Speed-up against FLOPs
#
# A student with half the teacher's layers does about half its multiply-adds (FLOPs below count the
# matrix products, per sample, at the benchmark's sequence length). Its measured speed-up over the FLOP
# ratio says how much of the saving the runtime turns into time: 1 is all of it. Where it falls short, a
# profile of one forward pass at batch 1 shows where the rest of the time goes.

# %%
from kdlib.compress.flops import model_flops

half = [n for n in layer_copy if runs[n]["layers"] == teacher.config.num_hidden_layers // 2]
widest_half = max(half, key=lambda n: runs[n]["ffn"])
flop_ratio = model_flops(teacher, cfg.benchmark.seq_len) / model_flops(students[widest_half], cfg.benchmark.seq_len)
speedups = {b: speedup[(widest_half, b)] for b in teacher_latency}
for b, s in speedups.items():
    print(f"{widest_half} at batch {b}: {s:.2f}x faster, FLOP ratio {flop_ratio:.2f}, speed-up / FLOP ratio {s / flop_ratio:.2f}")
profile = pd.concat([grid.profile_forward(m, b, cfg.benchmark.seq_len).assign(model=name, batch_size=b)
                     for b in teacher_latency for name, m in (("teacher", teacher), (widest_half, students[widest_half]))],
                    ignore_index=True)
write_csv(out / "tables" / "profile.csv", profile)
# Time outside the matrix products (what FLOPs do not count), as a share of each forward pass
not_matmul = profile[~profile.operator.str.contains("mm|matmul|linear|attention", regex=True)]
print(not_matmul.groupby(["batch_size", "model"])["share"].sum().round(3).to_string())
profile

# %% [markdown]
# ## What the cache saves, and what general distillation adds
#
# Online KD runs the teacher on every batch of every epoch of every student; cached KD runs it once.
# The cost of the grid both ways comes from the two probe students trained both ways (seconds per epoch of
# optimisation steps); the cached cost includes building the cache once. Cached and online KD see the same
# logits, so they reach the same accuracy (step 02 checks this on one student).

# %%
cost = grid.cached_over_online_cost(summary, cfg.grid.epochs)
print(f"Grid from the cache: {cost['grid_cached_seconds']:.0f} s; with the teacher online: {cost['grid_online_seconds']:.0f} s; "
      f"ratio {cost['grid_cached_over_online_cost']:.2f} (probe students alone: {cost['probe_cached_over_online']:.2f})")
gd_rows = table4[table4.route == "general distillation"]
gains = {}
for row in gd_rows.itertuples():
    twin = table4[(table4.student == grid.shape_name(row.layers, row.ffn))].iloc[0]
    gains[row.layers] = 100 * (row.test_accuracy - twin.test_accuracy)
    print(f"{twin.student}: layer copy {twin.test_accuracy:.4f}, general distillation first {row.test_accuracy:.4f} "
          f"({gains[row.layers]:+.2f} points)")

# %% [markdown]
# ## Headline numbers
#
# The best half-depth student and the best student overall are **chosen on validation accuracy** (the
# `val_accuracy` column of table4, at each student's kept epoch) and **scored on test**:
# `best_half_depth_retention` is the chosen student's test accuracy over the teacher's test accuracy. Taking
# the highest of many test accuracies instead would report the luckiest student on the test split, an
# optimistic number.

# %%
best_half = grid.best_student(table4, teacher.config.num_hidden_layers // 2)
best_any = grid.best_student(table4)
print(f"chosen on validation: half depth {best_half.student} (validation {best_half.val_accuracy:.4f}, test "
      f"{best_half.test_accuracy:.4f}); overall {best_any.student} (validation {best_any.val_accuracy:.4f}, test "
      f"{best_any.test_accuracy:.4f})")
half_gain = gains.get(teacher.config.num_hidden_layers // 2, float("nan"))
metrics = {
    "teacher_test_accuracy": teacher_accuracy,
    "best_half_depth_student": best_half.student,
    "best_half_depth_val_accuracy": float(best_half.val_accuracy),
    "best_half_depth_retention": float(best_half.retention),
    "best_student": best_any.student,
    "best_student_test_accuracy": float(best_any.test_accuracy),
    "half_depth_flop_ratio": flop_ratio,
    "speedup_over_flop_ratio_bs1": speedups[1] / flop_ratio,
    "speedup_over_flop_ratio_bs32": speedups[max(speedups)] / flop_ratio,
    "grid_cached_over_online_cost": cost["grid_cached_over_online_cost"],
    "general_distill_gain_pp": half_gain,
    "general_distill_gain_1layer_pp": gains.get(1, float("nan")),
    "layer_vs_ffn_time_ratio": float(finding.set_index("setting").loc[f"batch {big}", "layer_vs_ffn_time_ratio"]),
    "layer_vs_ffn_time_ratio_bs1": float(finding.set_index("setting").loc["batch 1", "layer_vs_ffn_time_ratio"]),
    "layer_vs_ffn_time_ratio_paper": float(finding.iloc[-1]["layer_vs_ffn_time_ratio"]),
    "paper_params_matched": matches,
}
write_metrics(out, metrics, required=STEP.metrics)

# %% [markdown]
# ## Exercises
#
# Write each function and run its cell: `check` tries it on several cases against the library and says
# right or wrong, never the answer (a teacher's solutions: `kdlib/teach/solutions.py`).
#
# 1. `bert_parameters(vocab, positions, hidden, layers, ffn, labels)`: the parameters of a BERT classifier:
#    embeddings (with 2 token types and a LayerNorm), each layer's attention and FFN (each with a LayerNorm), the
#    pooler and the classifier. Check your function against Table 4 of Jang (2021).
#
# 2. `really_differ(acc_a, acc_b, n)`: True when the 95% interval of the difference of two accuracies, each
#    measured on its own `n` examples, excludes zero. Which cells of the grid really differ from the best one?.

# %%
from kdlib.teach.exercises import check


def bert_parameters(vocab, positions, hidden, layers, ffn, labels):
    raise NotImplementedError("your code here")


check("bert_parameters", bert_parameters)


def really_differ(acc_a, acc_b, n):
    raise NotImplementedError("your code here")


check("really_differ", really_differ)

# %%
from kdlib.teach import takeaways

takeaways.show(takeaways.grid(metrics))
