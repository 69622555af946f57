"""Every notebook, run by the runner on the smoke profile: the files and numbers each one promises
(declared once, in kdlib/pipeline/steps.py), reuse of finished units after a cosmetic change, and the text
sources' form."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from kdlib.pipeline import runner, steps
from kdlib.studies.edge import step as step06_code

REPO = Path(__file__).resolve().parents[1]


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


def unit_results(out: Path) -> dict[str, dict]:
    """Every memoised unit's result.json under the smoke reports, by relative path."""
    return {str(p.relative_to(out)): json.loads(p.read_text()) for p in sorted(out.glob("*/*/*/result.json"))}


@pytest.mark.slow
def test_every_notebook_ran_and_wrote_what_it_promises(smoke_run):
    out, report = smoke_run
    assert [r["step"] for r in report] == [s.stem for s in steps.STEPS]
    assert {r["status"] for r in report} == {"ran"}
    for step in steps.STEPS:
        assert (out / step.stem / f"{step.stem}.ipynb").exists(), step.stem
        assert set(step.metrics) <= set(metrics(out, step.stem)), step.stem
        for rel in step.outputs:
            assert (out / step.stem / rel).stat().st_size > 0, f"{step.stem}/{rel}"


@pytest.mark.slow
def test_the_numbers_hold_what_holds_by_construction(smoke_run):
    out, _ = smoke_run
    data, teacher, distilled = (metrics(out, s) for s in ("00_data_prep", "01_teacher", "02_distill"))
    assert (data["n_train"], data["n_validation"], data["n_test"], data["n_classes"]) == (480, 60, 60, 3)
    balance = pd.read_csv(out / "00_data_prep" / "tables" / "class_balance.csv")
    assert balance[balance.split == "train"]["count"].sum() == 480
    assert teacher["teacher_params"] == 22_714_371  # all-MiniLM-L6-v2 with a 3-way head, embeddings included
    # 2 of MiniLM's 6 layers removed: 2 x 1,774,464 parameters fewer (a BERT layer of hidden 384, FFN 1536)
    assert distilled["teacher_params"] - distilled["student_params"] == 4 * 1_774_464
    # Same student, same seed, the same teacher logits (read from the cache, or computed online): the same
    # training, so the same accuracy. (Whether KD beats its twin is a research result: the quick profile
    # and the multi-seed runs report it; 60 test rows cannot decide it.)
    assert distilled["student_test_accuracy"] == distilled["online_kd_test_accuracy"]
    assert distilled["cache_built_now"] is True and distilled["cache_build_seconds"] > 0
    runs = pd.read_csv(out / "02_distill" / "tables" / "runs.csv")
    assert len(runs) == 3 and runs["test_accuracy"].between(0, 1).all()
    bench = pd.read_csv(out / "02_distill" / "tables" / "benchmark.csv")
    timed = bench[bench["latency_ms_median"].notna()]
    assert {"cpu_model", "cpu_flags", "threads", "runtime", "latency_ms_median", "latency_ms_p95"} <= set(bench.columns)
    assert (timed["latency_ms_median"] <= timed["latency_ms_p95"]).all()
    # Step 06: a student timed in turn with the teacher answers as in its own run (same model, same
    # questions), and metrics.json quotes that pair's speed-up.
    step06 = out / "06_edge_benchmark" / "tables"
    pairs = pd.read_csv(step06 / "paired_speedups.csv")
    variants = pd.read_csv(step06 / "variants.csv").set_index(["model", "runtime", "precision"])
    assert ("torch", "fp32") in set(zip(pairs["runtime"], pairs["precision"])) and (pairs["status"] == "ok").all()
    assert 2 <= len(pairs) <= 1 + step06_code.PAIRED_CANDIDATES
    for p in pairs.itertuples():
        assert p.f1 == pytest.approx(variants.loc[(p.model, p.runtime, p.precision), "f1"])
        assert p.teacher_f1 == pytest.approx(variants.loc[("teacher", "torch", "fp32"), "f1"])
        assert p.speedup == pytest.approx(p.teacher_seconds / p.seconds)
    edge = metrics(out, "06_edge_benchmark")
    torch_pair = pairs.query("runtime == 'torch' and precision == 'fp32'").iloc[0]
    assert edge["student_speedup"] == pytest.approx(torch_pair["speedup"])
    table2 = pd.read_csv(step06 / "table2.csv").set_index("model")  # its times are the pair's
    assert table2.loc["teacher", "time_s"] == pytest.approx(torch_pair["teacher_seconds"])
    assert table2.loc[torch_pair["model"], "time_s"] == pytest.approx(torch_pair["seconds"])
    quantized = pairs.query("precision != 'fp32'").sort_values("speedup").iloc[-1]  # the faster in turn
    assert edge["quantized_student_route"] == f"{quantized['runtime']}/{quantized['precision']}"
    assert edge["quantized_student_speedup"] == pytest.approx(quantized["speedup"])


