"""The report's findings (the seeds' claims, each in its own words and tested as it is stated) and the places
where the seeds disagree with themselves (each with our evidence).

Multi-seed results live in ``reports/<profile>/verdicts/<claim>.csv``: one row per seed (a ``seed`` column),
or, for a claim whose quantities seeds cannot change, one row per repeated timing (a ``repeat`` column), and
the columns the claim names (``Claim.columns``). ``kdstudy verdicts`` (kdlib/studies/verdicts.py) writes them
with a record of the parameters that made them; the report uses a CSV only while that record matches the
parameters it is built with, and otherwise says it is stale and falls back to this profile's own single run
(or, for seed 003, to 05's multi-seed metrics), whose verdict is "cannot tell (1 seed)".

Each claim is tested one quantity at a time (a column, or the difference of two columns: then paired), at
``ALPHA``, with at least ``MIN_SEEDS`` values:
- "N× faster", "more accurate", "at most 3 points lost": a one-sided t-test against the claim's own N.
- "about N", "97% of": an equivalence, by two one-sided tests (TOST) within the margin stated beside it.
- a timing of fixed shapes (``Test.timing``): seeds cannot change it, so its values are repeated timings,
  shown with their spread and judged by it (every timing on the claim's side, or every one on the other
  side), not by a t-test over seeds.
A quantity holds when significantly on the claim's side (inside the margin), does not hold when
significantly on the other side (outside it); otherwise we cannot tell. A claim holds when all its
quantities hold and does not hold when one does not.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from scipy import stats

from kdlib.core.io import read_json
from kdlib.pipeline.config import StudyParams
from kdlib.studies import papers, verdicts

MIN_SEEDS = 5
ALPHA = 0.05
ALTERNATIVE = {">": "greater", "<": "less"}


def step_metrics(root: Path, step: str) -> dict | None:
    """A step's metrics.json under the profile's folder `root`, or None before the step ran."""
    path = root / step / "metrics.json"
    return read_json(path) if path.exists() else None


def _on_side(x: float, threshold: float, side: str) -> bool:
    return x > threshold if side == ">" else x < threshold


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def one_sided_p(values: list[float], threshold: float, side: str) -> float:
    """p-value of a one-sample t-test of H1: mean > threshold (side ">") or mean < threshold ("<"). Without
    spread: 0 when the values are on that side, else 1. NaN below two values."""
    if len(values) < 2:
        return math.nan
    if pd.Series(values).std() == 0:
        return 0.0 if _on_side(values[0], threshold, side) else 1.0
    return float(stats.ttest_1samp(values, threshold, alternative=ALTERNATIVE[side]).pvalue)


def tost(values: list[float], low: float, high: float) -> tuple[float, float]:
    """Two one-sided tests of equivalence: (p of low < mean < high, the larger of its two one-sided p-values;
    p of the mean lying outside [low, high], the smaller of the two tests the other way)."""
    if len(values) < 2:
        return math.nan, math.nan
    inside = max(one_sided_p(values, low, ">"), one_sided_p(values, high, "<"))
    outside = min(one_sided_p(values, low, "<"), one_sided_p(values, high, ">"))
    return inside, outside


@dataclass(frozen=True)
class Test:
    """One quantity of a claim: column `a` (minus column `b` if given) against `threshold`. `side` is ">" or
    "<" (one-sided: where the claim holds) or "≈" (equivalence within ± `margin`, stated in `margin_text`)."""
    a: str
    b: str | None
    threshold: float
    side: str
    label: str
    margin: float | None = None
    margin_text: str = ""
    timing: bool = False  # a timing of fixed shapes: its values are repeated timings, whatever the rows are
    # How the report shows its values, threshold and band: `scale` × value, in `unit` (a share of the teacher's
    # in %, a difference of accuracies in points); declared here, never guessed from the label.
    unit: str = ""
    scale: float = 1.0

    def values(self, rows: pd.DataFrame) -> list[float]:
        v = rows[self.a] - (rows[self.b] if self.b else 0)
        return [float(x) for x in v.dropna()]

    @property
    def band(self) -> tuple[float, float]:
        return self.threshold - self.margin, self.threshold + self.margin

    def shown(self, x: float) -> str:
        return f"{self.scale * x:g}"

    @property
    def threshold_text(self) -> str:
        return f"{self.side} {self.shown(self.threshold)}"

    def p_values(self, values: list[float]) -> tuple[float, float]:
        """(p for the claim, p against it)."""
        if self.side == "≈":
            return tost(values, *self.band)
        other = "<" if self.side == ">" else ">"
        return one_sided_p(values, self.threshold, self.side), one_sided_p(values, self.threshold, other)

    def holds_at(self, x: float) -> bool:
        if self.side == "≈":
            return self.band[0] <= x <= self.band[1]
        return _on_side(x, self.threshold, self.side)

    def fails_at_all(self, values: list[float]) -> bool:
        """Every value on the other side (for an equivalence: all above the band, or all below it)."""
        if self.side == "≈":
            return all(x > self.band[1] for x in values) or all(x < self.band[0] for x in values)
        return not any(self.holds_at(x) for x in values)

    def description(self) -> str:
        if self.timing:
            where = (f"within {self.shown(self.band[0])} to {self.shown(self.band[1])}" if self.side == "≈"
                     else self.threshold_text)
            return f"repeated timings, not seeds: holds when every timing is {where}"
        if self.side == "≈":
            return f"TOST (two one-sided t-tests), H1: {self.shown(self.band[0])} < mean < {self.shown(self.band[1])}"
        return f"{'paired ' if self.b else ''}one-sided t-test, H1: mean {self.threshold_text}"


@dataclass(frozen=True)
class Claim:
    key: str         # reports/<profile>/verdicts/<key>.csv
    source: str      # whose claim, and where
    words: str       # the claim in its own words (translated where the seed is Korean)
    tests: tuple[Test, ...]
    single_run: str  # what this profile's own run gives (the fallback), as "step: where"
    reading: str = ""  # how its words become the tests, where that needs saying
    by: str = "seed"   # the column that labels its rows: "seed", or "repeat" for repeated timings

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(c for t in self.tests for c in (t.a, t.b) if c))


def _grid_fast_student(root: Path) -> dict | None:
    """03's fast student (chosen on validation, verdicts.grid_choice): its speed-up and test points lost."""
    choice, m = verdicts.grid_choice(root), step_metrics(root, "03_grid")
    if choice is None or m is None:
        return None
    return {**choice, "points_lost": 100 * (m["teacher_test_accuracy"] - choice["test_accuracy"])}


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
        m = step_metrics(root, step)
        if m is None or any(k not in m or m[k] is None for k in columns.values()):
            return None
        return {col: m[key] for col, key in columns.items()}
    return read


