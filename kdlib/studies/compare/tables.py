"""Step 04's tables, built from the rows kdlib.studies.compare.models measured: speed-ups over the two baselines, each row's
family, table6 (ours, with seed 000's Table 6 and seed 001's comparison in attributed columns), the Pareto
front, the headline metrics, seed 002's taxonomy with our measured row per family, and a generated
conclusion per family."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from kdlib.studies import papers

BASELINE = "teacher"


def with_speedups(measured: pd.DataFrame, batch_sizes, baseline: str = BASELINE) -> pd.DataFrame:
    """The measured rows with every speed-up column present (NaN where a row has none) and % of the
    baseline's accuracy (its PyTorch fp32 accuracy). The speed-ups themselves come from the measurement
    (kdlib.studies.compare.models.measure): ratios of calls timed in turn within one route's unit, never a
    division of timings from two units."""
    frame = measured.copy()
    for b in batch_sizes:
        for col in (f"speedup_vs_torch_fp32_teacher_bs{b}", f"speedup_vs_torch_fp32_teacher_bs{b}_p25",
                    f"speedup_vs_torch_fp32_teacher_bs{b}_p75", f"speedup_vs_same_route_teacher_bs{b}"):
            if col not in frame:
                frame[col] = math.nan
    base = frame[frame["name"] == baseline].set_index(["runtime", "precision"])
    ref = ("torch", "fp32")
    if "accuracy" in frame and ref in base.index:
        frame["pct_of_teacher"] = 100 * frame["accuracy"] / base.loc[ref, "accuracy"]
    return frame


ROLE_LABELS = {"half_depth": "half-depth student {} (03)", "one_layer": "1-layer student {} (03)",
               "fast": "fastest student within 97% {} (03)"}


def student_rows(picked: dict[str, str]) -> dict[str, str]:
    """{role: row name} for pick_students' choice; a student picked for two roles is one row (its first)."""
    rows, seen = {}, set()
    for role, name in picked.items():
        if name not in seen:
            rows[role] = ROLE_LABELS[role].format(name)
            seen.add(name)
    return rows


def label_rows(measured: pd.DataFrame, catalogue: pd.DataFrame, student_names: list[str]) -> pd.DataFrame:
    """Each measured row's family and method: from the catalogue for compressed models, "knowledge
    distillation" for the students, "teacher" for the teacher. A row on another precision than fp32 adds
    the precision to its family ("knowledge distillation + int8"); the teacher's such rows are "quantization"."""
    info = catalogue.set_index("name")
    upstream = {"teacher": ("teacher", "fine-tuned (01)"),
                "KD student (02)": ("knowledge distillation", "soft-target KD, layer copy (02)"),
                **{n: ("knowledge distillation", "soft-target KD from 03's grid") for n in student_names}}
    frame = measured.copy()
    frame["family"] = [upstream[n][0] if n in upstream else info.loc[n, "family"] for n in frame["name"]]
    frame["method"] = [upstream[n][1] if n in upstream else info.loc[n, "method"] for n in frame["name"]]
    other = frame["precision"] != "fp32"
    frame.loc[other & (frame["name"] != BASELINE), "family"] = frame["family"] + " + " + frame["precision"]
    frame.loc[other & (frame["name"] == BASELINE), "family"] = "quantization"
    return frame


def no_kd_twin_row(measured: pd.DataFrame, nokd_test: dict, nokd_val_accuracy: float | None = None) -> pd.DataFrame:
    """02's no-KD twin as a row: 02 does not save it, so its accuracy (test, and validation at its kept epoch:
    `nokd_val_accuracy`, NaN if not given) is 02's record and its size and speed are those of the same
    architecture (02's KD student, PyTorch fp32); the `note` column says so."""
    twin = measured[(measured["name"] == "KD student (02)") & (measured["runtime"] == "torch")
                    & (measured["precision"] == "fp32")].copy()
    val = np.nan if nokd_val_accuracy is None else nokd_val_accuracy
    return twin.assign(name="no-KD twin (02)", method="fine-tuned without a teacher (02)",
                       accuracy=nokd_test["accuracy"], macro_f1=nokd_test["macro_f1"], val_accuracy=val,
                       test_prediction_seconds=np.nan,
                       note="test and validation accuracy from 02's record; latency and size of the same "
                            "architecture (02's KD student)")



