"""Weight sharing: ALBERT-style cross-layer sharing, and a shared-layer student built from a teacher."""
from __future__ import annotations

import copy

from torch import nn

from kdlib.compress.factorize import factorize_embeddings
from kdlib.compress.pruning import encoder_layers


def share_layers(model, num_layers: int, source: int = 0):
    """Replace the encoder's layers by layer `source` repeated `num_layers` times: one module object, so
    one set of tensors (counted once by model.parameters(), stored once by safetensors)."""
    layer = encoder_layers(model)[source]
    encoder = model.base_model.encoder
    encoder.layer = nn.ModuleList([layer] * num_layers)
    # Declared as tied (regex -> source), so save_pretrained (and Trainer checkpoints) store layer 0 only
    # instead of refusing tensors that share memory.
    encoder._tied_weights_keys = {r"layer\.[1-9][0-9]*\.": "layer.0."}
    model.config.num_hidden_layers = num_layers
    model.config.kd_shared_layers = {"source": source, "repeats": num_layers}
    return model


def albert_student(teacher, embedding_size: int, num_layers: int | None = None, source: int = 0):
    """An ALBERT-style student of `teacher`: factorised embeddings (E = `embedding_size`, by SVD of the
    teacher's) and one teacher layer shared by all `num_layers` positions (default: the teacher's depth)."""
    student = copy.deepcopy(teacher)
    factorize_embeddings(student, embedding_size)
    share_layers(student, num_layers or teacher.config.num_hidden_layers, source)
    return student
