"""Numbers you can trust: a verdict CSV counts only while the parameters recorded beside it are the report's;
claims are tested as stated (one-sided against their own N, "about" by TOST within a stated margin); timings
are repeated measurements, not seeds; the fast student is chosen on validation; the manifest shows the
parameters each step ran with and flags those that differ from the report's file."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pandas as pd
import pytest

from kdlib.core.io import write_json
from kdlib.inference import machine
from kdlib.pipeline import runner, steps
from kdlib.pipeline.config import load_params
from kdlib.report import findings, manifest
from kdlib.studies import verdicts

REPO = Path(__file__).resolve().parents[1]
RETENTION = [0.975, 0.978, 0.980, 0.976, 0.979]


def claim(key: str) -> findings.Claim:
    return next(c for c in findings.CLAIMS if c.key == key)


@pytest.fixture
def cfg():
    return load_params(REPO / "params" / "smoke.yaml")


@pytest.fixture
def profile(tmp_path) -> Path:
    """A profile folder whose step 02 ran once (the single-run fallback) and a verdicts folder beside it."""
    root = tmp_path / "smoke"
    (root / "02_distill").mkdir(parents=True)
    (root / "02_distill" / "metrics.json").write_text(json.dumps({"student_retention": 0.9777}))
    return root


def with_alpha(cfg, alpha: float):
    return dataclasses.replace(cfg, distill=dataclasses.replace(cfg.distill, alpha=alpha))


# --------------------------------------------------------------------------
# Verdicts with provenance
# --------------------------------------------------------------------------


def test_a_verdict_made_with_the_same_parameters_is_used(cfg, profile):
    frame = pd.DataFrame({"seed": range(5), "student_retention": RETENTION})
    verdicts.write_rows(cfg, profile / "verdicts", "half_depth_retention", frame, {"0": {"kd_cached": "abc"}})
    record = json.loads((profile / "verdicts" / "half_depth_retention.json").read_text())
    assert record["sections"] == verdicts.claim_sections("half_depth_retention")
    assert {"seed", "data", "teacher", "distill", "compute"} <= set(record["sections"])
    assert record["fingerprint"] == cfg.fingerprint(record["sections"]) and record["units"]["0"]["kd_cached"] == "abc"
    found = findings.finding(claim("half_depth_retention"), profile, profile / "verdicts", cfg)
    assert found["source"].startswith("verdicts/half_depth_retention.csv (5 seeds; on ") and not found["stale"]
    assert machine.cpu_model() in found["source"] and found["source"].endswith(" threads)")
    assert found["tests"][0]["n"] == 5 and found["verdict"] == "holds"


def test_a_verdict_made_with_other_parameters_is_stale(cfg, profile):
    frame = pd.DataFrame({"seed": range(5), "student_retention": RETENTION})
    verdicts.write_rows(with_alpha(cfg, 0.9), profile / "verdicts", "half_depth_retention", frame, {})
    found = findings.finding(claim("half_depth_retention"), profile, profile / "verdicts", cfg)
    assert found["stale"].startswith("stale: rerun `kdstudy verdicts`") and "distill" in found["stale"]
    assert found["source"].startswith("stale: rerun `kdstudy verdicts`")
    # ... and the finding shows this profile's single run instead
    assert found["tests"][0]["n"] == 1 and found["tests"][0]["mean"] == 0.9777
    assert found["verdict"] == "cannot tell (1 seed)"


def test_a_parameter_the_claims_runs_do_not_read_keeps_it_current(cfg, profile):
    frame = pd.DataFrame({"seed": range(5), "student_retention": RETENTION})
    verdicts.write_rows(cfg, profile / "verdicts", "half_depth_retention", frame, {})
    other = dataclasses.replace(cfg, hetero=dataclasses.replace(cfg.hetero, seeds=cfg.hetero.seeds + 1))
    assert verdicts.staleness(other, "half_depth_retention", profile / "verdicts" / "half_depth_retention.csv") is None
    assert verdicts.staleness(with_alpha(cfg, 0.9), "half_depth_retention",
                              profile / "verdicts" / "half_depth_retention.csv") == "made with other parameters (distill)"


def test_a_verdict_trained_in_another_precision_is_stale(cfg, profile, monkeypatch):
    """`compute.precision: auto` is one parameter that trains in bf16 on a CPU with native bf16 and in fp32
    elsewhere: a verdict made on the other kind of CPU is not of this machine's runs."""
    frame = pd.DataFrame({"seed": range(5), "student_retention": RETENTION})
    csv = verdicts.write_rows(cfg, profile / "verdicts", "half_depth_retention", frame, {})
    here = "bf16" if cfg.compute.bf16 else "fp32"
    assert verdicts.staleness(cfg, "half_depth_retention", csv) is None
    other = {"fp32": "bf16", "bf16": "fp32"}[here]
    monkeypatch.setattr(type(cfg.compute), "bf16", property(lambda self: other == "bf16"))
    assert verdicts.staleness(cfg, "half_depth_retention", csv) == \
        f"trained in {here}; here `compute.precision: {cfg.compute.precision}` trains in {other}"


