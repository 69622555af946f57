"""The report's findings (the seeds' claims, each with a verdict over seeds) and the places where the
seeds disagree with themselves (each with our evidence).

Multi-seed results live in ``reports/<profile>/verdicts/<claim>.csv``: one row per seed, a ``seed`` column and
the columns the claim names (``Claim.columns``). ``kdstudy verdicts`` (kdlib/studies/verdicts.py) repeats each
claim's runs over the profile's ``verdicts.seeds`` and writes them; the report only reads them. Without that file a finding
falls back to this profile's own single run (or, for seed 003, to 05's multi-seed metrics) and its
verdict says "cannot tell (n seeds)". A verdict needs at least ``MIN_SEEDS`` seeds.

Each claim is tested one quantity at a time: the per-seed value (a column, or the difference of two
columns: then the test is a paired t-test) against a threshold, two-sided, at ``ALPHA``. It holds when
every quantity is significantly on the claim's side, does not hold when one is significantly on the
other side, and otherwise we cannot tell. The papers' numbers are typed in once, here, each attributed.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from scipy import stats

from kdlib.core.io import read_json
from kdlib.studies import papers

MIN_SEEDS = 5
ALPHA = 0.05



def _metrics(root: Path, step: str) -> dict | None:
    path = root / step / "metrics.json"
    return read_json(path) if path.exists() else None


@dataclass(frozen=True)
class Test:
    """One quantity of a claim: column `a` (minus column `b` if given) compared with `threshold`."""
    a: str
    b: str | None
    threshold: float
    side: str  # ">" or "<": the side on which the claim holds
    label: str

    def values(self, rows: pd.DataFrame) -> list[float]:
        v = rows[self.a] - (rows[self.b] if self.b else 0)
        return [float(x) for x in v.dropna()]


@dataclass(frozen=True)
class Claim:
    key: str        # reports/<profile>/verdicts/<key>.csv
    source: str     # whose claim
    text: str       # the claim, as the source makes it
    tests: tuple[Test, ...]
    single_run: str  # what this profile's own run gives (the fallback), as "step: where"

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(c for t in self.tests for c in (t.a, t.b) if c))


def _grid_fast_student(root: Path) -> dict | None:
    """03's most accurate student at least 5x faster than the teacher (batch 32): accuracy points lost."""
    table, bench = root / "03_grid/tables/table4.csv", root / "03_grid/tables/benchmark.csv"
    m = _metrics(root, "03_grid")
    if m is None or not table.exists() or not bench.exists():
        return None
    b = pd.read_csv(bench)
    teacher_ms = b[(b["name"] == "teacher") & (b["batch_size"] == 32)]["latency_ms_median"].median()
    t = pd.read_csv(table)
    t = t.assign(speedup=teacher_ms / t["latency_bs32_ms_median"])
    fast = t[t["speedup"] >= 5]
    if fast.empty:
        return None
    best = fast.loc[fast["test_accuracy"].idxmax()]
    return {"points_lost": 100 * (m["teacher_test_accuracy"] - best["test_accuracy"]), "speedup": best["speedup"]}


def _grid_timing_finding(root: Path) -> dict | None:
    """03's fitted cost of one more layer and of widening the FFN, at the large batch (timing_finding.csv)."""
    path = root / "03_grid/tables/timing_finding.csv"
    if not path.exists():
        return None
    f = pd.read_csv(path)
    row = f[f["unit"] == "ms"].iloc[-1]  # rows: batch 1, the large batch (ms), then the paper's (s)
    return {"layer_ms": row["layer_cost_at_middle_ffn"], "ffn_widening_ms": row["ffn_widening_cost_one_layer"]}


def _from_metrics(step: str, **columns: str):
    def read(root: Path) -> dict | None:
        m = _metrics(root, step)
        if m is None or any(k not in m or m[k] is None for k in columns.values()):
            return None
        return {col: m[key] for col, key in columns.items()}
    return read


