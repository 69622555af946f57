"""The study's report, reports/<profile>/report.pdf and report.html, built from the files the notebooks wrote.

Every section is declared once below (`SECTIONS`): which step's tables, figures and notes it shows,
with captions naming the notebook and the file. A step that has not run is reported as "not run"; a file
a step should have written but did not is reported as missing. Nothing here computes a result: numbers
are read from CSV and JSON files (kdlib/report/findings.py types in the papers' published numbers, attributed).

kdlib/report/render.py turns what this module reads into the PDF (Jinja2 into Typst, compiled by the `typst`
wheel: pip only, no browser, no TeX) and the HTML.
"""
from __future__ import annotations

import base64
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pandas as pd

from kdlib.core.io import read_json

REPORT_STEP = "07_report"


@dataclass(frozen=True)
class Table:
    step: str
    file: str
    caption: str
    columns: tuple[str, ...] = ()  # shown columns (all when empty); every row is always shown
    id: str = ""  # what the report's prose refers to it by ("table6b")
    view: Callable[[pd.DataFrame], pd.DataFrame] | None = None  # a part of the CSV (Table 6 in four parts)


@dataclass(frozen=True)
class Figure:
    step: str
    file: str  # a .png under the step's folder
    caption: str
    id: str = ""


@dataclass(frozen=True)
class Note:
    text: str


@dataclass(frozen=True)
class Section:
    key: str  # prose.conclusion's name for it
    title: str
    intro: str | Callable[[Path], str]  # a callable reads what the profile ran from its files
    items: tuple = ()
    extras_of: str | None = None  # also show this step's tables/figures that no section declares
    steps: tuple[str, ...] = ()  # the steps it reads (derived from the items when empty)

    def reads(self) -> tuple[str, ...]:
        return self.steps or tuple(dict.fromkeys(i.step for i in self.items if hasattr(i, "step")))


T4_COLUMNS = ("student", "layers", "ffn", "route", "params", "size_mb", "latency_bs1_ms_median",
              "latency_bs32_ms_median", "test_accuracy", "test_macro_f1", "retention")


# Table 6 (04's table6.csv) in parts a page can hold; together they show every row.
def _measured(frame: pd.DataFrame, ok: bool) -> pd.DataFrame:
    here = frame[frame["source"] == "measured here"].copy()
    here["route"] = here["runtime"] + "/" + here["precision"]
    return here[(here["status"] == "ok") == ok]


def table6_accuracy(frame: pd.DataFrame) -> pd.DataFrame:
    return _measured(frame, True)[["name", "route", "family", "accuracy", "val_accuracy", "macro_f1",
                                   "pct_of_teacher", "params", "params_nonzero", "size_mb"]]


def table6_speed(frame: pd.DataFrame) -> pd.DataFrame:
    cols = ["name", "route"] + [c for b in (1, 32) for c in (
        f"latency_bs{b}_ms_median", f"reference_latency_bs{b}_ms_median", f"speedup_vs_torch_fp32_teacher_bs{b}",
        f"speedup_vs_same_route_teacher_bs{b}")]
    rows = _measured(frame, True).reindex(columns=cols)
    speedups = [c for c in cols if c.startswith("speedup")]
    rows[speedups] = rows[speedups].round(2)
    return rows


def table6_roofline(frame: pd.DataFrame) -> pd.DataFrame:
    cols = ["name", "route", "flops_per_sample", "gflops_bs1", "peak_share_bs1", "gflops_bs32", "peak_share_bs32"]
    rows = _measured(frame, True).reindex(columns=cols)
    rows["flops_per_sample"] = rows["flops_per_sample"] / 1e9
    for b in (1, 32):  # shares in % (a share above 100% would mean the peak was measured too low)
        rows[f"peak_share_bs{b}"] = (100 * rows[f"peak_share_bs{b}"]).round(1)
    return rows


def table6_refused(frame: pd.DataFrame) -> pd.DataFrame:
    return _measured(frame, False)[["name", "route", "status", "reason"]]


def table6_papers(frame: pd.DataFrame) -> pd.DataFrame:
    paper = [c for c in frame.columns if c.startswith(("seed000_", "seed001_"))]
    rows = frame[frame[paper].notna().any(axis=1)].copy()
    rows["name"] = rows["name"].where(rows["source"] == "measured here", "–")
    return rows[["source", *paper, "name"]].rename(columns={"name": "our row beside it"})


