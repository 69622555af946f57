"""The report's generated prose: page 1's answer and findings, each section's conclusion, the methods, the
limitations and the glossary. Every number is read from a file a step wrote (or from the parameters the
steps ran with); a file that is not there gives a sentence saying so, never a number.

Speeds in prose come from one place, 04's table6.csv (every route of every model timed in turn with the
PyTorch fp32 teacher), and are written by `speed()` in one form, "<model> on <route> takes <ms> ms at batch <b>
(<x>× …)", so that a scan of the rendered text (tests) can check that a model's speed has one value
wherever it appears. A speed from another run (02's or 03's own timing, 06's pi5 profile) is labelled
with that run.
"""
from __future__ import annotations

import math
import re
from pathlib import Path

import pandas as pd

from kdlib.core import models
from kdlib.report.findings import step_metrics
from kdlib.report.manifest import teacher_source

# The sources, as the report's readers know them (the repository calls them seed 000-004).
SOURCES = {"000": "Jang 2021", "001": "Park's GLUE compression poster", "002": "the compression-methods survey blog",
           "003": "Yu & Kim 2022", "004": "Im, Kim & Suh"}
GLOSSARY = Path(__file__).resolve().parents[2] / "docs" / "glossary.md"


def readable(text: str) -> str:
    """Prose with the sources named by their authors: "seed 000's Table 4" -> "Jang 2021's Table 4"."""
    def name(match):
        who = SOURCES[match.group(2)]
        return who[0].upper() + who[1:] if match.group(1) == "Seed" else who
    text = re.sub(r"\b(Seed|seed) (00[0-4])\b", name, text)
    text = re.sub(r"\bseeds (00[0-4]) and (00[0-4])\b", lambda m: f"{SOURCES[m.group(1)]} and {SOURCES[m.group(2)]}",
                  text)
    # "seed 000 (Jang 2021)" became "Jang 2021 (Jang 2021)"
    return re.sub(r"(" + "|".join(map(re.escape, SOURCES.values())) + r") \(\1\)", r"\1", text)


def _table(root: Path, rel: str) -> pd.DataFrame | None:
    path = root / rel
    return pd.read_csv(path) if path.exists() else None


def pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def ms(x: float) -> str:
    return f"{x:.1f}" if x >= 10 else f"{x:.2f}"


def ratio(x: float) -> str:
    return f"{x:.1f}×" if x >= 10 else f"{x:.2f}×"


def _p(p: float | None, kind: str = "") -> str:
    """"p = 0.046", or why there is none."""
    return "no test: too few seeds" if p is None or (isinstance(p, float) and math.isnan(p)) else f"{kind}p = {p:.3g}"


def route_row(table6: pd.DataFrame, model: str, route: str) -> pd.Series | None:
    runtime, precision = route.split("/")
    hit = table6[(table6["name"] == model) & (table6["runtime"] == runtime) & (table6["precision"] == precision)]
    return hit.iloc[0] if len(hit) else None


def speed(row: pd.Series, batch: int) -> str:
    """The one form every speed in prose takes: the row's median in a run, the teacher's median in the same
    run, and the speed-up measured round by round. The run is the head-to-head one where the row took part
    in it (the run that chose it), else its route's."""
    h2h = f"h2h_speedup_bs{batch}"
    prefix, where = ("h2h_", "in the run that timed the contenders side by side") \
        if h2h in row and not pd.isna(row[h2h]) else ("", "in the same run")
    speedup = row[h2h] if prefix else row[f"speedup_vs_torch_fp32_teacher_bs{batch}"]
    return (f"{row['name']} on {row['runtime']}/{row['precision']} takes "
            f"{ms(row[f'{prefix}latency_bs{batch}_ms_median'])} ms at batch {batch} ({ratio(speedup)} the teacher on "
            f"PyTorch fp32, {ms(row[f'{prefix}reference_latency_bs{batch}_ms_median'])} ms {where})")


def _split_route(text: str) -> tuple[str, str]:
    """'<model> on <runtime>/<precision>' -> (model, route)."""
    model, _, route = text.rpartition(" on ")
    return model, route


