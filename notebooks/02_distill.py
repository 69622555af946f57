# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
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
# Cached and online KD see the same numbers, so they should reach the same accuracy; what differs is the cost.

# %% tags=["parameters"]
# Parameters (papermill replaces this cell's values; see params/*.yaml)
params_file = "../params/quick.yaml"

# %%
from kdlib.pipeline.notebook import read_json, save_figure, start, step_dir, write_csv, write_metrics

STEP, cfg, out = start("02_distill", params_file)

# %%
from kdlib.studies import plots, results, train

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

# %%
table = results.runs_table(runs)
write_csv(out / "tables" / "runs.csv", table)
table

# %%
bars = table.assign(run=table["run"].str.replace(" (", "\n(", regex=False))
fig = plots.metric_bars(bars, x="run", y="test_accuracy", title="Test accuracy",
                        ylabel="test accuracy")
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

teacher, _ = train.load_teacher(cfg)
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
metrics