T6 = ("04_compare", "tables/table6.csv")


def _grid_stand_ins(root: Path) -> str:
    """What stands in for the paper's private data and teacher, read from 00's metrics and 03's table 3."""
    data = root / "00_data_prep" / "metrics.json"
    table3 = root / "03_grid" / "tables" / "table3.csv"
    dataset = read_json(data)["dataset"] if data.exists() else None
    text = f"Its data is private: {dataset} stands in. " if dataset else "Its data is private. "
    if not table3.exists():
        return text
    t3 = pd.read_csv(table3)
    teacher, students = t3.iloc[0], t3.iloc[1:]
    depths = ", ".join(str(d) for d in sorted(students["layers"].unique()))
    return text + (f"Our teacher is {teacher['model'].removeprefix('teacher ').strip('()')} ({int(teacher['layers'])} "
                   f"layers, hidden {int(teacher['hidden'])}), so our grid's depths are {depths}.")


SECTIONS: tuple[Section, ...] = (
    Section("grid", "A grid of distilled students (Jang 2021)",
            lambda root: "A KcBERT teacher distilled into students of 1, 3 and 6 layers and three FFN sizes, "
                         "timed and scored on 3-class news sentiment. " + _grid_stand_ins(root), (
                Table("00_data_prep", "tables/class_balance.csv", "The classes and their shares (Jang 2021's "
                      "Table 1 gives its own)"),
                Table("03_grid", "tables/table3.csv", "The teacher and students; Jang 2021's teacher (its Table 3) in "
                      "the *paper columns", ("model", "layers", "hidden", "ffn", "heads", "teacher_layers_copied",
                                             "params", "layers_paper", "hidden_paper", "ffn_paper", "vocab_paper")),
                Table("03_grid", "tables/table4.csv", "The grid of students (Jang 2021's Table 4): parameters, "
                      "latency in 03's own timing run, and accuracy chosen on validation, scored on test",
                      T4_COLUMNS, id="table4"),
                Table("03_grid", "tables/table4_paper_architecture.csv", "Jang 2021's Table 4 at its own sizes: our "
                      "parameter count against the paper's, and its time"),
                Table("03_grid", "tables/timing_finding.csv", "The fitted time of one more layer against widening "
                      "the FFN, in this single timing run (the verdict over repeated timings is in the findings)",
                      ("setting", "unit", "per_layer", "layer_cost_at_middle_ffn", "ffn_widening_cost_one_layer",
                       "layer_vs_ffn_time_ratio", "r2", "advice_holds"), id="timing"),
                Figure("03_grid", "figures/history.png", "The students' validation accuracy per epoch"),
                Note("Jang 2021's Table 5 (per-epoch accuracy of its nine students) is lost; only its text "
                     "survives: model 5 (3 layers, FFN 768) is best, peaking at epoch 20 with 92.4%, and students "
                     "with at least 3 layers and FFN 768 overfit. The curves above are ours."),
                Figure("03_grid", "figures/heatmap_accuracy.png", "Test accuracy over layers × FFN size"),
                Figure("03_grid", "figures/time_vs_shape.png", "Latency against FFN size, per depth (03's timing run)"),
            ), extras_of="03_grid"),
    Section("compare", "Compression methods compared (Park's GLUE poster)",
            "Pruning, quantization, weight sharing and distillation side by side on every runtime and precision "
            "this CPU runs (Jang 2021's Table 6 and Park's comparison in the last part), and where each method "
            "distils (embedding, attention, hidden states, prediction).", (
                Table(*T6, "Every model and route against the teacher (after Jang 2021's Table 6), part 1: accuracy and size", id="table6a",
                      view=table6_accuracy),
                Table(*T6, "Part 2, the same rows' latency and speed-up at batch 1 and 32; each row timed in "
                      "turn with the teacher on PyTorch fp32 (its milliseconds in that same run beside it), the "
                      "speed-up the median of the per-round ratios", id="table6b", view=table6_speed),
                Table(*T6, "Part 3, how much of this CPU each row uses: its GFLOP/s and their share of the "
                      "measured peak of its precision (a lower bound: fused attention is not counted)",
                      id="table6c", view=table6_roofline),
                Table("04_compare", "tables/peak.csv", "This CPU's matrix-product peak per precision, measured: "
                      "what the previous table's shares are of", id="peak"),
                Table(*T6, "Part 4, the routes refused or failed on this CPU, with the reason", id="table6d",
                      view=table6_refused),
                Table(*T6, "Part 5, the papers' published rows (Jang 2021's Table 6; Park's comparison), each "
                      "beside our row that stands for it", id="table6e", view=table6_papers),
                Note("Accuracy against latency for every row of these tables, with the Pareto front at batch 1 "
                     "and 32, is Figure 1 on the first page (04_compare draws the same in figures/pareto.png)."),
                Table("04_compare", "tables/kd_position.csv", "Where each method distils"),
            ), extras_of="04_compare"),
    Section("taxonomy", "The taxonomy of compression methods (the survey blog)",
            "Six families after Gordon (2019): pruning, weight factorization, knowledge distillation, weight "
            "sharing, quantization, and pre-training versus downstream; each with the row that measures it here.", (
                Table("04_compare", "tables/taxonomy.csv", "The six families, each with its measured row"),
                Figure("04_compare", "figures/families.png", "Each family's best row"),
                Table("04_compare", "tables/conclusions.csv", "A conclusion per family, generated from the numbers"),
            )),
    Section("hetero", "Heterogeneous knowledge distillation (Yu & Kim 2022)",
            "On 20 Newsgroups, a student with a distillation head that learns from a coarse-label teacher (A), "
            "against traditional KD (B) and no KD (C), over several seeds.", (
                Table("05_hetero_kd", "tables/table3.csv", "The two teachers beside the paper's (its Table 3)"),
                Table("05_hetero_kd", "tables/table4.csv", "A, B and C over seeds beside the paper's (its Table 4)",
                      id="hetero"),
                Table("05_hetero_kd", "tables/table5.csv", "Accuracy per epoch (the paper's Table 5)"),
                Table("05_hetero_kd", "tables/table6.csv", "Macro-F1 per epoch (the paper's Table 6)"),
                Table("05_hetero_kd", "tables/transformer.csv", "Beyond the paper: a 1-layer transformer student, "
                      "heterogeneous against plain KD"),
            ), extras_of="05_hetero_kd"),
    Section("edge", "DistilBERT on a Raspberry Pi 5 budget (Im, Kim & Suh)",
            "SQuAD v1.1 question answering, the teacher against a half-depth student, under a pi5 benchmark "
            "profile (batch 1, whole questions).", (
                Table("06_edge_benchmark", "tables/table2.csv", "EM, F1 and time beside the paper's (its Table 2)"),
                Table("06_edge_benchmark", "tables/paired_speedups.csv", "The quoted speed-ups: each student route "
                      "timed in turn with the fp32 teacher, question by question in one run"),
                Table("06_edge_benchmark", "tables/variants.csv", "Every runtime variant tried, pi5 profile, each "
                      "in its own run (compare their times with care: separate runs)"),
                Figure("06_edge_benchmark", "figures/variants.png", "The variants' time and F1"),
                Table("06_edge_benchmark", "tables/evaluation_gap.csv", "The EM–F1 gap of our predictions under "
                      "correct and shortcut evaluations"),
                Table("06_edge_benchmark", "tables/device_results.csv", "Measured on a device: the kdstudy bench "
                      "results put in 06_edge_benchmark/device_results/ (none yet when empty)"),
            ), extras_of="06_edge_benchmark"),
)

