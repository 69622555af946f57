"""The compression families of kdlib.compress.pruning on tiny BERTs: shapes, hand-counted parameters, and the
identities each method must satisfy (zero pruning and full rank compute the original function; shared
layers are one tensor)."""
from __future__ import annotations

import copy

import pytest
import torch
from safetensors.torch import save_model

from kdlib.compress import factorize, pruning, share
from kdlib.core.models import count_parameters

H, HEADS, FFN, VOCAB, LAYERS = 32, 4, 64, 1000, 2
HEAD = H // HEADS


@pytest.fixture
def tiny(tiny_bert_config):
    from transformers import BertForSequenceClassification

    torch.manual_seed(0)
    return BertForSequenceClassification(tiny_bert_config(num_attention_heads=HEADS, num_labels=3)).eval()


def _inputs(seed=0, batch=3, seq=7):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, VOCAB, (batch, seq), generator=g)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def _logits(model, seed=0):
    with torch.no_grad():
        return model(**_inputs(seed)).logits


def _batches(n=2):
    return [{**_inputs(seed), "labels": torch.tensor([0, 1, 2])} for seed in range(n)]


# ---------------------------------------------------------------------------------------------------- heads


def test_head_importance_shape_and_per_layer_normalisation(tiny):
    importance = pruning.head_importance(tiny, _batches())
    assert importance.shape == (LAYERS, HEADS)
    assert torch.allclose(importance.norm(dim=1), torch.ones(LAYERS))
    assert all(p.grad is None for p in tiny.parameters())  # nothing left behind


def test_head_importance_leaves_the_configuration_and_so_the_export_key_as_it_found_them(tiny):
    """A classifier's first forward pass with labels writes config.problem_type; left there, every graph
    built from the model afterwards (04's routes) had another export key than the same weights loaded
    fresh (04's `kdstudy export`), which exported and quantised them a second time."""
    from kdlib.inference.runtimes.onnx_route import export_key

    before, key = tiny.config.to_json_string(use_diff=False), export_key(tiny)
    assert tiny.config.problem_type is None
    pruning.head_importance(tiny, _batches())
    assert tiny.config.to_json_string(use_diff=False) == before and export_key(tiny) == key
    tiny(**_batches(1)[0])  # what the guard undoes: the forward pass itself does write it
    assert tiny.config.problem_type == "single_label_classification"


def test_head_importance_is_the_gradient_of_the_loss_wrt_a_head_gate(tiny):
    """Scaling head (0, 1)'s output by (1 + eps) changes the loss by about eps x its raw importance."""
    tiny = tiny.double()  # the change is small: float64 resolves it
    batch = _batches(1)
    raw = pruning.head_importance(tiny, batch, normalize=False)
    eps = 1e-4
    scaled = copy.deepcopy(tiny)
    dense = pruning.encoder_layers(scaled)[0].attention.output.dense
    with torch.no_grad():  # a gate of 1 + eps on head 1 = its columns of the output projection scaled
        dense.weight[:, HEAD:2 * HEAD] *= 1 + eps
    with torch.no_grad():
        delta = scaled(**batch[0]).loss - tiny(**batch[0]).loss
    assert abs(delta.item()) / eps == pytest.approx(raw[0, 1].item(), rel=1e-2)


def test_heads_to_prune_picks_the_least_important_and_keeps_one_per_layer():
    importance = torch.tensor([[0.1, 0.9, 0.2, 0.8], [0.05, 0.04, 0.03, 0.02]])
    # 4 of 8: layer 1's three weakest, then (its last head being kept) layer 0's weakest
    assert pruning.heads_to_prune(importance, 0.5) == {0: [0], 1: [1, 2, 3]}
    # 7 of 8 wanted, but each layer keeps its best head: 6 at most
    assert pruning.heads_to_prune(importance, 0.875) == {0: [0, 2, 3], 1: [1, 2, 3]}
    assert pruning.heads_to_prune(importance, 0.0) == {}