@pytest.mark.slow
def test_a_second_run_skips_every_step(smoke_run):
    report = runner.run(REPO / "params" / "smoke.yaml")
    assert {r["status"] for r in report} == {"skipped"}


@pytest.mark.slow
def test_a_deleted_run_or_a_broken_cache_is_rebuilt(smoke_run):
    # (runs before the cosmetic-change test below, whose edit leaves every step stale once undone)
    out, _ = smoke_run
    params = REPO / "params" / "smoke.yaml"
    (out / "02_distill" / "runs" / "nokd" / "result.json").unlink()
    why = {row["step"]: row["reasons"] for row in runner.status(params)}
    assert why["02_distill"] == ["outputs missing: runs/nokd/result.json"]
    # the cache file 02 reads (there are others beside it, in no particular order)
    used = json.loads((out / "02_distill" / "runs" / "summary.json").read_text())["cache"]["file"]
    cache = Path(out).parents[1] / "cache" / "teacher_outputs" / used
    cache.write_bytes(cache.read_bytes()[:7])  # truncated
    report = {r["step"]: r["status"] for r in runner.run(params)}
    # only 02 re-runs; the steps after it are up to date, since what 02 feeds them did not change
    assert report == {s.stem: "ran" if s.stem == "02_distill" else "skipped" for s in steps.STEPS}
    assert json.loads((out / "02_distill" / "runs" / "nokd" / "result.json").read_text())["reused"] is False
    assert metrics(out, "02_distill")["cache_built_now"] is True
    # 03 quotes the cache's build time: rerun it (reusing its units) so that the next test starts in step
    runner.run(params, only=["03"], force=True)


@pytest.fixture
def touched_plots():
    """Add a comment to kdlib/studies/plots.py for one test, and put the file back byte for byte afterwards."""
    path = REPO / "kdlib" / "studies" / "plots.py"
    original = path.read_bytes()
    path.write_bytes(original + b"\n# a cosmetic change, made by tests/test_notebooks.py and undone after it\n")
    try:
        yield path
    finally:
        path.write_bytes(original)


@pytest.mark.slow
def test_a_cosmetic_change_reruns_steps_but_retrains_and_retimes_nothing(smoke_run, touched_plots):
    out, _ = smoke_run
    before_metrics = {s.stem: metrics(out, s.stem) for s in steps.STEPS}
    before_units = unit_results(out)
    assert before_units, "the smoke run recorded no units"
    status = runner.status(REPO / "params" / "smoke.yaml")
    for row in status:  # every step re-runs, and says why
        assert not row["up_to_date"] and "kdlib changed: studies/plots.py" in row["reasons"], row
    report = runner.run(REPO / "params" / "smoke.yaml")
    assert {r["status"] for r in report} == {"ran"}
    after_units = unit_results(out)
    assert after_units.keys() == before_units.keys()
    for path, result in after_units.items():  # no unit was rebuilt: same key, same numbers
        assert result == before_units[path], path
    after_metrics = {s.stem: metrics(out, s.stem) for s in steps.STEPS}
    assert after_metrics["02_distill"].pop("cache_built_now") is False  # the teacher-output cache was read
    before_metrics["02_distill"].pop("cache_built_now")
    assert after_metrics == before_metrics  # timings included: nothing was re-timed