CLAIMS: tuple[Claim, ...] = (
    Claim("layer_vs_ffn", "seed 000", "Adding layers costs more time than widening the FFN.",
          # A difference, not the ratio: under timing noise the widening cost can come out <= 0, where the
          # ratio is infinite or negative and a t-test on it means nothing.
          (Test("layer_ms", "ffn_widening_ms", 0.0, ">",
                "ms of one more layer − ms of widening the FFN from smallest to largest (batch 32)"),),
          "03_grid: tables/timing_finding.csv (large batch)"),
    Claim("kd_beats_twin", "seed 000 (after Hinton et al. 2015)", "A student distilled from the teacher is more "
          "accurate than the same student trained on the labels alone.",
          (Test("kd_accuracy", "nokd_accuracy", 0.0, ">", "accuracy KD − no-KD twin (half-depth student)"),),
          "02_distill: metrics.json student_test_accuracy, nokd_test_accuracy"),
    Claim("fast_student", "seed 000", "The distilled student is many times faster at a few points of "
          "accuracy (\"7× faster, 3% lower\").",
          (Test("speedup", None, 5.0, ">", "speed-up over the teacher (batch 32)"),
           Test("points_lost", None, 3.0, "<", "accuracy points lost")),
          "03_grid: the most accurate student ≥ 5× faster (tables/table4.csv, tables/benchmark.csv)"),
    Claim("half_depth_retention", "DistilBERT (Sanh et al. 2019)", "A half-depth student keeps about 97% "
          "of the teacher's accuracy.",
          (Test("student_retention", None, 0.97, ">", "student accuracy ÷ teacher accuracy"),),
          "02_distill: metrics.json student_retention"),
    Claim("hetero_kd", "seed 003", "Heterogeneous KD (A) beats traditional KD (B), which beats no KD (C).",
          (Test("acc_A", "acc_B", 0.0, ">", "accuracy A − B"), Test("acc_B", "acc_C", 0.0, ">", "accuracy B − C")),
          "05_hetero_kd: metrics.json (its own seeds)"),
    Claim("edge_speedup", "seed 004", "DistilBERT is about 2× faster at a small F1 loss on an edge CPU.",
          # "Small" as a share of the teacher's F1, not in points: seed 004 keeps 97% (70.44 of 72.36), and our
          # teachers' F1 is far lower, where 3 points would already be a tenth of it.
          (Test("student_speedup", None, 1.8, ">", "half-depth speed-up, pi5 profile"),
           Test("student_f1_retention", None, 0.96, ">", "student F1 ÷ teacher F1 (half-depth)")),
          "06_edge_benchmark: metrics.json student_speedup, student_f1_retention"),
)

_SINGLE_RUN = {
    "layer_vs_ffn": _grid_timing_finding,
    "fast_student": _grid_fast_student,
    "half_depth_retention": _from_metrics("02_distill", student_retention="student_retention"),
    "kd_beats_twin": _from_metrics("02_distill", kd_accuracy="student_test_accuracy",
                                   nokd_accuracy="nokd_test_accuracy"),
    "edge_speedup": _from_metrics("06_edge_benchmark", student_speedup="student_speedup",
                                  student_f1_retention="student_f1_retention"),
}


def t_test(values: list[float], threshold: float) -> float:
    """Two-sided one-sample t-test p-value of mean(values) against threshold (0 or 1 when the spread is 0)."""

    if len(values) < 2:
        return math.nan
    if pd.Series(values).std() == 0:
        return 1.0 if values[0] == threshold else 0.0
    return float(stats.ttest_1samp(values, threshold).pvalue)


def verdict_of(n: int, mean: float, p: float, threshold: float, side: str) -> str:
    """holds / does not hold / cannot tell, for one quantity."""
    if n < MIN_SEEDS:
        return f"cannot tell ({n} seed{'s' if n != 1 else ''})"
    if math.isnan(p) or p >= ALPHA:
        return "cannot tell (within seed-to-seed noise)"
    right_side = mean > threshold if side == ">" else mean < threshold
    return "holds" if right_side else "does not hold"


def combine(verdicts: list[str]) -> str:
    if "does not hold" in verdicts:
        return "does not hold"
    if verdicts and all(v == "holds" for v in verdicts):
        return "holds"
    return next((v for v in verdicts if v.startswith("cannot tell (") and "seed" in v and "noise" not in v),
                "cannot tell")


def _fmt(x: float) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.4g}"


def _test_rows(claim: Claim, rows: pd.DataFrame) -> list[dict]:
    out = []
    for t in claim.tests:
        values = t.values(rows)
        n = len(values)
        mean = sum(values) / n if n else math.nan
        std = float(pd.Series(values).std()) if n > 1 else math.nan
        p = t_test(values, t.threshold)
        kind = f"paired t-test ({t.a} vs {t.b})" if t.b else "one-sample t-test"
        out.append({"quantity": t.label, "n": n, "mean": mean, "std": std, "p": p,
                    "test": f"{kind} against {t.side} {t.threshold:g}",
                    "verdict": verdict_of(n, mean, p, t.threshold, t.side)})
    return out


