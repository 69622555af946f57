"""`kdstudy verdicts --claim edge_speedup` on the smoke profile: step 06's teacher kept fixed, its headline
student distilled once per seed, scored, and timed beside the teacher; the report reads the rows."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_edge_speedup_repeats_step_06s_student_over_seeds(data_dir, reports_dir):
    from kdlib.pipeline.config import load_params
    from kdlib.pipeline.paths import step_dir
    from kdlib.report import findings
    from kdlib.studies import verdicts
    from kdlib.studies.edge import step as edge

    cfg = load_params(REPO / "params" / "smoke.yaml")
    with pytest.raises(FileNotFoundError, match="run step 06"):
        verdicts.run(cfg, claims=["edge_speedup"])  # no teacher yet
    step = step_dir(cfg.profile, edge.STEP)
    trained = edge.train_models(cfg, step)  # step 06's training, without its benchmark
    scores = {r["model"]: r for r in edge.score_models(trained, cfg.edge, step)}

    written = verdicts.run(cfg, claims=["edge_speedup"])
    rows = pd.read_csv(written["edge_speedup"]).set_index("seed")
    assert list(rows.index) == cfg.verdicts.seeds
    student = edge.student_name(edge.headline_student(cfg.edge, trained["teacher_layers"]), kd=True)
    assert set(rows["student"]) == {student}
    # The teacher is step 06's for every seed; the profile's own seed is step 06's training: the same F1.
    # (pytest.approx: a float read back from a CSV may differ in its last bit)
    assert list(rows["teacher_f1"]) == pytest.approx([scores["teacher"]["f1"]] * len(rows), rel=1e-12)
    assert rows.loc[cfg.seed, "student_f1"] == pytest.approx(scores[student]["f1"], rel=1e-12)
    assert list(rows["student_f1_retention"]) == pytest.approx(list(rows["student_f1"] / rows["teacher_f1"]))
    assert (rows[["teacher_ms", "student_ms"]] > 0).all().all()
    assert list(rows["student_speedup"]) == pytest.approx(list(rows["teacher_ms"] / rows["student_ms"]))

    # Resumable: a second run trains and times nothing again, so it writes the same rows.
    again = verdicts.run(cfg, claims=["edge_speedup"])
    assert pd.read_csv(again["edge_speedup"]).equals(rows.reset_index())

    # Beside the CSV, the record of what made it: the parameters' fingerprint and each seed's units.
    record = json.loads(written["edge_speedup"].with_suffix(".json").read_text())
    assert record["fingerprint"] == cfg.fingerprint(verdicts.claim_sections("edge_speedup"))
    assert set(record["units"]) == {str(s) for s in cfg.verdicts.seeds}
    assert all(set(u) == {"teacher", "student", "timing"} and all(u.values()) for u in record["units"].values())

    # The report reads the file while its parameters are the report's; two seeds are too few for a verdict.
    claim = next(c for c in findings.CLAIMS if c.key == "edge_speedup")
    found = findings.finding(claim, step.parent, verdicts.verdicts_dir(cfg), cfg)
    n = len(cfg.verdicts.seeds)
    assert found["source"].startswith(f"verdicts/edge_speedup.csv ({n} seeds; on ") and "threads)" in found["source"]
    assert [t["verdict"] for t in found["tests"]] == [f"cannot tell ({n} timings)", f"cannot tell ({n} seeds)"]
    other = dataclasses.replace(cfg, edge=dataclasses.replace(cfg.edge, alpha=0.9))
    assert findings.finding(claim, step.parent, verdicts.verdicts_dir(cfg), other)["stale"]
