"""Building the report: the report's own figure, the findings as rows, and the rendering of one context
into Typst (compiled to PDF by the `typst` wheel) and HTML, with Jinja2 templates from kdlib/templates/.

    from kdlib.report import render
    render.build(load_params("params/quick.yaml"))  # reports/quick/report.pdf and report.html

The context is built once and rendered twice, so the PDF and the HTML hold the same content. Nothing in it
depends on the clock (the PDF's dates are fixed), so the same results give the same bytes.
"""
from __future__ import annotations

import math
import re
from pathlib import Path

import jinja2
import matplotlib.pyplot as plt
import pandas as pd

from kdlib.core.data import data_dir as env_data_dir
from kdlib.core.io import atomic_path, read_json, save_figure, write_json, write_text
from kdlib.core.models import select_teacher_layers
from kdlib.pipeline.config import StudyParams
from kdlib.pipeline.paths import reports_root
from kdlib.pipeline.steps import STEPS
from kdlib.report import findings as fnd
from kdlib.report import manifest as mf
from kdlib.report import prose
from kdlib.report.figures import answer_figure
from kdlib.report.sections import REPORT_STEP, TEACHING, Figure, cell, collect_sections, number, read_figure, read_item


def student_init_figure(n_teacher: int, init: str):
    """Which teacher layer each student layer copies, for every depth below the teacher's and for DistilBERT."""

    panels = [(n_teacher, list(range(1, n_teacher)), f"our teacher ({n_teacher} layers), init = {init}"),
              (12, [6], "DistilBERT (BERT-base, 12 layers)")]
    fig, axes = plt.subplots(2, 1, figsize=(6.5, 0.5 + 0.42 * (n_teacher + 1)),
                             gridspec_kw={"height_ratios": [n_teacher - 1 + 0.6, 1.6]})
    for ax, (n, depths, title) in zip(axes, panels):
        for row, k in enumerate(depths):
            for j, layer in enumerate(select_teacher_layers(n, k, init if n == n_teacher else "alternate")):
                ax.add_patch(plt.Rectangle((layer - 0.42, row - 0.38), 0.84, 0.76, color="tab:blue"))
                ax.text(layer, row, f"s{j}", ha="center", va="center", color="white", fontsize=8)
        ax.set(xlim=(-0.6, n - 0.4), ylim=(len(depths) - 0.5, -0.5), title=title, xlabel="teacher layer")
        ax.set_xticks(range(n))
        ax.set_yticks(range(len(depths)), [f"{k}-layer student" for k in depths])
        ax.grid(False)
    fig.tight_layout()
    return fig


def _teacher_depth(profile_dir: Path) -> int:
    config = profile_dir / "01_teacher" / "model" / "config.json"
    if config.exists():
        return int(read_json(config)["num_hidden_layers"])
    table3 = profile_dir / "03_grid" / "tables" / "table3.csv"
    if table3.exists():
        return int(pd.read_csv(table3)["layers"].iloc[0])
    return 6  # all-MiniLM-L6-v2, the offline teacher


def _p_cell(t: dict) -> str:
    """The claim's p; where the claim does not hold, also the p of the other side, which decided it."""
    if t["verdict"] == "does not hold" and not math.isnan(t["p_against"]):
        return f"{cell(t['p'])} (other side {cell(t['p_against'])})"
    return cell(t["p"])


def findings_rows(profile_dir: Path, verdicts_dir: Path, cfg: StudyParams | None = None) -> list[dict]:
    """The findings as text cells: claim (its words), where its numbers come from, quantity, threshold, margin,
    test, n, mean ± std, p, verdict. Verdict CSVs count only while they match `cfg` (findings.finding)."""
    out = []
    for f in fnd.findings(profile_dir, verdicts_dir, cfg):
        c = f["claim"]
        tests = f["tests"] or [{"quantity": "–", "unit": "", "scale": 1.0, "threshold": "–", "margin": "–",
                                "test": "–", "n_text": "0",
                                "mean": math.nan, "std": math.nan, "p": math.nan, "p_against": math.nan,
                                "verdict": f["verdict"]}]
        words = f"“{c.words}” ({c.source})" + (f"; tested as: {c.reading}" if c.reading else "")
        for i, t in enumerate(tests):
            unit = f" {t['unit']}" if t["unit"] else ""
            mean, std = t["scale"] * t["mean"], t["scale"] * t["std"]
            spread = f"{cell(mean)} ± {cell(std)}{unit}" if not math.isnan(std) else f"{cell(mean)}{unit}"
            out.append({"claim": words if i == 0 else "", "source": f["source"] if i == 0 else "",
                        "quantity": f"{t['quantity']} in {t['unit']}" if t["unit"] else t["quantity"],
                        "threshold": t["threshold"], "margin": t["margin"],
                        "n": t["n_text"], "mean_std": spread, "test": t["test"],
                        "p": _p_cell(t),
                        "verdict": t["verdict"], "overall": f["verdict"] if i == 0 else ""})
    return out


# --------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------


def typst_string(s) -> str:
    """A Typst string literal: shown verbatim, so no markup character in a table cell can break the document."""
    s = str(s).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "")
    return f'"{s}"'


def _environment(kind: str):
    env = jinja2.Environment(loader=jinja2.PackageLoader("kdlib.report", "templates"), undefined=jinja2.StrictUndefined,
                             autoescape=kind == "html", trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
                             comment_start_string="{##", comment_end_string="##}")
    env.filters["t"] = typst_string
    return env


