"""The report (kdlib/report/sections.py, render.py, findings.py, manifest.py), built from a small results folder this
test writes itself: every section is there, each table holds its CSV's numbers, a step that has not run is
reported as not run, two builds give the same bytes, and the PDF has the pages Typst laid out."""
from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pandas as pd
import pytest
from markupsafe import escape

from kdlib.pipeline import steps
from kdlib.pipeline.config import load_params
from kdlib.report import findings, prose, render
from kdlib.report import sections as report
from kdlib.studies import verdicts

REPO = Path(__file__).resolve().parents[1]

CLASS_BALANCE = pd.DataFrame({  # the label column carries every character Typst markup would trip on
    "split": ["train", "train", "test"], "label": ["neutral", 'pos #[*_$@"\\]<x>', "neutral"],
    "count": [300, 180, 60], "percent": [62.5, 37.5, 100.0]})
TABLE4 = pd.DataFrame({
    "student": ["L1_F96", "L3_F384"], "layers": [1, 3], "ffn": [96, 384], "route": ["layer copy"] * 2,
    "params": [12734691, 14733315], "size_mb": [50.941484, 58.939676], "latency_bs1_ms_median": [1.3211, 3.6265],
    "latency_bs32_ms_median": [20.0, 83.2], "val_accuracy": [0.66, 0.80], "test_accuracy": [0.675, 0.8125],
    "test_macro_f1": [0.4949, 0.7773], "retention": [0.8139, 0.9798]})
BENCH = pd.DataFrame({"name": ["teacher", "teacher"], "runtime": ["torch"] * 2, "precision": ["fp32"] * 2,
                      "status": ["ok"] * 2, "batch_size": [1, 32], "latency_ms_median": [13.4, 260.0],
                      "cpu_model": ["Test CPU"] * 2, "cpu_flags": ["avx2"] * 2, "threads": [2, 2], "seq_len": [64, 64]})
RETENTION_SEEDS = [0.975, 0.978, 0.980, 0.976, 0.979]  # 5 seeds, all close to 0.97 (within its ± 0.02)


def _write(folder: Path, rel: str, content) -> None:
    path = folder / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, pd.DataFrame):
        content.to_csv(path, index=False)
    elif isinstance(content, dict):
        path.write_text(json.dumps(content))
    else:
        path.write_bytes(content)


def _png() -> bytes:
    import io

    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(2, 1.5))
    ax.plot([1, 2], [0.6, 0.8])
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=50, metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


def write_results(profile_dir: Path, verdicts_dir: Path, cfg) -> None:
    """Steps 00-03 as if they had run (hand-made numbers); 04, 05 and 06 not run. Two verdict CSVs, each with
    its record of `cfg`'s parameters (as `kdstudy verdicts` writes them)."""
    _write(profile_dir, "00_data_prep/metrics.json", {"dataset": "fin_sentiment", "n_train": 480, "n_validation": 60,
                                                      "n_test": 60, "n_classes": 3, "truncated_share": 0.02})
    _write(profile_dir, "00_data_prep/tables/class_balance.csv", CLASS_BALANCE)
    _write(profile_dir, "01_teacher/metrics.json", {"teacher_model": "minilm", "teacher_params": 22714371,
                                                    "teacher_test_accuracy": 0.83})
    _write(profile_dir, "02_distill/metrics.json", {
        "student_params": 17390979, "teacher_params": 22714371, "student_retention": 0.9777,
        "student_test_accuracy": 0.8115, "nokd_test_accuracy": 0.79, "student_speedup_fp32_bs1": 1.87,
        "student_speedup_fp32_bs32": 2.14})
    _write(profile_dir, "02_distill/tables/benchmark.csv", BENCH)
    _write(profile_dir, "03_grid/metrics.json", {"layer_vs_ffn_time_ratio": 1.0678, "teacher_test_accuracy": 0.83})
    _write(profile_dir, "03_grid/tables/table4.csv", TABLE4)
    _write(profile_dir, "03_grid/tables/benchmark.csv", BENCH)
    _write(profile_dir, "03_grid/figures/history.png", _png())
    verdicts.write_rows(cfg, verdicts_dir, "half_depth_retention",
                        pd.DataFrame({"seed": range(5), "student_retention": RETENTION_SEEDS}), {})
    verdicts.write_rows(cfg, verdicts_dir, "layer_vs_ffn", pd.DataFrame(
        {"repeat": range(1, 4), "layer_ms": [10.0, 11.0, 9.0], "ffn_widening_ms": [4.0, 5.0, 12.0]}), {})


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    root = tmp_path_factory.mktemp("report") / "reports"
    mp.setenv("KD_REPORTS_DIR", str(root))
    cfg = load_params(REPO / "params" / "smoke.yaml")
    write_results(root / cfg.profile, root / cfg.profile / "verdicts", cfg)
    first = render.build(cfg, data_dir="")
    texts = {k: Path(first[k]).read_bytes() for k in ("typ", "html", "pdf")}
    second = render.build(cfg, data_dir="")
    yield cfg, root / cfg.profile, first, texts, second
    mp.undo()


