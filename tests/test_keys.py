"""Keys that name everything that decides a unit's numbers: the content of the models and arrays a unit
consumes (not the recipe that made them), the teacher in every student, and for a timing the machine, the
threads and the runtime versions."""
from __future__ import annotations

import types

import numpy as np
import pytest
import torch
from transformers import BertForSequenceClassification

from kdlib.core import distill, fingerprint, models
from kdlib.inference import machine
from kdlib.pipeline import memo
from kdlib.pipeline.config import load_params
from kdlib.studies import train
from kdlib.studies.hetero.dense import Split, splits_fingerprint


@pytest.fixture
def cfg():
    return load_params("params/smoke.yaml")


def _teacher(config, seed: int):
    torch.manual_seed(seed)
    return BertForSequenceClassification(config).eval()


def _specs(cfg, teacher) -> dict[str, dict]:
    """The specs of the runs that start from the teacher's weights, one per way a student learns."""
    student = models.make_student(teacher, 1, 37, init="alternate", seed=cfg.seed)
    d = cfg.distill
    return {"cached KD": train.student_spec(cfg, student, d, d.loss, d.alpha, d.temperature, "logits-x.safetensors",
                                            teacher=teacher),
            "online KD": train.student_spec(cfg, student, d, d.loss, d.alpha, d.temperature, "online", teacher=teacher),
            "no-KD twin": train.student_spec(cfg, student, d, "ce", 1.0, d.temperature, None, teacher=teacher)}


def test_every_student_key_changes_with_the_teachers_weights(cfg, tiny_bert_config):
    """The same recipe, other weights (bf16 on another CPU, a new learning rate): every student built from
    the teacher, the no-KD twin and the online-KD run included, gets a new key."""
    config = tiny_bert_config(num_labels=3)
    a, again, b = _specs(cfg, _teacher(config, 0)), _specs(cfg, _teacher(config, 0)), _specs(cfg, _teacher(config, 1))
    for run in a:
        key = memo.unit_key("student", train.TRAINING_CODE, a[run])
        assert key == memo.unit_key("student", train.TRAINING_CODE, again[run]), run
        assert key != memo.unit_key("student", train.TRAINING_CODE, b[run]), run


def test_qa_students_are_keyed_by_the_same_origin(tiny_bert_config):
    """Step 06's students use the same origin as the classification students: teacher and initial weights."""
    config = tiny_bert_config(num_labels=3)
    t0, t1 = _teacher(config, 0), _teacher(config, 1)
    s0 = models.make_student(t0, 1, 37, init="alternate", seed=0)
    assert train.student_origin(t0, s0) == train.student_origin(_teacher(config, 0), s0)
    assert train.student_origin(t0, s0)["teacher"] != train.student_origin(t1, s0)["teacher"]
    assert train.student_origin(t0, s0)["init_weights"] != train.student_origin(t0, models.make_student(
        t1, 1, 37, init="alternate", seed=0))["init_weights"]


def test_a_local_model_is_keyed_by_its_files_not_its_path(tmp_path, tiny_bert_config, tiny_tokenizer):
    folder = tmp_path / "my_teacher"
    models.save_model(_teacher(tiny_bert_config(num_labels=3), 0), tiny_tokenizer, folder)
    first = train.source_fingerprint(str(folder))
    assert first == train.source_fingerprint(str(folder))
    models.save_model(_teacher(tiny_bert_config(num_labels=3), 1), tiny_tokenizer, folder)  # retrained in place
    assert train.source_fingerprint(str(folder)) != first
    assert train.source_fingerprint("some-org/some-hub-model") == "some-org/some-hub-model"


def test_dense_runs_are_keyed_by_the_embeddings_content():
    rng = np.random.default_rng(0)

    def splits(x):
        return {"train": Split(torch.tensor(x), torch.tensor([0, 1]), torch.tensor([0, 0]))}

    x = rng.normal(size=(2, 4)).astype(np.float32)
    nudged = x.copy()
    nudged[0, 0] += 1e-3  # the same encoder and route on another CPU: slightly different embeddings
    assert splits_fingerprint(splits(x)) == splits_fingerprint(splits(x.copy()))
    assert splits_fingerprint(splits(x)) != splits_fingerprint(splits(nudged))


