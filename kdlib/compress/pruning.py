"""Compression families beside distillation, on any BERT-style Hugging Face model (seed 002's taxonomy).

- Structured pruning of attention heads by importance (Michel et al. 2019, "Are Sixteen Heads Really
  Better than One?"): a gate multiplies each head's output; the importance of a head is |dL/d gate|,
  summed over a few batches, normalised per layer; the least important heads are cut out of the query,
  key, value and output matrices (`prune_heads`). Transformers 5 dropped `PreTrainedModel.prune_heads`
  and `head_mask`, so both are done here with forward hooks and `prune_linear_layer`.
- Unstructured magnitude pruning (`torch.nn.utils.prune`, made permanent): the smallest weights of every
  encoder Linear become zeros. The tensors stay dense, so dense kernels do the same work.
- Low-rank factorisation: a Linear W (out x in) becomes two Linears through a rank-r truncated SVD,
  W ~ (U sqrt(S)) (sqrt(S) V^T); at full rank the product is W (up to rounding). Applied to the FFN
  matrices and to the word embeddings (V x H -> V x E, then an E -> H projection, as in ALBERT).
- Cross-layer weight sharing (ALBERT): the encoder's layers are one module object repeated, so one set of
  tensors, counted once and stored once; with factorised embeddings it is an ALBERT-style student.

Every function changes the model in place and returns it (deep-copy first to keep the original).
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import prune
from transformers.pytorch_utils import prune_linear_layer


def encoder_layers(model) -> nn.ModuleList:
    """The transformer layers of a BERT-style model (BertFor..., or the bare BertModel)."""
    return model.base_model.encoder.layer


def count_nonzero(model) -> int:
    """Nonzero parameters, shared tensors counted once."""
    return int(sum((p != 0).sum().item() for p in model.parameters()))


# ----------------------------------------------------------------------------------------------------
# attention-head pruning


def head_importance(model, batches, normalize: bool = True) -> torch.Tensor:
    """Michel et al.'s head importance, [layers, heads]: |gradient of the loss wrt a gate on each head's
    output|, summed over `batches` (dicts of model inputs with `labels`), each layer's row divided by its
    L2 norm (their normalisation). Runs in eval mode (no dropout); leaves no gradients behind, and the model's
    configuration as it found it: a classifier's first forward pass with labels records its `problem_type`
    there, and a changed configuration is another model to every graph built from it (its export key)."""
    layers = encoder_layers(model)
    n_heads = layers[0].attention.self.num_attention_heads
    dtype = next(model.parameters()).dtype
    gates = torch.ones(len(layers), n_heads, dtype=dtype, requires_grad=True)
    handles = []
    for i, layer in enumerate(layers):
        head_size = layer.attention.self.attention_head_size

        def gate(module, args, i=i, head_size=head_size):
            x = args[0]  # [batch, seq, heads * head_size]: the heads' outputs, before the output projection
            gated = x.view(*x.shape[:-1], -1, head_size) * gates[i][:, None]
            return (gated.view(x.shape), *args[1:])

        handles.append(layer.attention.output.dense.register_forward_pre_hook(gate))
    importance = torch.zeros_like(gates)
    was_training, problem_type = model.training, getattr(model.config, "problem_type", None)
    model.eval()
    try:
        for batch in batches:
            loss = model(**batch).loss
            (grad,) = torch.autograd.grad(loss, gates)
            importance += grad.abs()
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
        if hasattr(model.config, "problem_type"):
            model.config.problem_type = problem_type
    if normalize:
        importance = importance / importance.norm(dim=1, keepdim=True).clamp_min(1e-20)
    return importance.detach()


def heads_to_prune(importance: torch.Tensor, fraction: float) -> dict[int, list[int]]:
    """The round(fraction x all heads) least important heads, {layer: [heads]}, keeping at least one head
    in every layer (a layer with no head would have no attention at all)."""
    if not 0 <= fraction < 1:
        raise ValueError(f"fraction must be in [0, 1), got {fraction}")
    n_layers, n_heads = importance.shape
    budget = round(fraction * importance.numel())
    chosen: dict[int, list[int]] = {}
    for flat in importance.flatten().argsort().tolist():  # least important first
        if budget == 0:
            break
        layer, head = divmod(flat, n_heads)
        if len(chosen.get(layer, [])) < n_heads - 1:
            chosen.setdefault(layer, []).append(head)
            budget -= 1
    return {layer: sorted(heads) for layer, heads in sorted(chosen.items())}


def prune_heads(model, heads: dict[int, list[int]]):
    """Cut `heads` ({layer: [head indices]}) out of the query, key and value projections (their rows)
    and the attention output projection (its columns). Records what was cut in config.kd_pruned_heads."""
    layers = encoder_layers(model)
    for layer_idx, cut in heads.items():
        attention = layers[int(layer_idx)].attention
        self_att = attention.self
        size = self_att.attention_head_size
        keep = [h for h in range(self_att.num_attention_heads) if h not in set(cut)]
        if not keep:
            raise ValueError(f"layer {layer_idx}: cannot prune all {self_att.num_attention_heads} heads")
        index = torch.cat([torch.arange(h * size, (h + 1) * size) for h in keep])
        self_att.query = prune_linear_layer(self_att.query, index)
        self_att.key = prune_linear_layer(self_att.key, index)
        self_att.value = prune_linear_layer(self_att.value, index)
        attention.output.dense = prune_linear_layer(attention.output.dense, index, dim=1)
        self_att.num_attention_heads = len(keep)
        self_att.all_head_size = size * len(keep)
    recorded = dict(getattr(model.config, "kd_pruned_heads", None) or {})
    for layer_idx, cut in heads.items():
        recorded[str(layer_idx)] = sorted(set(recorded.get(str(layer_idx), [])) | set(cut))
    model.config.kd_pruned_heads = recorded
    return model


# ----------------------------------------------------------------------------------------------------
# unstructured magnitude pruning


def encoder_linears(model) -> list[nn.Linear]:
    """Every Linear of the encoder (attention and FFN); embeddings, pooler and classifier are left alone."""
    return [m for m in model.base_model.encoder.modules() if isinstance(m, nn.Linear)]


def magnitude_prune(model, sparsity: float):
    """Zero the `sparsity` fraction of smallest-magnitude weights of each encoder Linear (L1 unstructured,
    per matrix), then make it permanent (`prune.remove`: plain dense weights with zeros, no masks)."""

    if not 0 <= sparsity < 1:
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity}")
    for linear in encoder_linears(model):
        prune.l1_unstructured(linear, "weight", amount=sparsity)
        prune.remove(linear, "weight")
    return model


# ----------------------------------------------------------------------------------------------------
# low-rank factorisation












# ----------------------------------------------------------------------------------------------------
# cross-layer weight sharing




