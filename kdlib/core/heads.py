"""Two-head classifiers for heterogeneous KD (Yu & Kim 2022, seed 003).

The teacher knows only coarse labels (6 newsgroup families), the student must predict fine ones (20
newsgroups). So the student carries two heads on one body: a prediction head (`logits`, fine labels,
trained on gold labels) and a distillation head (`distill_logits`, coarse labels, trained to follow the
teacher). Both models return a `TwoHeadOutput`; with `num_distill_labels=0` the dense network has the
prediction head only and serves as a plain classifier (e.g. seed 003's teacher).

- `BertForTwoHeadClassification`: BERT with both heads on the pooled output. A BertPreTrainedModel, so
  save_pretrained / from_pretrained work; load it with this class (the Auto classes do not know it).
- `DenseTwoHead`: a small MLP on precomputed sentence embeddings (input `embeddings`, float [B, D]), the
  dense networks of seed 003, with its hidden sizes as a parameter.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import BertModel, PretrainedConfig, PreTrainedModel
from transformers import initialization as init
from transformers.models.bert.modeling_bert import BertPreTrainedModel
from transformers.utils import ModelOutput


@dataclass
class TwoHeadOutput(ModelOutput):
    loss: torch.Tensor | None = None  # CE of `logits` when labels are given
    logits: torch.Tensor | None = None
    distill_logits: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None


def _ce(logits, labels):
    return None if labels is None else F.cross_entropy(logits, labels)


class BertForTwoHeadClassification(BertPreTrainedModel):
    """BERT with a prediction head (config.num_labels) and a distillation head (config.num_distill_labels)."""

    def __init__(self, config):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.bert = BertModel(config)
        dropout = config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.distill_classifier = nn.Linear(config.hidden_size, config.num_distill_labels)
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
                inputs_embeds=None, labels=None, **kwargs) -> TwoHeadOutput:
        out = self.bert(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                        position_ids=position_ids, inputs_embeds=inputs_embeds, return_dict=True, **kwargs)
        pooled = self.dropout(out.pooler_output)
        logits = self.classifier(pooled)
        return TwoHeadOutput(_ce(logits, labels), logits, self.distill_classifier(pooled), out.hidden_states,
                             out.attentions)


class DenseTwoHeadConfig(PretrainedConfig):
    model_type = "kd_dense_two_head"

    def __init__(self, input_dim: int = 384, hidden_sizes=(64,), num_distill_labels: int = 0,
                 dropout: float = 0.0, **kwargs):
        super().__init__(**kwargs)  # num_labels / id2label are the base config's
        self.input_dim = input_dim
        self.hidden_sizes = list(hidden_sizes)
        self.num_distill_labels = num_distill_labels
        self.dropout = dropout


class DenseTwoHead(PreTrainedModel):
    """embeddings -> [Linear -> ReLU -> Dropout] per hidden size -> prediction head (+ distillation head)."""

    config_class = DenseTwoHeadConfig
    base_model_prefix = "blocks"

    def __init__(self, config: DenseTwoHeadConfig):
        super().__init__(config)
        widths = [config.input_dim, *config.hidden_sizes]
        self.blocks = nn.ModuleList(nn.Sequential(nn.Linear(a, b), nn.ReLU(), nn.Dropout(config.dropout))
                                    for a, b in zip(widths, widths[1:]))
        self.classifier = nn.Linear(widths[-1], config.num_labels)
        self.distill_classifier = (nn.Linear(widths[-1], config.num_distill_labels) if config.num_distill_labels
                                   else None)
        self.post_init()

    @torch.no_grad()
    def _init_weights(self, module):
        # Glorot-uniform weights and zero biases, the usual dense-layer default, rather than BERT's N(0, 0.02)
        if isinstance(module, nn.Linear):
            init.xavier_uniform_(module.weight)
            init.zeros_(module.bias)

    def forward(self, embeddings, labels=None, output_hidden_states=None, **kwargs) -> TwoHeadOutput:
        hidden = [embeddings]  # the input, then each block's output
        for block in self.blocks:
            hidden.append(block(hidden[-1]))
        logits = self.classifier(hidden[-1])
        distill = self.distill_classifier(hidden[-1]) if self.distill_classifier is not None else None
        return TwoHeadOutput(_ce(logits, labels), logits, distill, tuple(hidden) if output_hidden_states else None)