TABLE6_COLUMNS = ["name", "family", "method", "runtime", "precision", "status", "accuracy", "macro_f1",
                  "pct_of_teacher", "params", "params_nonzero", "size_mb", "latency_bs1_ms_median",
                  "latency_bs1_ms_p95", "latency_bs32_ms_median", "latency_bs32_ms_p95", "reference_latency_bs1_ms_median",
                  "reference_latency_bs32_ms_median", "median_ci95_pct_bs1", "median_ci95_pct_bs32", "flops_per_sample", "gflops_bs1", "peak_share_bs1",
                  "gflops_bs32", "peak_share_bs32", "test_prediction_seconds",
                  "val_accuracy", "speedup_vs_torch_fp32_teacher_bs1", "speedup_vs_torch_fp32_teacher_bs32",
                  "speedup_vs_same_route_teacher_bs1", "speedup_vs_same_route_teacher_bs32",
                  *(f"h2h_{c}_bs{b}{tail}" for b in (1, 32) for c, tail in
                    (("speedup", ""), ("latency", "_ms_median"), ("reference_latency", "_ms_median"))), "threads",
                  "runtime_version", "cpu_flags", "reason", "note"]


def _analog_rows(frame: pd.DataFrame, analogs: dict[str, str]) -> dict[str, int]:
    """Which row of ours stands beside each paper analog key: {key: row index}."""
    found = {}
    for key, name in analogs.items():
        if key == "teacher_int8":  # the teacher's first measured int8 route
            hits = frame[(frame["name"] == analogs.get("teacher")) & frame["precision"].str.startswith("int8")
                         & (frame["status"] == "ok")]
        else:
            hits = frame[(frame["name"] == name) & (frame["runtime"] == "torch") & (frame["precision"] == "fp32")]
        if len(hits):
            found[key] = hits.index[0]
    return found


def table6(frame: pd.DataFrame, analogs: dict[str, str]) -> pd.DataFrame:
    """Our rows (TABLE6_COLUMNS) with seed 000's Table 6 and seed 001's comparison in their own columns
    (seed000_*, seed001_*), each paper model beside the row of ours that is its analog (`analogs`:
    {"teacher": row name, "half_depth": ..., "one_layer": ..., "albert": ..., "heads": ...}); a paper
    model without an analog here gets a row of its own with only the paper's columns."""
    ours = frame.reindex(columns=TABLE6_COLUMNS).reset_index(drop=True)
    ours.insert(0, "source", "measured here")
    where = _analog_rows(ours, {**analogs, "teacher_int8": None})
    extra = []
    for seed, table, fields in (("seed000", papers.SEED000_TABLE6, ("model", "accuracy", "total_time_s")),
                                ("seed001", papers.SEED001_TABLE, ("model", "params", "speed", "glue"))):
        for col in fields:
            ours[f"{seed}_{col}"] = None
        for paper in table:
            values = {f"{seed}_{col}": paper[col] for col in fields}
            index = where.get(paper["analog"]) if paper["analog"] else None
            if index is not None and ours.loc[index, f"{seed}_model"] is None:
                for col, value in values.items():
                    ours.loc[index, col] = value
            else:
                extra.append({"source": f"{seed} (published)", **values})
    return pd.concat([ours, pd.DataFrame(extra)], ignore_index=True)


def pareto_front(accuracy, latency) -> np.ndarray:
    """True for the rows no other row beats: none is at least as accurate and at least as fast, and
    better in one of the two. NaNs are never on the front."""
    acc, lat = np.asarray(accuracy, dtype=float), np.asarray(latency, dtype=float)
    ok = ~(np.isnan(acc) | np.isnan(lat))
    front = np.zeros(len(acc), dtype=bool)
    for i in np.flatnonzero(ok):
        dominated = ok & (acc >= acc[i]) & (lat <= lat[i]) & ((acc > acc[i]) | (lat < lat[i]))
        front[i] = not dominated.any()
    return front


