"""The study's report, reports/<profile>/report.pdf and report.html, built from the files the notebooks wrote.

Every section is declared once below (`SECTIONS`): which step's tables, figures and metrics it shows,
with captions naming the notebook and the file. A step that has not run is reported as "not run"; a file
a step should have written but did not is reported as missing. Nothing here computes a result: numbers
are read from CSV and JSON files (kdlib/report/findings.py types in the papers' published numbers, attributed).

kdlib/report/render.py turns what this module reads into the PDF (Jinja2 into Typst, compiled by the `typst`
wheel: pip only, no browser, no TeX) and the HTML.
"""
from __future__ import annotations

import base64
import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from kdlib.core.io import read_json

REPORT_STEP = "07_report"
MAX_COLUMNS, MAX_ROWS = 13, 40


@dataclass(frozen=True)
class Table:
    step: str
    file: str
    caption: str
    columns: tuple[str, ...] = ()  # shown columns (all, up to MAX_COLUMNS, when empty)


@dataclass(frozen=True)
class Figure:
    step: str
    file: str  # a .png under the step's folder
    caption: str


@dataclass(frozen=True)
class Metrics:
    step: str
    keys: tuple[str, ...]
    caption: str


@dataclass(frozen=True)
class Note:
    text: str


@dataclass(frozen=True)
class Section:
    title: str
    intro: str
    items: tuple = ()
    extras_of: str | None = None  # also show this step's tables/figures that no section declares
    steps: tuple[str, ...] = ()  # the steps it reads (derived from the items when empty)

    def reads(self) -> tuple[str, ...]:
        return self.steps or tuple(dict.fromkeys(i.step for i in self.items if hasattr(i, "step")))


T4_COLUMNS = ("student", "layers", "ffn", "route", "params", "size_mb", "latency_bs1_ms_median",
              "latency_bs32_ms_median", "test_accuracy", "test_macro_f1", "retention")

SECTIONS: tuple[Section, ...] = (
    Section("Seed 000: a grid of distilled students (Jang, 2021)",
            "A KcBERT teacher distilled into students of 1, 3 and 6 layers and three FFN sizes, timed and "
            "scored on 3-class news sentiment. Its data is private: Financial PhraseBank stands in, and "
            "all-MiniLM-L6-v2 (6 layers) is the offline teacher, so our grid is 1-3 layers.", (
                Table("00_data_prep", "tables/class_balance.csv", "Table 1: the classes and their shares"),
                Table("03_grid", "tables/table3.csv", "Table 3: the teacher and students; seed 000's teacher "
                      "in the *_paper columns", ("model", "layers", "hidden", "ffn", "heads", "teacher_layers_copied",
                                                 "params", "layers_paper", "hidden_paper", "ffn_paper", "vocab_paper")),
                Table("03_grid", "tables/table4.csv", "Table 4: the grid of students, parameters, time and accuracy",
                      T4_COLUMNS),
                Table("03_grid", "tables/table4_paper_architecture.csv", "Table 4 at seed 000's own sizes: our "
                      "parameter count against the paper's (params_paper) and its time (time_paper_s)"),
                Table("03_grid", "tables/timing_finding.csv", "Time per added layer against time per FFN widening",
                      ("setting", "unit", "per_layer", "layer_cost_at_middle_ffn", "ffn_widening_cost_one_layer",
                       "layer_vs_ffn_time_ratio", "r2", "advice_holds")),
                Figure("03_grid", "figures/history.png", "The students' validation accuracy per epoch"),
                Note("Seed 000's Table 5 (per-epoch accuracy of its nine students) is lost; only its text "
                     "survives: model 5 (3 layers, FFN 768) is best, peaking at epoch 20 with 92.4%, and students "
                     "with at least 3 layers and FFN 768 overfit. The curves above are ours."),
                Figure("03_grid", "figures/heatmap_accuracy.png", "Test accuracy over layers × FFN size"),
                Figure("03_grid", "figures/time_vs_shape.png", "Latency against FFN size, per depth"),
                Table("04_compare", "tables/table6.csv", "Table 6: every compression route against the teacher, "
                      "with seed 000's and seed 001's numbers in their own columns"),
            ), extras_of="03_grid"),
    Section("Seed 001: compression methods compared (Park, GLUE poster)",
            "Pruning, quantization, weight sharing and distillation side by side, and where each method "
            "distils (embedding, attention, hidden states, prediction).", (
                Figure("04_compare", "figures/pareto.png", "Accuracy against latency; the Pareto front marked"),
                Table("04_compare", "tables/kd_position.csv", "Where each method distils"),
                Metrics("04_compare", ("best_speedup_within_1pp", "best_route_within_1pp", "best_speedup_within_3pct",
                                       "best_quantized_speedup", "best_quantized_accuracy_drop_pp"),
                        "Headline numbers of the comparison"),
            ), extras_of="04_compare"),
    Section("Seed 002: the taxonomy of compression methods",
            "Six families after Gordon (2019): pruning, weight factorization, knowledge distillation, weight "
            "sharing, quantization, and pre-training versus downstream; each with the row that measures it here.", (
                Table("04_compare", "tables/taxonomy.csv", "The six families, each with its measured row"),
                Figure("04_compare", "figures/families.png", "Each family's best row"),
                Table("04_compare", "tables/conclusions.csv", "A conclusion per family, generated from the numbers"),
            )),
    Section("Seed 003: heterogeneous knowledge distillation (Yu & Kim, 2022)",
            "On 20 Newsgroups, a student with a distillation head that learns from a coarse-label teacher (A), "
            "against traditional KD (B) and no KD (C), over several seeds.", (
                Metrics("05_hetero_kd", ("n_seeds", "acc_A_mean", "acc_A_std", "acc_B_mean", "acc_B_std",
                                         "acc_C_mean", "acc_C_std", "p_A_vs_B", "p_B_vs_C"),
                        "Accuracy of A, B and C over seeds, and the paired tests"),
                Table("05_hetero_kd", "tables/table3.csv", "Table 3: the two teachers beside the paper's"),
                Table("05_hetero_kd", "tables/table4.csv", "Table 4: A, B and C beside the paper's"),
                Table("05_hetero_kd", "tables/table5.csv", "Table 5: accuracy per epoch"),
                Table("05_hetero_kd", "tables/table6.csv", "Table 6: macro-F1 per epoch"),
            ), extras_of="05_hetero_kd"),
    Section("Seed 004: DistilBERT on a Raspberry Pi 5 budget (Im, Kim & Suh)",
            "SQuAD v1.1 question answering, teacher against half-depth and 1-layer students, under a pi5 "
            "benchmark profile (batch 1, per question).", (
                Metrics("06_edge_benchmark", ("teacher_em", "teacher_f1", "student_em", "student_f1",
                                              "student_speedup", "quantized_student_speedup"),
                        "Exact match, F1 and speed-ups"),
                Table("06_edge_benchmark", "tables/table2.csv", "Table 2: EM, F1 and time beside the paper's "
                      "(a device_time_s column when a device was measured)"),
                Table("06_edge_benchmark", "tables/paired_speedups.csv", "The quoted speed-ups: each student route "
                      "timed in turn with the fp32 teacher, question by question in one run"),
                Table("06_edge_benchmark", "tables/variants.csv", "Every runtime variant tried, pi5 profile, each "
                      "in its own run (speed-ups there are ratios of separate runs)"),
                Figure("06_edge_benchmark", "figures/variants.png", "The variants' time and F1"),
                Table("06_edge_benchmark", "tables/evaluation_gap.csv", "The EM–F1 gap of our predictions under "
                      "correct and shortcut evaluations"),
                Table("06_edge_benchmark", "tables/device_results.csv", "Measured on a device: the kdstudy bench "
                      "results put in 06_edge_benchmark/device_results/"),
            ), extras_of="06_edge_benchmark"),
)