# --------------------------------------------------------------------------
# Page 1
# --------------------------------------------------------------------------


def answer(root: Path) -> list[str]:
    """The recommendation: what to ship, within which margin (chosen on validation), how much smaller and faster
    (milliseconds and ratio), scored on test, and the command that writes it. Empty before 04 ran."""
    rec, table6 = _table(root, "04_compare/tables/recommendation.csv"), _table(root, "04_compare/tables/table6.csv")
    if rec is None or table6 is None or "reference_latency_bs1_ms_median" not in table6:
        return []
    r = rec.iloc[0]
    row = route_row(table6, r["model"], r["route"])
    if row is None:
        return []
    return [
        f"Ship {r['model']} on {r['route']}. Among every model and route 04 measured that can be exported, it is "
        f"the fastest at batch {int(r['chosen_at_batch'])} whose validation accuracy is within {r['margin_pp']:g} "
        f"point of the teacher's ({pct(r['val_accuracy'])} against {pct(r['teacher_val_accuracy'])}).",
        f"Speed, on this CPU ({r['cpu_flags']}): {speed(row, 1)}; at the larger batch, {speed(row, 32)}.",
        f"Size: {r['params'] / 1e6:.1f} M parameters and {r['size_mb']:.0f} MB on disk, against the teacher's "
        f"{r['teacher_params'] / 1e6:.1f} M and {r['teacher_size_mb']:.0f} MB ({r['teacher_size_mb'] / r['size_mb']:.1f}× "
        f"smaller). Accuracy on the test split, which chose nothing: {pct(r['test_accuracy'])} (the teacher "
        f"{pct(r['teacher_test_accuracy'])}); through the exported artifact {pct(r['artifact_test_accuracy'])}.",
        f"04 wrote it to reports/{root.name}/deploy/; to write it again: {r['export_command']}",
    ]


def _finding(finding: dict) -> dict | None:
    tests = finding["tests"]
    return {"verdict": finding["verdict"], "tests": tests, "source": finding["source"]} if tests else None


