"""Training on tiny data: the teacher-output cache, cached vs online KD, determinism, resuming, torchrun; the
predictor, cache and trainer on QA and two-head models; the NaN guard."""
from __future__ import annotations

import copy
import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import yaml
from datasets import Dataset
from transformers import BertForQuestionAnswering, BertForSequenceClassification, DataCollatorWithPadding

from kdlib.core import adaptors, data, distill, losses, models, task
from kdlib.core.adaptors import MASK_VALUE
from kdlib.core.heads import BertForTwoHeadClassification, DenseTwoHead, DenseTwoHeadConfig
from kdlib.inference import timing as evaluate
from kdlib.pipeline import config
from kdlib.studies import train

REPO = Path(__file__).resolve().parents[1]


def tiny_params(teacher_dir, **changes) -> dict:
    raw = {
        "profile": "tiny", "seed": 7,
        "data": {"dataset": "fin_sentiment", "max_length": 32, "train_size": 96, "validation_size": 30,
                 "test_size": 30},
        "teacher": {"model": str(teacher_dir), "epochs": 1, "learning_rate": 1e-3, "batch_size": 16},
        "distill": {"student": {"num_layers": 1}, "epochs": 2, "learning_rate": 1e-3, "batch_size": 16,
                    "alpha": 0.5, "temperature": 2.0, "compare_online_kd": True},
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
    tok = data.tokenize(task.prepare(tiny_cfg.data, tiny_cfg.seed), tokenizer, 32)
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
        loss = trainer.compute_loss(student, {**batch, f"{distill.TEACHER_PREFIX}logits": t_logits})
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
    assert all(r["reused"] for r in again["runs"].values()) and not again["cache"]["built_now"]
    before = json.loads((out / "runs" / "nokd" / "result.json").read_text())
    (out / "runs" / "nokd" / "result.json").unlink()
    third = train.distill_student(tiny_cfg)
    assert third["runs"]["kd_cached"]["reused"] and not third["runs"]["nokd"]["reused"]
    assert third["runs"]["nokd"]["history"] == before["history"]
    assert third["runs"]["nokd"]["test"]["accuracy"] == before["test"]["accuracy"]


def test_distill_runs_give_the_same_numbers_on_two_workers_as_here(tiny_cfg, tmp_path):
    """Every student of 02 (and 03) trains with one thread wherever it runs: workers only spread the runs."""
    train.train_teacher(tiny_cfg)
    summaries = {}
    for workers in (1, 2):
        cfg = dataclasses.replace(tiny_cfg, compute=dataclasses.replace(tiny_cfg.compute, workers=workers))
        summaries[workers] = train.distill_student(cfg, out_dir=tmp_path / f"workers{workers}")
    for name, run in summaries[1]["runs"].items():
        other = summaries[2]["runs"][name]
        assert not run["reused"] and not other["reused"]
        assert run["key"] == other["key"] and run["params"]["threads"] == 1
        def numbers(history):  # what training computed, not how long it took
            return [{k: v for k, v in row.items() if "second" not in k and k != "runtime"} for row in history]
        assert numbers(run["history"]) == numbers(other["history"]) and numbers([run["test"]]) == numbers([other["test"]])


def test_online_kd_as_a_probe_trains_as_its_cached_twin_over_the_same_steps(tiny_cfg):
    train.train_teacher(tiny_cfg)
    cfg = dataclasses.replace(tiny_cfg, distill=dataclasses.replace(tiny_cfg.distill, online_kd_epochs=0.5))
    summary = train.distill_student(cfg)
    assert set(summary["runs"]) == {"kd_cached", "nokd"}  # the full runs: what the tables and plots show
    probe = summary["online_probe"]
    assert probe["epochs"] == 0.5 and set(probe["runs"]) == {"kd_cached", "kd_online"}
    cached, online = probe["runs"]["kd_cached"], probe["runs"]["kd_online"]
    assert online["train_loss"] == pytest.approx(cached["train_loss"], rel=1e-5)
    assert online["test"]["accuracy"] == cached["test"]["accuracy"]
    assert cached["train_loss"] != summary["runs"]["kd_cached"]["train_loss"]  # half an epoch, not two


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
                                                 distill={"compare_online_kd": False})))
    env = {**os.environ, "KD_REPORTS_DIR": str(tmp_path / "reports"), "KD_CACHE_DIR": str(tmp_path / "cache"),
           "OMP_NUM_THREADS": "1"}
    for step in ("teacher", "distill"):
        proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                               "-m", "kdlib.studies.train", step, "--params", str(params)],
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