def _hetero_from_metrics(claim: Claim, root: Path) -> list[dict] | None:
    """05 runs its own seeds and writes means, stds and paired-test p-values; read them."""
    m = _metrics(root, "05_hetero_kd")
    if m is None:
        return None
    n = int(m["n_seeds"])
    out = []
    for t, p_key in zip(claim.tests, ("p_A_vs_B", "p_B_vs_C")):
        x, y = t.a[-1], t.b[-1]
        mean = m[f"acc_{x}_mean"] - m[f"acc_{y}_mean"]
        p = m.get(p_key)
        p = math.nan if p is None else float(p)
        out.append({"quantity": f"{t.label} ({x} {_fmt(m[f'acc_{x}_mean'])} ± {_fmt(m[f'acc_{x}_std'])}, "
                                f"{y} {_fmt(m[f'acc_{y}_mean'])} ± {_fmt(m[f'acc_{y}_std'])})",
                    "n": n, "mean": mean, "std": math.nan, "p": p,
                    "test": f"paired test across seeds, by 05 ({p_key})",
                    "verdict": verdict_of(n, mean, p, t.threshold, t.side)})
    return out


def finding(claim: Claim, profile_dir: Path, verdicts_dir: Path) -> dict:
    """One finding: where its numbers come from, a row per tested quantity, and the verdict."""
    csv = verdicts_dir / f"{claim.key}.csv"
    if csv.exists():
        rows = pd.read_csv(csv)
        missing = [c for c in ("seed", *claim.columns) if c not in rows.columns]
        if missing:
            raise ValueError(f"{csv}: lacks columns {missing}")
        tests, source = _test_rows(claim, rows), f"verdicts/{claim.key}.csv ({len(rows)} seeds)"
    elif claim.key == "hetero_kd":
        tests, source = _hetero_from_metrics(claim, profile_dir), claim.single_run
    else:
        one = _SINGLE_RUN[claim.key](profile_dir)
        tests = _test_rows(claim, pd.DataFrame([one])) if one is not None else None
        source = claim.single_run
    if tests is None:
        return {"claim": claim, "source": f"not run ({claim.single_run.split(':')[0]})", "tests": [],
                "verdict": "cannot tell (not run)"}
    return {"claim": claim, "source": source, "tests": tests, "verdict": combine([t["verdict"] for t in tests])}


def findings(profile_dir: Path, verdicts_dir: Path) -> list[dict]:
    return [finding(c, profile_dir, verdicts_dir) for c in CLAIMS]


# --------------------------------------------------------------------------
# Where the seeds disagree with themselves
# --------------------------------------------------------------------------


def _gap_evidence(root: Path, m6: dict) -> str:
    """Our F1 − EM (06's metrics), and the teacher's gap under each evaluation 06 tried (evaluation_gap.csv)."""
    text = (f"06_edge_benchmark/metrics.json, F1 − EM: teacher {m6['teacher_f1'] - m6['teacher_em']:.1f}, "
            f"student {m6['student_f1'] - m6['student_em']:.1f}.")
    path = root / "06_edge_benchmark/tables/evaluation_gap.csv"
    if path.exists():
        g = pd.read_csv(path)
        g = g[g["model"] == "teacher"] if "teacher" in set(g["model"]) else g[g["model"] == g["model"].iloc[0]]
        text += (f" The same predictions of {g['model'].iloc[0]} scored other ways (tables/evaluation_gap.csv): "
                 + "; ".join(f"{r.evaluation} {r.gap:.1f}" for r in g.itertuples()) + ".")
    return text


