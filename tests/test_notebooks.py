"""Every notebook, run by the runner on the smoke profile: the files and numbers each one promises."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from kdlib import runner

REPO = Path(__file__).resolve().parents[1]

# What each step promises to write (besides metrics.json and its executed notebook).
PROMISED = {
    "00_data_prep": ["tables/class_balance.csv", "tables/length_stats.csv", "figures/class_balance.png",
                     "figures/class_balance.pdf", "figures/token_lengths.png", "figures/token_lengths.pdf"],
    "01_teacher": ["tables/history.csv", "tables/confusion_test.csv", "figures/history.png",
                   "figures/confusion_test.png", "model/model.safetensors", "model/config.json"],
    "02_distill": ["tables/runs.csv", "tables/history.csv", "tables/benchmark.csv", "figures/test_accuracy.png",
                   "figures/history.png", "figures/latency.png", "student_model/model.safetensors"],
}


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory, data_dir):
    """Run the smoke profile once for this module, into a temporary reports folder."""
    mp = pytest.MonkeyPatch()
    tmp = tmp_path_factory.mktemp("smoke")
    mp.setenv("KD_REPORTS_DIR", str(tmp / "reports"))
    mp.setenv("KD_CACHE_DIR", str(tmp / "cache"))
    mp.chdir(REPO)
    report = runner.run(REPO / "params" / "smoke.yaml")
    yield tmp / "reports" / "smoke", report
    mp.undo()


def metrics(out: Path, step: str) -> dict:
    return json.loads((out / step / "metrics.json").read_text())


@pytest.mark.slow
def test_every_notebook_ran_and_wrote_what_it_promises(smoke_run):
    out, report = smoke_run
    steps = [s.stem for s in runner.discover_steps(REPO / "notebooks")]
    assert [r["step"] for r in report] == steps and {r["status"] for r in report} == {"ran"}
    for step in steps:
        assert (out / step / f"{step}.ipynb").exists(), step
        assert set(runner.REQUIRED_METRICS[step]) <= set(metrics(out, step)), step
        for rel in PROMISED.get(step, []):
            assert (out / step / rel).stat().st_size > 0, f"{step}/{rel}"


@pytest.mark.slow
def test_the_numbers_are_consistent(smoke_run):
    out, _ = smoke_run
    data, teacher, distilled = (metrics(out, s) for s in ("00_data_prep", "01_teacher", "02_distill"))
    assert (data["n_train"], data["n_validation"], data["n_test"], data["n_classes"]) == (480, 60, 60, 3)
    balance = pd.read_csv(out / "00_data_prep" / "tables" / "class_balance.csv")
    assert balance[balance.split == "train"]["count"].sum() == 480
    assert teacher["teacher_params"] == 22_714_371  # all-MiniLM-L6-v2 with a 3-way head, embeddings included
    # The teacher learned something: it beats always answering the majority class.
    assert teacher["teacher_test_accuracy"] > data["majority_share_test"]
    assert distilled["student_params"] < distilled["teacher_params"]
    # Same student, same seed: KD from cached or online teacher logits ends at the same accuracy ...
    assert distilled["student_test_accuracy"] == distilled["online_kd_test_accuracy"]
    # ... and the distilled student matches or beats its no-KD twin.
    assert distilled["student_test_accuracy"] >= distilled["nokd_test_accuracy"]
    runs = pd.read_csv(out / "02_distill" / "tables" / "runs.csv")
    assert len(runs) == 3 and runs["test_accuracy"].between(0, 1).all()
    bench = pd.read_csv(out / "02_distill" / "tables" / "benchmark.csv")
    assert {"cpu_model", "threads", "latency_ms_median", "latency_ms_p95"} <= set(bench.columns)
    assert (bench["latency_ms_median"] <= bench["latency_ms_p95"]).all()


@pytest.mark.slow
def test_a_second_run_skips_every_step(smoke_run):
    report = runner.run(REPO / "params" / "smoke.yaml")
    assert {r["status"] for r in report} == {"skipped"}