def test_every_section_is_there(built):
    _, _, first, _, _ = built
    html, typ = Path(first["html"]).read_text(), Path(first["typ"]).read_text()
    titles = ["The answer", "Methods", *(prose.readable(s.title) for s in report.SECTIONS),
              "Where the sources disagree with themselves", "Findings over seeds", "Teaching figures", "Limitations",
              "Glossary", "Run manifest"]
    for title in titles:
        assert f"<h2>{escape(title)}</h2>" in html, title
        assert re.search(rf'^(= |#heading\(.*\)\[)(#"{re.escape(title)}"|{re.escape(title)})\]?$', typ, re.M), title
    for d in findings.disagreements(Path(first["pdf"]).parent):
        assert str(escape(prose.readable(d["title"]))) in html
    # before 04 has run there is no recommendation, and page 1 says so
    assert "No recommendation yet: 04_compare has not run for this profile." in html


def test_the_sources_are_named_by_their_authors_and_the_glossary_is_there(built):
    _, _, first, _, _ = built
    html = Path(first["html"]).read_text()
    assert not re.search(r"\b[Ss]eeds? 00[0-4]\b", html)
    assert "Jang 2021" in html and "Yu &amp; Kim 2022" in html
    for term, _ in prose.glossary():
        assert f"<dt><strong>{escape(term)}</strong></dt>" in html, term
    assert {"Knowledge distillation (KD)", "Speed-up", "int8 and int8_static", "Points (pp)"} <= dict(prose.glossary()).keys()


def test_tables_and_figures_are_numbered_in_order(built):
    _, _, first, _, _ = built
    html = Path(first["html"]).read_text()
    for kind in ("Table", "Figure"):
        numbers = [int(n) for n in re.findall(rf"<figcaption>{kind} (\d+): ", html)]
        assert numbers == list(range(1, len(numbers) + 1)) and numbers, kind


def test_each_table_holds_the_numbers_of_its_csv(built):
    _, profile_dir, first, _, _ = built
    html = Path(first["html"]).read_text()
    assert report.cell(0.8125) == "0.8125" and report.cell(12734691.0) == "12734691" and report.cell(1.3211) == "1.3211"
    assert report.cell(50.941484) == "50.94" and report.cell(260.0) == "260" and report.cell(math.nan) == "–"
    for rel, frame, columns in (("00_data_prep/tables/class_balance.csv", CLASS_BALANCE, CLASS_BALANCE.columns),
                                ("03_grid/tables/table4.csv", TABLE4, report.T4_COLUMNS)):
        assert f"file {rel}" in html
        start = html.index(f"file {rel}")
        table = html[html.rindex("<table>", 0, start):start]
        rows = re.findall(r"<tr>(.*?)</tr>", table, re.S)[1:]
        from html import unescape
        shown = [[unescape(c) for c in re.findall(r"<td>(.*?)</td>", r, re.S)] for r in rows]
        headers, presented = report.present(frame[list(columns)])
        assert shown == [[prose.readable(report.cell(v)) for v in row] for row in presented.itertuples(index=False)], rel
    # accuracies are shown in %, under a name that says so
    headers, presented = report.present(TABLE4[["test_accuracy", "retention", "params"]])
    assert headers == ["test accuracy (%)", "% of teacher's accuracy", "parameters"]
    assert presented["test_accuracy"].tolist() == [67.5, 81.25] and presented["params"].tolist() == TABLE4["params"].tolist()


def test_a_step_that_has_not_run_is_reported_as_not_run(built):
    _, _, first, _, _ = built
    html, typ = Path(first["html"]).read_text(), Path(first["typ"]).read_text()
    for step in ("04_compare", "05_hetero_kd", "06_edge_benchmark"):
        assert f"Not run: notebook {step} has not run for this profile" in html, step
        assert f"Not run: notebook {step} has not run for this profile" in typ, step
    # a file a finished step did not write is "missing", not "not run"
    assert "Missing: 03_grid ran but did not write tables/table3.csv." in html
    rows = render.findings_rows(Path(first["pdf"]).parent, Path(first["pdf"]).parent / "verdicts")
    hetero = next(r for r in rows if "heterogeneous knowledge distillation method" in r["claim"])
    assert hetero["overall"] == "cannot tell (not run)" and hetero["source"] == "not run (05_hetero_kd)"