def test_prune_heads_removes_the_hand_counted_parameters_and_keeps_shapes(tiny):
    before = count_parameters(tiny)["total"]
    pruning.prune_heads(tiny, {0: [1, 3], 1: [0]})
    # per head: query, key, value lose HEAD rows of weights and biases, the output projection HEAD columns
    per_head = 3 * (H * HEAD + HEAD) + H * HEAD
    assert count_parameters(tiny)["total"] == before - 3 * per_head
    att0 = pruning.encoder_layers(tiny)[0].attention
    assert att0.self.query.weight.shape == (2 * HEAD, H)
    assert att0.output.dense.weight.shape == (H, 2 * HEAD)
    assert att0.self.num_attention_heads == 2
    assert tiny.config.kd_pruned_heads == {"0": [1, 3], "1": [0]}
    assert _logits(tiny).shape == (3, 3)


def test_pruning_a_head_equals_masking_it(tiny):
    """Cutting head 2 of layer 0 computes what the full model computes with that head's output zeroed."""
    masked = copy.deepcopy(tiny)
    with torch.no_grad():
        pruning.encoder_layers(masked)[0].attention.output.dense.weight[:, 2 * HEAD:3 * HEAD] = 0
    pruned = pruning.prune_heads(copy.deepcopy(tiny), {0: [2]})
    assert torch.allclose(_logits(pruned), _logits(masked), atol=1e-6)


def test_pruning_no_head_is_the_identity(tiny):
    assert torch.equal(_logits(pruning.prune_heads(copy.deepcopy(tiny), {})), _logits(tiny))


# ---------------------------------------------------------------------------------------------------- magnitude


def test_magnitude_pruning_zeroes_the_smallest_weights_of_each_encoder_matrix(tiny):
    original = copy.deepcopy(tiny)
    pruning.magnitude_prune(tiny, 0.5)
    linears = pruning.encoder_linears(tiny)
    assert len(linears) == LAYERS * 6  # q, k, v, attention output, FFN in, FFN out
    for pruned, orig in zip(linears, pruning.encoder_linears(original)):
        w, w0 = pruned.weight, orig.weight
        assert int((w == 0).sum()) == round(0.5 * w.numel())
        kept = w0.abs()[w != 0]
        assert kept.min() >= w0.abs()[w == 0].max()  # the zeros were the smallest
        assert torch.equal(w[w != 0], w0[w != 0])
        assert not hasattr(pruned, "weight_mask")  # made permanent
    zeros = sum(round(0.5 * m.weight.numel()) for m in linears)
    assert pruning.count_nonzero(tiny) == pruning.count_nonzero(original) - zeros
    assert count_parameters(tiny)["total"] == count_parameters(original)["total"]  # dense: same tensors


def test_zero_sparsity_is_the_identity(tiny):
    assert torch.equal(_logits(pruning.magnitude_prune(copy.deepcopy(tiny), 0.0)), _logits(tiny))


# ---------------------------------------------------------------------------------------------------- low rank


def test_low_rank_linear_shapes_count_and_full_rank_identity():
    torch.manual_seed(0)
    linear = torch.nn.Linear(12, 20)
    x = torch.randn(5, 12)
    full = factorize.low_rank_linear(linear, 12)
    assert torch.allclose(full(x), linear(x), atol=1e-5)
    low = factorize.low_rank_linear(linear, 3)
    assert [m.weight.shape for m in low] == [(3, 12), (20, 3)]
    assert sum(p.numel() for p in low.parameters()) == 3 * 12 + 20 * 3 + 20
    # The best rank-3 approximation: the error is the norm of the discarded singular values.
    s = torch.linalg.svdvals(linear.weight.detach())
    approx = low[1].weight @ low[0].weight
    assert torch.linalg.matrix_norm(approx - linear.weight.detach()).item() == pytest.approx(s[3:].norm().item(), rel=1e-4)


def test_factorized_ffn_counts_and_full_rank_identity(tiny):
    before = count_parameters(tiny)["total"]
    full = factorize.factorize_ffn(copy.deepcopy(tiny), min(H, FFN))
    assert torch.allclose(_logits(full), _logits(tiny), atol=1e-5)
    rank = 4
    low = factorize.factorize_ffn(copy.deepcopy(tiny), rank)
    # each layer: two H x FFN matrices become rank x (H + FFN) each; biases unchanged
    assert count_parameters(low)["total"] == before - LAYERS * 2 * (H * FFN - rank * (H + FFN))
    assert _logits(low).shape == (3, 3)