TEACHING = (
    Figure("06_edge_benchmark", "figures/softmax_temperature.png", "Softmax temperature: one teacher's logits "
           "at T = 1, 3, 10"),
    Figure("06_edge_benchmark", "figures/triple_loss.png", "DistilBERT's triple loss: its three terms on one batch"),
    Figure(REPORT_STEP, "figures/student_init.png", "Student initialisation: which teacher layers each student "
           "copies (kdlib.core.models.select_teacher_layers)", id="layer_copy"),
)


# --------------------------------------------------------------------------
# Columns as readers read them: names, and one unit per quantity
# --------------------------------------------------------------------------

HEADERS = {
    "name": "model", "accuracy": "test accuracy", "val_accuracy": "validation accuracy", "macro_f1": "test macro-F1",
    "test_accuracy": "test accuracy", "test_macro_f1": "test macro-F1", "retention": "% of teacher's accuracy",
    "pct_of_teacher": "% of teacher's accuracy", "params": "parameters", "params_nonzero": "nonzero parameters",
    "size_mb": "size (MB)", "ffn": "FFN", "student": "student",
    **{f"latency_bs{b}_ms_median": f"batch {b}: ms (median)" for b in (1, 32)},
    **{f"latency_bs{b}_ms_p95": f"batch {b}: ms (p95)" for b in (1, 32)},
    **{f"reference_latency_bs{b}_ms_median": f"batch {b}: teacher ms, same run" for b in (1, 32)},
    **{f"speedup_vs_torch_fp32_teacher_bs{b}": f"batch {b}: × teacher (PyTorch fp32)" for b in (1, 32)},
    **{f"speedup_vs_same_route_teacher_bs{b}": f"batch {b}: × teacher, same route" for b in (1, 32)},
    **{f"gflops_bs{b}": f"batch {b}: GFLOP/s" for b in (1, 32)},
    **{f"peak_share_bs{b}": f"batch {b}: % of peak" for b in (1, 32)},
    "flops_per_sample": "GFLOP per text", "peak_gflops": "peak GFLOP/s",
    "seed000_model": "Jang 2021: model", "seed000_accuracy": "Jang 2021: accuracy",
    "seed000_total_time_s": "Jang 2021: time (s)", "seed001_model": "Park: model", "seed001_params": "Park: parameters",
    "seed001_speed": "Park: speed", "seed001_glue": "Park: GLUE", "seed002_quote": "the survey says",
}
# A column of fractions of these quantities is shown in % (and its name says so); retention is a share.
PERCENT = r"(accuracy|macro_f1|retention|^[ABC]_(mean|std|paper)$)"


