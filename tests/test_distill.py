"""Training on tiny data: the teacher-output cache, cached vs online KD, determinism, resuming, torchrun."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from kdlib import config, distill, losses, train

REPO = Path(__file__).resolve().parents[1]


def tiny_params(teacher_dir, **changes) -> dict:
    raw = {
        "profile": "tiny", "seed": 7,
        "data": {"dataset": "fin_sentiment", "max_length": 32, "train_size": 96, "validation_size": 30,
                 "test_size": 30},
        "teacher": {"model": str(teacher_dir), "epochs": 1, "learning_rate": 1e-3, "batch_size": 16},
        "student": {"num_layers": 1},
        "distill": {"epochs": 2, "learning_rate": 1e-3, "batch_size": 16, "alpha": 0.5, "temperature": 2.0},
        "compute": {"compare_online_kd": True},
    }
    return config.deep_merge(raw, changes)


@pytest.fixture
def tiny_cfg(tiny_teacher_dir, data_dir, reports_dir):
    return config.from_dict(tiny_params(tiny_teacher_dir))


@pytest.fixture
def tiny_data(tiny_cfg, tiny_teacher_dir):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_teacher_dir)
    teacher = AutoModelForSequenceClassification.from_pretrained(tiny_teacher_dir).eval()
    tok = train.tokenize(train.prepare_data(tiny_cfg), tokenizer, 32)
    return teacher, tokenizer, tok


def test_cache_computes_once_and_keys_on_content(tiny_data, tmp_path):
    teacher, tokenizer, tok = tiny_data
    first = distill.teacher_logits(teacher, tok["train"], tokenizer, tmp_path)
    assert not first.hit and first.path.exists() and first.logits.shape == (96, 3)
    again = distill.teacher_logits(teacher, tok["train"], tokenizer, tmp_path)
    assert again.hit and torch.equal(again.logits, first.logits)
    # The cached values are the teacher's logits, row by row.
    row = tok["train"][5]
    with torch.no_grad():
        direct = teacher(input_ids=torch.tensor([row["input_ids"]]),
                         attention_mask=torch.tensor([row["attention_mask"]])).logits[0]
    torch.testing.assert_close(first.logits[5], direct, rtol=1e-5, atol=1e-5)
    # Another max length means other token ids, so another entry; so does another teacher.
    shorter = tok["train"].map(lambda r: {k: r[k][:8] for k in ("input_ids", "token_type_ids", "attention_mask")})
    assert distill.teacher_logits(teacher, shorter, tokenizer, tmp_path).path != first.path
    with torch.no_grad():
        teacher.classifier.bias.add_(1.0)
    assert distill.teacher_logits(teacher, tok["train"], tokenizer, tmp_path).path != first.path
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_teacher_logits_column_must_match_rows(tiny_data):
    _, _, tok = tiny_data
    with pytest.raises(ValueError, match="3 teacher logits for 96 rows"):
        distill.with_teacher_logits(tok["train"], torch.zeros(3, 3))


def test_trainer_loss_is_the_documented_mix(tiny_data, tmp_path):
    teacher, tokenizer, tok = tiny_data
    student = teacher  # the loss does not care which model plays the student
    hp = config.DistillParams(epochs=1, batch_size=4)
    trainer = distill.DistillTrainer(model=student, args=distill.training_arguments(tmp_path, hp, 0, eval_strategy="no", save_strategy="no",
                                                                     load_best_model_at_end=False),
                                     data_collator=distill._pad_collator(tokenizer), alpha=0.3, temperature=3.0)
    batch = distill._pad_collator(tokenizer)([dict(tok["train"][i]) for i in range(4)])
    t_logits = torch.randn(4, 3)
    with torch.no_grad():
        s_logits = student(**{k: v for k, v in batch.items() if k != "labels"}).logits
        loss = trainer.compute_loss(student, {**batch, distill.TEACHER_LOGITS: t_logits})
        plain = trainer.compute_loss(student, dict(batch))
    expected = 0.3 * losses.hard_ce(s_logits, batch["labels"]) + 0.7 * losses.soft_target_kd(s_logits, t_logits, 3.0)
    torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(plain, losses.hard_ce(s_logits, batch["labels"]))  # no teacher: CE only


def test_distill_step_cached_equals_online_and_is_deterministic(tiny_cfg, reports_dir):
    teacher = train.train_teacher(tiny_cfg)
    assert (reports_dir / "tiny" / "01_teacher" / "model" / "model.safetensors").exists()
    assert teacher["result"]["test"]["accuracy"] > 0
    summary = train.distill_student(tiny_cfg)
    runs = summary["runs"]
    assert set(runs) == {"kd_cached", "kd_online", "nokd"}
    # Cached and online KD see the same teacher numbers: same losses, same accuracy, epoch by epoch.
    for a, b in zip(runs["kd_cached"]["history"], runs["kd_online"]["history"]):
        assert a["accuracy"] == b["accuracy"]
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)
    assert runs["kd_cached"]["test"]["accuracy"] == runs["kd_online"]["test"]["accuracy"]
    # KD and no-KD train differently from the same start.
    assert runs["kd_cached"]["train_loss"] != runs["nokd"]["train_loss"]
    assert summary["student_layers"] == [0] and summary["student_params"]["total"] < summary["teacher_params"]["total"]
    out = reports_dir / "tiny" / "02_distill"
    assert (out / "student_model" / "model.safetensors").exists()
    assert not list(out.glob("runs/*/checkpoints"))  # removed once a run is complete
    for name in runs:
        assert (out / "runs" / name / "history.csv").exists() and (out / "runs" / name / "test_predictions.csv").exists()

    # A second call reuses every finished run; deleting one result re-trains that run alone, identically.
    again = train.distill_student(tiny_cfg)
    assert all(r["reused"] for r in again["runs"].values()) and again["cache"]["hit"]
    before = json.loads((out / "runs" / "nokd" / "result.json").read_text())
    (out / "runs" / "nokd" / "result.json").unlink()
    third = train.distill_student(tiny_cfg)
    assert third["runs"]["kd_cached"]["reused"] and not third["runs"]["nokd"]["reused"]
    assert third["runs"]["nokd"]["history"] == before["history"]
    assert third["runs"]["nokd"]["test"]["accuracy"] == before["test"]["accuracy"]


def test_distill_without_teacher_says_what_to_run(tiny_cfg):
    with pytest.raises(FileNotFoundError, match="run step 01_teacher first"):
        train.distill_student(tiny_cfg)


def test_epoch_history_pairs_train_loss_with_evaluation():
    logs = [{"loss": 1.0, "epoch": 1.0}, {"eval_accuracy": 0.5, "eval_macro_f1": 0.4, "eval_runtime": 1, "epoch": 1.0},
            {"loss": 0.5, "epoch": 2.0}, {"eval_accuracy": 0.7, "eval_macro_f1": 0.6, "epoch": 2.0},
            {"train_runtime": 3.0, "epoch": 2.0}]
    assert distill.epoch_history(logs) == [
        {"epoch": 1.0, "train_loss": 1.0, "accuracy": 0.5, "macro_f1": 0.4},
        {"epoch": 2.0, "train_loss": 0.5, "accuracy": 0.7, "macro_f1": 0.6},
    ]


@pytest.mark.slow
def test_runs_unchanged_under_torchrun_with_two_processes(tiny_teacher_dir, data_dir, tmp_path):
    """The same module, launched by torchrun on CPU (gloo): two ranks train together."""
    params = tmp_path / "ddp.yaml"
    params.write_text(yaml.safe_dump(tiny_params(tiny_teacher_dir, profile="ddp",
                                                 compute={"compare_online_kd": False})))
    env = {**os.environ, "KD_REPORTS_DIR": str(tmp_path / "reports"), "KD_CACHE_DIR": str(tmp_path / "cache"),
           "OMP_NUM_THREADS": "1"}
    for step in ("teacher", "distill"):
        proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                               "-m", "kdlib.train", step, "--params", str(params)],
                              cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        # Two processes that each train their own copy also "run": the ranks must form one DDP job.
        assert "parallel_mode != ParallelMode.DISTRIBUTED" not in proc.stderr
        assert "Could not locate the best model" not in proc.stderr
    summary = json.loads((tmp_path / "reports" / "ddp" / "02_distill" / "runs" / "summary.json").read_text())
    assert {(r["world_size"], r["parallel_mode"]) for r in summary["runs"].values()} == {(2, "distributed")}
    teacher = json.loads((tmp_path / "reports" / "ddp" / "01_teacher" / "runs" / "teacher" / "result.json").read_text())
    assert (teacher["world_size"], teacher["parallel_mode"]) == (2, "distributed")
    # Two ranks with batch 16 each: 96 rows make 3 optimisation steps per epoch, not 6.
    assert teacher["history"][0]["epoch"] == 1.0 and len(teacher["history"]) == 1