CLAIMS: tuple[Claim, ...] = (
    Claim("layer_vs_ffn", "seed 000 (Jang 2021), on its Table 4; translated",
          "prediction time rises sharply as the number of layers grows, more than the dimension",
          # A difference, not the ratio: under timing noise the widening cost can come out <= 0, where the
          # ratio is infinite or negative.
          (Test("layer_ms", "ffn_widening_ms", 0.0, ">",
                "ms of one more layer − ms of widening the FFN from smallest to largest (batch 32)", timing=True),),
          "03_grid: tables/timing_finding.csv (large batch)", by="repeat"),
    Claim("kd_beats_twin", "seed 000, after Hinton et al. (2015); translated",
          "training on the teacher's softmax output trains the model more efficiently",
          (Test("kd_accuracy", "nokd_accuracy", 0.0, ">", "accuracy KD − no-KD twin (half-depth student)",
                unit="points", scale=100),),
          "02_distill: metrics.json student_test_accuracy, nokd_test_accuracy",
          reading="more accurate than the same student trained on the labels alone"),
    Claim("fast_student", "seed 000, on its Table 6; translated",
          "7× faster than KcBERT [...] a 3% difference in accuracy",
          (Test("speedup", None, verdicts.FAST_STUDENT_SPEEDUP, ">", "speed-up over the teacher (batch 32)",
                timing=True),
           Test("points_lost", None, 3.0, "<", "accuracy points lost")),
          f"03_grid: the student chosen on validation among those ≥ {verdicts.FAST_STUDENT_SPEEDUP:g}× faster "
          "(tables/table4.csv, tables/benchmark.csv)",
          reading="its own Table 6 gives 6.6× and 4.3 points; 3% read as at most 3 points"),
    Claim("half_depth_retention", "DistilBERT (Sanh et al. 2019), quoted by seed 001 as \"97% of BERT\"",
          "retaining 97% of its language understanding capabilities",
          (Test("student_retention", None, 0.97, "≈", "student accuracy ÷ teacher accuracy", margin=0.02, unit="%", scale=100,
                margin_text="± 2 points (95% to 99%): the seeds quote distilled students at 96% to 97% of BERT"),),
          "02_distill: metrics.json student_retention"),
    Claim("hetero_kd", "seed 003 (Yu & Kim 2022), abstract and §4",
          "the heterogeneous knowledge distillation method showed superior performance [...] compared to the "
          "traditional knowledge distillation",
          (Test("acc_A", "acc_B", 0.0, ">", "accuracy A − B", unit="points", scale=100),
           Test("acc_B", "acc_C", 0.0, ">", "accuracy B − C", unit="points", scale=100)),
          "05_hetero_kd: metrics.json (its own seeds)",
          reading="A (heterogeneous) beats B (traditional KD), which beats C (no KD)"),
    Claim("edge_speedup", "seed 004 (Im, Kim & Suh), its results; translated",
          "DistilBERT's F1 is 3% lower [...] its inference is 50% faster",
          (Test("student_speedup", None, 2.0, "≈", "half-depth speed-up, pi5 profile", margin=0.2,
                margin_text="± 10% of 2× (1.8× to 2.2×)", timing=True),
           Test("student_f1_retention", None, 0.97, ">", "student F1 ÷ teacher F1 (half-depth)", unit="%",
                scale=100)),
          "06_edge_benchmark: metrics.json student_speedup, student_f1_retention",
          reading="50% faster is half the time: about 2× (its Table 2: 2.03×); 3% lower read as at least 97% "
                  "of the teacher's F1"),
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


def verdict_of(n: int, p: float, p_against: float, noun: str = "seed") -> str:
    """holds / does not hold / cannot tell, for one quantity tested over `n` seeds."""
    if n < MIN_SEEDS:
        return f"cannot tell ({_plural(n, noun)})"
    if p < ALPHA:
        return "holds"
    if p_against < ALPHA:
        return "does not hold"
    return "cannot tell (within seed-to-seed noise)"


def timing_verdict(test: Test, values: list[float]) -> str:
    """Repeated timings: holds when every one is on the claim's side, does not hold when every one is on the
    other side; otherwise we cannot tell."""
    if len(values) < MIN_SEEDS:
        return f"cannot tell ({_plural(len(values), 'timing')})"
    if all(test.holds_at(x) for x in values):
        return "holds"
    return "does not hold" if test.fails_at_all(values) else "cannot tell (timings on both sides)"


def combine(per_test: list[str]) -> str:
    if "does not hold" in per_test:
        return "does not hold"
    if per_test and all(v == "holds" for v in per_test):
        return "holds"
    counted = (v for v in per_test if re.match(r"cannot tell \(\d+ ", v))  # too few seeds or timings
    return next(counted, "cannot tell")


def _fmt(x: float) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.4g}"


