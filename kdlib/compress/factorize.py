"""Weight factorisation (seed 002's taxonomy): a Linear as the product of two thin ones (truncated SVD),
and ALBERT's factorised embedding (V x E, then E x H)."""
from __future__ import annotations

import torch
from torch import nn

from kdlib.compress.pruning import encoder_layers


def _svd_factors(weight: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A (rows x r), B (r x cols) with A @ B the best rank-r approximation of `weight` (Eckart-Young);
    the singular values are split evenly (sqrt) between the two factors."""
    u, s, vh = torch.linalg.svd(weight.detach().double(), full_matrices=False)
    r = min(rank, s.numel())
    root = s[:r].sqrt()
    return (u[:, :r] * root).to(weight.dtype), (root[:, None] * vh[:r]).to(weight.dtype)


def low_rank_linear(linear: nn.Linear, rank: int) -> nn.Sequential:
    """`linear` (in -> out) as in -> rank -> out: two Linears, the bias on the second."""
    first_w, second_w = _svd_factors(linear.weight, rank)[::-1]  # W = A @ B: apply B (r x in) first, then A
    r = first_w.shape[0]
    first = nn.Linear(linear.in_features, r, bias=False)
    second = nn.Linear(r, linear.out_features, bias=linear.bias is not None)
    with torch.no_grad():
        first.weight.copy_(first_w)
        second.weight.copy_(second_w)
        if linear.bias is not None:
            second.bias.copy_(linear.bias)
    return nn.Sequential(first, second)


def factorize_ffn(model, rank: int):
    """Both FFN matrices of every layer as rank-`rank` products (a shared layer is factorised once)."""
    for layer in {id(layer): layer for layer in encoder_layers(model)}.values():
        layer.intermediate.dense = low_rank_linear(layer.intermediate.dense, rank)
        layer.output.dense = low_rank_linear(layer.output.dense, rank)
    return model


class FactorizedEmbedding(nn.Module):
    """ALBERT's factorised embedding: token -> E-dimensional vector -> linear projection to the hidden size H.
    V x E + E x H parameters instead of V x H."""

    def __init__(self, num_embeddings: int, embedding_size: int, hidden_size: int, padding_idx: int | None = None):
        super().__init__()
        self.embed = nn.Embedding(num_embeddings, embedding_size, padding_idx=padding_idx)
        self.project = nn.Linear(embedding_size, hidden_size, bias=False)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.project(self.embed(input_ids))


def factorize_embeddings(model, embedding_size: int):
    """The word embeddings (V x H) as a FactorizedEmbedding of size E, initialised by truncated SVD."""
    embeddings = model.base_model.embeddings
    old = embeddings.word_embeddings
    table, projection = _svd_factors(old.weight, embedding_size)  # V x E, E x H
    new = FactorizedEmbedding(old.num_embeddings, table.shape[1], old.embedding_dim, old.padding_idx)
    with torch.no_grad():
        new.embed.weight.copy_(table)
        new.project.weight.copy_(projection.T)
    embeddings.word_embeddings = new
    model.config.kd_embedding_size = table.shape[1]
    return model