def test_a_verdict_without_its_record_or_edited_after_it_is_stale(cfg, profile):
    folder = profile / "verdicts"
    folder.mkdir()
    pd.DataFrame({"seed": range(5), "student_retention": RETENTION}).to_csv(folder / "half_depth_retention.csv")
    assert "no record of its parameters" in verdicts.staleness(cfg, "half_depth_retention", folder / "half_depth_retention.csv")
    found = findings.finding(claim("half_depth_retention"), profile, folder, cfg)
    assert found["stale"] and found["tests"][0]["n"] == 1
    verdicts.write_rows(cfg, folder, "half_depth_retention", pd.DataFrame({"seed": range(5), "student_retention": RETENTION}), {})
    with open(folder / "half_depth_retention.csv", "a") as f:
        f.write("5,0.5\n")  # a row added by hand after the record was written
    assert "another version" in verdicts.staleness(cfg, "half_depth_retention", folder / "half_depth_retention.csv")


def test_the_committed_quick_verdicts_carry_records_of_the_quick_profile():
    """Every committed verdict table is of the quick profile's present parameters. A claim whose runs are
    being redone after a re-keying has no table yet (the report then says so); none is left stale."""
    quick = load_params(REPO / "params" / "quick.yaml", check_models=False)
    folder = REPO / "reports" / "quick" / "verdicts"
    tables = sorted(folder.glob("*.csv"))
    assert "half_depth_retention" in [t.stem for t in tables]
    for table in tables:  # of the present parameters; made on the CPU of the committed run, maybe not this one
        assert verdicts.staleness(quick, table.stem, table, on_this_machine=False) is None, table.name
        assert json.loads(table.with_suffix(".json").read_text())["training_precision"] in ("fp32", "bf16")
    # the profile's own seed gives its step's numbers
    own = pd.read_csv(folder / "half_depth_retention.csv").set_index("seed").loc[quick.seed]
    step = json.loads((REPO / "reports" / "quick" / "02_distill" / "metrics.json").read_text())
    assert own["kd_accuracy"] == step["student_test_accuracy"] and own["nokd_accuracy"] == step["nokd_test_accuracy"]


def test_the_committed_full_shapes_record_holds_seed_000s_table_4_to_the_unit():
    """reports/full-shapes is the run of params/full-shapes.yaml (random BERT-base weights): the nine students
    it built and timed have the parameter counts of seed 000's Table 4, and its report warns of the weights."""
    from tests.test_full_shapes import check_record

    check_record(REPO / "reports" / "full-shapes")


# --------------------------------------------------------------------------
# Claims tested as stated
# --------------------------------------------------------------------------


ABOUT_2 = findings.Test("x", None, 2.0, "≈", "x", margin=0.2, margin_text="± 10% of 2")


def judged(test: findings.Test, values: list[float]) -> str:
    return findings._test_row(test, values, "seed")["verdict"]


def test_tost_holds_tightly_inside_the_margin_and_not_tightly_outside():
    assert judged(ABOUT_2, [1.99, 2.01, 2.0, 2.02, 1.98]) == "holds"
    assert judged(ABOUT_2, [2.5, 2.51, 2.49, 2.5, 2.52]) == "does not hold"
    assert judged(ABOUT_2, [1.5, 1.49, 1.52, 1.5, 1.51]) == "does not hold"  # below the band
    assert judged(ABOUT_2, [1.0, 3.0, 2.0, 1.5, 2.7]) == "cannot tell (within seed-to-seed noise)"
    assert judged(ABOUT_2, [2.0, 2.01, 1.99]) == "cannot tell (3 seeds)"
    inside, outside = findings.tost([1.99, 2.01, 2.0, 2.02, 1.98], 1.8, 2.2)
    assert inside < 1e-4 and outside > 0.99


