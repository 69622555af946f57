"""Seed 000's grid: FLOP counts, the paper's architecture to the unit, the time fit, general distillation."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from kdlib.compress.flops import bert_flops, model_flops
from kdlib.studies import grid, papers


def test_flops_of_a_tiny_config_by_hand():
    # n=4 tokens, h=8, f=16, 2 layers, 3 labels:
    #   per layer: projections 2*4*4*8*8 = 2048, scores 2*2*4*4*8 = 512, FFN 2*2*4*8*16 = 2048 -> 4608
    #   head: pooler 2*8*8 = 128, classifier 2*8*3 = 48 -> 176
    f = bert_flops(hidden=8, layers=2, ffn=16, seq_len=4, num_labels=3)
    assert (f["layer_attention_projections"], f["layer_attention_scores"], f["layer_ffn"]) == (2048, 512, 2048)
    assert f["encoder"] == 2 * 4608 and f["head"] == 176 and f["total"] == 9392


def test_flops_equal_torchs_own_count_on_a_real_model():
    from torch.utils.flop_counter import FlopCounterMode
    from transformers import BertConfig, BertForSequenceClassification

    config = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
                        intermediate_size=48, num_labels=3, attn_implementation="eager")
    model = BertForSequenceClassification(config).eval()
    ids = torch.randint(5, 100, (1, 10))
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(input_ids=ids)
    assert model_flops(model, seq_len=10) == counter.get_total_flops()


def test_the_papers_nine_students_match_its_parameter_counts_to_the_unit():
    table = grid.paper_architecture_table()
    assert len(table) == 9 and (table["params"] == table["params_paper"]).all()
    # Seed 000's counts: 23,894,064 + L x (2,365,440 + 1,537 x FFN + 768) (DistilBERT MLM, vocab 30,000)
    expected = 23_894_064 + table["layers"] * (2_365_440 + 1_537 * table["ffn"] + 768)
    assert (table["params"] == expected).all()
    # a 3-label classifier instead of the tied MLM head: 29,229 fewer
    assert (table["params"] - table["params_classifier"] == 29_229).all()


def test_time_fit_recovers_known_costs():
    layers = np.array([1, 1, 1, 2, 2, 2, 3, 3, 3])
    ffn = np.array([96, 384, 1536] * 3)
    seconds = 2.0 + layers * (1.5 + 0.001 * ffn)  # t0 = 2, a layer 1.5 + 0.001 per FFN unit
    f = grid.fit_time(layers, ffn, seconds)
    assert f["t0"] == pytest.approx(2.0) and f["per_layer"] == pytest.approx(1.5)
    assert f["per_layer_per_ffn"] == pytest.approx(0.001) and f["r2"] == pytest.approx(1.0)
    assert f["layer_cost_at_middle_ffn"] == pytest.approx(1.5 + 0.384)
    assert f["ffn_widening_cost_one_layer"] == pytest.approx(0.001 * 1440)
    assert f["layer_vs_ffn_time_ratio"] == pytest.approx((1.5 + 0.384) / 1.44)


def _summary_and_bench():
    """Two half-depth students and a 1-layer one: the best on test (L3_F96) is not the best on validation."""
    import pandas as pd

    def run(layers, ffn, vals, test):
        return {"layers": layers, "ffn": ffn, "route": "layer copy", "param_count": 1000 * layers + ffn,
                "params": {"bf16": False}, "best_epoch": 1.0, "test": {"accuracy": test, "macro_f1": test - 0.1},
                "history": [{"epoch": e + 1.0, "accuracy": v} for e, v in enumerate(vals)]}

    runs = {"L3_F96": run(3, 96, [0.80, 0.81], 0.83), "L3_F1536": run(3, 1536, [0.84, 0.83], 0.81),
            "L1_F96": run(1, 96, [0.70, 0.72], 0.71)}
    bench = pd.DataFrame([{"name": n, "batch_size": b, "status": "ok", "runtime": "torch", "precision": "fp32",
                           "size_mb": 1.0, "latency_ms_median": float(b), "latency_ms_p95": 2.0 * b,
                           "throughput_per_s": 1000.0} for n in runs for b in (1, 32)])
    return {"runs": runs}, bench


def test_table4_records_each_students_validation_accuracy_at_its_kept_epoch():
    summary, bench = _summary_and_bench()
    table = grid.table4(summary, bench, {}, teacher_accuracy=0.85, seq_len=8, hidden=32, num_labels=3)
    assert table.set_index("student")["val_accuracy"].to_dict() == pytest.approx(
        {"L3_F96": 0.81, "L3_F1536": 0.84, "L1_F96": 0.72})


def test_best_half_depth_is_chosen_on_validation_and_scored_on_test():
    summary, bench = _summary_and_bench()
    table = grid.table4(summary, bench, {}, teacher_accuracy=0.85, seq_len=8, hidden=32, num_labels=3)
    best = grid.best_student(table, layers=3)
    # L3_F96 has the best test accuracy (0.83), L3_F1536 the best validation accuracy (0.84): the latter is
    # chosen, and its retention is its own test accuracy over the teacher's.
    assert best.student == "L3_F1536"
    assert best.retention == pytest.approx(0.81 / 0.85)
    assert grid.best_student(table).student == "L3_F1536"
    with pytest.raises(ValueError, match="6-layer"):
        grid.best_student(table, layers=6)


def test_the_papers_own_table_supports_its_advice():
    finding = grid.fit_time(*zip(*[(l, f, s) for (l, f), (_, s) in papers.SEED000_TABLE4.items()]))
    assert finding["layer_vs_ffn_time_ratio"] > 1


@pytest.mark.slow
def test_general_distillation_moves_the_students_hidden_states_toward_the_teachers(tiny_teacher_dir, tmp_path):
    """TinyBERT's layer losses on unlabelled text: the loss decreases and the student's hidden states and
    attentions come closer to the teacher's."""
    import datasets
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from kdlib.core import losses, models
    from kdlib.core.distill import fit
    from kdlib.pipeline.config import TrainParams

    teacher = AutoModelForSequenceClassification.from_pretrained(tiny_teacher_dir, attn_implementation="eager")
    tokenizer = AutoTokenizer.from_pretrained(tiny_teacher_dir)
    student = models.make_student(teacher, 1, 96, init="alternate", seed=0)
    torch.manual_seed(0)
    for p in student.bert.encoder.parameters():  # start away from the copied layer
        p.data.add_(0.05 * torch.randn_like(p))
    rng = np.random.default_rng(0)
    rows = [rng.integers(1000, tokenizer.vocab_size, size=rng.integers(6, 20)).tolist() for _ in range(64)]
    ds = datasets.Dataset.from_dict({"input_ids": [[101] + r + [102] for r in rows],
                                     "attention_mask": [[1] * (len(r) + 2) for r in rows],
                                     "label": rng.integers(0, 3, size=64).tolist()})
    batch = dict(tokenizer.pad([{"input_ids": ds[i]["input_ids"]} for i in range(8)], return_tensors="pt"))

    def gap(model):
        with torch.no_grad():
            s = model(**batch, output_hidden_states=True, output_attentions=True)
            t = teacher(**batch, output_hidden_states=True, output_attentions=True)
        return losses.LOSSES["tinybert"].fn(
            {"hidden_states": s.hidden_states, "attentions": s.attentions, "attention_mask": batch["attention_mask"]},
            {"hidden_states": t.hidden_states, "attentions": t.attentions}, {})["loss"].item()

    before = gap(student)
    hp = TrainParams(epochs=8, learning_rate=3e-3, batch_size=16, eval_batch_size=32, warmup_ratio=0.0)
    out = fit(student, tokenizer, ds, ds.select(range(16)), ds.select(range(16)), tmp_path / "gd", hp, seed=0,
              teacher=teacher, alpha=0.0, loss="tinybert", run_name="gd")
    trained = out["trainer"].model
    history = out["history"]
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert gap(trained) < 0.7 * before