def key_findings(root: Path, findings: list[dict], refs: dict[str, str]) -> list[str]:
    """Three to five findings, negative ones included, each with its number and where the report shows it."""
    out = []
    by_key = {f["claim"].key: f for f in findings}
    kd = by_key.get("kd_beats_twin")
    if kd and kd["tests"]:
        t = kd["tests"][0]
        diff = 100 * t["mean"]
        spread = f" ± {100 * t['std']:.2f}" if not math.isnan(t["std"]) else ""
        p = f", one-sided p = {t['p']:.2f}" if not math.isnan(t["p"]) else ""
        out.append(f"KD against the same student trained on labels alone ({t['n_text']}): "
                   f"{diff:+.2f}{spread} points{p}; verdict: {t['verdict']} ({refs.get('findings', 'Findings')}).")
    m4, table6 = step_metrics(root, "04_compare"), _table(root, "04_compare/tables/table6.csv")
    if m4 and table6 is not None and m4.get("best_route_teacher_within_1pp") and "reference_latency_bs1_ms_median" in table6:
        teacher = route_row(table6, *_split_route(m4["best_route_teacher_within_1pp"]))
        best = route_row(table6, *_split_route(m4["best_route_within_1pp"]))
        if teacher is not None and best is not None:
            out.append(f"What the runtime gives and what the smaller model gives. On its best route within 1 point "
                       f"the teacher alone: {speed(teacher, 1)}. The "
                       f"fastest model within 1 point: {speed(best, 1)}, of which "
                       f"{ratio(best['speedup_vs_same_route_teacher_bs1'])} is the smaller model's own gain over the "
                       f"teacher on the same route ({refs.get('table6b', 'Table 6b')}).")
    if m4 and table6 is not None and m4.get("best_route_within_3pct_bs32") and "reference_latency_bs1_ms_median" in table6:
        b1 = route_row(table6, *_split_route(m4["best_route_within_3pct"]))
        b32 = route_row(table6, *_split_route(m4["best_route_within_3pct_bs32"]))
        if b1 is not None and b32 is not None:
            same = "the same" if (b1["name"], b1["runtime"], b1["precision"]) == (b32["name"], b32["runtime"],
                                                                             b32["precision"]) else "another"
            out.append(f"Within 97% of the teacher's accuracy (on validation), the fastest at batch 1 is "
                       f"{speed(b1, 1)}; at batch 32 {same} route wins: {speed(b32, 32)} "
                       f"({refs.get('figure1', 'Figure 1')}, {refs.get('table6b', 'Table 6b')}).")
    m5 = step_metrics(root, "05_hetero_kd")
    if m5:
        text = (f"Heterogeneous KD (Yu & Kim 2022) against traditional KD over {m5['n_seeds']} seeds: "
                f"{100 * (m5['acc_A_mean'] - m5['acc_B_mean']):+.2f} points ({_p(m5.get('p_A_vs_B'), 'paired ')})")
        hetero, plain = m5.get("transformer_hetero_acc"), m5.get("transformer_plain_acc")
        if hetero is not None and plain is not None:
            # compared as printed (two accuracies that round alike are called the same), and better or worse
            # only where the paired test tells them apart (p < 0.05)
            p = m5.get("transformer_p_hetero_vs_plain")
            side = ("scores the same as" if pct(hetero) == pct(plain)
                    else "cannot be told apart from" if p is None or not p < 0.05
                    else "does worse than" if hetero < plain else "does better than")
            text += (f"; on a 1-layer transformer student it {side} plain KD, {pct(hetero)} against {pct(plain)} "
                     f"({_p(p)})")
        out.append(text + f" ({refs.get('hetero', 'section 5')}).")
    half = by_key.get("half_depth_retention")
    if half and half["tests"] and len(out) < 5:
        t = half["tests"][0]
        out.append(f"A half-depth student keeps {pct(t['mean'])} of the teacher's accuracy ({t['n_text']}); the "
                   f"claim \"97% of BERT\": {t['verdict']} ({refs.get('findings', 'Findings')}).")
    return out


# --------------------------------------------------------------------------
# Each section's conclusion
# --------------------------------------------------------------------------


def _verdict(findings: list[dict], key: str) -> dict | None:
    return next((f for f in findings if f["claim"].key == key), None)


