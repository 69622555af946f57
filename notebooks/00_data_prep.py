# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 00 · Data preparation
#
# Jang (2021) classifies 5,000 Korean car-news items into **neutral, positive and negative**
# (about 3 : 1 : 1) and splits them 8 : 1 : 1. That crawl is not public, so the study uses the closest
# public task: **Financial PhraseBank** (Malo et al., 2014), about 4,850 English financial-news sentences
# labelled by annotators, with the same three classes and the same neutral-heavy balance. A Korean
# translation of it (`fin_sentiment_ko`) serves the Korean track.
#
# A profile on your own data (`kdstudy init`) reads your file instead; everything below applies to it as is.
#
# This notebook loads the profile's dataset, draws the profile's seeded, stratified subset, and records
# what every later step trains on: the class balance (Jang 2021, Table 1) and the text lengths, which fix
# how much a `max_length` truncates.
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

STEP, cfg, out = start("00_data_prep", params_file, overrides=overrides, experiment=experiment)

# %%
from kdlib.core import data, datafile, models, task
from kdlib.studies import plots

dsd = task.prepare(cfg.data, cfg.seed)   # the profile's subset (stratified, seeded); the whole split when sizes are null
dsd

# %% [markdown]
# ## Class balance
#
# Table 1 of Jang (2021) gives its class ratio (neutral : positive : negative ≈ 3 : 1 : 1); Financial PhraseBank
# is even more neutral-heavy. On any dataset, a classifier that always answers the largest class scores the
# majority share below: the floor every model must beat.

# %%
balance = data.class_balance(dsd)
write_csv(out / "tables" / "class_balance.csv", balance)
balance.pivot(index="split", columns="label", values="count")

# %%
fig = plots.class_balance(balance, title=f"{cfg.data.dataset}: class share per split")
save_figure(fig, out, "class_balance")

# %% [markdown]
# ## Duplicates and leaks
#
# A text that appears twice in train counts twice; one that appears in train and in test lets a model score
# by memory. Nothing is dropped here (the sources' own rows are kept): the counts say how much it could matter.

# %%
overlaps = datafile.overlaps(dsd)
write_csv(out / "tables" / "overlaps.csv", overlaps)
overlaps

# %% [markdown]
# ## Text length
#
# Sentences are short: the profile's `max_length` should cut almost nothing. The share truncated is
# recorded below; batches are padded to their longest row, so a generous `max_length` costs nothing.

# %%
tokenizer = models.load_tokenizer(cfg.teacher.model)
stats = data.length_stats(dsd, tokenizer)
write_csv(out / "tables" / "length_stats.csv", stats)
stats

# %%
lengths = data.token_lengths(dsd, tokenizer)
fig = plots.token_lengths(lengths, cfg.data.max_length)
save_figure(fig, out, "token_lengths")
truncated = float((lengths["tokens"] > cfg.data.max_length).mean())
print(f"share of texts longer than max_length={cfg.data.max_length}: {truncated:.2%}")

# %%
test_counts = balance[balance.split == "test"]
metrics = {
    "dataset": cfg.data.dataset,
    "n_train": len(dsd["train"]), "n_validation": len(dsd["validation"]), "n_test": len(dsd["test"]),
    "n_classes": len(dsd["train"].features["label"].names),
    "majority_share_test": float(test_counts["count"].max() / test_counts["count"].sum()),
    "truncated_share": truncated,
    "duplicate_rows": int(overlaps["duplicate_rows"].sum()),
    "texts_shared_between_splits": int(overlaps["shared_texts"].sum()),
}
write_metrics(out, metrics, required=STEP.metrics)

# %% [markdown]
# ## Exercises
#
# Write each function and run its cell: `check` tries it on several cases against the library and says
# right or wrong, never the answer (a teacher's solutions: `kdlib/teach/solutions.py`).
#
# 1. `majority_baseline(labels)`: the accuracy of always predicting the most common label (a list of labels in, a
#    share out).
#
# 2. `truncated_share(lengths, max_length)`: the share of texts longer than `max_length` tokens.

# %%
from kdlib.teach.exercises import check


def majority_baseline(labels):
    raise NotImplementedError("your code here")


if check("majority_baseline", majority_baseline):
    print("on this test split:", majority_baseline(list(dsd["test"]["label"])))


def truncated_share(lengths, max_length):
    raise NotImplementedError("your code here")


if check("truncated_share", truncated_share):
    print("on the train split:", truncated_share(list(lengths["tokens"]), cfg.data.max_length))

# %%
from kdlib.teach import takeaways

takeaways.show(takeaways.data_prep(metrics))