@pytest.mark.slow
def test_verdicts_repeat_the_runs_behind_the_claims_over_seeds(smoke_run):
    from kdlib.pipeline.config import load_params
    from kdlib.report import render
    from kdlib.studies import verdicts

    out, _ = smoke_run
    cfg = load_params(REPO / "params" / "smoke.yaml")
    written = verdicts.run(cfg)
    assert set(written) == {"half_depth_retention", "kd_beats_twin", "fast_student", "layer_vs_ffn", "edge_speedup"}
    # layer_vs_ffn times fixed shapes: its rows are repeated timings, numbered, not seeds
    frames = {claim: pd.read_csv(path).set_index("repeat" if claim == "layer_vs_ffn" else "seed")
              for claim, path in written.items()}
    for claim, frame in frames.items():
        expected = list(range(1, len(cfg.verdicts.seeds) + 1)) if claim == "layer_vs_ffn" else cfg.verdicts.seeds
        assert list(frame.index) == expected, claim
    # The profile's own seed is the same training as its steps': the same numbers.
    half, m02 = frames["half_depth_retention"], metrics(out, "02_distill")
    assert half.loc[cfg.seed, "kd_accuracy"] == m02["student_test_accuracy"]
    assert half.loc[cfg.seed, "nokd_accuracy"] == m02["nokd_test_accuracy"]
    fast = frames["fast_student"]
    table4 = pd.read_csv(out / "03_grid" / "tables" / "table4.csv").set_index("student")
    assert fast.loc[cfg.seed, "accuracy"] == table4.loc[fast.loc[cfg.seed, "student"], "test_accuracy"]
    assert (fast["speedup"] > 0).all() and (frames["layer_vs_ffn"]["layer_ms"] > 0).all()
    edge = frames["edge_speedup"]
    assert (edge["student_speedup"] > 0).all() and edge["student_f1_retention"].notna().all()
    # Resumable: a second run trains and times nothing again, so it writes the same rows.
    again = verdicts.run(cfg)
    for claim, path in again.items():
        assert pd.read_csv(path).equals(frames[claim].reset_index()), claim
    # The report reads them; two seeds are too few for a verdict.
    rows = render.findings_rows(out, out / "verdicts", cfg)
    retention = next(r for r in rows if r["quantity"] == "student accuracy ÷ teacher accuracy in %")
    assert retention["n"] == "2 seeds" and retention["verdict"] == "cannot tell (2 seeds)"


def test_notebook_sources_are_canonical_text_with_one_parameters_cell():
    """The text files are the only source: in the form JupyterLab saves them (so saving adds no noise and no
    outputs), with exactly one `parameters` cell, and no .ipynb copy beside them that could drift."""
    import jupytext
    from jupytext.config import load_jupytext_config

    config = load_jupytext_config(str(REPO / "notebooks"))
    assert not list((REPO / "notebooks").glob("*.ipynb"))
    for step in steps.STEPS:
        path = step.notebook(REPO)
        text = path.read_text()
        nb = jupytext.reads(text, fmt="py:percent")
        assert jupytext.writes(nb, fmt="py:percent", config=config) == text, f"{path.name} is not in canonical form"
        tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1 and "params_file" in tagged[0].source, path.name
        assert nb.cells[0].cell_type == "markdown", f"{path.name} starts with its story"


@pytest.mark.slow
def test_the_sandbox_distils_a_student_beside_the_reference_results_and_reads_it_back(smoke_run):
    from kdlib.pipeline.config import load_params
    from kdlib.teach import sandbox

    out, _ = smoke_run
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    cfg = load_params(REPO / "params" / "smoke.yaml")
    tried = sandbox.distil(cfg, layers=1, temperature=8.0, alpha=0.1, rows=64, experiment="t8")
    assert tried["layers"] == 1 and tried["rows"] == 64 and not tried["reused"]
    assert 0 <= tried["val_accuracy"] <= 1 and 0 < tried["teacher_val_accuracy"] <= 1
    again = sandbox.distil(cfg, layers=1, temperature=8.0, alpha=0.1, rows=64, experiment="t8")
    assert again["reused"] and again["val_accuracy"] == tried["val_accuracy"]
    assert (out.parent / "sandbox" / "t8" / "02_distill" / "runs" / tried["student"] / "result.json").exists()
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before  # the profile's folders untouched
    with pytest.raises(ValueError, match="rows must be at least 1, not 0"):
        sandbox.distil(cfg, rows=0)


@pytest.mark.slow
def test_executed_copies_carry_no_progress_bars_load_reports_or_stray_values(smoke_run):
    """kdstudy run keeps bars, library load reports, profiler lines and saved-path lists out of the notebooks."""
    from kdlib.teach.clutter import stray_outputs

    out, _ = smoke_run
    stray = {s.stem: stray_outputs(out / s.stem / f"{s.stem}.ipynb") for s in steps.STEPS}
    assert not any(stray.values()), {k: v[:3] for k, v in stray.items() if v}


@pytest.mark.parametrize("profile", ["quick"])
def test_committed_executed_copies_are_clean(profile):
    from kdlib.teach.clutter import stray_outputs

    copies = sorted((REPO / "reports" / profile).glob("0*/0*.ipynb"))
    assert len(copies) == len(steps.STEPS)
    stray = {p.name: stray_outputs(p) for p in copies}
    assert not any(stray.values()), {k: v[:3] for k, v in stray.items() if v}