def test_a_timing_recorded_on_another_machine_is_timed_again(tmp_path, monkeypatch):
    calls = []

    def build(folder):
        calls.append(1)
        return {"ms": 1.0}

    def key():
        return memo.unit_key("benchmark", ("inference.timing",), {"batch": 1}, memo.machine())

    memo.run_unit(tmp_path / "u", key(), build)
    assert memo.run_unit(tmp_path / "u", key(), build)["reused"] and len(calls) == 1
    monkeypatch.setattr(machine, "cpu_model", lambda: "Another CPU")  # the committed unit came from elsewhere
    assert memo.run_unit(tmp_path / "u", key(), build)["reused"] is False and len(calls) == 2
    monkeypatch.undo()
    assert memo.machine(threads=1) != memo.machine(threads=2)  # the threads a timing used
    versions = machine.describe()["versions"]
    monkeypatch.setattr(machine, "package_version", lambda name: "0.0" if name == "torch" else None)
    assert machine.describe()["versions"] != versions  # and the runtime's version


def test_the_teacher_output_cache_is_keyed_by_its_code(tmp_path, tiny_bert_config, tiny_tokenizer, monkeypatch):
    import datasets

    teacher = _teacher(tiny_bert_config(num_labels=3), 0)
    ds = datasets.Dataset.from_dict({"input_ids": [[101, 7, 8, 102], [101, 9, 102]],
                                     "attention_mask": [[1, 1, 1, 1], [1, 1, 1]]})
    first = distill.teacher_outputs(teacher, ds, tiny_tokenizer, tmp_path)
    assert distill.teacher_outputs(teacher, ds, tiny_tokenizer, tmp_path).path == first.path
    real = fingerprint.code_fingerprint
    monkeypatch.setattr(distill, "code_fingerprint", lambda *code: real(*code) + "-edited")
    second = distill.teacher_outputs(teacher, ds, tiny_tokenizer, tmp_path)
    assert second.path != first.path and second.built_now


def test_weights_fingerprint_reads_the_files(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "model.safetensors").write_bytes(b"abc")
    first = fingerprint.weights_fingerprint(tmp_path)
    (tmp_path / "notes.md").write_text("a note")  # not a model file
    assert fingerprint.weights_fingerprint(tmp_path) == first
    (tmp_path / "model.safetensors").write_bytes(b"abd")
    assert fingerprint.weights_fingerprint(tmp_path) != first
    with pytest.raises(FileNotFoundError):
        fingerprint.weights_fingerprint(tmp_path / "empty")


def test_a_failed_result_is_not_memoised(tmp_path):
    calls = []

    def build(folder):
        calls.append(1)
        return {"status": "failed: out of memory" if len(calls) == 1 else "ok"}

    keep = lambda r: r["status"] == "ok"  # noqa: E731
    assert memo.run_unit(tmp_path / "u", "k", build, keep=keep)["status"].startswith("failed")
    assert memo.run_unit(tmp_path / "u", "k", build, keep=keep)["status"] == "ok"  # tried again
    assert memo.run_unit(tmp_path / "u", "k", build, keep=keep)["reused"] and len(calls) == 2


def test_a_model_folder_is_replaced_whole(tmp_path, tiny_bert_config, tiny_tokenizer):
    folder = tmp_path / "m"
    models.save_model(_teacher(tiny_bert_config(num_labels=3), 0), tiny_tokenizer, folder)
    before = fingerprint.weights_fingerprint(folder)

    class Broken:
        def save_pretrained(self, path):
            (types.SimpleNamespace(p=path).p / "model.safetensors").write_bytes(b"half")
            raise OSError("disk full")

    with pytest.raises(OSError):
        models.save_model(Broken(), None, folder)
    assert fingerprint.weights_fingerprint(folder) == before  # the old folder, whole
    assert [p.name for p in tmp_path.iterdir()] == ["m"]  # no temporary folder left behind