def conclusion(section: str, root: Path, findings: list[dict], refs: dict[str, str]) -> str:
    """The sentences that end a section, from its numbers; "" when its steps have not run."""
    if section == "grid":
        m3, table4 = step_metrics(root, "03_grid"), _table(root, "03_grid/tables/table4.csv")
        if m3 is None or table4 is None:
            return ""
        best = table4.loc[table4["val_accuracy"].idxmax()]
        text = (f"Chosen on validation, the best student of the grid is {best['student']} ({int(best['layers'])} "
                f"layers, FFN {int(best['ffn'])}): {pct(best['test_accuracy'])} on test, "
                f"{pct(best['retention'])} of the teacher's accuracy.")
        layer = _verdict(findings, "layer_vs_ffn")
        if layer:
            text += (f" Whether a layer costs more time than a wider FFN: the single timing of this run is in the "
                     f"table of the fitted costs; the verdict over repeated timings decides: {layer['verdict']} "
                     f"({refs.get('findings', 'Findings')}).")
        return text + (" The grid's own latencies come from 03's timing run; the speeds quoted elsewhere in this "
                       f"report come from 04's ({refs.get('table6b', 'Table 6b')}).")
    if section == "compare":
        m4, table6 = step_metrics(root, "04_compare"), _table(root, "04_compare/tables/table6.csv")
        if m4 is None or "best_route_within_1pp_bs32" not in m4:
            return ""
        text = (f"Within 1 point of the teacher (on validation), {m4['best_route_within_1pp']} is the fastest at "
                f"batch 1 and {m4['best_route_within_1pp_bs32']} at batch 32; the fastest int8 row of any model, "
                f"{m4['best_quantized_route']}, loses {m4['best_quantized_accuracy_drop_pp']:.1f} points "
                f"({refs.get('table6b', 'Table 6b')}).")
        if table6 is not None and "peak_share_bs32" in table6:
            teacher = table6[(table6["name"] == "teacher") & (table6["status"] == "ok")
                             & (table6["precision"] != "fp32") & table6["peak_share_bs32"].notna()]
            if len(teacher):
                best = teacher.loc[teacher["speedup_vs_torch_fp32_teacher_bs32"].idxmax()]
                ref = table6[(table6["name"] == "teacher") & (table6["runtime"] == "torch")
                             & (table6["precision"] == "fp32")].iloc[0]
                text += (f" How much of this CPU a route uses ({refs.get('table6c', 'Table 6c')}): at batch 32 the "
                         f"teacher on PyTorch fp32 reaches {pct(ref['peak_share_bs32'])} of the measured fp32 peak, "
                         f"and its fastest quantized or bf16 route, {best['runtime']}/{best['precision']}, "
                         f"{pct(best['peak_share_bs32'])} of the peak of its precision.")
        return text
    if section == "taxonomy":
        tax = _table(root, "04_compare/tables/taxonomy.csv")
        if tax is None or "speedup_bs1" not in tax:
            return ""
        rows = tax.dropna(subset=["speedup_bs1", "pct_of_teacher"])
        if rows.empty:
            return ""
        close = rows[rows["pct_of_teacher"] >= 99]
        fast = rows.loc[rows["speedup_bs1"].idxmax()]
        slow = rows[rows["speedup_bs1"] < 1.1]["family"].tolist()
        text = (f"Of the families' measured rows, {fast['family']} is the fastest at batch 1 "
                f"({ratio(fast['speedup_bs1'])}, {fast['pct_of_teacher']:.1f}% of the teacher's accuracy)")
        if len(close):
            best = close.loc[close["speedup_bs1"].idxmax()]
            text += (f"; within 1% of the teacher's accuracy the fastest is {best['family']} "
                     f"({ratio(best['speedup_bs1'])})")
        if slow:
            text += f"; {', '.join(slow)} gave less than 1.1× at batch 1"
        return text + "."
    if section == "hetero":
        verdict = root / "05_hetero_kd" / "verdict.md"
        return verdict.read_text().strip() if verdict.exists() else ""
    if section == "edge":
        m6 = step_metrics(root, "06_edge_benchmark")
        if m6 is None:
            return ""
        paper = _table(root, "06_edge_benchmark/tables/table2.csv")
        scale = ""
        if paper is not None and "paper_F1" in paper:
            teacher = paper[paper["model"] == "teacher"].iloc[0]
            scale = (f" This is toy scale: our teacher reaches F1 {teacher['F1']:.1f} on {m6['eval_questions']} "
                     f"questions against the paper's {teacher['paper_F1']:g} (BERT-base on the full SQuAD), so "
                     f"only the ratios, not the scores, compare.")
        text = (f"The half-depth student keeps {pct(m6['student_f1_retention'])} of the teacher's F1 and is "
                f"{ratio(m6['student_speedup'])} faster in 06's pi5-profile run (whole questions, batch 1)")
        if m6.get("quantized_student_speedup") is not None:
            text += (f"; on its quantized route chosen for this CPU ({m6.get('quantized_student_route')}) "
                     f"{ratio(m6['quantized_student_speedup'])} at F1 {m6['quantized_student_f1']:.1f}")
        return text + "." + scale
    return ""


# --------------------------------------------------------------------------
# Methods, limitations, glossary
# --------------------------------------------------------------------------


