# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 06 · SQuAD question answering on a Raspberry-Pi-5 budget
#
# Im, Kim & Suh run BERT-base and DistilBERT on SQuAD on a Raspberry Pi 5 and reports
# EM 54.93 / F1 72.36 in 13,220 s against EM 52.79 / F1 70.44 in 6,506 s: DistilBERT is **2.03× faster**
# at 2 F1 points less. It does not say which split, how many questions, the sequence length, the stride,
# the batch or the threads.
#
# This notebook repeats the experiment at a scale that fits 10 minutes on 2 CPU cores:
#
# 1. a **teacher**: MiniLM (6 layers, hidden 384) fine-tuned for extractive QA on a SQuAD v1.1 train subset;
# 2. **students** (`edge.students`: quick has the half-depth one, the DistilBERT analogue; `full` adds one of a
#    single layer), initialised from teacher layers and its QA head and distilled from the teacher's **start
#    and end distributions** (soft-target KD on both, plus the gold span loss), each beside a **no-KD twin**
#    trained on the gold spans alone. The KD students also learn from a **transfer set**: more train
#    questions whose answers are never read, labelled by the teacher (`edge.transfer_size`). That is what KD
#    offers and a twin cannot use: a teacher answers any question for free;
# 3. the **official SQuAD v1.1 EM and F1** on validation questions (all their reference answers);
# 4. a **`pi5` benchmark profile**: one question at a time (batch 1), `edge.threads` threads (a Pi 5 has four
#    cores) where the machine has them, each model on each runtime in a fresh process (`kdstudy bench`), so
#    that its peak memory is its own.
#
# **Long contexts** are cut into windows of `max_length` tokens that overlap by `stride` tokens; the answer
# is the best start + end score over all windows of a question, at most `max_answer_length` tokens long.
#
# **Inferred answer offsets.** The SQuAD copy used here was rebuilt from the official per-article pages,
# which show the answer text but not its position; where the text occurs more than once in the context
# (about 11% of train answers, by the data copy's README) the position was inferred, and by its check about
# 2% of train answers point at another occurrence of the same string. Training then teaches those spans at
# a wrong place (label noise on the start/end positions); evaluation is unaffected, since EM and F1 compare
# answer *texts*.
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
import os
import time

from kdlib.pipeline.notebook import save_figure, start, write_csv, write_metrics

started = time.perf_counter()
STEP, cfg, out = start("06_edge_benchmark", params_file, overrides=overrides, experiment=experiment)
edge = cfg.edge

# %% [markdown]
# ## The budget, and the sizes it allows
#
# Training speed decides the sizes: `compute.precision: auto` trains under bf16 autocast where the CPU has
# native bf16, which is faster than fp32. The training runs (the teacher, each student and its twin; a
# half-depth student costs less than the teacher per epoch) must share the 10 minutes with evaluation and
# the benchmark, so the quick profile trains on `train_size` questions (and `transfer_size` that only the
# teacher labels), the teacher for `epochs` epochs and the students for `student_epochs`, and scores
# `eval_size` validation questions (the counts are printed below). The teacher labels the transfer set
# under bf16 autocast where training uses it (faster, with the same most likely start and end). A teacher
# trained on so few questions is far from a SQuAD-scale one (SQuAD v1.1 has 87,599 training questions):
# its absolute EM/F1 are low, and the comparisons (student vs teacher, KD vs no KD, runtime vs runtime) are
# what this notebook measures. The quick profile's choices, and the settings measured against them, are
# written beside its `edge:` values in params/quick.yaml.

# %%
import pandas as pd

from kdlib.core import squad as qa
from kdlib.studies.edge import step as step06

trained = step06.train_models(cfg, out)
runs = trained["runs"]
print(f"train: {len(trained['examples']['train'])} questions -> {len(trained['datasets']['train'])} windows; "
      f"transfer (teacher-labelled): {len(trained['examples']['transfer'])} questions -> "
      f"{len(trained['datasets']['transfer'])} windows; "
      f"select: {len(trained['examples']['select'])}; eval: {len(trained['examples']['eval'])} questions -> "
      f"{len(trained['datasets']['eval_windows'])} windows; bf16 training: {trained['bf16']}")
for name, run in runs.items():
    print(f"{name:<18} best epoch {run['best_epoch']}, {run['train_step_seconds']:.0f} s of training steps"
          + (" (recorded earlier)" if run.get("reused") else ""))