def present(frame: pd.DataFrame) -> tuple[list[str], pd.DataFrame]:
    """Readable headers, and accuracies in % (a column of fractions whose name says accuracy, F1 or retention)."""
    frame, headers = frame.copy(), []
    for col in frame.columns:
        header = HEADERS.get(col, col.replace("_", " "))
        values = pd.to_numeric(frame[col], errors="coerce")
        if (re.search(PERCENT, col) and frame[col].notna().any() and values.notna().sum() == frame[col].notna().sum()
                and values.between(0, 1).sum() == values.notna().sum()):
            frame[col] = (100 * values).round(2)
            header = header if "%" in header else f"{header} (%)"
        headers.append(header)
    return headers, frame


# --------------------------------------------------------------------------
# Reading the files
# --------------------------------------------------------------------------


def cell(v) -> str:
    """A table value as text: integers whole, other numbers with 4 significant figures or 1-2 decimals."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if isinstance(v, bool) or isinstance(v, str):
        return str(v)
    if isinstance(v, (int,)) or (isinstance(v, float) and v.is_integer() and abs(v) < 1e15):
        return str(int(v))
    if isinstance(v, float):
        a = abs(v)
        return f"{v:.0f}" if a >= 1000 else f"{v:.1f}" if a >= 100 else f"{v:.2f}" if a >= 10 else \
            f"{v:.4f}" if a >= 0.01 else f"{v:.3g}"
    return str(v)


def _caption(step: str, file: str, caption: str) -> str:
    return f"{caption}. Notebook {step}.py, file {step}/{file}"


def _ran(profile_dir: Path, step: str) -> bool:
    return (profile_dir / step / "metrics.json").exists()


def _not_run(step: str, what: str) -> dict:
    return {"kind": "missing", "text": f"Not run: notebook {step} has not run for this profile ({what})."}


def read_table(profile_dir: Path, item: Table) -> dict:
    path = profile_dir / item.step / item.file
    if not path.exists():
        if not _ran(profile_dir, item.step):
            return _not_run(item.step, item.file)
        return {"kind": "missing", "text": f"Missing: {item.step} ran but did not write {item.file}."}
    try:
        frame = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        frame = pd.DataFrame()
    if item.view is not None and not frame.empty:
        frame = item.view(frame)
    if frame.empty:
        return {"kind": "note", "text": f"{_caption(item.step, item.file, item.caption)}: none (the file has no "
                                        f"such rows)."}
    shown = [c for c in item.columns if c in frame.columns] or list(frame.columns)
    headers, frame = present(frame[shown])
    rows = [[cell(v) for v in row] for row in frame.itertuples(index=False)]
    hidden = len(pd.read_csv(path, nrows=0).columns) - len(shown) if item.view is None else 0
    more = f" ({hidden} more columns in the CSV)" if hidden > 0 else ""
    return {"kind": "table", "header": headers, "rows": rows, "id": item.id, "file": f"{item.step}/{item.file}",
            "caption": _caption(item.step, item.file, item.caption) + more + "."}


def read_figure(profile_dir: Path, item: Figure) -> dict:
    path = profile_dir / item.step / item.file
    if not path.exists():
        if item.step != REPORT_STEP and not _ran(profile_dir, item.step):
            return _not_run(item.step, item.file)
        return {"kind": "missing", "text": f"Missing: {item.step} ran but did not write {item.file}."}
    return {"kind": "figure", "path": f"/{item.step}/{item.file}", "id": item.id,
            "data": base64.b64encode(path.read_bytes()).decode(),
            "caption": _caption(item.step, item.file, item.caption) + "."}


def read_item(profile_dir: Path, item) -> list[dict]:
    if isinstance(item, Table):
        return [read_table(profile_dir, item)]
    if isinstance(item, Figure):
        return [read_figure(profile_dir, item)]
    return [{"kind": "note", "text": item.text}]


# Drawn by a step and shown in another form: 04's Pareto figure is Figure 1, redrawn for print.
SHOWN_ELSEWHERE = frozenset({"04_compare/figures/pareto.png"})


def declared_files() -> set[str]:
    items = [i for s in SECTIONS for i in s.items] + list(TEACHING)
    return {f"{i.step}/{i.file}" for i in items if isinstance(i, (Table, Figure))} | SHOWN_ELSEWHERE


def extras(profile_dir: Path, step: str) -> list[dict]:
    """The step's tables and figures that no section declares, so that nothing it wrote is hidden."""
    folder, known, out = profile_dir / step, declared_files(), []
    for path in sorted(folder.glob("figures/*.png")):
        rel = str(path.relative_to(folder))
        if f"{step}/{rel}" not in known:
            out.append(read_figure(profile_dir, Figure(step, rel, f"Also drawn by {step}: {path.stem.replace('_', ' ')}")))
    tables = [str(p.relative_to(folder)) for p in sorted(folder.glob("tables/*.csv"))
              if f"{step}/{p.relative_to(folder)}" not in known]
    if tables:  # named, not printed: they are the detail behind the tables above
        out.append({"kind": "note", "text": f"{step} also wrote {', '.join(tables)} (in reports/<profile>/{step}/)."})
    return out