TEACHING = (
    Figure("06_edge_benchmark", "figures/softmax_temperature.png", "Softmax temperature: one teacher's logits "
           "at T = 1, 3, 10"),
    Figure("06_edge_benchmark", "figures/triple_loss.png", "DistilBERT's triple loss: its three terms on one batch"),
    Figure(REPORT_STEP, "figures/student_init.png", "Student initialisation: which teacher layers each student "
           "copies (kdlib.core.models.select_teacher_layers)"),
)


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
    return f"{caption}. Notebook {step}.py, file {step}/{file}."


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
    if frame.empty:
        return {"kind": "note", "text": f"{_caption(item.step, item.file, item.caption)} The file has no rows."}
    shown = [c for c in item.columns if c in frame.columns] or list(frame.columns)[:MAX_COLUMNS]
    notes = []
    if len(shown) < len(frame.columns):
        notes.append(f"{len(frame.columns) - len(shown)} more columns in the CSV")
    if len(frame) > MAX_ROWS:
        notes.append(f"first {MAX_ROWS} of {len(frame)} rows")
    rows = [[cell(v) for v in row] for row in frame[shown].head(MAX_ROWS).itertuples(index=False)]
    return {"kind": "table", "header": [c.replace("_", " ") for c in shown], "rows": rows,
            "caption": _caption(item.step, item.file, item.caption) + (f" ({'; '.join(notes)})" if notes else "")}


def read_figure(profile_dir: Path, item: Figure) -> dict:
    path = profile_dir / item.step / item.file
    if not path.exists():
        if item.step != REPORT_STEP and not _ran(profile_dir, item.step):
            return _not_run(item.step, item.file)
        return {"kind": "missing", "text": f"Missing: {item.step} ran but did not write {item.file}."}
    return {"kind": "figure", "path": f"/{item.step}/{item.file}",
            "data": base64.b64encode(path.read_bytes()).decode(), "caption": _caption(item.step, item.file, item.caption)}


def read_metrics(profile_dir: Path, item: Metrics) -> dict:
    if not _ran(profile_dir, item.step):
        return _not_run(item.step, "metrics.json")
    m = read_json(profile_dir / item.step / "metrics.json")
    rows = [[k, cell(m.get(k)) if k in m else "(not written)"] for k in item.keys]
    return {"kind": "table", "header": ["metric", "value"], "rows": rows,
            "caption": _caption(item.step, "metrics.json", item.caption)}