def methods(cfg, root: Path) -> list[tuple[str, str]]:
    """(heading, paragraph) pairs: data, teacher, students, loss, training, timing, seeds and tests."""
    d, t, s, b = step_metrics(root, "00_data_prep"), step_metrics(root, "01_teacher"), cfg.distill, cfg.benchmark
    data = (f"{Path(str(d['dataset'])).name}: {d['n_train']:,} training, {d['n_validation']:,} validation and "
            f"{d['n_test']:,} test texts, {d['n_classes']} classes, truncated to {cfg.data.max_length} tokens "
            f"({pct(d['truncated_share'])} of texts are longer). Every choice (epoch, student, route) is made on "
            f"validation; test only reports." if d else "00_data_prep has not run for this profile.")
    teacher = (f"{t['teacher_model']} ({t['teacher_params']:,} parameters), fine-tuned {cfg.teacher.epochs:g} "
               f"epochs at learning rate {cfg.teacher.learning_rate:g}, batch {cfg.teacher.batch_size}; the "
               f"epoch with the best validation accuracy is kept." if t else "01_teacher has not run.")
    return [
        ("Task and data", data),
        ("Teacher", teacher),
        ("Students", f"A student keeps the teacher's hidden size, vocabulary and heads and has fewer layers "
                     f"and/or a narrower FFN. It starts from the teacher's embeddings and a chosen set of its "
                     f"layers (init = {s.student.init}; the layer-copy figure in the teaching section); a narrower "
                     f"FFN keeps the first of the teacher's FFN units, a wider one adds units that start at zero "
                     f"output, so the student starts computing the teacher's function."),
        ("Loss", f"L = α · CE(student, label) + (1 − α) · T² · KL(softmax(z_teacher / T) ‖ softmax(z_student / T)), "
                 f"with α = {s.alpha:g} and T = {s.temperature:g}: α weighs the label against the teacher; T² keeps "
                 f"the soft term's gradient the same size at every temperature (Hinton et al. 2015). The no-KD twin "
                 f"is the same student trained with α = 1."),
        ("Training", f"AdamW through transformers' Trainer, {s.epochs:g} epochs at learning rate "
                     f"{s.learning_rate:g}, batch {s.batch_size}, on the CPU, precision {cfg.compute.precision} "
                     f"(bf16 autocast only where the CPU has native bf16)."),
        ("Timing", f"Random token batches of {b.seq_len} tokens at batch sizes {', '.join(map(str, b.batch_sizes))}; "
                   f"{b.warmup} untimed calls, then up to {b.repeats} timed rounds"
                   + (f" (stopped after {b.max_seconds:g} s of calls, never before 5)" if b.max_seconds else "")
                   + (f", stopped once the 95% confidence interval of every median was within ±{100 * b.tolerance:g}% "
                      f"of it (order statistics; each row's median_ci95_pct says how close it came)"
                      if b.tolerance else "")
                   + ". Within a round every model of a route is called "
                   "once beside the teacher on PyTorch fp32, in an order reversed every other round; a speed-up is "
                   "the median of the per-round ratios, so both timings share the machine's state. ONNX Runtime's "
                   "threads are told not to spin between calls, or they would take the cores from the model called "
                   "next. Each row's GFLOP/s is held against this CPU's measured matrix-product peak. Threads and "
                   "the CPU are in the run manifest."),
        ("Seeds and tests", "A seed changes the student's initial head, the data order and dropout. Each claim is "
                            "tested as its source states it, one quantity at a time, at 0.05, over at least 5 "
                            "seeds (section Findings over seeds): one-sided t-tests for \"faster\" or \"more accurate\", two one-sided tests (TOST) "
                            "for \"about\" or \"97% of\". Holds: significantly on the claim's side; does not hold: "
                            "significantly on the other; cannot tell: neither, or too few seeds."),
    ]


def limitations(cfg, root: Path, refs: dict[str, str] | None = None) -> list[str]:
    bench = _table(root, "02_distill/tables/benchmark.csv")
    cpu = (f" ({bench['cpu_model'].iloc[0]}, {bench['cpu_flags'].iloc[0]}) with {int(bench['threads'].iloc[0])} threads"
           if bench is not None else "")
    return [
        *([cfg.random_warning()] if cfg.random_warning() else []),
        _teacher_line(cfg),
        f"Training is short (a few epochs on a few thousand texts) and on the CPU; the {cfg.profile} profile keeps "
        "subsets where a step would not fit its time budget (params/" + cfg.profile + ".yaml says where and why).",
        f"Every time is measured on one CPU{cpu}; another CPU class "
        "(AVX-512, VNNI, AMX) ranks the routes differently.",
        "Single runs: 02's KD student, 03's grid and 04's comparison are one seed each; only the findings over "
        "seeds and 05 repeat runs over seeds. Where a single run and a multi-seed verdict disagree, the verdict "
        "decides.",
        *([f"SQuAD (06) is toy scale: {_count(cfg.edge.train_size)} training questions and "
           f"{_count(cfg.edge.eval_size)} scored (params/{cfg.profile}.yaml), against the paper's whole dataset."]
          if cfg.runs("06_edge_benchmark") else []),
    ] + _interference(root, (refs or {}).get("table6b", "Table 6b"))