def _count(n: int, by: str) -> str:
    return _plural(n, "seed") if by == "seed" else f"{_plural(n, 'repeated timing')}, not seeds"


def _test_row(t: Test, values: list[float], by: str) -> dict:
    n = len(values)
    mean = sum(values) / n if n else math.nan
    std = float(pd.Series(values).std()) if n > 1 else math.nan
    if t.timing:
        p = p_against = math.nan
        verdict = timing_verdict(t, values)
        n_text = ("1 timing" if n == 1 else
                  _plural(n, "repeated timing") + (", not seeds" if by == "repeat" else ", one per seed's run"))
    else:
        p, p_against = t.p_values(values)
        verdict, n_text = verdict_of(n, p, p_against), _plural(n, "seed")
    return {"quantity": t.label, "unit": t.unit, "scale": t.scale, "threshold": t.threshold_text,
            "margin": t.margin_text or "–", "test": t.description(), "n": n, "n_text": n_text, "mean": mean,
            "std": std, "p": p, "p_against": p_against, "verdict": verdict}


def _test_rows(claim: Claim, rows: pd.DataFrame) -> list[dict]:
    by = claim.by if claim.by in rows else "seed"  # a single run is one seed
    return [_test_row(t, t.values(rows), by) for t in claim.tests]


def _hetero_std(root: Path, convention: str, comparison: str) -> float:
    """The std of the per-seed differences, from 05's table4_tests.csv (NaN without it)."""
    path = root / "05_hetero_kd/tables/table4_tests.csv"
    if not path.exists():
        return math.nan
    t = pd.read_csv(path)
    hit = t[(t["convention"] == convention) & (t["metric"] == "test_accuracy") & (t["comparison"] == comparison)]
    return float(hit["std_diff"].iloc[0]) if len(hit) else math.nan


def _hetero_from_metrics(claim: Claim, root: Path) -> list[dict] | None:
    """05 runs its own seeds and writes means, stds and two-sided paired-test p-values; the claim is
    one-sided, so its p is half of 05's on the claim's side (and 1 − half on the other)."""
    m = step_metrics(root, "05_hetero_kd")
    if m is None:
        return None
    n = int(m["n_seeds"])
    out = []
    for t, p_key in zip(claim.tests, ("p_A_vs_B", "p_B_vs_C")):
        x, y = t.a[-1], t.b[-1]
        mean = m[f"acc_{x}_mean"] - m[f"acc_{y}_mean"]
        two = math.nan if m.get(p_key) is None else float(m[p_key])
        p = two / 2 if _on_side(mean, t.threshold, t.side) else 1 - two / 2
        acc = {z: f"{_fmt(t.scale * m[f'acc_{z}_mean'])} ± {_fmt(t.scale * m[f'acc_{z}_std'])}" for z in (x, y)}
        out.append({"quantity": f"{t.label} ({x} {acc[x]}, {y} {acc[y]}; accuracies in %)",
                    "unit": t.unit, "scale": t.scale, "threshold": t.threshold_text, "margin": "–",
                    "test": f"paired one-sided t-test, H1: mean {t.threshold_text} (05's {p_key}, halved)",
                    "n": n, "n_text": _plural(n, "seed"), "mean": mean,
                    "std": _hetero_std(root, m.get("convention", "ours"), f"{x} vs {y}"),
                    "p": p, "p_against": 1 - p, "verdict": verdict_of(n, p, 1 - p)})
    return out