# %%
history = pd.concat([pd.DataFrame(run["history"]).assign(run=name) for name, run in runs.items()],
                    ignore_index=True)
write_csv(out / "tables" / "history.csv", history)
from kdlib.studies import plots

fig = plots.training_curves(history, "span_exact", title="Held-out train questions: exact token span per epoch")
save_figure(fig, out, "history")

# %% [markdown]
# ## EM and F1 on the validation questions
#
# The official SQuAD v1.1 rules (`kdlib.core.squad.squad_scores`): lower case; punctuation, the articles a/an/the
# and extra whitespace removed; exact match and token F1 each take the **maximum over the reference
# answers** (SQuAD dev has up to three per question). Two trivial answers give the floor: the context's
# first sentence, and 1–4 random consecutive words.

# %%
scores = pd.DataFrame(step06.score_models(trained, edge, out))
write_csv(out / "tables" / "scores.csv", scores)
scores.round(2)

# %%
import matplotlib.pyplot as plt
import seaborn as sns

long = scores.melt(id_vars="model", value_vars=["exact_match", "f1"], var_name="metric", value_name="score")
fig, ax = plt.subplots(figsize=(7, 3.8))
sns.barplot(data=long, y="model", x="score", hue="metric", ax=ax)
ax.set(xlabel="score (%)", ylabel="", title=f"SQuAD v1.1: {len(trained['examples']['eval'])} validation questions")
save_figure(fig, out, "scores")

# %% [markdown]
# ## Im, Kim & Suh's EM–F1 gap
#
# Im, Kim & Suh's F1 is 17.4 (BERT-base) and 17.7 (DistilBERT) points above its EM, where the DistilBERT paper
# reports gaps of 7.3 and 8.1 on SQuAD v1.1 dev (81.2/88.5 and 77.7/85.8). Below, our own predictions are
# scored again with plausible shortcuts: answers not normalised, only the first reference answer, or both.
# Whichever shortcut widens our gap the way Im, Kim & Suh's is wide is a candidate explanation; it is not proof.

# %%
import json

refs = qa.references_of(trained["examples"]["eval"])
gap_rows = []
for name in runs:
    predictions = json.loads((out / "predictions" / f"{name}.json").read_text())
    gap_rows += [{"model": name, **row} for row in qa.gap_analysis(predictions, refs)]
gap = pd.DataFrame(gap_rows)
write_csv(out / "tables" / "evaluation_gap.csv", gap)
gap.pivot(index="evaluation", columns="model", values="gap").round(1)

# %% [markdown]
# ## The `pi5` profile: every model on every runtime
#
# Each variant runs `kdstudy bench` in its own process on the same questions (written to
# `device/questions.json`, the file a Raspberry Pi gets): batch 1, `threads` threads capped at this
# machine's cores, three warm-up questions, then every question timed end to end (windows, forward passes,
# span extraction). Every model runs PyTorch fp32 (the teacher fp32 is what every speed-up compares with);
# the half-depth student also runs every precision of every runtime in `edge.runtimes`, any other student
# ONNX Runtime's dynamic int8. A route this machine refuses (bf16 without native bf16, a
# runtime not installed) is listed with the reason; a route that runs but answers worse shows it in its F1.

# %%
questions_file = out / "device" / "questions.json"
questions_sha = step06.write_device_questions(trained["examples"]["eval"], edge, questions_file)
variants = pd.DataFrame(step06.benchmark_variants(trained, edge, out, questions_file, questions_sha))
cols = ["model", "runtime", "precision", "status", "artifact", "threads", "questions", "exact_match", "f1", "total_seconds",
        "p50_ms", "p95_ms", "peak_rss_mb", "model_size_mb"]
variants = variants.reindex(columns=cols)
write_csv(out / "tables" / "variants.csv", variants)
print(f"CPU: {os.cpu_count()} logical cores; threads used: {sorted(variants['threads'].dropna().astype(int).unique())}")
variants.round(2)

# %%
fig = step06.variants_figure(variants)
save_figure(fig, out, "variants")

