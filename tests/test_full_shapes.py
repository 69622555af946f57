"""The full profile at the papers' shapes, offline: every notebook of params/full-shapes.yaml, end to end on this
CPU, with random weights of bert-base-uncased's shape for the teacher, 05's encoder and 06's teacher. It takes
longer than CI's budget allows (the note of the issue gives its time): `make test-full-shapes` runs it."""
from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.slow, pytest.mark.full_shapes]
# A BERT layer of hidden 768 holds 2,366,208 parameters plus 1,537 per FFN unit (seed 000's Table 4 grows by
# the same amounts: STUDY.md).
PER_LAYER, PER_FFN_UNIT = 2_366_208, 1_537


def test_every_step_runs_at_the_papers_shapes(tmp_path, monkeypatch, data_dir):
    # KD_FULL_SHAPES_REPORTS=reports writes the run where the study keeps it (reports/full-shapes, committed);
    # remove that folder first for a cold run. Unset: a temporary folder.
    reports = Path(os.environ.get("KD_FULL_SHAPES_REPORTS") or tmp_path / "reports").resolve()
    monkeypatch.setenv("KD_REPORTS_DIR", str(reports))
    monkeypatch.setenv("KD_CACHE_DIR", str(tmp_path / "cache"))
    from kdlib.pipeline import runner

    done = runner.run(REPO / "params" / "full-shapes.yaml")
    assert [r["status"] for r in done] == ["ran"] * len(done), done
    check_record(reports / "full-shapes")


def check_record(root: Path) -> None:
    """What a full-shapes run must show (tests/test_provenance.py checks the committed one with it too)."""
    # seed 000's Table 4 rebuilt at the paper's exact shapes, to the unit
    paper = pd.read_csv(root / "03_grid" / "tables" / "table4_paper_architecture.csv")
    assert len(paper) == 9 and (paper["difference"] == 0).all()
    # the students built and timed here, at BERT-base width: the paper's increments per layer and per FFN unit
    table4 = pd.read_csv(root / "03_grid" / "tables" / "table4.csv")
    grid = table4[table4["student"] == "L" + table4["layers"].astype(str) + "_F" + table4["ffn"].astype(str)]
    built = grid.set_index(["layers", "ffn"])["params"]  # the grid's own students (not the _gd variants)
    assert {(l, f) for l, f in built.index} >= {(l, f) for l in (1, 3, 6) for f in (192, 768, 3072)}
    assert built[(3, 768)] - built[(1, 768)] == 2 * (PER_LAYER + PER_FFN_UNIT * 768)
    assert built[(1, 3072)] - built[(1, 192)] == PER_FFN_UNIT * (3072 - 192)
    assert built[(6, 3072)] > 0 and pd.read_csv(root / "03_grid" / "tables" / "table4.csv")["latency_bs1_ms_median"].gt(0).all()

    # 04's routes and 06's benchmark at BERT-base size
    table6 = pd.read_csv(root / "04_compare" / "tables" / "table6.csv")
    assert table6[(table6["name"] == "teacher") & (table6["status"] == "ok")]["params"].iloc[0] > 100e6
    assert (root / "06_edge_benchmark" / "tables" / "table2.csv").is_file()

    # every accuracy marked as meaningless, in the notebooks and on the report's first page
    for notebook in sorted(root.glob("0*/0*.ipynb")):
        assert "Random weights" in notebook.read_text(), notebook.name
    assert "meaningless" in (root / "report.html").read_text()
