"""Task adaptors (outputs, labels, metrics) and the two-head models of kdlib.core.heads."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import BertConfig
from transformers.modeling_outputs import QuestionAnsweringModelOutput, SequenceClassifierOutput

from kdlib.core import adaptors
from kdlib.core.adaptors import MASK_VALUE, get_adaptor
from kdlib.core.heads import BertForTwoHeadClassification, DenseTwoHead, DenseTwoHeadConfig


def tiny_two_head_bert(seed=0):
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=1000, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64, num_labels=5, num_distill_labels=3)
    return BertForTwoHeadClassification(config).eval()


def test_tasks_and_their_contract():
    assert set(adaptors.ADAPTORS) == {"classification", "two_head", "qa"}
    qa = get_adaptor("qa")
    assert qa.outputs == ("start_logits", "end_logits") and qa.labels == ("start_positions", "end_positions")
    assert qa.best_metric == "span_exact" and qa.teacher is qa and qa.per_token
    two = get_adaptor("two_head")
    assert two.outputs == ("logits", "distill_logits") and two.best_metric == "accuracy"
    assert two.teacher is get_adaptor("classification")  # the teacher knows the coarse labels only
    with pytest.raises(ValueError, match="unknown task 'ner'; known tasks: classification, two_head, qa"):
        get_adaptor("ner")


def test_span_metrics_hand_values():
    # 4 rows, 5 tokens; argmax starts [1, 2, 0, 4], argmax ends [3, 2, 1, 4]
    start, end = np.full((4, 5), -1.0), np.full((4, 5), -1.0)
    for row, (s, e) in enumerate([(1, 3), (2, 2), (0, 1), (4, 4)]):
        start[row, s], end[row, e] = 2.0, 2.0
    gold_start, gold_end = np.array([1, 2, 3, 4]), np.array([3, 0, 1, 4])
    got = get_adaptor("qa").score(((start, end), (gold_start, gold_end)))
    # start right in rows 0, 1, 3; end right in rows 0, 2, 3; both in rows 0, 3
    assert got == {"span_exact": 0.5, "start_accuracy": 0.75, "end_accuracy": 0.75}


def test_two_head_metrics_score_the_prediction_head():
    logits = np.array([[2.0, 0.0], [0.0, 2.0], [2.0, 0.0]])
    distill = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])  # would score 0
    got = get_adaptor("two_head").score(((logits, distill), np.array([0, 1, 1])))
    assert got["accuracy"] == pytest.approx(2 / 3)
    assert got["macro_f1"] == pytest.approx((2 / 3 + 2 / 3) / 2)  # F1 per class: 2/3 and 2/3


def test_qa_outputs_are_masked_at_padding_only():
    start, end = torch.randn(2, 4), torch.randn(2, 4)
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
    out = get_adaptor("qa").model_outputs(QuestionAnsweringModelOutput(start_logits=start, end_logits=end), mask)
    assert torch.equal(out["start_logits"][0], start[0]) and torch.equal(out["end_logits"][1, :2], end[1, :2])
    assert (out["start_logits"][1, 2:] == MASK_VALUE).all() and (out["end_logits"][1, 2:] == MASK_VALUE).all()
    # padding gets no probability at any temperature the study uses
    assert out["start_logits"][1].div(28.0).softmax(-1)[2:].sum() < 1e-30


def test_a_model_without_the_task_outputs_is_named():
    with pytest.raises(ValueError, match="a qa model must output start_logits, end_logits; "
                                         "SequenceClassifierOutput has no start_logits, end_logits"):
        get_adaptor("qa").model_outputs(SequenceClassifierOutput(logits=torch.zeros(1, 3)))


def test_two_head_bert_outputs_and_round_trip(tmp_path):
    model = tiny_two_head_bert()
    x = torch.randint(0, 1000, (3, 7))
    out = get_adaptor("two_head").model_outputs(model(input_ids=x))
    assert out["logits"].shape == (3, 5) and out["distill_logits"].shape == (3, 3)
    labels = torch.tensor([0, 4, 2])
    torch.testing.assert_close(model(input_ids=x, labels=labels).loss,
                               torch.nn.functional.cross_entropy(out["logits"], labels))
    model.save_pretrained(tmp_path)
    again = BertForTwoHeadClassification.from_pretrained(tmp_path).eval()
    assert again.config.num_distill_labels == 3
    assert torch.equal(again(input_ids=x).distill_logits, out["distill_logits"])


def test_dense_two_head_on_embeddings(tmp_path):
    torch.manual_seed(0)
    config = DenseTwoHeadConfig(input_dim=16, hidden_sizes=[8, 4], num_labels=5, num_distill_labels=3)
    model = DenseTwoHead(config).eval()
    # Linear(16, 8), Linear(8, 4), heads Linear(4, 5) and Linear(4, 3)
    assert sum(p.numel() for p in model.parameters()) == (16 * 8 + 8) + (8 * 4 + 4) + (4 * 5 + 5) + (4 * 3 + 3)
    assert all(not m.bias.any() for m in model.modules() if isinstance(m, torch.nn.Linear))  # zero biases
    x = torch.randn(6, 16)
    out = model(embeddings=x, output_hidden_states=True)
    assert [h.shape[-1] for h in out.hidden_states] == [16, 8, 4]
    named = get_adaptor("two_head").model_outputs(out)
    assert named["logits"].shape == (6, 5) and named["distill_logits"].shape == (6, 3)
    model.save_pretrained(tmp_path)
    again = DenseTwoHead.from_pretrained(tmp_path).eval()
    assert again.config.hidden_sizes == [8, 4] and torch.equal(again(embeddings=x).logits, out.logits)
    # without a distillation head it is a plain classifier (a teacher over the coarse labels)
    single = DenseTwoHead(DenseTwoHeadConfig(input_dim=16, hidden_sizes=[8], num_labels=3))
    assert single(embeddings=x).distill_logits is None
    assert get_adaptor("classification").model_outputs(single(embeddings=x))["logits"].shape == (6, 3)