def _verdict_rows(claim: Claim, csv: Path) -> tuple[list[dict], str]:
    rows = pd.read_csv(csv)
    missing = [c for c in (claim.by, *claim.columns) if c not in rows.columns]
    if missing:
        raise ValueError(f"{csv}: lacks columns {missing}")
    return _test_rows(claim, rows), f"verdicts/{claim.key}.csv ({_count(len(rows), claim.by)}{_made_on(csv)})"


def _made_on(csv: Path) -> str:
    """", on <CPU> (<flags>), <n> threads" from the verdict's record; said plainly where it has no machine (a
    record written before records held one)."""
    m = read_json(csv.with_suffix(".json")).get("machine")
    if not m:
        return "; machine not recorded"
    return f"; on {m['cpu']} ({m['flags'] or 'no listed flags'}), {m['threads']} threads"


def _single_run(claim: Claim, profile_dir: Path) -> list[dict] | None:
    if claim.key == "hetero_kd":
        return _hetero_from_metrics(claim, profile_dir)
    one = _SINGLE_RUN[claim.key](profile_dir)
    return _test_rows(claim, pd.DataFrame([one])) if one is not None else None


def finding(claim: Claim, profile_dir: Path, verdicts_dir: Path, cfg: StudyParams | None = None) -> dict:
    """One finding: where its numbers come from, a row per tested quantity, and the verdict. A verdicts CSV
    counts only while its record matches `cfg` (without `cfg` nothing can be checked: it is stale)."""
    csv = verdicts_dir / f"{claim.key}.csv"
    stale = ""
    if csv.exists():
        stale = ("no parameters were given to check it against" if cfg is None
                 else verdicts.staleness(cfg, claim.key, csv) or "")
        if not stale:
            tests, source = _verdict_rows(claim, csv)
            return {"claim": claim, "source": source, "tests": tests, "stale": "",
                    "verdict": combine([t["verdict"] for t in tests])}
        stale = f"stale: rerun `kdstudy verdicts` (verdicts/{claim.key}.csv: {stale})"
    tests = _single_run(claim, profile_dir)
    if tests is None:
        source = f"not run ({claim.single_run.split(':')[0]})"
        return {"claim": claim, "source": "; ".join(filter(None, (stale, source))), "tests": [], "stale": stale,
                "verdict": "cannot tell (not run)"}
    source = f"{stale}; shown: this profile's single run, {claim.single_run}" if stale else claim.single_run
    return {"claim": claim, "source": source, "tests": tests, "stale": stale,
            "verdict": combine([t["verdict"] for t in tests])}


def findings(profile_dir: Path, verdicts_dir: Path, cfg: StudyParams | None = None) -> list[dict]:
    return [finding(c, profile_dir, verdicts_dir, cfg) for c in CLAIMS]


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
    m2, m1 = step_metrics(root, "02_distill"), step_metrics(root, "01_teacher")
    if m2 is None or m1 is None:
        ours = "not run (01_teacher, 02_distill)"
    else:
        ours = (f"Our half-depth student (02_distill/metrics.json): {m2['student_speedup_fp32_bs32']:.2f}× faster "
                f"at batch 32 ({m2['student_speedup_fp32_bs1']:.2f}× at batch 1), "
                f"{100 * (m1['teacher_test_accuracy'] - m2['student_test_accuracy']):.1f} points below the "
                f"teacher (01_teacher/metrics.json).")
    fast = _grid_fast_student(root)
    if fast is not None:
        ours += (f" The grid's student chosen on validation among those ≥ {verdicts.FAST_STUDENT_SPEEDUP:g}× faster "
                 f"(03_grid, {fast['student']}): {fast['speedup']:.1f}×, {fast['points_lost']:.1f} points below "
                 f"the teacher on test.")
    items.append({"title": "Seed 000's \"7× faster, 3% lower\"",
                  "seed": f"Seed 000, Table 6: KcBERT-base {acc_k}% / {time_k} s, distil-KcBERT {acc_d}% / "
                          f"{time_d} s: {time_k / time_d:.1f}× faster and {acc_k - acc_d:.1f} points lower.",
                  "ours": ours})

    m5 = step_metrics(root, "05_hetero_kd")
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

    m6 = step_metrics(root, "06_edge_benchmark")
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