def test_every_about_claim_is_an_equivalence_with_its_margin_stated():
    equivalences = {(c.key, t.a) for c in findings.CLAIMS for t in c.tests if t.side == "≈"}
    assert equivalences == {("half_depth_retention", "student_retention"), ("edge_speedup", "student_speedup")}
    for c in findings.CLAIMS:
        for t in c.tests:
            assert (t.margin is not None and bool(t.margin_text)) == (t.side == "≈"), (c.key, t.a)
    edge = claim("edge_speedup").tests[0]
    assert edge.band == pytest.approx((1.8, 2.2))
    retention = claim("half_depth_retention").tests[0]
    assert retention.threshold == 0.97 and "97%" in claim("half_depth_retention").words


def test_n_times_faster_is_tested_against_n():
    fast = claim("fast_student")
    speed, lost = fast.tests
    assert "7× faster" in fast.words and speed.threshold == 7.0 and speed.side == ">"
    assert lost.threshold == 3.0 and lost.side == "<"
    rows = pd.DataFrame({"seed": range(5), "speedup": [6.0, 6.2, 6.1, 5.9, 6.3], "points_lost": [1.0, 1.2, 0.8, 1.1, 0.9]})
    tests = findings._test_rows(fast, rows)
    assert tests[0]["verdict"] == "does not hold"  # 6× is not 7× (it passed a "> 5" test before)
    assert tests[1]["verdict"] == "holds" and tests[1]["p"] < 0.05
    assert findings.combine([t["verdict"] for t in tests]) == "does not hold"
    seeded = dataclasses.replace(speed, timing=False)
    assert judged(seeded, [6.0, 6.2, 6.1, 5.9, 6.3]) == "does not hold"
    assert judged(seeded, [7.5, 7.7, 7.6, 7.4, 7.8]) == "holds"


def test_the_report_row_shows_words_threshold_margin_n_spread_and_p(cfg, profile):
    from kdlib.report import render

    verdicts.write_rows(cfg, profile / "verdicts", "half_depth_retention",
                        pd.DataFrame({"seed": range(5), "student_retention": RETENTION}), {})
    row = next(r for r in render.findings_rows(profile, profile / "verdicts", cfg)
               if r["quantity"] == "student accuracy ÷ teacher accuracy in %")
    assert "“retaining 97% of its language understanding capabilities”" in row["claim"]
    assert row["threshold"] == "≈ 97" and "95% to 99%" in row["margin"] and row["n"] == "5 seeds"
    assert " ± " in row["mean_std"] and row["p"] not in ("", "–") and row["verdict"] == "holds"


def test_hetero_kd_tests_05s_two_sided_p_one_sided(tmp_path):
    m = {"n_seeds": 5, "acc_A_mean": 0.70, "acc_B_mean": 0.68, "acc_C_mean": 0.69, "acc_A_std": 0.01,
         "acc_B_std": 0.01, "acc_C_std": 0.01, "p_A_vs_B": 0.02, "p_B_vs_C": 0.02}
    write_json(tmp_path / "05_hetero_kd" / "metrics.json", m)
    a_b, b_c = findings._hetero_from_metrics(claim("hetero_kd"), tmp_path)
    assert a_b["p"] == pytest.approx(0.01) and a_b["verdict"] == "holds"
    assert b_c["p"] == pytest.approx(0.99) and b_c["verdict"] == "does not hold"  # B is below C


# --------------------------------------------------------------------------
# Timings are repeated measurements, not seeds
# --------------------------------------------------------------------------


def test_layer_vs_ffn_rows_are_repeated_timings(cfg, profile):
    rows = pd.DataFrame({"repeat": range(1, 6), "layer_ms": [30.0, 31.0, 29.0, 30.5, 29.5],
                         "ffn_widening_ms": [20.0, 21.0, 19.0, 22.0, 18.0]})
    verdicts.write_rows(cfg, profile / "verdicts", "layer_vs_ffn", rows, {})
    found = findings.finding(claim("layer_vs_ffn"), profile, profile / "verdicts", cfg)
    assert found["source"].startswith("verdicts/layer_vs_ffn.csv (5 repeated timings, not seeds; on ")
    test = found["tests"][0]
    assert test["n_text"] == "5 repeated timings, not seeds" and test["verdict"] == "holds"
    assert test["p"] != test["p"] and test["std"] > 0  # no t-test (p is NaN); the spread is shown
    straddle = rows.assign(ffn_widening_ms=[20.0, 32.0, 19.0, 22.0, 18.0])
    assert findings._test_rows(claim("layer_vs_ffn"), straddle)[0]["verdict"] == "cannot tell (timings on both sides)"
    below = rows.assign(layer_ms=[10.0] * 5)
    assert findings._test_rows(claim("layer_vs_ffn"), below)[0]["verdict"] == "does not hold"