# %% [markdown]
# ### The speed-ups, timed in turn
#
# The runs above are separate processes, minutes apart: each has its own peak memory, but on a shared
# machine the speed of the CPU drifts between them (the ratio of two such runs of the same two models moves
# from one pair of runs to the next). The speed-ups that Table 2 and `metrics.json` quote are therefore
# measured the way a ratio should be: `kdstudy bench --baseline` loads the student and the teacher in one
# process and has them answer each question in turn, the order alternating, so that both see the same
# machine. (ONNX Runtime's threads are told not to spin after each call, or they would take the cores from
# the teacher timed next.)
#
# A half-depth student runs half the layers, but not half of everything: the embeddings, the span head,
# tokenising the question into windows and extracting the span cost it as much as the teacher, so in the
# same runtime its speed-up is smaller than the ratio of their layers.

# %%
pairs = pd.DataFrame(step06.paired_speedups(trained, variants.to_dict("records"), edge, out, questions_file,
                                            questions_sha))
write_csv(out / "tables" / "paired_speedups.csv", pairs)
pairs.round(2)

# %% [markdown]
# ## Measured on a device
#
# To add a real Raspberry Pi 5, copy a model folder of `models/` (or an `.onnx` file of it) and
# `device/questions.json` to the Pi, run `kdstudy bench` there (see the README), and put the JSON it writes
# into this step's `device_results/` folder. Every JSON found there becomes a row below and a device column
# of Table 2.

# %%
device = pd.DataFrame(step06.device_results(out / "device_results"))
write_csv(out / "tables" / "device_results.csv", device)
device if len(device) else print("no device results yet (device_results/ is empty)")

# %% [markdown]
# ## Im, Kim & Suh's Table 2, with ours beside it
#
# Our times are the `pi5` profile's totals over our questions on this machine, PyTorch fp32, each student
# timed in turn with the teacher (above); the paper's are over an unknown number of questions on a
# Raspberry Pi 5 with TensorFlow. Compare the ratios, not the seconds.

# %%
# The half-depth student stands beside DistilBERT; without one (the smoke profile), the first student.
half = step06.half_depth_student(edge, trained["teacher_layers"])
half_name = step06.student_name(step06.headline_student(edge, trained["teacher_layers"]), kd=True)
table2 = step06.table2(scores, pairs, device, [n for n in runs if runs[n].get("kd") is not False], half_name,
                       half is not None)
write_csv(out / "tables" / "table2.csv", table2)
table2.round(2)

# %% [markdown]
# ## Teaching figures
#
# **Softmax temperature.** Knowledge distillation compares softened distributions, softmax(z / T). Below,
# the teacher's start logits for one validation window at T = 1, 3 and 10: at T = 1 nearly all mass sits on
# a few tokens; at T = 10 the ranking of the other tokens, the "dark knowledge" a student can learn from,
# becomes visible.

# %%
import torch
from transformers import AutoModelForQuestionAnswering

teacher = AutoModelForQuestionAnswering.from_pretrained(runs["teacher"]["model_dir"]).eval()
first = trained["datasets"]["eval"][0]
with torch.no_grad():
    start_logits = teacher(**{k: torch.tensor([first[k]]) for k in qa.TOKEN_INPUTS}).start_logits[0].numpy()
temps = step06.temperature_table(start_logits, (1.0, 3.0, 10.0))
write_csv(out / "tables" / "softmax_temperature.csv", temps)
save_figure(step06.temperature_figure(temps, "The teacher's start distribution at three temperatures"), out,
            "softmax_temperature")

# %% [markdown]
# **DistilBERT's triple loss** is α·KL(teacher ‖ student, at T) + β·MLM + γ·cosine(hidden states). Its terms
# are computed here by `kdlib.core.losses.distilbert_triple_loss` on one batch of our windows (15% of tokens
# masked), for a half-depth student made from MiniLM. **MiniLM ships without its masked-LM head**, so teacher
# and student share one freshly initialised head (its decoder tied to the word embeddings): the terms are
# computed exactly as DistilBERT's pre-training computes them, but their sizes are those of an untrained head
# (the MLM term is near ln(vocabulary size)), so read the figure for the weighting, not the values. Im, Kim & Suh
# writes weights that sum to 1 and no T²; Hugging Face's DistilBERT uses 5, 2 and 1, with T² on the KL term.

