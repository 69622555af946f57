"""Step 06's students (kdlib/studies/edge/step.py): which teacher layers they start from, and what they copy."""
from __future__ import annotations

import pytest
import torch


def test_edge_students_start_from_alternate_or_stride_layers(tmp_path):
    """Step 06 offers two of kdlib.core.models' layer choices; any other is refused when the parameters load."""
    import yaml

    from kdlib.pipeline.config import ParamsError, load_params

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

    from kdlib.core.models import make_student

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


def test_attention_dropout_is_set_on_the_teacher_and_kept_by_its_students(tiny_bert_config, tmp_path):
    """edge.attention_dropout replaces the config's attention dropout (None keeps it); a student cut from the
    teacher keeps the teacher's, and the setting is part of what keys the training runs."""
    from transformers import BertForQuestionAnswering

    from kdlib.core.models import make_student
    from kdlib.pipeline.config import EdgeParams
    from kdlib.studies.edge import qa
    from kdlib.studies.edge import step as edge

    BertForQuestionAnswering(tiny_bert_config(attention_probs_dropout_prob=0.1)).save_pretrained(tmp_path / "t")
    assert qa.load_qa_model(str(tmp_path / "t"), 0).config.attention_probs_dropout_prob == 0.1
    teacher = qa.load_qa_model(str(tmp_path / "t"), 0, attention_dropout=0.0)
    assert teacher.config.attention_probs_dropout_prob == 0.0
    assert all(layer.attention.self.dropout.p == 0.0 for layer in teacher.bert.encoder.layer)
    assert make_student(teacher, 1, 64, seed=0).config.attention_probs_dropout_prob == 0.0
    assert "attention_dropout" not in edge._NOT_TRAINING and "attention_dropout" not in edge._STUDENTS_ONLY
    assert EdgeParams().attention_dropout is None


CONTEXT = "The Broncos defeated the Panthers 24 to 10 at Levi's Stadium in Santa Clara, California, in February 2016."


def _example(i: int, question: str, answer: str) -> dict:
    return {"id": str(i), "question": question, "context": CONTEXT,
            "answers": {"text": [answer], "answer_start": [CONTEXT.index(answer)]}}


def test_the_transfer_set_is_labelled_by_the_teacher_alone(tiny_bert_config, tmp_path, monkeypatch):
    """KD's transfer questions reach the KD students with the teacher's logits and its most likely start and
    end as their span (their own answers are never read); the train questions keep their gold spans."""
    from transformers import BertForQuestionAnswering

    from kdlib.core import squad
    from kdlib.core.models import load_tokenizer, save_model
    from kdlib.studies.edge import qa
    from kdlib.studies.edge import step as edge

    monkeypatch.setenv("KD_CACHE_DIR", str(tmp_path / "cache"))
    tokenizer = load_tokenizer("minilm")
    torch.manual_seed(0)
    save_model(BertForQuestionAnswering(tiny_bert_config(vocab_size=30522)).eval(), tokenizer, tmp_path / "teacher")
    examples = {"train": [_example(0, "Who won?", "Broncos"), _example(1, "Who lost?", "Panthers")],
                "select": [_example(2, "When?", "February 2016")],
                # Answers that are wrong on purpose: were they read, the spans would point at them.
                "transfer": [_example(3, "Where?", "The Broncos"), _example(4, "Score?", "The Broncos")],
                "eval": [_example(5, "Where was it?", "Levi's Stadium")]}
    datasets = qa.window_datasets(examples, squad.window_tokenizer(tokenizer, 40, 16))
    assert "start_positions" not in datasets["transfer"].column_names
    inputs = edge.StepInputs(tokenizer, examples, datasets, bf16=False, settings={})
    teacher = edge.load_teacher({"model_dir": str(tmp_path / "teacher")}, inputs)

    train, transfer, kd = datasets["train"], datasets["transfer"], teacher.kd_train
    assert len(kd) == len(train) + len(transfer) and len(transfer) >= 2
    assert kd["start_positions"][:len(train)] == train["start_positions"]
    with torch.no_grad():
        for i in range(len(train), len(kd)):
            row = kd[i]
            out = teacher.model(**{k: torch.tensor([row[k]]) for k in squad.TOKEN_INPUTS})
            assert row["teacher_start_logits"] == pytest.approx(out.start_logits[0].tolist(), abs=1e-4)
            assert row["start_positions"] == int(out.start_logits[0].argmax())
            assert row["end_positions"] == int(out.end_logits[0].argmax())