def teacher_row(frame: pd.DataFrame, baseline: str = BASELINE) -> pd.Series:
    """The teacher's PyTorch fp32 row: what every speed-up and accuracy margin is measured against."""
    return frame[(frame["name"] == baseline) & (frame["runtime"] == "torch") & (frame["precision"] == "fp32")].iloc[0]


# Columns of the head-to-head run (kdlib.studies.compare.models.head_to_head), per batch size.
H2H_COLUMNS = ("h2h_speedup_bs{b}", "h2h_speedup_bs{b}_p25", "h2h_speedup_bs{b}_p75", "h2h_latency_bs{b}_ms_median",
               "h2h_reference_latency_bs{b}_ms_median", "h2h_timed_calls_bs{b}")
CONTENDERS_PER_POOL = 3  # the rows of each choice timed again side by side, per batch size


def _h2h(rows: pd.DataFrame, batch: int) -> pd.Series | None:
    col = f"h2h_speedup_bs{batch}"
    return rows[col] if col in rows and rows[col].notna().any() else None


def speedup(row: pd.Series, batch: int) -> float:
    """A row's speed-up over the PyTorch fp32 teacher at `batch`: from the head-to-head run where the row took
    part in it, else from its route's run."""
    h2h = row.get(f"h2h_speedup_bs{batch}")
    return float(h2h) if h2h is not None and not pd.isna(h2h) else float(row[f"speedup_vs_torch_fp32_teacher_bs{batch}"])


def fastest(rows: pd.DataFrame, batch: int = 1) -> pd.Series | None:
    """The row with the largest speed-up over the PyTorch fp32 teacher at `batch` (the first on ties), or None.
    Where some rows were timed again side by side (`with_head_to_head`), the choice is among those, on the
    head-to-head speed-ups: every route's run has its own measurement of the teacher, and the teacher's speed
    moves between runs on a shared machine, so ratios from two runs do not rank two rows; ratios from one do."""
    if not len(rows):
        return None
    h2h = _h2h(rows, batch)
    col = h2h if h2h is not None else rows[f"speedup_vs_torch_fp32_teacher_bs{batch}"]
    return rows.loc[col.idxmax()]


def choice_pools(frame: pd.DataFrame, baseline: str = BASELINE) -> dict[str, pd.DataFrame]:
    """The rows each headline choice picks from (status ok): every int8 row; the rows within 1 point of the
    teacher's validation accuracy; within 97% of it; the teacher's own rows within 1 point."""
    ok = frame[frame["status"] == "ok"]
    val0 = teacher_row(ok, baseline)["val_accuracy"]
    return {"quantized": ok[ok["precision"].str.startswith("int8")],
            "within_1pp": ok[ok["val_accuracy"] >= val0 - 0.01],
            "within_3pct": ok[ok["val_accuracy"] >= 0.97 * val0],
            "teacher_within_1pp": ok[(ok["name"] == baseline) & (ok["val_accuracy"] >= val0 - 0.01)]}


def contenders(frame: pd.DataFrame, batch_sizes, extra_pools: list[pd.DataFrame] = (),
               per_pool: int = CONTENDERS_PER_POOL, baseline: str = BASELINE) -> pd.DataFrame:
    """The rows to time again side by side: at each batch size, the `per_pool` fastest rows (by their route
    run's speed-up) of every choice pool and of `extra_pools` (the model to ship picks from its own).
    Columns name, runtime, precision, batch_size; one row per (row, batch size)."""
    pools = [*choice_pools(frame, baseline).values(), *extra_pools]
    keys = ["name", "runtime", "precision"]
    out = []
    for b in batch_sizes:
        col = f"speedup_vs_torch_fp32_teacher_bs{b}"
        top = [pool.dropna(subset=[col]).nlargest(per_pool, col)[keys] for pool in pools if len(pool)]
        if top:
            out.append(pd.concat(top).drop_duplicates().assign(batch_size=b))
    return (pd.concat(out, ignore_index=True) if out
            else pd.DataFrame(columns=[*keys, "batch_size"]))