def _count(size: int | None) -> str:
    return "all" if size is None else f"{size:,}"


def _teacher_line(cfg) -> str:
    """Which teacher, read from its config: its depth and width beside the papers' BERT-base."""
    try:
        config = models.model_config(cfg.teacher.model)
        shape = f" ({config['num_hidden_layers']} layers, hidden {config['hidden_size']})"
    except (LookupError, KeyError):
        shape = ""
    return (f"The teacher is {teacher_source(cfg)}{shape}. The papers' teachers are BERT-base and KcBERT (12 layers, "
            f"hidden 768). The ratios between models are the study's subject; absolute scores are not comparable "
            f"to the papers'.")


def _interference(root: Path, where: str) -> list[str]:
    """How much slower the PyTorch teacher ran beside the other runtimes than in its own route's run (Table 6's
    teacher-ms column): the bound on how far those routes' speed-ups may lean their way."""
    table6 = _table(root, "04_compare/tables/table6.csv")
    if table6 is None or "reference_latency_bs1_ms_median" not in table6:
        return []
    ok = table6[(table6["status"] == "ok") & table6["reference_latency_bs1_ms_median"].notna()]
    own = ok[(ok["runtime"] == "torch") & (ok["precision"] == "fp32")]["reference_latency_bs1_ms_median"]
    others = ok[ok["runtime"] != "torch"].groupby(["runtime", "precision"])["reference_latency_bs1_ms_median"].first()
    if own.empty or others.empty:
        return []
    return [f"Timed in turn beside ONNX Runtime and OpenVINO, the PyTorch teacher ran {ms(others.min())} to "
            f"{ms(others.max())} ms at batch 1, against {ms(own.iloc[0])} ms in its own route's run: the other "
            f"runtime in the process slows it, so those routes' speed-ups may lean their way by up to "
            f"{others.max() / own.iloc[0]:.2f}× (the teacher's milliseconds in each run: {where})."]


def glossary(path: Path = GLOSSARY) -> list[tuple[str, str]]:
    """(term, explanation) from docs/glossary.md's "**Term.** text" paragraphs: one glossary for the
    notebooks and the report."""
    if not path.exists():
        return []
    out = []
    for para in path.read_text().split("\n\n"):
        hit = re.match(r"\*\*(.+?)\.\*\*\s+(.*)", para.strip(), re.S)
        if hit:
            out.append((hit.group(1), re.sub(r"\s+", " ", hit.group(2)).replace("`", "").replace("*", "")))
    return out


def speed_mentions(text: str, models: list[tuple[str, str]]) -> list[dict]:
    """Every speed `speed()` wrote in `text` (the rendered report) for the (model, route) pairs given: model,
    route, batch, ms, ratio, the teacher's ms and `side_by_side` (True where the speed is the head-to-head run's);
    what the consistency test compares across the report."""
    out = []
    for model, route in models:
        pattern = (re.escape(f"{model} on {route} takes ") + r"(?P<ms>[\d.]+) ms at batch (?P<batch>\d+) \((?P<ratio>[\d.]+)× "
                   r"the teacher on PyTorch fp32, (?P<ref>[\d.]+) ms in (?P<run>the same run|the run that timed the "
                   r"contenders side by side)\)")
        out += [{"model": model, "route": route, **{k: v for k, v in m.groupdict().items() if k != "run"},
                 "side_by_side": m["run"] != "the same run"} for m in re.finditer(pattern, text)]
    return out
