"""Floating-point operations of a BERT classifier's forward pass, counted from its shape.

Convention: FLOPs = 2 x multiply-accumulates of the matrix products, which is where the time of a
transformer goes and what torch's own counter (`torch.utils.flop_counter`) counts. Embedding lookups,
biases, layer norms, softmax and GELU are left out (they are O(n·h) per layer, against the O(n·h²) of
the products). For one sample of n tokens, hidden size h and FFN size f, each layer costs

    attention projections (Q, K, V, output)   2 · 4 · n · h · h
    attention scores (QKᵀ) and mixing (A·V)   2 · 2 · n · n · h
    feed-forward (two linear maps)            2 · 2 · n · h · f

and the head (pooler on [CLS], classifier) 2 · (h · h + h · c). A test checks this against torch's
counter on a real model.
"""
from __future__ import annotations


def bert_flops(hidden: int, layers: int, ffn: int, seq_len: int, num_labels: int, pooler: bool = True) -> dict:
    """FLOPs per sample of a BERT sequence classifier, by part, and the total."""
    n, h, f = seq_len, hidden, ffn
    per_layer = {
        "attention_projections": 2 * 4 * n * h * h,
        "attention_scores": 2 * 2 * n * n * h,
        "ffn": 2 * 2 * n * h * f,
    }
    head = 2 * (h * h if pooler else 0) + 2 * h * num_labels
    encoder = layers * sum(per_layer.values())
    return {**{f"layer_{k}": v for k, v in per_layer.items()}, "per_layer": sum(per_layer.values()),
            "encoder": encoder, "head": head, "total": encoder + head}


def model_flops(model, seq_len: int) -> int:
    """Total FLOPs per sample of a Hugging Face BERT classifier at `seq_len` tokens (from its config)."""
    c = model.config
    return bert_flops(c.hidden_size, c.num_hidden_layers, c.intermediate_size, seq_len, c.num_labels,
                      pooler=getattr(getattr(model, "bert", None), "pooler", None) is not None)["total"]