def _answer_figure(profile_dir: Path) -> dict | None:
    """Figure 1, drawn from 04's table6.csv into 07_report/figures/answer.png; None before 04 ran."""
    table6 = profile_dir / "04_compare" / "tables" / "table6.csv"
    if not table6.exists():
        return None
    rec = profile_dir / "04_compare" / "tables" / "recommendation.csv"
    shipped = tuple(pd.read_csv(rec).iloc[0][["model", "route"]]) if rec.exists() else None
    fig = answer_figure(pd.read_csv(table6), shipped)
    save_figure(fig, profile_dir / REPORT_STEP, "answer")
    plt.close(fig)
    return read_figure(profile_dir, Figure(REPORT_STEP, "figures/answer.png", "Test accuracy against latency "
                                           "of every model and route 04 measured; the Pareto front (no row both "
                                           "faster and more accurate on test) numbered and named below each "
                                           "panel; the recommended route ringed (it was chosen on validation, "
                                           "so it need not lie on the test front); from "
                                           "04_compare/tables/table6.csv", id="figure1"))


HEADINGS_AFTER = ("Where the sources disagree with themselves", "Findings over seeds", "Teaching figures",
                  "Limitations", "Glossary", "Run manifest")


def context(cfg: StudyParams, profile_dir: Path, verdicts_dir: Path, data_dir) -> dict:
    off = tuple(s.stem for s in STEPS if not cfg.runs(s.stem))
    sections = collect_sections(profile_dir, off)
    for s in sections:
        s["title"], s["intro"] = prose.readable(s["title"]), prose.readable(s["intro"])
    teaching = [x for item in TEACHING for x in read_item(profile_dir, item)]
    figure1 = _answer_figure(profile_dir)
    refs = number([[figure1] if figure1 else [], *(s["content"] for s in sections), teaching])
    # the headings, numbered as the PDF numbers them: Methods is 1, then the sections, then the rest
    headings = ["Methods", *(s["title"] for s in sections), *HEADINGS_AFTER]
    refs["findings"] = f"section {headings.index('Findings over seeds') + 1}"
    refs.update({s["key"]: f"section {headings.index(s['title']) + 1}" for s in sections})
    found = fnd.findings(profile_dir, verdicts_dir, cfg)
    for s in sections:
        s["conclusion"] = prose.conclusion(s["key"], profile_dir, found, refs) if not s["not_run"] else ""
        for item in s["content"]:
            for key in ("caption", "text"):
                if key in item:
                    item[key] = prose.readable(item[key])
            if "rows" in item:
                item["rows"] = [[prose.readable(v) for v in row] for row in item["rows"]]
    disagreements = [{k: prose.readable(v) for k, v in d.items()} for d in fnd.disagreements(profile_dir)]
    return {
        "profile": cfg.profile,
        "random_warning": cfg.random_warning(),
        "answer": prose.answer(profile_dir),
        "key_findings": prose.key_findings(profile_dir, found, refs),
        "figure1": figure1,
        "methods": prose.methods(cfg, profile_dir),
        "sections": sections,
        "disagreements": disagreements,
        "findings": [{k: prose.readable(v) for k, v in r.items()} for r in findings_rows(profile_dir, verdicts_dir, cfg)],
        "min_seeds": fnd.MIN_SEEDS, "alpha": fnd.ALPHA,
        "teaching": teaching,
        "limitations": prose.limitations(cfg, profile_dir, refs),
        "glossary": prose.glossary(),
        "manifest": mf.build(cfg, profile_dir, data_dir, upto=REPORT_STEP),
    }


def count_pages(pdf: bytes) -> int:
    return len(re.findall(rb"/Type\s*/Page(?![s\w])", pdf))


def build(cfg: StudyParams, data_dir=None, verdicts_dir: Path | None = None) -> dict:
    """Write report.typ and manifest.json into reports/<profile>/07_report/, and the report itself as
    reports/<profile>/report.pdf and report.html. Returns paths and counts."""
    import typst

    profile_dir = reports_root() / cfg.profile
    out = profile_dir / REPORT_STEP
    verdicts_dir = verdicts_dir or profile_dir / "verdicts"  # written by `kdstudy verdicts` (kdlib/studies/verdicts.py)
    fig = student_init_figure(_teacher_depth(profile_dir), cfg.grid.init)
    save_figure(fig, out, "student_init")
    plt.close(fig)
    ctx = context(cfg, profile_dir, verdicts_dir, data_dir if data_dir is not None else env_data_dir())
    write_json(out / "manifest.json", ctx["manifest"])
    typ = write_text(out / "report.typ", _environment("typst").get_template("report.typ.j2").render(**ctx))
    html = _environment("html").get_template("report.html.j2").render(**ctx)
    pdf = typst.compile(str(typ), root=str(profile_dir), format="pdf", timestamp=0)
    with atomic_path(profile_dir / "report.pdf") as tmp:
        tmp.write_bytes(pdf)
    paths = {"pdf": profile_dir / "report.pdf", "html": write_text(profile_dir / "report.html", html)}
    return {**paths, "typ": typ, "n_pages": count_pages(pdf),
            "sections_not_run": sum(bool(s["not_run"]) for s in ctx["sections"]),
            "findings_with_verdict": sum(r["overall"] in ("holds", "does not hold") for r in ctx["findings"])}