@pytest.mark.parametrize("profile", ["quick"])
def test_committed_executed_notebooks_match_their_sources(profile):
    """The executed copies committed under reports/<profile>/ ran the code that the sources hold now."""
    import jupytext
    import nbformat

    for step in steps.STEPS:
        executed = REPO / "reports" / profile / step.stem / f"{step.stem}.ipynb"
        if not executed.exists():
            continue
        source = [c.source for c in jupytext.read(step.notebook(REPO)).cells if c.cell_type == "code"]
        ran = [c.source for c in nbformat.read(executed, as_version=4).cells
               if c.cell_type == "code" and "injected-parameters" not in c.metadata.get("tags", [])]
        assert ran == source, f"{executed} is out of date with notebooks/{step.stem}.py: run kdstudy run"


@pytest.mark.slow
def test_the_report_built_from_the_smoke_results_reads_as_a_decision_document(smoke_run):
    """07's report on the smoke results: the answer and the findings on page 1, every section, the glossary,
    tables and figures numbered in order, every row of each table's CSV shown (Table 6 in its four parts),
    and a model's speed the same wherever the prose gives it, and equal to Table 6b's."""
    import re
    from html import unescape

    from markupsafe import escape

    from kdlib.report import prose
    from kdlib.report import sections as report

    out, _ = smoke_run
    html = (out / "report.html").read_text()
    page1 = html[:html.index("<h2>Methods</h2>")]
    assert "Ship " in page1 and "What we found" in page1 and "Figure 1: " in page1
    for title in ("Methods", *(prose.readable(s.title) for s in report.SECTIONS if s.key != "hetero"),
                  "Findings over seeds", "Limitations", "Glossary", "Run manifest"):
        assert f"<h2>{escape(title)}</h2>" in html, title
    for kind in ("Table", "Figure"):
        numbers = [int(n) for n in re.findall(rf"<figcaption>{kind} (\d+): ", html)]
        assert numbers == list(range(1, len(numbers) + 1)), kind
    # every table shows every row of its CSV (or of its part of it); Table 6's parts together hold every row
    captions = re.findall(r"<table>(.*?)</table></div>\s*<figcaption>(.*?)</figcaption>", html, re.S)
    checked = 0
    for item in (i for s in report.SECTIONS for i in s.items if isinstance(i, report.Table)):
        path = out / item.step / item.file
        try:
            frame = pd.read_csv(path)
        except (FileNotFoundError, pd.errors.EmptyDataError):
            continue
        expected = len(item.view(frame)) if item.view else len(frame)
        hits = [tb for tb, cap in captions if prose.readable(item.caption) in unescape(cap)]
        if expected:
            assert len(hits) == 1 and len(re.findall(r"<tr>", hits[0])) - 1 == expected, item.caption
            checked += 1
    assert checked >= 10
    table6 = pd.read_csv(out / "04_compare" / "tables" / "table6.csv")
    parts = [report.table6_accuracy(table6), report.table6_refused(table6), report.table6_papers(table6)]
    published = table6["source"] != "measured here"
    assert set(parts[0].index) | set(parts[1].index) | set(table6.index[published]) == set(table6.index)
    assert set(table6.index[published]) <= set(parts[2].index)
    # one speed per model and route wherever the prose gives it, equal to Table 6b's
    table6 = pd.read_csv(out / "04_compare" / "tables" / "table6.csv")
    ok = table6[table6["status"] == "ok"]
    pairs = [(r["name"], f"{r['runtime']}/{r['precision']}") for _, r in ok.iterrows()]
    mentions = prose.speed_mentions(unescape(re.sub(r"<[^>]+>", "", html)), pairs)
    assert mentions, "page 1 gives no speed"
    for m in mentions:
        row = ok[(ok["name"] == m["model"]) & (ok["runtime"] + "/" + ok["precision"] == m["route"])].iloc[0]
        b = m["batch"]
        # a chosen row's speed is quoted from the side-by-side run of the contenders (its h2h_ columns)
        lat, speed, ref = ((f"h2h_latency_bs{b}_ms_median", f"h2h_speedup_bs{b}", f"h2h_reference_latency_bs{b}_ms_median")
                           if m["side_by_side"] else (f"latency_bs{b}_ms_median", f"speedup_vs_torch_fp32_teacher_bs{b}",
                                                      f"reference_latency_bs{b}_ms_median"))
        assert (m["ms"], m["ratio"], m["ref"]) == (prose.ms(row[lat]), prose.ratio(row[speed])[:-1], prose.ms(row[ref])), m
