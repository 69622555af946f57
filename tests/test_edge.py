"""Step 06's students (kdlib/edge.py): which teacher layers they start from, and what they copy."""
from __future__ import annotations

import pytest
import torch


def test_edge_students_start_from_alternate_or_stride_layers(tmp_path):
    """Step 06 offers two of kdlib.models' layer choices; any other is refused when the parameters load."""
    import yaml

    from kdlib.config import ParamsError, load_params

    for init in ("alternate", "stride"):
        path = tmp_path / f"{init}.yaml"
        path.write_text(yaml.safe_dump({"profile": "t", "edge": {"student_init": init}}))
        assert load_params(path).edge.student_init == init
    path = tmp_path / "first.yaml"
    path.write_text(yaml.safe_dump({"profile": "t", "edge": {"student_init": "first"}}))
    with pytest.raises(ParamsError, match="edge.student_init: 'first' is not one of alternate, stride"):
        load_params(path)


def test_a_stride_student_copies_the_chosen_layers_and_the_head(tiny_bert_config):
    from transformers import BertForQuestionAnswering

    from kdlib.models import make_student

    torch.manual_seed(0)
    teacher = BertForQuestionAnswering(tiny_bert_config(num_hidden_layers=4))
    student = make_student(teacher, 2, 64, init="stride", seed=0)
    assert student.config.kd_teacher_layers == [0, 2] and student.config.kd_init == "stride"
    assert student.config.num_hidden_layers == 2
    for s_layer, t_index in zip(student.bert.encoder.layer, [0, 2]):
        t_layer = teacher.bert.encoder.layer[t_index]
        for (name, s), (_, t) in zip(s_layer.named_parameters(), t_layer.named_parameters()):
            assert torch.equal(s, t), name
    assert torch.equal(student.qa_outputs.weight, teacher.qa_outputs.weight)
    assert len(teacher.bert.encoder.layer) == teacher.config.num_hidden_layers == 4  # the teacher is untouched
