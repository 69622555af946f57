"""Step 05 (seed 003, heterogeneous KD): the loss at the paper's settings, the models' shapes and parameter
counts, the coarse labels, the embedding cache, the seeded training and the statistics. Fast: no encoder
weights are downloaded or loaded (a tiny random BERT stands in), no real data is read.

The Fig. 9 arithmetic (0.9 x 0.0851 + 0.1 x 0.5108 = 0.1277) and both conventions at T = 1 and T = 2 are in
tests/test_losses.py; here, the two conventions at the paper's own best setting and through the two-head
students' outputs."""
from __future__ import annotations

import math
from math import log as ln

import numpy as np
import pandas as pd
import pytest
import torch
from pytest import approx

from kdlib.core.data import NEWSGROUPS_COARSE_LABELS, NEWSGROUPS_COARSE_OF, NEWSGROUPS_LABELS
from kdlib.core.losses import get_loss
from kdlib.studies import papers
from kdlib.studies.hetero import dense as hetero
from kdlib.studies.hetero import embed as hetero_embed


def logits_of(*p):
    return [ln(v) for v in p]


# ----------------------------------------------------------------------------------------------------
# the loss at seed 003's settings


def test_hetero_conventions_at_the_papers_best_setting_differ_by_t_squared():
    """alpha 0.3, T 28 (model A's best in the paper): the KD terms differ by exactly T^2 = 784."""
    f64 = torch.float64  # at T = 28 the KL is ~4e-5: float32 rounding, times 784, would show
    student = {"logits": torch.tensor([logits_of(0.1, 0.2, 0.3, 0.4)], dtype=f64),
               "distill_logits": torch.tensor([logits_of(0.5, 0.3, 0.2)], dtype=f64)}
    teacher, labels = {"logits": torch.tensor([logits_of(0.7, 0.2, 0.1)], dtype=f64)}, {"labels": torch.tensor([3])}

    def tempered(*p):  # softmax(log p / T) = p^(1/T), renormalised
        r = [v ** (1 / 28) for v in p]
        return [v / sum(r) for v in r]

    pt, ps = tempered(0.7, 0.2, 0.1), tempered(0.5, 0.3, 0.2)
    kl = sum(a * ln(a / b) for a, b in zip(pt, ps))
    ours = get_loss("hetero")(student, teacher, labels, alpha=0.3, temperature=28.0, convention="ours")
    paper = get_loss("hetero")(student, teacher, labels, alpha=0.3, temperature=28.0, convention="paper")
    assert paper["loss"].item() == approx(0.3 * -ln(0.4) + 0.7 * kl, rel=1e-9)
    assert ours["loss"].item() == approx(0.3 * -ln(0.4) + 0.7 * 784 * kl, rel=1e-9)
    # at T = 28 the paper's KD term is tiny: the student learns almost only from the hard labels
    assert kl < 1e-3


def test_students_have_the_heads_seed_003_describes():
    x = torch.randn(5, 384)
    a = hetero.dense_model(384, [64], 20, 6)(x)
    b = hetero.dense_model(384, [64], 20, 20)(x)
    c = hetero.dense_model(384, [64], 20, 0)(x)
    assert a.logits.shape == (5, 20) and a.distill_logits.shape == (5, 6)
    assert b.logits.shape == (5, 20) and b.distill_logits.shape == (5, 20)
    assert c.logits.shape == (5, 20) and c.distill_logits is None
    coarse_teacher = hetero.dense_model(384, [700, 512, 256, 64], 6)(x)
    assert coarse_teacher.logits.shape == (5, 6)
    # A's distillation head and the coarse teacher meet in the hetero loss
    out = get_loss("hetero")({"logits": a.logits, "distill_logits": a.distill_logits},
                             {"logits": coarse_teacher.logits}, {"labels": torch.arange(5)},
                             alpha=0.3, temperature=28.0, convention="paper")
    assert out["loss"].ndim == 0 and torch.isfinite(out["loss"])


# ----------------------------------------------------------------------------------------------------
# labels and parameter counts


def test_every_fine_label_is_in_exactly_one_coarse_group_with_seed_003s_counts():
    assert len(NEWSGROUPS_COARSE_OF) == len(NEWSGROUPS_LABELS) == 20
    assert set(NEWSGROUPS_COARSE_OF) == set(range(6)) and len(NEWSGROUPS_COARSE_LABELS) == 6
    counts = dict(zip(NEWSGROUPS_COARSE_LABELS, np.bincount(NEWSGROUPS_COARSE_OF, minlength=6)))
    assert counts == {"comp": 5, "forsale": 1, "rec": 4, "sci": 4, "politics": 3, "religion": 3}
    # the groups follow the newsgroup names (seed 003's Table 2)
    def group(name):
        if "religion" in name or name == "alt.atheism":
            return "religion"
        if name.startswith("talk.politics"):
            return "politics"
        return {"misc": "forsale"}.get(name.split(".")[0], name.split(".")[0])

    assert [NEWSGROUPS_COARSE_LABELS[g] for g in NEWSGROUPS_COARSE_OF] == [group(n) for n in NEWSGROUPS_LABELS]