# %%
terms, n_masked = step06.triple_loss_terms(edge.teacher, trained["datasets"]["eval"], max(1, trained["teacher_layers"] // 2),
                                       seed=cfg.seed)
print(f"{n_masked} masked tokens; terms: " + ", ".join(f"{k} {v:.3f}" for k, v in terms.items()))
fig, triple = step06.triple_loss_figure(terms)
write_csv(out / "tables" / "triple_loss.csv", triple)
save_figure(fig, out, "triple_loss")

# %% [markdown]
# ## Headline numbers
#
# `student_*` is the half-depth KD student; `student_speedup` the teacher's PyTorch fp32 time over its own,
# and `quantized_student_speedup` the fp32 teacher's time over its quantized route's, both timed in turn
# with the teacher in one run. The quantized route is chosen for this CPU: the two fastest of the student's
# int8 and bf16 variants (each in its own run) that keep 97% of its fp32 F1 on the validation questions
# (else the most accurate of them) are timed in turn with the teacher above, and the faster there is
# quoted, `quantized_student_route`.
#
# `student_f1_retention` is the student's F1 over the teacher's. Im, Kim & Suh's DistilBERT keeps 97% (70.44 of
# 72.36), but DistilBERT was distilled on a general corpus before its SQuAD fine-tuning. Two things decided
# our student (measured during development; params/quick.yaml notes the settings tried beside its `edge:`
# values): which teacher layers it starts from (`edge.student_init`), and the transfer set, the questions
# only the teacher answers (`edge.transfer_size`). Its learning rate, epochs, KD weight and temperature
# moved it little.
#
# **The retention below is optimistic.** The edge settings (the student's starting layers, the transfer
# set's size, the learning rates and epochs) were chosen on the same `eval_size` validation questions that
# score EM and F1 here: a setting kept because it scored well on these questions is partly kept for its
# luck on them. Only the choice of starting layers was checked on other validation questions; a fair
# retention needs the settings re-tuned on questions this notebook does not score.
#
# One profile run is one seed: `kdstudy verdicts --claim edge_speedup` repeats the student over the
# profile's seeds.

# %%
t2 = table2.set_index("model")
chosen = step06.quoted_route(pairs, half_name)
int8 = (pairs.query("model == @half_name and runtime == @chosen[0] and precision == @chosen[1] and status == 'ok'")
        if len(pairs) and chosen else pairs.iloc[0:0])
metrics = {
    "teacher_em": float(t2.loc["teacher", "EM"]), "teacher_f1": float(t2.loc["teacher", "F1"]),
    "student_em": float(t2.loc[half_name, "EM"]), "student_f1": float(t2.loc[half_name, "F1"]),
    "student_speedup": float(t2.loc[half_name, "speedup"]),
    "quantized_student_speedup": float(int8["speedup"].iloc[0]) if len(int8) else float("nan"),
    "quantized_student_f1": float(int8["f1"].iloc[0]) if len(int8) else float("nan"),
    "quantized_student_route": "/".join(chosen) if chosen else None,
    "student_f1_retention": float(t2.loc[half_name, "F1"] / t2.loc["teacher", "F1"]) if t2.loc["teacher", "F1"] else float("nan"),
    "eval_questions": len(trained["examples"]["eval"]),
    "bench_threads": int(variants["threads"].dropna().iloc[0]),
}
write_metrics(out, metrics, required=STEP.metrics)
print(f"student F1 retention {metrics['student_f1_retention']:.3f} (settings tuned on these same "
      f"{metrics['eval_questions']} questions: optimistic)")
# Wall time of this run (not a metric: a rerun that reuses every unit must give the same metrics).
print(f"notebook wall time: {time.perf_counter() - started:.0f} s")

# %% [markdown]
# ## Exercises
#
# Write each function and run its cell: `check` tries it on several cases against the library and says
# right or wrong, never the answer (a teacher's solutions: `kdlib/teach/solutions.py`).
#
# 1. `exact_match(prediction, answer)`: 1.0 when the normalised texts are equal (lower case, no punctuation, no
#    articles a/an/the, single spaces), else 0.0.
#
# 2. `squad_f1(prediction, answer)`: SQuAD's token F1 of the normalised texts: the harmonic mean of the share of
#    predicted tokens in the answer and the share of answer tokens predicted.

# %%
from kdlib.teach.exercises import check


def exact_match(prediction, answer):
    raise NotImplementedError("your code here")


check("exact_match", exact_match)


def squad_f1(prediction, answer):
    raise NotImplementedError("your code here")


check("squad_f1", squad_f1)

# %%
from kdlib.teach import takeaways

takeaways.show(takeaways.edge(metrics))