def test_findings_read_the_seeds_and_need_five(built):
    cfg, profile_dir, first, _, _ = built
    rows = {r["quantity"]: r for r in render.findings_rows(profile_dir, profile_dir / "verdicts", cfg)}
    retention = rows["student accuracy ÷ teacher accuracy in %"]
    mean = sum(RETENTION_SEEDS) / 5
    assert retention["n"] == "5 seeds" and retention["mean_std"].startswith(report.cell(100 * mean)) and retention["mean_std"].endswith(" %")
    assert retention["threshold"] == "≈ 97" and retention["margin"].startswith("± 2 points")
    assert retention["test"].startswith("TOST") and retention["verdict"] == "holds"
    layer = rows["ms of one more layer − ms of widening the FFN from smallest to largest (batch 32)"]
    assert layer["n"] == "3 repeated timings, not seeds" and layer["verdict"] == "cannot tell (3 timings)"
    assert layer["p"] == "–" and layer["test"].startswith("repeated timings, not seeds")
    assert rows["accuracy points lost"]["verdict"] == "cannot tell (1 seed)"  # this profile's own single run
    html = Path(first["html"]).read_text()
    assert "<th>threshold</th><th>margin</th>" in html and str(escape("3 repeated timings, not seeds")) in html


def test_findings_without_parameters_call_every_verdict_file_stale(built):
    _, profile_dir, _, _, _ = built
    rows = {r["quantity"]: r for r in render.findings_rows(profile_dir, profile_dir / "verdicts")}
    assert rows["student accuracy ÷ teacher accuracy in %"]["n"] == "1 seed"  # 02's single run
    assert rows["student accuracy ÷ teacher accuracy in %"]["source"].startswith("stale: rerun `kdstudy verdicts`")


def test_verdict_rules_and_the_one_sided_t_test():
    # [1..5] against 0: t = 3 / (1.5811 / sqrt 5) = 4.243 with 4 degrees of freedom, one-sided p = 0.00662
    assert findings.one_sided_p([1, 2, 3, 4, 5], 0.0, ">") == pytest.approx(0.00662, abs=2e-5)
    assert findings.one_sided_p([1, 2, 3, 4, 5], 0.0, "<") == pytest.approx(1 - 0.00662, abs=2e-5)
    assert findings.verdict_of(4, 0.001, 0.999) == "cannot tell (4 seeds)"
    assert findings.verdict_of(5, 0.01, 0.99) == "holds"
    assert findings.verdict_of(5, 0.99, 0.01) == "does not hold"
    assert findings.verdict_of(5, 0.2, 0.8) == "cannot tell (within seed-to-seed noise)"
    assert findings.combine(["holds", "does not hold"]) == "does not hold"
    assert findings.combine(["holds", "cannot tell (3 seeds)"]) == "cannot tell (3 seeds)"
    assert findings.combine(["holds", "cannot tell (within seed-to-seed noise)"]) == "cannot tell"


def test_two_builds_give_the_same_bytes(built):
    _, _, _, texts, second = built
    for kind in ("typ", "html", "pdf"):
        assert Path(second[kind]).read_bytes() == texts[kind], kind


def test_the_pdf_exists_and_has_its_pages(built):
    import typst

    _, profile_dir, first, texts, _ = built
    assert texts["pdf"].startswith(b"%PDF") and (profile_dir / "report.pdf").read_bytes() == texts["pdf"]
    pages = typst.compile(str(first["typ"]), root=str(profile_dir), format="png", ppi=8)
    assert first["n_pages"] == len(pages) >= 4
    assert b"CreationDate" not in texts["pdf"] or b"D:1970" in texts["pdf"]


def test_the_typst_string_escapes_markup():
    assert render.typst_string('a"b\\c#[x]\n') == '"a\\"b\\\\c#[x]\\n"'


def test_the_report_step_comes_last_and_needs_every_step_before_it():
    assert steps.STEPS[-1].stem == "07_report"
    assert set(steps.STEPS[-1].needs) == {s.stem for s in steps.STEPS[:-1]}


@pytest.mark.parametrize("p, side", [(0.867, "cannot be told apart from"), (0.01, "does worse than"),
                                     (float("nan"), "cannot be told apart from")])
def test_the_transformer_students_are_called_apart_only_by_their_test(tmp_path, p, side):
    (tmp_path / "05_hetero_kd").mkdir()
    (tmp_path / "05_hetero_kd" / "metrics.json").write_text(json.dumps({
        "n_seeds": 5, "acc_A_mean": 0.6887, "acc_B_mean": 0.6871, "p_A_vs_B": 0.69,
        "transformer_hetero_acc": 0.5283, "transformer_plain_acc": 0.5465, "transformer_p_hetero_vs_plain": p}))
    text = next(t for t in prose.key_findings(tmp_path, [], {}) if t.startswith("Heterogeneous KD"))
    assert f"it {side} plain KD" in text