def test_factorized_embeddings_counts_and_full_rank_identity(tiny):
    before = count_parameters(tiny)["total"]
    full = factorize.factorize_embeddings(copy.deepcopy(tiny), H)
    assert torch.allclose(_logits(full), _logits(tiny), atol=1e-5)
    small = factorize.factorize_embeddings(copy.deepcopy(tiny), 8)
    assert count_parameters(small)["total"] == before - VOCAB * H + (VOCAB * 8 + 8 * H)
    assert small.config.kd_embedding_size == 8


# ---------------------------------------------------------------------------------------------------- sharing


def size_on_disk_mb(model, path) -> float:
    save_model(model, str(path))  # safetensors, as the torch route stores a model
    return path.stat().st_size / 1e6


def test_shared_layers_are_one_tensor_counted_and_stored_once(tiny, tmp_path):
    per_layer = sum(p.numel() for p in pruning.encoder_layers(tiny)[0].parameters())
    before = count_parameters(tiny)["total"]
    shared = share.share_layers(copy.deepcopy(tiny), 3)
    layers = pruning.encoder_layers(shared)
    assert len(layers) == 3 and shared.config.num_hidden_layers == 3
    ptrs = {layer.attention.self.query.weight.data_ptr() for layer in layers}
    assert len(ptrs) == 1
    assert count_parameters(shared)["total"] == before - (LAYERS - 1) * per_layer
    # stored once: the safetensors file shrinks by the dropped layer's fp32 bytes (give or take headers)
    saved = size_on_disk_mb(tiny, tmp_path / "a") - size_on_disk_mb(shared, tmp_path / "b")
    assert saved == pytest.approx(per_layer * 4 / 1e6, rel=0.05)
    assert _logits(shared).shape == (3, 3)


def test_one_shared_layer_applied_once_is_that_layer(tiny):
    """Layer 0 shared over 1 position computes the model truncated to its first layer."""
    truncated = copy.deepcopy(tiny)
    truncated.bert.encoder.layer = truncated.bert.encoder.layer[:1]
    assert torch.allclose(_logits(share.share_layers(copy.deepcopy(tiny), 1, source=0)), _logits(truncated))


def test_albert_student_shares_and_factorises(tiny):
    student = share.albert_student(tiny, embedding_size=8, num_layers=4)
    per_layer = sum(p.numel() for p in pruning.encoder_layers(tiny)[0].parameters())
    teacher = count_parameters(tiny)["total"]
    expected = teacher - VOCAB * H + VOCAB * 8 + 8 * H - (LAYERS - 1) * per_layer
    assert count_parameters(student)["total"] == expected
    assert len(pruning.encoder_layers(student)) == 4
    assert count_parameters(tiny)["total"] == teacher  # the teacher is untouched
    loss = student(**_batches(1)[0]).loss
    loss.backward()  # trainable: gradients reach the one shared layer
    assert pruning.encoder_layers(student)[0].output.dense.weight.grad is not None


def test_compressed_models_save_once_and_reload_into_their_rebuilt_architecture(tiny, tmp_path):
    """save_pretrained (what Trainer checkpoints use) stores a shared layer once; compare.load_weights puts
    the weights back into the rebuilt architecture, which then computes the same logits."""
    from safetensors import safe_open

    from kdlib.studies.compare.models import load_weights

    def build():
        return factorize.factorize_ffn(share.albert_student(tiny, embedding_size=8, num_layers=3), 4).eval()

    model = build()
    with torch.no_grad():  # move away from the construction's weights, so reloading is what makes them equal
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    model.save_pretrained(tmp_path)
    with safe_open(tmp_path / "model.safetensors", "pt") as f:
        assert not any(".layer.1." in k or ".layer.2." in k for k in f.keys())
    assert not torch.allclose(_logits(build()), _logits(model))
    assert torch.allclose(_logits(load_weights(build(), tmp_path)), _logits(model))
    with pytest.raises(ValueError, match="do not fit"):
        load_weights(share.albert_student(tiny, embedding_size=8, num_layers=3), tmp_path)