@pytest.mark.parametrize("dim, coarse, fine", [(768, 1_045_378, 1_046_288), (384, 776_578, 777_488)])
def test_teacher_parameter_counts(dim, coarse, fine):
    """768-700-512-256-64 gives seed 003's counts exactly; on MiniLM's 384-d input 268,800 fewer
    (384 x 700 weights of the first layer)."""
    hidden = [700, 512, 256, 64]
    assert hetero.n_params(hetero.dense_model(dim, hidden, 6)) == coarse
    assert hetero.n_params(hetero.dense_model(dim, hidden, 20)) == fine
    assert fine - coarse == 14 * 65


def test_student_parameter_counts():
    # 384*64 + 64 (body) + 64*20 + 20 (prediction head) = 25,940; plus the distillation head
    assert hetero.n_params(hetero.dense_model(384, [64], 20, 0)) == 25_940
    assert hetero.n_params(hetero.dense_model(384, [64], 20, 6)) == 25_940 + 64 * 6 + 6
    assert hetero.n_params(hetero.dense_model(384, [64], 20, 20)) == 25_940 + 64 * 20 + 20


# ----------------------------------------------------------------------------------------------------
# embeddings


def test_cache_key_changes_with_encoder_texts_length_and_route():
    texts = ["a post about hockey", "a post about space"]
    base = hetero_embed.cache_key("minilm", texts, 128, ("torch", "bf16"))
    assert hetero_embed.cache_key("minilm", list(texts), 128, ("torch", "bf16")) == base
    assert hetero_embed.cache_key("bert-base-uncased", texts, 128, ("torch", "bf16")) != base
    assert hetero_embed.cache_key("minilm", texts[::-1], 128, ("torch", "bf16")) != base
    assert hetero_embed.cache_key("minilm", [texts[0], texts[1] + "s"], 128, ("torch", "bf16")) != base
    assert hetero_embed.cache_key("minilm", texts, 256, ("torch", "bf16")) != base
    assert hetero_embed.cache_key("minilm", texts, 128, ("onnxruntime", "fp32")) != base
    # joining texts differently is a different input
    assert hetero_embed.texts_digest(["ab", "c"]) != hetero_embed.texts_digest(["a", "bc"])


@pytest.fixture(scope="module")
def tiny_encoder():
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(vocab_size=50, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=16, max_position_embeddings=32)
    return hetero_embed.MeanPooledEncoder(BertModel(config).eval())