def with_head_to_head(frame: pd.DataFrame, h2h: pd.DataFrame) -> pd.DataFrame:
    """`frame` with the head-to-head run's columns (`H2H_COLUMNS`, per batch size) on the rows that took part
    in it, NaN elsewhere."""
    keys = ["name", "runtime", "precision"]
    out = frame.drop(columns=[c for c in frame if c.startswith("h2h_")])
    for b, rows in h2h.groupby("batch_size"):
        cols = [c.format(b=b) for c in H2H_COLUMNS]
        out = out.merge(rows.reindex(columns=keys + cols), on=keys, how="left")
    return out


def headline_metrics(frame: pd.DataFrame, baseline: str = BASELINE, batch: int = 1) -> dict:
    """metrics.json: speed-ups over the PyTorch fp32 teacher for the best int8 row, the fastest row within
    1 point of the teacher's accuracy, the fastest within 97% of it, and the teacher's own fastest route
    within 1 point (what the runtime alone gives). Each is chosen at `batch` (keys without a suffix) and
    again at batch 32 (keys ending in _bs32, naming that batch's own winner). "Best quantized" is the
    fastest int8 row (dynamic or static) of any model.

    "Within" is judged on validation accuracy (a row's `val_accuracy` against the PyTorch fp32 teacher's),
    and the chosen row's test accuracy is reported: the fastest of ~50 rows that pass on test would be
    picked partly for its luck on the test split. A row without a validation accuracy is never chosen."""
    if "val_accuracy" not in frame:
        raise ValueError("the rows have no val_accuracy: measure them with validation_ds")
    ok = frame[frame["status"] == "ok"]
    teacher = teacher_row(ok, baseline)
    acc0, val0 = teacher["accuracy"], teacher["val_accuracy"]
    pools = choice_pools(frame, baseline)
    names = {pool: ("best_quantized_speedup", "best_quantized_route") if pool == "quantized"
             else (f"best_speedup_{pool}", f"best_route_{pool}") for pool in pools}

    def route(row):
        return f"{row['name']} on {row['runtime']}/{row['precision']}"

    metrics = {"teacher_accuracy": float(acc0), "teacher_val_accuracy": float(val0), "speedup_batch_size": batch}
    for b, suffix in ((batch, ""), (32, "_bs32")):
        col, same = f"speedup_vs_torch_fp32_teacher_bs{b}", f"speedup_vs_same_route_teacher_bs{b}"
        if col not in ok:
            continue
        for pool, rows in pools.items():
            best = fastest(rows, b)
            speed, where = names[pool]
            metrics[speed + suffix] = speedup(best, b) if best is not None else None
            metrics[where + suffix] = route(best) if best is not None else None
            metrics[f"best_test_accuracy_{pool}{suffix}"] = float(best["accuracy"]) if best is not None else None
            # how much of the speed-up the model itself gives, on its own route
            metrics[f"best_same_route_speedup_{pool}{suffix}"] = (float(best[same]) if best is not None
                                                                  and same in best else None)
    quantized = fastest(pools["quantized"], batch)
    metrics["best_quantized_accuracy_drop_pp"] = (float(100 * (acc0 - quantized["accuracy"]))
                                                  if quantized is not None else None)
    metrics.update({"n_rows": int(len(frame)), "n_refused": int((frame["status"] == "refused").sum()),
                    "n_failed": int((frame["status"] == "failed").sum())})
    return metrics


# ----------------------------------------------------------------------------------------------------
# seed 002's taxonomy and the per-family conclusions



def _ratio(row, col):
    value = row.get(col)
    return float(value) if value is not None and not pd.isna(value) else math.nan


