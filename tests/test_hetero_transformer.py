"""Step 05, beyond the paper: the transformer student (kdlib.studies.hetero.transformer), the worker pool that spreads
step 05's runs (kdlib.studies.hetero.dense.map_jobs) and the OpenVINO bf16 encoding route's refusal. Fast: a tiny random
BERT stands in for the encoder, no real data is read."""
from __future__ import annotations

import copy
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from kdlib.core.losses import get_loss
from kdlib.inference import machine
from kdlib.pipeline.config import HeteroTransformerParams
from kdlib.studies.hetero import dense as hetero
from kdlib.studies.hetero import transformer as hetero_transformer


def tiny_student(vocab: int = 40, hidden: int = 16) -> hetero_transformer.MeanPooledTwoHead:
    from transformers import BertConfig

    config = BertConfig(vocab_size=vocab, hidden_size=hidden, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=64, num_labels=4)
    config.num_distill_labels = 2
    return hetero_transformer.MeanPooledTwoHead(config)


def test_the_heads_read_the_mean_over_real_tokens_only():
    torch.manual_seed(0)
    model = tiny_student().eval()
    ids, mask = hetero_transformer._padded([[2, 5, 7, 3], [4, 6]])
    assert mask.tolist() == [[1, 1, 1, 1], [1, 1, 0, 0]]
    with torch.no_grad():
        padded = model(ids, mask)
        alone = model(torch.tensor([[4, 6]]), torch.ones(1, 2, dtype=torch.long))
    torch.testing.assert_close(padded.logits[1], alone.logits[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(padded.distill_logits[1], alone.distill_logits[0], atol=1e-5, rtol=1e-5)
    assert padded.logits.shape == (2, 4) and padded.distill_logits.shape == (2, 2)


@pytest.mark.parametrize("loss, coarse_head_learns", [("hetero", True), ("soft_target", False)])
def test_only_hetero_kd_trains_the_coarse_head(loss, coarse_head_learns):
    """hetero: the coarse (distillation) head follows the teacher; soft_target (plain KD): the prediction
    head does, and the coarse head gets no gradient at all."""
    torch.manual_seed(0)
    model = tiny_student()
    ids, mask = hetero_transformer._padded([[2, 5, 7], [4, 6, 9]])
    out = model(ids, mask)
    teacher = torch.randn(2, 2 if loss == "hetero" else 4)
    terms = get_loss(loss)({"logits": out.logits, "distill_logits": out.distill_logits}, {"logits": teacher},
                           {"labels": torch.tensor([1, 3])}, alpha=0.5, temperature=4.0)
    terms["loss"].backward()
    assert (model.distill_classifier.weight.grad is not None) == coarse_head_learns
    assert model.classifier.weight.grad is not None


def _toy_data(n: int, seed: int, classes: int = 4):
    """Posts of random words 10-39 plus their class's own word (1 + class) a few times: learnable."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % classes
    ids = [list(rng.integers(10, 40, size=rng.integers(4, 12))) + [1 + int(c)] * 3 for c in labels]
    return [[int(t) for t in rng.permutation(x)] for x in ids], labels


def test_train_run_learns_a_toy_task_and_its_loss_falls():
    data = {"train": _toy_data(200, 0), "validation": _toy_data(80, 2), "test": _toy_data(80, 1)}
    tp = HeteroTransformerParams(epochs=3, learning_rate=3e-3, head_learning_rate=3e-2, batch_size=16)
    torch.manual_seed(0)
    out = hetero_transformer.train_run(tiny_student(), data, torch.zeros(200, 2), "hetero", tp, seed=0, bf16=False)
    assert [h["epoch"] for h in out["history"]] == [1, 2, 3]
    assert out["best_epoch"] == max(out["history"], key=lambda h: h["val_accuracy"])["epoch"]
    assert out["history"][-1]["train_loss"] < out["history"][0]["train_loss"]
    assert out["test"]["accuracy"] > 0.8  # chance is 0.25


def test_both_variants_start_from_the_same_weights_and_read_their_own_teacher(monkeypatch, tmp_path):
    seen = {}

    def spy(model, data, teacher_logits, loss, tp, seed, bf16):
        seen[loss] = {"weights": copy.deepcopy(model.state_dict()), "teacher": teacher_logits}
        return {"test": {"accuracy": 0.0, "macro_f1": 0.0}, "best_epoch": 1, "history": [], "train_seconds": 0.0}

    monkeypatch.setattr(hetero_transformer, "load_student", lambda encoder, layers: tiny_student())
    monkeypatch.setattr(hetero_transformer, "train_run", spy)
    logits = {"coarse": torch.randn(3, 6), "fine": torch.randn(3, 20)}
    for variant in hetero_transformer.VARIANTS:
        hetero_transformer.run_unit(tmp_path / variant, "key", "minilm", HeteroTransformerParams(), variant, 7,
                                    data={}, teacher_logits=logits, bf16=False)
    assert set(seen) == {"hetero", "soft_target"}
    assert seen["hetero"]["teacher"] is logits["coarse"] and seen["soft_target"]["teacher"] is logits["fine"]
    hetero_w, plain_w = seen["hetero"]["weights"], seen["soft_target"]["weights"]
    assert hetero_w.keys() == plain_w.keys()
    assert all(torch.equal(hetero_w[k], plain_w[k]) for k in hetero_w)


def _toy_splits(seed, n):
    g = torch.Generator().manual_seed(seed)
    fine = torch.arange(n) % 20
    x = torch.randn(n, 12, generator=g) + torch.nn.functional.one_hot(fine, 20).float()[:, :12] * 2
    return hetero.Split(x, fine, fine % 6)


def test_map_jobs_gives_the_same_numbers_on_two_workers_as_here():
    hp = SimpleNamespace(student_hidden=[8], epochs=4, patience=2, batch_size=32, learning_rate=1e-2)
    splits = {"train": _toy_splits(0, 64), "val": _toy_splits(1, 40), "test": _toy_splits(2, 40)}
    shared = {"hp": hp, "splits": splits, "teacher_logits": {"coarse": torch.randn(64, 6)}}
    jobs = [{"kind": "A", "seed": s, "alpha": 0.5, "temperature": 2.0} for s in (1, 2, 3)]
    here = hetero.map_jobs(hetero.train_student, jobs, shared, workers=1)
    pooled = hetero.map_jobs(hetero.train_student, jobs, shared, workers=2)
    assert [r.history for r in here] == [r.history for r in pooled]
    assert here[0].history != here[1].history  # the seeds differ


def test_openvino_bf16_needs_native_bf16(monkeypatch):
    monkeypatch.setattr(machine, "bf16_supported", lambda: False)
    from kdlib.inference import runtimes

    assert "bf16" in runtimes.refusal("openvino", "bf16") and "bf16" in runtimes.refusal("torch", "bf16")
    assert runtimes.refusal("torch", "fp32") is None