def read_item(profile_dir: Path, item) -> list[dict]:
    if isinstance(item, Table):
        return [read_table(profile_dir, item)]
    if isinstance(item, Figure):
        return [read_figure(profile_dir, item)]
    if isinstance(item, Metrics):
        return [read_metrics(profile_dir, item)]
    return [{"kind": "note", "text": item.text}]


def declared_files() -> set[str]:
    items = [i for s in SECTIONS for i in s.items] + list(TEACHING)
    return {f"{i.step}/{i.file}" for i in items if isinstance(i, (Table, Figure))}


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
        out.append({"title": s.title, "intro": s.intro, "content": items, "not_run": not_run, "partial": partial})
    return out


# --------------------------------------------------------------------------
# Generated text and the report's own figure
# --------------------------------------------------------------------------


def recommendation(profile_dir: Path) -> list[str]:
    """The answer first: the model and route to ship, from 04's recommendation.csv; empty before 04 ran."""
    path = profile_dir / "04_compare" / "tables" / "recommendation.csv"
    if not _ran(profile_dir, "04_compare") or not path.exists():
        return []
    r = pd.read_csv(path).iloc[0]
    return [
        f"Ship {r['model']} on {r['route']}. Of the models and routes 04_compare measured that can be exported, it "
        f"is the fastest at batch 1 within {r['margin_pp']:g} point of the teacher's accuracy on the validation "
        f"split ({r['val_accuracy']:.1%} against {r['teacher_val_accuracy']:.1%}).",
        f"On the test split it scores {r['test_accuracy']:.1%} (the teacher {r['teacher_test_accuracy']:.1%}); it "
        f"is {r['speedup_vs_torch_fp32_teacher_bs1']:.1f}× faster than the teacher on PyTorch fp32 at batch 1 and "
        f"{r['speedup_vs_torch_fp32_teacher_bs32']:.1f}× at batch 32, on this CPU ({r['cpu_flags']}), and "
        f"{r['teacher_size_mb'] / r['size_mb']:.1f}× smaller on disk ({r['size_mb']:.0f} MB against "
        f"{r['teacher_size_mb']:.0f} MB).",
        f"04_compare wrote it to reports/{profile_dir.name}/deploy/ (accuracy through the artifact: "
        f"{r['artifact_test_accuracy']:.1%}); the same folder again: {r['export_command']} "
        f"(04_compare/tables/recommendation.csv).",
    ]


def summary(profile_dir: Path, off: tuple[str, ...] = ()) -> list[str]:
    """The recommendation, then three or four sentences, each from metrics files; a step that has not run is
    said to be missing, and the steps the profile leaves out are named."""
    def m(step):
        return read_json(profile_dir / step / "metrics.json") if _ran(profile_dir, step) else None
    data, teacher, student, compare = m("00_data_prep"), m("01_teacher"), m("02_distill"), m("04_compare")
    out = recommendation(profile_dir)
    if teacher and data:
        out.append(f"The study compresses the {teacher['teacher_model']} teacher ({teacher['teacher_params']:,} "
                   f"parameters, embeddings included), which scores {teacher['teacher_test_accuracy']:.1%} on the "
                   f"{data['n_test']:,} test rows of {Path(data['dataset']).name}.")
    else:
        out.append("The teacher (01_teacher) has not run for this profile.")
    if student:
        out.append(f"A half-depth student distilled from it has {student['student_params']:,} parameters "
                   f"({student['student_params'] / student['teacher_params']:.0%} of the teacher's), keeps "
                   f"{student['student_retention']:.1%} of its accuracy ({student['student_test_accuracy']:.1%}) "
                   f"and is {student['student_speedup_fp32_bs1']:.1f}× faster at batch 1 and "
                   f"{student['student_speedup_fp32_bs32']:.1f}× at batch 32 in PyTorch fp32.")
    else:
        out.append("The distilled student (02_distill) has not run for this profile.")
    if compare:
        out.append(f"The fastest route within 1 point of the teacher's accuracy, {compare['best_route_within_1pp']}, "
                   f"is {compare['best_speedup_within_1pp']:.1f}× faster than the PyTorch fp32 teacher; the best "
                   f"within 97% of its accuracy is {compare['best_speedup_within_3pct']:.1f}× faster.")
    else:
        out.append("The comparison of runtimes, quantization and other compression families (04_compare) has "
                   "not run for this profile.")
    bench = profile_dir / "02_distill" / "tables" / "benchmark.csv"
    if bench.exists():
        b = pd.read_csv(bench).iloc[0]
        out.append(f"Times were measured on {b['cpu_model']} ({b['cpu_flags']}) with {int(b['threads'])} threads "
                   f"at sequence length {int(b['seq_len'])} (02_distill/tables/benchmark.csv).")
    if off:
        out.append(f"This profile leaves out {', '.join(off)}: they reproduce papers on their own datasets.")
    return out