def family_rows(frame: pd.DataFrame, catalogue: dict[str, str]) -> dict[str, pd.Series]:
    """The row that measures each family here: {family: row}. `catalogue`: {family: row name}; quantization
    picks the fastest int8 row of the teacher."""
    ok = frame[frame["status"] == "ok"]
    picked = {}
    for family, name in catalogue.items():
        if family == "quantization":
            rows = ok[(ok["name"] == name) & ok["precision"].str.startswith("int8")]
            if len(rows):
                picked[family] = rows.loc[rows["latency_bs1_ms_median"].idxmin()]
            continue
        rows = ok[(ok["name"] == name) & (ok["runtime"] == "torch") & (ok["precision"] == "fp32")]
        if len(rows):
            picked[family] = rows.iloc[0]
    return picked


def taxonomy_table(frame: pd.DataFrame, catalogue: dict[str, str], general_distill_gain_pp: float | None) -> pd.DataFrame:
    """Seed 002's six families, each with its quoted figures and the row of ours that measures it:
    params and size relative to the teacher, speed-ups at batch 1 and 32, % of teacher accuracy."""
    teacher = teacher_row(frame)
    picked = family_rows(frame, catalogue)
    rows = []
    for family, quote in papers.SEED002_QUOTES.items():
        row = {"family": family, "seed002_quote": quote, "our_row": None}
        if family in picked:
            r = picked[family]
            row.update(our_row=f"{r['name']} ({r['runtime']}/{r['precision']})",
                       params_vs_teacher=_ratio(r, "params") / teacher["params"],
                       nonzero_vs_teacher=_ratio(r, "params_nonzero") / teacher["params_nonzero"],
                       size_vs_teacher=_ratio(r, "size_mb") / teacher["size_mb"],
                       speedup_bs1=_ratio(r, "speedup_vs_torch_fp32_teacher_bs1"),
                       speedup_bs32=_ratio(r, "speedup_vs_torch_fp32_teacher_bs32"),
                       pct_of_teacher=_ratio(r, "pct_of_teacher"))
        if family == "pre-training versus downstream" and general_distill_gain_pp is not None:
            row.update(our_row="03_grid: general distillation before task KD vs task KD alone",
                       accuracy_gain_pp=general_distill_gain_pp)
        rows.append(row)
    return pd.DataFrame(rows)


def conclusions(taxonomy: pd.DataFrame, frame: pd.DataFrame) -> pd.DataFrame:
    """One sentence per family, generated from the taxonomy's numbers (nothing typed in)."""
    out = []
    for _, r in taxonomy.iterrows():
        family = r["family"]
        if family == "pre-training versus downstream":
            gain = r.get("accuracy_gain_pp")
            text = ("not measured" if gain is None or pd.isna(gain) else
                    f"General distillation before task KD changed the half-depth student's test accuracy by "
                    f"{gain:+.1f} points against task KD alone (03_grid, one seed).")
        elif r["our_row"] is None:
            text = "not measured in this run (its rows were refused or failed; see table6.csv)."
        else:
            text = (f"{r['our_row']}: {r['params_vs_teacher']:.0%} of the teacher's parameters "
                    f"({r['nonzero_vs_teacher']:.0%} of its nonzero ones), {r['size_vs_teacher']:.0%} of its size "
                    f"on disk, {r['speedup_bs1']:.2f}x / {r['speedup_bs32']:.2f}x its PyTorch fp32 speed at batch "
                    f"1 / 32, {r['pct_of_teacher']:.1f}% of its accuracy.")
            if family == "pruning":
                sparse = frame[frame["method"].fillna("").str.startswith("unstructured")
                               & (frame["status"] == "ok")]
                for _, s in sparse.iterrows():
                    text += (f" Unstructured sparsity ({s['name']}) leaves {s['params_nonzero'] / s['params']:.0%} "
                             f"of the weights nonzero but runs at {s['speedup_vs_torch_fp32_teacher_bs1']:.2f}x / "
                             f"{s['speedup_vs_torch_fp32_teacher_bs32']:.2f}x and is {s['size_mb']:.1f} MB on disk: "
                             "dense kernels multiply the zeros too.")
        out.append({"family": family, "conclusion": text})
    return pd.DataFrame(out)