def test_a_timing_in_rows_of_seeds_is_still_a_repeated_timing():
    rows = pd.DataFrame({"seed": range(5), "speedup": [7.5, 8.0, 7.2, 7.9, 7.6], "points_lost": [1.0] * 5})
    speed = findings._test_rows(claim("fast_student"), rows)[0]
    assert speed["n_text"] == "5 repeated timings, one per seed's run" and speed["verdict"] == "holds"


def test_timing_verdicts_need_five_timings():
    assert findings.timing_verdict(claim("layer_vs_ffn").tests[0], [1.0, 2.0]) == "cannot tell (2 timings)"


# --------------------------------------------------------------------------
# The fast student is chosen on validation
# --------------------------------------------------------------------------


def grid_tables(root: Path, table4: pd.DataFrame, history: pd.DataFrame | None = None) -> None:
    tables = root / "03_grid" / "tables"
    tables.mkdir(parents=True)
    table4.to_csv(tables / "table4.csv", index=False)
    pd.DataFrame({"name": ["teacher"] * 2, "runtime": ["torch"] * 2, "precision": ["fp32"] * 2, "status": ["ok"] * 2,
                  "batch_size": [1, 32], "latency_ms_median": [10.0, 100.0]}).to_csv(tables / "benchmark.csv",
                                                                                     index=False)
    if history is not None:
        history.to_csv(tables / "history.csv", index=False)


TABLE4 = pd.DataFrame({
    "student": ["L1_F96", "L1_F384", "L2_F96", "L3_F384", "L1_F384_gd"], "layers": [1, 1, 2, 3, 1],
    "ffn": [96, 384, 96, 384, 384],
    "route": ["layer copy", "layer copy", "layer copy", "layer copy", "general distillation"],
    "params": [10, 11, 12, 14, 11], "latency_bs32_ms_median": [10.0, 12.0, 14.0, 40.0, 12.0],
    "test_accuracy": [0.60, 0.75, 0.70, 0.82, 0.90], "best_epoch": [2.0, 2.0, 2.0, 1.0, 2.0]})


def test_the_fast_student_is_the_best_on_validation_not_on_test(tmp_path):
    # >= 7x faster than the teacher (100 ms): L1_F96 (10x), L1_F384 (8.3x), L2_F96 (7.1x); L3_F384 is 2.5x.
    # Best on test among them: L1_F384; best on validation: L2_F96. The general-distillation row is not a
    # shape `kdstudy verdicts` retrains.
    grid_tables(tmp_path, TABLE4.assign(val_accuracy=[0.60, 0.70, 0.74, 0.85, 0.95]))
    choice = verdicts.grid_choice(tmp_path)
    assert (choice["student"], choice["layers"], choice["ffn"]) == ("L2_F96", 2, 96)
    assert choice["speedup"] == pytest.approx(100 / 14) and choice["test_accuracy"] == 0.70 and choice["reaches"]


def test_an_older_table4_takes_validation_accuracy_from_the_history(tmp_path):
    history = pd.DataFrame({"student": ["L1_F96", "L1_F96", "L1_F384", "L1_F384", "L2_F96", "L2_F96", "L3_F384"],
                            "epoch": [1.0, 2.0, 1.0, 2.0, 1.0, 2.0, 1.0],
                            "accuracy": [0.5, 0.6, 0.6, 0.78, 0.7, 0.72, 0.85]})
    grid_tables(tmp_path, TABLE4, history)
    assert verdicts.grid_choice(tmp_path)["student"] == "L1_F384"


def test_without_a_student_fast_enough_the_fastest_is_tested(tmp_path):
    grid_tables(tmp_path, TABLE4.assign(val_accuracy=[0.6, 0.7, 0.74, 0.85, 0.95]))
    choice = verdicts.grid_choice(tmp_path, min_speedup=20.0)
    assert choice["student"] == "L1_F96" and not choice["reaches"]
    assert verdicts.grid_choice(tmp_path / "nothing") is None