# ----------------------------------------------------------------------------------------------------
# The predictor, the cache and the trainer on synthetic rows: classifiers, QA and two-head models


def hp(epochs=30, batch_size=8, learning_rate=1e-3):
    """Training settings as fit reads them (a TrainParams stand-in)."""
    return SimpleNamespace(epochs=epochs, learning_rate=learning_rate, batch_size=batch_size, eval_batch_size=16,
                           weight_decay=0.0, warmup_ratio=0.0)


def token_rows(n, seed, lengths=(4, 20), labels=3, qa=False) -> Dataset:
    """n rows of random token ids (under 1000) of varied lengths, with a class label or a gold span."""
    rng = np.random.default_rng(seed)
    rows = {"input_ids": [], "token_type_ids": [], "attention_mask": [], "label": []}
    for _ in range(n):
        length = int(rng.integers(lengths[0], lengths[1] + 1))
        rows["input_ids"].append([101, *rng.integers(1000, size=length - 1).clip(1).tolist()])
        rows["token_type_ids"].append([0] * length)
        rows["attention_mask"].append([1] * length)
        rows["label"].append(int(rng.integers(labels)))
    if qa:
        del rows["label"]
        starts = [int(rng.integers(1, len(ids))) for ids in rows["input_ids"]]
        rows["start_positions"] = starts
        rows["end_positions"] = [int(rng.integers(s, len(ids))) for s, ids in zip(starts, rows["input_ids"])]
    return Dataset.from_dict(rows)


def row_outputs(model, row) -> dict:
    """A model's outputs on one row alone (no padding, no sorting): the reference for the predictor."""
    with torch.no_grad():
        return model(**{k: torch.tensor([row[k]]) for k in ("input_ids", "token_type_ids", "attention_mask")})


def assert_trained(history, factor=0.7):
    """The training loss fell: the last epoch's is below `factor` times the first's."""
    first, last = history[0]["train_loss"], history[-1]["train_loss"]
    assert last < factor * first, (first, last)


def test_predictor_restores_row_order(tiny_bert_config, tiny_tokenizer):
    torch.manual_seed(0)
    model = BertForSequenceClassification(tiny_bert_config(num_labels=3)).eval()
    rows = token_rows(23, seed=1)
    assert len(set(len(r) for r in rows["input_ids"])) > 8  # lengths vary, so sorting reorders
    logits = distill.compute_logits(model, rows, tiny_tokenizer, batch_size=4)
    for i in range(len(rows)):
        torch.testing.assert_close(logits[i], row_outputs(model, rows[i]).logits[0], rtol=1e-5, atol=1e-5)
    # bit for bit what the cache computed before the predictor was generalised (evaluate.predict, sorted)
    order = np.argsort([len(r) for r in rows["input_ids"]], kind="stable")
    sorted_logits, _ = evaluate.predict(model, rows.select(order), 4,
                                        collate_fn=DataCollatorWithPadding(tiny_tokenizer))
    assert torch.equal(logits[torch.from_numpy(order)], torch.from_numpy(sorted_logits))