def disagreements(root: Path) -> list[dict]:
    """Each: what the seed says, what its own numbers say (attributed), and our evidence (from files)."""
    items = []
    paper4 = root / "03_grid/tables/table4_paper_architecture.csv"
    if paper4.exists():
        t = pd.read_csv(paper4).set_index(["layers", "ffn"])["time_paper_s"]
        ours = (f"Seed 000's Table 4, as 03_grid stores it (tables/table4_paper_architecture.csv, column "
                f"time_paper_s): 3 layers × FFN 768 (model 5) {t.loc[(3, 768)]:g} s; 6 layers × FFN 192 "
                f"(model 7) {t.loc[(6, 192)]:g} s.")
    else:
        ours = "not run (03_grid)"
    items.append({"title": "Seed 000's Table 6 names model 7, but its time is model 5's",
                  "seed": "Seed 000, Table 6: distil-KcBERT 92.4%, 5 min 30 s (330 s), labelled model 7; its "
                          "text names model 5.", "ours": ours})

    table6 = {row["model"]: (round(100 * row["accuracy"], 1), row["total_time_s"]) for row in papers.SEED000_TABLE6}
    acc_k, time_k = table6["KcBERT-base"]
    acc_d, time_d = table6["distil-KcBERT"]
    m2, m1 = _metrics(root, "02_distill"), _metrics(root, "01_teacher")
    if m2 is None or m1 is None:
        ours = "not run (01_teacher, 02_distill)"
    else:
        ours = (f"Our half-depth student (02_distill/metrics.json): {m2['student_speedup_fp32_bs32']:.2f}× faster "
                f"at batch 32 ({m2['student_speedup_fp32_bs1']:.2f}× at batch 1), "
                f"{100 * (m1['teacher_test_accuracy'] - m2['student_test_accuracy']):.1f} points below the "
                f"teacher (01_teacher/metrics.json).")
    fast = _grid_fast_student(root)
    if fast is not None:
        ours += (f" The grid's most accurate student ≥ 5× faster (03_grid): {fast['speedup']:.1f}×, "
                 f"{fast['points_lost']:.1f} points below the teacher.")
    items.append({"title": "Seed 000's \"7× faster, 3% lower\"",
                  "seed": f"Seed 000, Table 6: KcBERT-base {acc_k}% / {time_k} s, distil-KcBERT {acc_d}% / "
                          f"{time_d} s: {time_k / time_d:.1f}× faster and {acc_k - acc_d:.1f} points lower.",
                  "ours": ours})

    m5 = _metrics(root, "05_hetero_kd")
    a, b, c = ((papers.SEED003_TABLE4[k]["accuracy"], papers.SEED003_TABLE4[k]["macro_f1"],
                papers.SEED003_TABLE4[k]["epoch"]) for k in "ABC")
    c_at_19 = papers.SEED003_TABLE5[19][2], papers.SEED003_TABLE6[19][2]  # Tables 5 and 6: model C at epoch 19
    items.append({"title": "Seed 003's Table 4 takes C at a different epoch than A and B",
                  "seed": f"Seed 003, Table 4: A {a[0]} (epoch {a[2]}), B {b[0]} (epoch {b[2]}), C {c[0]} "
                          f"(epoch {c[2]}); at epoch 19 C scores {c_at_19[0]} / {c_at_19[1]}, "
                          f"above B ({b[0]} / {b[1]}).",
                  "ours": "not run (05_hetero_kd)" if m5 is None else
                          f"05_hetero_kd/metrics.json, {m5['n_seeds']} seeds, epoch chosen on validation: "
                          f"A {m5['acc_A_mean']:.4f} ± {m5['acc_A_std']:.4f}, B {m5['acc_B_mean']:.4f} ± "
                          f"{m5['acc_B_std']:.4f}, C {m5['acc_C_mean']:.4f} ± {m5['acc_C_std']:.4f}."})

    m6 = _metrics(root, "06_edge_benchmark")
    gaps = ", ".join(f"{name} {f - e:.1f}" for name, e, f, _ in papers.SEED004_TABLE2.values())
    paper = ", ".join(f"{k} {f - e:.1f}" for k, (e, f) in papers.DISTILBERT_PAPER_SQUAD.items())
    items.append({"title": "Seed 004's EM–F1 gap",
                  "seed": f"Seed 004, Table 2, F1 − EM in points: {gaps}. The DistilBERT paper (SQuAD v1.1 "
                          f"dev): {paper}.",
                  "ours": "not run (06_edge_benchmark)" if m6 is None else _gap_evidence(root, m6)})

    quoted = "; ".join(f"{who}: {what}" for who, what in papers.DISTILBERT_SPEEDUP_QUOTED)
    t_bert, t_distil = papers.SEED004_TABLE2["teacher"][3], papers.SEED004_TABLE2["half"][3]
    ours = [] if m2 is None else [f"02_distill: {m2['student_speedup_fp32_bs1']:.2f}× (batch 1), "
                                  f"{m2['student_speedup_fp32_bs32']:.2f}× (batch 32)"]
    if m6 is not None:
        ours.append(f"06_edge_benchmark: {m6['student_speedup']:.2f}× (pi5 profile)")
    items.append({"title": "DistilBERT's speed-up, quoted three ways",
                  "seed": f"{quoted}; seed 004's own Table 2 gives {t_bert:g} s / {t_distil:g} s = "
                          f"{t_bert / t_distil:.2f}×.",
                  "ours": ("Our half-depth students: " + "; ".join(ours) + ".") if ours else "not run (02, 06)"})
    return items