def test_the_single_run_of_the_fast_student_claim_uses_the_validation_choice(tmp_path, cfg):
    grid_tables(tmp_path, TABLE4.assign(val_accuracy=[0.60, 0.70, 0.74, 0.85, 0.95]))
    write_json(tmp_path / "03_grid" / "metrics.json", {"teacher_test_accuracy": 0.80})
    found = findings.finding(claim("fast_student"), tmp_path, tmp_path / "verdicts", cfg)
    speed, lost = found["tests"]
    assert speed["mean"] == pytest.approx(100 / 14) and lost["mean"] == pytest.approx(10.0)


# --------------------------------------------------------------------------
# The manifest: the parameters the steps ran with
# --------------------------------------------------------------------------


def stamp(cfg, step: steps.Step, params: dict | None = None) -> dict:
    sections = ("profile", "seed", *step.sections)
    out = {"seconds": 1.5, "parts": {"params": {s: cfg.fingerprint([s]) for s in sections}}}
    if params is not None:
        out["params"] = params
    return out


def test_the_manifest_shows_what_each_step_ran_with_and_flags_what_differs(tmp_path, cfg):
    ran = with_alpha(cfg, 0.9)  # 02 ran with distill.alpha 0.9; the report's file says 0.5
    d, d_ran = cfg.to_dict(), ran.to_dict()
    for step in steps.STEPS[:3]:
        source = d_ran if step.stem == "02_distill" else d
        write_json(tmp_path / step.stem / ".step.json",
                   stamp(cfg, step, {s: source[s] for s in ("profile", "seed", *step.sections)}))
        write_json(tmp_path / step.stem / "metrics.json", {})
    built = manifest.build(cfg, tmp_path, data_dir="")
    rows = {r["step"]: r for r in built["wall_times"]}
    assert rows["00_data_prep"]["parameters"] == "as smoke.yaml" and rows["01_teacher"]["differs"] == []
    assert built["params_differ"] == [{"step": "02_distill", "key": "distill.alpha", "ran": "0.9", "file": "0.5"}]
    assert rows["02_distill"]["parameters"].startswith("DIFFER from smoke.yaml: distill.alpha ran with 0.9")
    assert rows["03_grid"]["parameters"] == "–" and rows["03_grid"]["state"] == "not run"
    assert built["parameters"]["distill.alpha"] == "0.9 (steps 02) (smoke.yaml: 0.5)"
    assert built["parameters"]["data.dataset"] == "fin_sentiment"
    assert built["parameters"]["grid.alpha"].endswith("(from smoke.yaml; in no step's stamp)")


def test_an_older_stamp_is_compared_section_by_section(tmp_path, cfg):
    step = steps.BY_STEM["02_distill"]
    write_json(tmp_path / step.stem / ".step.json", stamp(with_alpha(cfg, 0.9), step))
    write_json(tmp_path / step.stem / "metrics.json", {})
    rows = {r["step"]: r for r in manifest.wall_times(tmp_path, "07_report", cfg)}
    assert rows["02_distill"]["differs"] == [{"key": "distill", "ran": "(values not recorded)", "file": "differs"}]


def test_the_runner_records_the_resolved_parameters_in_the_stamp(tmp_path, monkeypatch):
    step = steps.Step("01_only", "Only", sections=("data", "distill"))
    monkeypatch.setattr(steps, "STEPS", (step,))
    monkeypatch.setattr(steps, "BY_STEM", {step.stem: step})
    monkeypatch.setattr(runner, "library_digests", lambda: {})
    monkeypatch.setattr(runner, "stamp_parts", lambda s, c, root, up: {
        "notebook": "n", "params": {k: c.fingerprint([k]) for k in ("profile", "seed", *s.sections)},
        "kdlib": {}, "needs": {}})
    monkeypatch.setattr(runner, "execute", lambda *a: None)  # the notebook itself is not what is tested
    monkeypatch.setenv("KD_REPORTS_DIR", str(tmp_path / "reports"))
    runner.run(REPO / "params" / "smoke.yaml")
    recorded = json.loads((tmp_path / "reports" / "smoke" / "01_only" / runner.STAMP).read_text())
    cfg = load_params(REPO / "params" / "smoke.yaml").to_dict()
    assert recorded["params"] == {k: cfg[k] for k in ("profile", "seed", "data", "distill")}
    assert recorded["params_file"].endswith("smoke.yaml")