def test_teacher_outputs_under_bf16_are_float32_and_cached_apart(tiny_qa_teacher, tiny_tokenizer, tmp_path):
    import datasets

    from kdlib.core import distill

    ds = datasets.Dataset.from_dict({"input_ids": [[101, 7, 8, 9, 102], [101, 5, 102]],
                                     "attention_mask": [[1] * 5, [1] * 3]})
    fp32 = distill.teacher_outputs(tiny_qa_teacher, ds, tiny_tokenizer, tmp_path, task="qa")
    bf16 = distill.teacher_outputs(tiny_qa_teacher, ds, tiny_tokenizer, tmp_path, task="qa", bf16=True)
    assert bf16.path != fp32.path and bf16.built_now and fp32.built_now
    for name in ("start_logits", "end_logits"):
        a, b = fp32.outputs[name], bf16.outputs[name]
        assert b.dtype == torch.float32 and a.shape == b.shape
        assert torch.allclose(a, b, atol=0.05) and not torch.equal(a, b)  # bf16 keeps ~3 significant digits


def test_train_select_and_transfer_questions_are_disjoint_draws(data_dir):
    from kdlib.pipeline.config import EdgeParams
    from kdlib.studies.edge.qa import load_examples

    ex = load_examples(EdgeParams(train_size=30, select_size=5, transfer_size=12, eval_size=4), seed=3)
    ids = {name: {e["id"] for e in ex[name]} for name in ("train", "select", "transfer", "eval")}
    assert {k: len(v) for k, v in ids.items()} == {"train": 30, "select": 5, "transfer": 12, "eval": 4}
    assert not (ids["train"] & ids["select"]) and not (ids["transfer"] & (ids["train"] | ids["select"]))
    # The transfer set comes after train and select in the same draw: adding it changes neither.
    without = load_examples(EdgeParams(train_size=30, select_size=5, transfer_size=0, eval_size=4), seed=3)
    assert without["train"] == ex["train"] and without["select"] == ex["select"] and without["transfer"] == []


def test_the_quantized_route_is_chosen_for_this_cpu_on_validation_f1():
    from kdlib.studies.edge import step as step06

    def v(runtime, precision, f1, seconds, model="half", status="ok"):
        return {"model": model, "runtime": runtime, "precision": precision, "f1": f1, "total_seconds": seconds,
                "status": status}

    variants = [v("torch", "fp32", 40.0, 10.0), v("onnxruntime", "int8", 35.0, 3.0),  # fastest, but loses 12%
                v("openvino", "int8_static", 39.5, 4.0), v("onnxruntime", "int8_static", 39.0, 5.0),
                v("openvino", "bf16", 40.0, 1.0, status="not run: no native bf16"), v("torch", "fp32", 50.0, 20.0, "teacher")]
    # the two fastest within 97% (38.8), fastest first
    assert step06.quantized_candidates(variants, "half") == [("openvino", "int8_static"), ("onnxruntime", "int8_static")]
    # none within 97%: the most accurate
    lossy = [v("torch", "fp32", 40.0, 10.0), v("onnxruntime", "int8", 30.0, 3.0), v("openvino", "int8_static", 35.0, 4.0)]
    assert step06.quantized_candidates(lossy, "half") == [("openvino", "int8_static")]
    assert step06.quantized_candidates([v("torch", "fp32", 40.0, 10.0)], "half") == []


def test_the_quoted_route_is_the_candidate_faster_beside_the_teacher():
    import pandas as pd

    from kdlib.studies.edge import step as step06

    pairs = pd.DataFrame([
        {"model": "half", "runtime": "torch", "precision": "fp32", "status": "ok", "speedup": 1.9},
        {"model": "half", "runtime": "openvino", "precision": "int8_static", "status": "ok", "speedup": 4.1},
        {"model": "half", "runtime": "openvino", "precision": "bf16", "status": "ok", "speedup": 4.4},
        {"model": "other", "runtime": "onnxruntime", "precision": "int8", "status": "ok", "speedup": 9.0}])
    assert step06.quoted_route(pairs, "half") == ("openvino", "bf16")  # the faster in turn, not in its own run
    assert step06.quoted_route(pairs.iloc[:1], "half") is None  # only fp32 ran
    assert step06.quoted_route(pairs.iloc[0:0], "half") is None