def test_mean_pooling_ignores_padding(tiny_encoder):
    ids = torch.tensor([[2, 5, 7, 3, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 0, 0]])
    with torch.no_grad():
        padded = tiny_encoder(ids, mask)["embeddings"]
        alone = tiny_encoder(ids[:, :4], mask[:, :4])["embeddings"]
        hidden = tiny_encoder.encoder(input_ids=ids[:, :4]).last_hidden_state
    assert padded.shape == (1, 8)
    torch.testing.assert_close(padded, alone, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(alone, hidden.mean(1), atol=1e-6, rtol=1e-6)


class _Tokenizer:
    """Whitespace 'tokenizer': one id per word, the word count as the id, padded with 0."""

    def __call__(self, texts, truncation=True, max_length=None):
        ids = [[len(t.split())] * min(len(t.split()), max_length) for t in texts]
        return {"input_ids": ids, "attention_mask": [[1] * len(x) for x in ids]}

    def pad(self, features, pad_to_multiple_of=None, return_tensors=None):
        width = max(len(x) for x in features["input_ids"])
        width = -(-width // pad_to_multiple_of) * pad_to_multiple_of
        return {k: np.array([x + [0] * (width - len(x)) for x in v]) for k, v in features.items()}


class _Runner:
    name, input_names = "fake/fp32", ("input_ids", "attention_mask")

    def __call__(self, inputs):  # the embedding is the row's first id (its word count) and its padded width
        ids = inputs["input_ids"]
        return {"embeddings": np.stack([ids[:, 0], np.full(len(ids), ids.shape[1])], 1).astype(np.float32)}


def test_encode_sorts_by_length_but_returns_rows_in_order():
    texts = ["one", "one two three four five", "one two", "a b c d e f g h i j", "x y z"]
    emb = hetero_embed.encode(_Runner(), _Tokenizer(), texts, max_length=6, batch_size=2, progress=False)
    assert emb[:, 0].tolist() == [1, 5, 2, 10, 3]  # the order of `texts`
    # longest first in batches of two: (10, 5), (3, 2), (1); widths rounded up to 8
    assert emb[:, 1].tolist() == [8, 8, 8, 8, 8]


def test_choose_route_takes_the_first_listed_that_runs_and_agrees_with_fp32():
    probe = pd.DataFrame([
        {"runtime": "torch", "precision": "fp32", "docs_per_second": 10.0, "min_cosine": 1.0, "problem": ""},
        {"runtime": "openvino", "precision": "bf16", "docs_per_second": math.nan, "min_cosine": math.nan,
         "problem": "not installed"},
        {"runtime": "onnxruntime", "precision": "int8", "docs_per_second": 50.0, "min_cosine": 0.90, "problem": ""},
        {"runtime": "torch", "precision": "bf16", "docs_per_second": 30.0, "min_cosine": 0.9999, "problem": ""},
        {"runtime": "onnxruntime", "precision": "fp32", "docs_per_second": 40.0, "min_cosine": 0.99999, "problem": ""},
    ])
    # a refused route and one whose embeddings drift are passed over; a faster agreeing route listed later
    # does not win: the probe's speeds are noisy, and the choice must not follow them
    assert hetero_embed.choose_route(probe) == ("torch", "bf16")
    assert hetero_embed.choose_route(probe.iloc[[0, 1, 2]]) == ("torch", "fp32")
    # the speeds play no part: any ranking of them gives the same choice
    shuffled = probe.assign(docs_per_second=probe["docs_per_second"][::-1].to_numpy())
    assert hetero_embed.choose_route(shuffled) == ("torch", "bf16")


# ----------------------------------------------------------------------------------------------------
# training and statistics


def _toy_splits(seed=0, n=96):
    g = torch.Generator().manual_seed(seed)
    fine = torch.arange(n) % 20
    x = torch.randn(n, 12, generator=g) + torch.nn.functional.one_hot(fine, 20).float()[:, :12] * 2
    return hetero.Split(x, fine, torch.tensor(NEWSGROUPS_COARSE_OF)[fine])


def test_seeded_training_gives_the_same_numbers_twice():
    train, val = _toy_splits(0), _toy_splits(1, 40)
    teacher_logits = torch.randn(len(train), 6, generator=torch.Generator().manual_seed(2))

    def run(seed):
        torch.manual_seed(seed)
        model = hetero.dense_model(12, [8], 20, 6)
        return hetero.train_dense(model, train, {"val": val}, seed=seed, epochs=4, patience=10, batch_size=16,
                                  teacher_logits=teacher_logits, alpha=0.3, temperature=4.0, convention="paper")

    first, second, other = run(3), run(3), run(4)
    assert first.history == second.history and len(first.history) == 4
    assert first.history != other.history
    assert first.params == 12 * 8 + 8 + 8 * 20 + 20 + 8 * 6 + 6


def test_at_t_1_both_conventions_train_the_same_run_so_it_is_trained_once():
    """The search and the seeds train a run listed under both conventions at T = 1 once (T^2 = 1): exact only
    if the two conventions give bit-identical runs there, and not at another T."""
    train, val = _toy_splits(0), _toy_splits(1, 40)
    teacher_logits = torch.randn(len(train), 6, generator=torch.Generator().manual_seed(2))

    def run(convention, temperature):
        torch.manual_seed(5)
        return hetero.train_dense(hetero.dense_model(12, [8], 20, 6), train, {"val": val}, seed=5, epochs=3,
                                  patience=5, batch_size=16, teacher_logits=teacher_logits, alpha=0.3,
                                  temperature=temperature, convention=convention).history

    assert run("ours", 1) == run("paper", 1)
    assert run("ours", 4) != run("paper", 4)
    assert hetero.same_loss_convention("paper", 1) == "ours" and hetero.same_loss_convention("paper", 4) == "paper"


def _count_call(calls, x):
    calls.append(x)
    return x * 10


def test_map_distinct_runs_each_distinct_job_once_in_order():
    calls = []
    got = hetero.map_distinct(_count_call, [{"x": 2}, {"x": 1}, {"x": 2}, {"x": 3}, {"x": 1}], {"calls": calls}, 1)
    assert got == [20, 10, 20, 30, 10] and calls == [2, 1, 3]


def test_teachers_and_search_search_each_student_on_its_own_teacher_in_grid_order():
    from types import SimpleNamespace
    splits = {"train": _toy_splits(0), "val": _toy_splits(1, 40), "test": _toy_splits(2, 40)}
    hp = SimpleNamespace(teacher_hidden=[8], student_hidden=[8], epochs=3, patience=2, batch_size=32,
                         learning_rate=1e-2, conventions=["paper", "ours"], alphas=[0.3], temperatures=[1, 4])
    teachers, logits, search = hetero.teachers_and_search(hp, splits, seed=0, workers=1, progress=False)
    assert list(teachers) == list(logits) == ["coarse", "fine"]
    assert logits["coarse"].shape == (96, 6) and logits["fine"].shape == (96, 20)
    assert list(zip(search.convention, search.model, search.temperature)) == [
        (c, k, t) for c in ("paper", "ours") for k in ("A", "B") for t in (1, 4)]
    # at T = 1 one run stands for both conventions
    at_1 = search[search.temperature == 1].set_index(["model", "convention"])["val_accuracy"]
    assert at_1[("A", "paper")] == at_1[("A", "ours")] and at_1[("B", "paper")] == at_1[("B", "ours")]
    # each student's search used its own teacher's logits: A's distillation head has 6 outputs, B's 20
    torch.manual_seed(0)
    again = hetero.train_student(hp, splits, "A", 0, logits, alpha=0.3, temperature=4, convention="ours", test=False)
    assert search.set_index(["model", "convention", "temperature"]).loc[("A", "ours", 4), "val_accuracy"] == \
        again.best["val_accuracy"]


def test_min_epochs_keeps_training_past_early_stopping_without_changing_it():
    train, val = _toy_splits(0), _toy_splits(1, 40)

    def run(min_epochs):
        torch.manual_seed(0)
        return hetero.train_dense(hetero.dense_model(12, [8], 20), train, {"val": val}, seed=0, epochs=30,
                                  patience=1, min_epochs=min_epochs, batch_size=16, learning_rate=0.05)

    short, long = run(0), run(12)
    assert len(long.history) >= 12 and len(short.history) <= len(long.history)
    assert long.history[:len(short.history)] == short.history
    assert (long.best_epoch, long.stop_epoch) == (short.best_epoch, short.stop_epoch)


def test_early_stop_by_hand():
    assert hetero.early_stop([0.1, 0.3, 0.2, 0.25, 0.29, 0.4], patience=3) == (2, 5)
    assert hetero.early_stop([0.1, 0.3, 0.3, 0.4], patience=3) == (4, 4)  # a tie is not a new best
    assert hetero.early_stop([0.5], patience=1) == (1, 1)


def test_paired_t_test_against_the_closed_form():
    # differences 1, 0, 2: mean 1, sd 1, t = sqrt(3); with 2 degrees of freedom p = 1 - t / sqrt(t^2 + 2)
    r = hetero.paired_test([1.0, 2.0, 3.0], [0.0, 2.0, 1.0])
    t = math.sqrt(3)
    assert r["mean_diff"] == approx(1) and r["std_diff"] == approx(1) and r["t"] == approx(t)
    assert r["p"] == approx(1 - t / math.sqrt(t * t + 2))
    assert math.isnan(hetero.paired_test([0.5], [0.4])["p"])
    assert math.isnan(hetero.paired_test([0.5, 0.6], [0.4, 0.5])["p"])  # identical differences


def test_epochs_to_target_and_ordering():
    curves = pd.DataFrame({"model": ["A"] * 3 + ["B"] * 3, "seed": [1] * 6, "epoch": [1, 2, 3] * 2,
                           "test_accuracy": [0.1, 0.3, 0.5, 0.2, 0.25, 0.35]})
    got = hetero.epochs_to_target(curves, [0.3, 0.6]).set_index(["model", "target"])["epochs"]
    assert got[("A", 0.3)] == 2 and got[("B", 0.3)] == 3
    assert math.isnan(got[("A", 0.6)]) and math.isnan(got[("B", 0.6)])
    assert hetero.ordering({"A": 0.58, "B": 0.57, "C": 0.59}) == "C > A > B"


def test_paper_tables_agree_with_its_table_4():
    for i, model in enumerate(hetero.MODELS):
        epoch = papers.SEED003_TABLE4[model]["epoch"]
        assert papers.SEED003_TABLE5[epoch][i] == papers.SEED003_TABLE4[model]["accuracy"]
        assert papers.SEED003_TABLE6[epoch][i] == papers.SEED003_TABLE4[model]["macro_f1"]