def test_cache_rebuilds_a_truncated_file_with_a_warning(tiny_bert_config, tiny_tokenizer, tmp_path):
    torch.manual_seed(0)
    teacher = BertForSequenceClassification(tiny_bert_config(num_labels=3)).eval()
    rows = token_rows(12, seed=2)
    first = distill.teacher_logits(teacher, rows, tiny_tokenizer, tmp_path)
    assert first.built_now and not first.hit and first.build_seconds > 0
    again = distill.teacher_logits(teacher, rows, tiny_tokenizer, tmp_path)
    # a hit reports the build time recorded when the entry was built, not its own
    assert again.hit and not again.built_now and again.build_seconds == first.build_seconds
    data = first.path.read_bytes()
    for broken in (data[: len(data) // 2], data[:5], b"not a safetensors file"):
        first.path.write_bytes(broken)
        with pytest.warns(UserWarning, match=r"teacher-output cache .* cannot be used \(.*\); rebuilding it"):
            rebuilt = distill.teacher_logits(teacher, rows, tiny_tokenizer, tmp_path)
        assert rebuilt.built_now and rebuilt.path == first.path and torch.equal(rebuilt.logits, first.logits)
    # an entry for another number of rows is rebuilt too
    from safetensors.torch import save_file

    save_file({"logits": first.logits[:3].contiguous()}, str(first.path))
    with pytest.warns(UserWarning, match="3 rows, the dataset 12"):
        assert distill.teacher_logits(teacher, rows, tiny_tokenizer, tmp_path).built_now


def test_qa_cache_pads_per_token_outputs_and_the_column_cuts_them(tiny_qa_teacher, tiny_tokenizer, tmp_path):
    rows = token_rows(10, seed=3, qa=True)
    cache = distill.teacher_outputs(tiny_qa_teacher, rows, tiny_tokenizer, tmp_path, batch_size=3, task="qa")
    longest = max(len(r) for r in rows["input_ids"])
    assert cache.logits is None and cache.path.name.startswith("qa-")
    assert cache.outputs["start_logits"].shape == cache.outputs["end_logits"].shape == (10, longest)
    for i in range(10):
        n, ref = len(rows[i]["input_ids"]), row_outputs(tiny_qa_teacher, rows[i])
        torch.testing.assert_close(cache.outputs["start_logits"][i, :n], ref.start_logits[0], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(cache.outputs["end_logits"][i, :n], ref.end_logits[0], rtol=1e-5, atol=1e-5)
        assert (cache.outputs["start_logits"][i, n:] == MASK_VALUE).all()
    assert distill.teacher_outputs(tiny_qa_teacher, rows, tiny_tokenizer, tmp_path, task="qa").hit
    with_teacher = distill.with_teacher_outputs(rows, cache.outputs, task="qa")
    assert [len(v) for v in with_teacher["teacher_start_logits"]] == [len(v) for v in rows["input_ids"]]
    # the collator pads them back to the batch's length, with the mask value
    collate = distill._pad_collator(tiny_tokenizer, ("teacher_start_logits", "teacher_end_logits"))
    batch = collate([with_teacher[i] for i in range(4)])
    assert batch["teacher_start_logits"].shape == batch["input_ids"].shape
    assert ((batch["teacher_end_logits"] == MASK_VALUE) == (batch["attention_mask"] == 0)).all()
    assert batch["start_positions"].dtype == torch.long


def test_qa_cached_and_online_teacher_give_the_same_loss(tiny_qa_teacher, tiny_bert_config, tiny_tokenizer,
                                                         tmp_path):
    rows = token_rows(6, seed=4, qa=True)
    cache = distill.teacher_outputs(tiny_qa_teacher, rows, tiny_tokenizer, tmp_path, batch_size=2, task="qa")
    torch.manual_seed(2)
    student = BertForQuestionAnswering(tiny_bert_config(num_hidden_layers=1)).train()  # no dropout
    args = distill.training_arguments(tmp_path, hp(), 0, save_strategy="no", eval_strategy="no",
                                      load_best_model_at_end=False)
    per_token = ("teacher_start_logits", "teacher_end_logits")
    collate = distill._pad_collator(tiny_tokenizer, per_token)
    kw = dict(model=student, args=args, task="qa", alpha=0.5, temperature=2.0, data_collator=collate)
    cached = distill.DistillTrainer(**kw).compute_loss(
        student, collate([distill.with_teacher_outputs(rows, cache.outputs, "qa")[i] for i in range(6)]))
    online = distill.DistillTrainer(**kw, teacher=tiny_qa_teacher).compute_loss(
        student, collate([rows[i] for i in range(6)]))
    torch.testing.assert_close(cached, online, rtol=1e-5, atol=1e-6)
    # and it is the documented mix on start and end
    batch = collate([rows[i] for i in range(6)])
    inputs = {k: batch[k] for k in ("input_ids", "token_type_ids", "attention_mask")}
    with torch.no_grad():
        s, t = student(**inputs), tiny_qa_teacher(**inputs)
    pad = batch["attention_mask"] == 0
    pairs = (("start_logits", "start_positions"), ("end_logits", "end_positions"))
    expected = sum(losses.kd_loss(getattr(s, k).masked_fill(pad, MASK_VALUE),
                                  getattr(t, k).masked_fill(pad, MASK_VALUE), batch[p], 0.5, 2.0)
                   for k, p in pairs) / 2
    torch.testing.assert_close(online.detach(), expected, rtol=1e-5, atol=1e-6)


def test_fit_trains_a_qa_model(tiny_qa_teacher, tiny_bert_config, tiny_tokenizer, tmp_path):
    train_rows, test_rows = token_rows(8, seed=5, qa=True), token_rows(5, seed=6, qa=True)
    cache = distill.teacher_outputs(tiny_qa_teacher, train_rows, tiny_tokenizer, tmp_path / "cache", task="qa")
    torch.manual_seed(3)
    student = models.make_student(tiny_qa_teacher, 1)
    out = distill.fit(student, tiny_tokenizer, distill.with_teacher_outputs(train_rows, cache.outputs, "qa"),
                      test_rows, test_rows, tmp_path / "run", hp(), 0, task="qa", alpha=0.5, temperature=2.0,
                      loss="soft_target", run_name="qa_kd")
    assert set(out["test"]) >= {"span_exact", "start_accuracy", "end_accuracy", "loss"}
    assert "accuracy" not in out["test"] and out["test_logits"] is None
    longest = max(len(r) for r in test_rows["input_ids"])
    assert {k: v.shape for k, v in out["test_outputs"].items()} == {"start_logits": (5, longest),
                                                                   "end_logits": (5, longest)}
    assert list(out["test_labels"]["start_positions"]) == test_rows["start_positions"]
    history = out["history"]
    assert len(history) == 30 and {"span_exact", "train_ce", "train_kd"} <= set(history[0])
    assert out["best_epoch"] == max(history, key=lambda r: r["span_exact"])["epoch"]
    assert_trained(history)
    # the test scores are those of the returned outputs
    span = adaptors.span_metrics(((out["test_outputs"]["start_logits"], out["test_outputs"]["end_logits"]),
                                  (out["test_labels"]["start_positions"], out["test_labels"]["end_positions"])))
    assert span["span_exact"] == out["test"]["span_exact"]


def test_fit_trains_a_two_head_bert_with_hetero_kd(tiny_bert_config, tiny_tokenizer, tmp_path):
    rows = token_rows(8, seed=7, labels=5)
    coarse = torch.randn(8, 3, generator=torch.Generator().manual_seed(4)) * 3  # a confident teacher
    torch.manual_seed(5)
    student = BertForTwoHeadClassification(tiny_bert_config(num_labels=5, num_distill_labels=3))
    out = distill.fit(student, tiny_tokenizer, distill.with_teacher_logits(rows, coarse), rows, rows,
                      tmp_path / "run", hp(learning_rate=1e-2), 0, task="two_head", loss="hetero", alpha=0.5,
                      temperature=2.0)
    assert out["test_outputs"]["logits"].shape == (8, 5) and out["test_outputs"]["distill_logits"].shape == (8, 3)
    assert np.array_equal(out["test_logits"], out["test_outputs"]["logits"])
    assert out["test"]["accuracy"] == np.mean(out["test_logits"].argmax(-1) == np.array(rows["label"]))
    # the test rows run shortest first (rows of 4 to 20 tokens) and come back in row order: each row's logits
    # are the trained model's on that row alone
    model = out["trainer"].model.eval()
    with torch.no_grad():
        alone = [model(input_ids=torch.tensor([ids])).logits[0] for ids in rows["input_ids"]]
    np.testing.assert_allclose(out["test_logits"], torch.stack(alone).numpy(), atol=1e-4)
    first, last = out["history"][0], out["history"][-1]
    assert {"accuracy", "macro_f1", "train_ce", "train_kd"} <= set(last)
    assert_trained(out["history"], factor=0.5)
    assert last["train_kd"] < 0.5 * first["train_kd"]  # the distillation head follows the teacher


def test_fit_trains_a_dense_two_head_on_embeddings_cached_or_online(tmp_path):
    rng = np.random.default_rng(8)
    rows = Dataset.from_dict({"embeddings": rng.normal(size=(8, 16)).astype(np.float32).tolist(),
                              "label": rng.integers(5, size=8).tolist()})
    torch.manual_seed(6)
    teacher = DenseTwoHead(DenseTwoHeadConfig(input_dim=16, hidden_sizes=[12], num_labels=3)).eval()
    cache = distill.teacher_logits(teacher, rows, None, tmp_path / "cache")
    assert cache.logits.shape == (8, 3)
    torch.testing.assert_close(cache.logits, teacher(embeddings=torch.tensor(rows["embeddings"])).logits)
    student = DenseTwoHead(DenseTwoHeadConfig(input_dim=16, hidden_sizes=[8], num_labels=5, num_distill_labels=3))
    runs = {}
    for name, train_ds, online in (("cached", distill.with_teacher_logits(rows, cache.logits), None),
                                   ("online", rows, teacher)):
        runs[name] = distill.fit(copy.deepcopy(student), None, train_ds, rows, rows, tmp_path / name,
                                 hp(learning_rate=1e-2), 0, teacher=online, task="two_head", loss="hetero",
                                 alpha=0.5, temperature=4.0, loss_options={"convention": "paper"})
    assert_trained(runs["cached"]["history"], factor=0.5)
    for a, b in zip(runs["cached"]["history"], runs["online"]["history"]):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)
    assert runs["cached"]["test"]["accuracy"] == runs["online"]["test"]["accuracy"]


def test_nan_teacher_outputs_stop_the_run_naming_the_term(tiny_bert_config, tiny_tokenizer, tmp_path):
    rows = token_rows(8, seed=9)
    torch.manual_seed(0)
    student = BertForSequenceClassification(tiny_bert_config(num_labels=3))
    nan_logits = torch.full((8, 3), float("nan"))
    with pytest.raises(distill.NonFiniteLossError, match=r"^run 'kd_nan': step 1: loss term 'kd' is nan$"):
        distill.fit(student, tiny_tokenizer, distill.with_teacher_logits(rows, nan_logits), rows, rows,
                    tmp_path / "run", hp(epochs=2), 0, alpha=0.5, temperature=2.0, run_name="kd_nan",
                    history_csv=tmp_path / "history.csv")
    assert not (tmp_path / "history.csv").exists()  # nothing was recorded


def test_a_model_gone_nan_stops_the_run_at_that_step(tiny_bert_config, tiny_tokenizer, tmp_path):
    rows = token_rows(8, seed=10)
    torch.manual_seed(0)
    student = BertForSequenceClassification(tiny_bert_config(num_labels=3))
    calls = []

    def nan_from_third_step(module, args, output):  # training forwards only; evaluation does not count
        calls.extend([1] if module.training else [])
        return output * float("nan") if len(calls) >= 3 else output

    student.classifier.register_forward_hook(nan_from_third_step)
    # 2 steps per epoch: step 3 is the first of epoch 2, after an evaluation; the run's name is its folder
    with pytest.raises(distill.NonFiniteLossError, match=r"run '.*run': step 3: loss term 'ce' is nan"):
        distill.fit(student, tiny_tokenizer, rows, rows, rows, tmp_path / "run", hp(epochs=3, batch_size=4), 0)


def test_fit_refuses_what_cannot_run(tiny_bert_config, tiny_tokenizer, tmp_path):
    rows = token_rows(4, seed=11)
    student = BertForSequenceClassification(tiny_bert_config(num_labels=3))
    with pytest.raises(ValueError, match="loss 'tinybert' needs the teacher's hidden states or attentions"):
        distill.fit(student, tiny_tokenizer, rows, rows, rows, tmp_path, hp(), 0, loss="tinybert")
    with pytest.raises(ValueError, match=r"loss 'soft_target' takes no option convention \(its options: alpha, "
                                         r"temperature\)"):
        distill.fit(student, tiny_tokenizer, rows, rows, rows, tmp_path, hp(), 0, alpha=0.5,
                    loss_options={"convention": "paper"})
    with pytest.raises(ValueError, match="unknown task"):
        distill.fit(student, tiny_tokenizer, rows, rows, rows, tmp_path, hp(), 0, task="ner")
