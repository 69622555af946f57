"""Step 06's students (kdlib/edge.py): which teacher layers they start from, and how they are cut."""
from __future__ import annotations

import pytest
import torch


def test_teacher_layers_alternate_and_stride():
    from kdlib import edge

    assert edge.teacher_layers(6, 3, "alternate") == [0, 3, 5]  # kdlib.models: first to last, evenly spaced
    assert edge.teacher_layers(12, 6, "alternate") == [0, 2, 4, 7, 9, 11]
    assert edge.teacher_layers(6, 3, "stride") == [0, 2, 4]  # one layer out of two, from the first
    assert edge.teacher_layers(12, 6, "stride") == [0, 2, 4, 6, 8, 10]
    assert edge.teacher_layers(6, 1, "stride") == [0]
    with pytest.raises(ValueError, match="alternate or stride"):
        edge.teacher_layers(6, 3, "first")


def test_a_stride_student_copies_the_chosen_layers_and_the_head(tiny_bert_config):
    from transformers import BertForQuestionAnswering

    from kdlib import edge
    from kdlib.config import StudentShape

    torch.manual_seed(0)
    teacher = BertForQuestionAnswering(tiny_bert_config(num_hidden_layers=4))
    student = edge.make_edge_student(teacher, StudentShape(layers=2, ffn=64), "stride", seed=0)
    assert student.config.kd_teacher_layers == [0, 2] and student.config.kd_init == "stride"
    assert student.config.num_hidden_layers == 2
    for s_layer, t_index in zip(student.bert.encoder.layer, [0, 2]):
        t_layer = teacher.bert.encoder.layer[t_index]
        for (name, s), (_, t) in zip(s_layer.named_parameters(), t_layer.named_parameters()):
            assert torch.equal(s, t), name
    assert torch.equal(student.qa_outputs.weight, teacher.qa_outputs.weight)
    assert len(teacher.bert.encoder.layer) == teacher.config.num_hidden_layers == 4  # the teacher is untouched