def collect_sections(profile_dir: Path, off: tuple[str, ...] = ()) -> list[dict]:
    """Each section with its tables, figures and notes; a section none of whose steps ran is one line, and one
    whose steps are all `off` in the profile is left out."""
    out = []
    for s in SECTIONS:
        if s.reads() and all(step in off for step in s.reads()):
            continue
        not_run = [step for step in s.reads() if not _ran(profile_dir, step)]
        if not_run and len(not_run) == len(s.reads()):
            files = ", ".join(getattr(i, "file", "metrics.json") for i in s.items if hasattr(i, "step"))
            items = [{"kind": "missing", "text": f"Not run: notebook {', '.join(not_run)} has not run for this "
                                                 f"profile, so this section is empty (it would show {files})."}]
        else:
            items = [x for item in s.items for x in read_item(profile_dir, item)]
            if s.extras_of:
                items += extras(profile_dir, s.extras_of)
        partial = bool(not_run) and len(not_run) < len(s.reads())
        intro = s.intro(profile_dir) if callable(s.intro) else s.intro
        out.append({"key": s.key, "title": s.title, "intro": intro, "content": items, "not_run": not_run,
                    "partial": partial})
    return out


def number(groups: list[list[dict]], first_figure: int = 1) -> dict[str, str]:
    """Number the tables and figures in the order they appear ("Table 3: ..."), in place; returns
    {item id: "Table 3"} for the prose to refer to them."""
    counts, refs = {"table": 0, "figure": first_figure - 1}, {}
    for items in groups:
        for item in items:
            if item["kind"] not in counts:
                continue
            counts[item["kind"]] += 1
            label = f"{item['kind'].capitalize()} {counts[item['kind']]}"
            item["caption"] = f"{label}: {item['caption']}"
            item["number"] = label
            if item.get("id"):
                refs[item["id"]] = label
    return refs
