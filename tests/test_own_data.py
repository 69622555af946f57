"""Your own task end to end: `kdstudy init` on a CSV with its own column names and string labels, then
`kdstudy run` through 00-04 and the report on a tiny profile; the report opens with the model to ship, and 04
has exported it to a folder that loads without torch and predicts label names."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from kdlib.cli import main
from kdlib.inference.artifact import load_artifact
from kdlib.pipeline import runner

REPO = Path(__file__).resolve().parents[1]
NAMES = ("negative", "neutral", "positive")


@pytest.fixture
def own_csv(tmp_path, data_dir) -> Path:
    """300 Financial PhraseBank sentences as a user's file: columns `sentence` and `sentiment` (names)."""
    raw = pd.read_parquet(data_dir / "financial_phrasebank" / "sentences_50agree.parquet")
    rows = raw.groupby("label", group_keys=False).apply(lambda g: g.sample(100, random_state=0))
    path = tmp_path / "data" / "my reviews.csv"
    path.parent.mkdir()
    pd.DataFrame({"sentence": rows["text"], "sentiment": rows["label_name"]}).to_csv(
        path, index=False)
    return path


@pytest.fixture
def tiny_roberta(tmp_path) -> Path:
    """A random 6-layer RoBERTa (hidden 64) with MiniLM's tokenizer: a teacher of another encoder family."""
    import torch
    from transformers import AutoTokenizer, RobertaConfig, RobertaForSequenceClassification

    from kdlib.core.models import resolve_model

    folder = tmp_path / "roberta teacher"
    tokenizer = AutoTokenizer.from_pretrained(resolve_model("minilm"))
    torch.manual_seed(0)
    config = RobertaConfig(vocab_size=tokenizer.vocab_size, hidden_size=64, num_hidden_layers=6, num_attention_heads=2,
                           intermediate_size=128, max_position_embeddings=514, pad_token_id=tokenizer.pad_token_id)
    RobertaForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.mark.slow
@pytest.mark.parametrize("teacher", ["minilm", "roberta"])
def test_init_then_run_recommends_and_exports_the_model_to_ship(teacher, own_csv, tmp_path, reports_dir, request):
    params = tmp_path / "params"
    chosen = ["--teacher", str(request.getfixturevalue("tiny_roberta"))] if teacher == "roberta" else []
    assert main(["init", "--data", str(own_csv), "--text-column", "sentence", "--label-column", "sentiment",
                 "--name", "mine", "--params-dir", str(params), *chosen]) == 0
    path = params / "mine.yaml"
    header = path.read_text().split("\n\n")[0]
    assert "Rows: train 240, validation 30, test 30" in header and "max_length" in header
    raw = yaml.safe_load(path.read_text())
    assert raw["data"]["dataset"] == "../data/my reviews.csv" and raw["steps"][-1] == "07_report"

    # a tiny profile: the smoke profile's sizes, fewer students and routes; the data and steps init chose
    smoke = yaml.safe_load((REPO / "params" / "smoke.yaml").read_text())
    model = raw["teacher"]["model"]
    for section in ("teacher", "distill", "grid", "compare", "benchmark"):
        raw[section] = smoke[section]
    raw["teacher"]["model"] = model
    raw["teacher"]["epochs"] = 1
    raw["grid"]["students"] = [{"layers": 1, "ffn": 1536}, {"layers": 3, "ffn": 96}, {"layers": 3, "ffn": 1536}]
    raw["compare"].update(runtimes=["torch", "onnxruntime"], precisions=["fp32", "int8"], svd_ranks=[64],
                          recovery_epochs=0.25)
    path.write_text(yaml.safe_dump(raw))
    assert main(["run", "--params", str(path)]) == 0

    states = {row["step"]: row for row in runner.status(path)}
    assert all(states[s]["off"] for s in ("05_hetero_kd", "06_edge_benchmark"))
    assert all(states[s]["up_to_date"] for s in raw["steps"])

    out = reports_dir / "mine"
    rec = pd.read_csv(out / "04_compare" / "tables" / "recommendation.csv").iloc[0]
    within = rec["val_accuracy"] >= rec["teacher_val_accuracy"] - rec["margin_pp"] / 100
    assert within or rec["model"] == "teacher"  # chosen on validation, within the margin
    assert rec["export_command"].startswith("kdstudy export --model ")
    artifact = load_artifact(out / "deploy")
    assert artifact.labels == list(NAMES)
    assert set(artifact.predict(["Profit rose sharply.", "The company cut its outlook."])) <= set(NAMES)
    manifest = json.loads((out / "deploy" / "manifest.json").read_text())
    assert manifest["accuracy"]["n"] == 30 and manifest["route"]["runtime"] in ("onnxruntime", "openvino")

    report = (out / "07_report" / "report.typ").read_text()
    assert f"Ship {rec['model']} on {rec['route']}" in report
    assert "05_hetero_kd" not in report.split("Ship")[0]  # no paper section before the answer
    assert (out / "00_data_prep" / "tables" / "overlaps.csv").exists()
