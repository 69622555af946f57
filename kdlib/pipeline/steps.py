"""The study's steps, each declared once: its notebook, the steps it reads from, the parameter sections
it reads, the metrics it promises and the files it must leave behind.

The runner (order, staleness, completeness), the training code (where a step's outputs live), the
tests (what each notebook promises) and the report read this table. To add a step: write
notebooks/NN_name.py and add a `Step` here (see docs/extending.md).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Step:
    stem: str                       # e.g. "01_teacher": notebooks/<stem>.py, reports/<profile>/<stem>/
    title: str
    needs: tuple[str, ...] = ()     # steps whose outputs this one reads
    sections: tuple[str, ...] = ()  # parameter sections (besides profile and seed) that decide its results
    metrics: tuple[str, ...] = ()   # keys its metrics.json must hold
    outputs: tuple[str, ...] = ()   # files (relative to its folder) that must exist for it to be complete

    @property
    def number(self) -> str:
        return self.stem.split("_", 1)[0]

    def notebook(self, root: Path) -> Path:
        return root / "notebooks" / f"{self.stem}.py"


def _figure(name: str) -> tuple[str, str]:
    return (f"figures/{name}.png", f"figures/{name}.pdf")


STEPS: tuple[Step, ...] = (
    Step(
        "00_data_prep", "Data preparation",
        sections=("data", "teacher"),  # the teacher's tokenizer measures the text lengths
        metrics=("n_train", "n_validation", "n_test", "n_classes", "majority_share_test", "truncated_share",
                 "duplicate_rows", "texts_shared_between_splits"),
        outputs=("tables/class_balance.csv", "tables/length_stats.csv", "tables/overlaps.csv",
                 *_figure("class_balance"), *_figure("token_lengths")),
    ),
    Step(
        "01_teacher", "The teacher",
        needs=("00_data_prep",),
        sections=("data", "teacher", "compute"),
        metrics=("teacher_test_accuracy", "teacher_test_macro_f1", "teacher_params"),
        outputs=("tables/history.csv", "tables/confusion_test.csv", *_figure("history"),
                 *_figure("confusion_test"), "model/model.safetensors", "model/config.json",
                 "runs/summary.json", "runs/teacher/result.json"),
    ),
    Step(
        "02_distill", "Distilling one student",
        needs=("01_teacher",),
        sections=("data", "distill", "benchmark", "compute"),
        metrics=("student_test_accuracy", "nokd_test_accuracy", "student_params", "cached_kd_train_seconds",
                 "online_kd_train_seconds", "nokd_train_seconds", "cache_build_seconds", "cache_built_now"),
        outputs=("tables/runs.csv", "tables/history.csv", "tables/benchmark.csv", *_figure("test_accuracy"),
                 *_figure("history"), *_figure("latency"), "student_model/model.safetensors",
                 "runs/summary.json", "runs/kd_cached/result.json", "runs/nokd/result.json"),
    ),
    Step(
        "03_grid", "Seed 000's grid of students",
        needs=("01_teacher", "02_distill"),  # the teacher; the teacher-output cache (and maybe a student) of 02
        sections=("data", "grid", "benchmark", "compute"),
        metrics=("best_half_depth_retention", "speedup_over_flop_ratio_bs1", "speedup_over_flop_ratio_bs32",
                 "grid_cached_over_online_cost", "general_distill_gain_pp", "layer_vs_ffn_time_ratio"),
        outputs=("tables/table3.csv", "tables/table4.csv", "tables/table4_paper_architecture.csv",
                 "tables/timing_finding.csv", "tables/history.csv", "tables/profile.csv", "tables/benchmark.csv",
                 *_figure("history"), *_figure("heatmap_accuracy"), *_figure("heatmap_latency"),
                 *_figure("heatmap_retention_per_time"), *_figure("time_vs_shape"), "runs/summary.json"),
    ),
    Step(
        "04_compare", "Every compression family side by side",
        needs=("01_teacher", "02_distill", "03_grid"),  # the teacher and its cache; 02's twin; 03's best students
        sections=("data", "grid", "compare", "benchmark", "compute"),
        metrics=("best_quantized_speedup", "best_quantized_accuracy_drop_pp", "best_speedup_within_1pp",
                 "best_route_within_1pp", "best_speedup_within_3pct", "ship_model", "ship_route"),
        outputs=("tables/table6.csv", "tables/measurements.csv", "tables/recommendation.csv", "../deploy/manifest.json", "tables/kd_position.csv", "tables/taxonomy.csv",
                 "tables/conclusions.csv", "tables/head_importance.csv", *_figure("pareto"), *_figure("families"),
                 *_figure("head_importance")),
    ),
    Step(
        "05_hetero_kd", "Seed 003's heterogeneous KD",
        sections=("hetero",),  # reads no other step: its own data, encoder, teachers and students
        metrics=("n_seeds", "acc_A_mean", "acc_B_mean", "acc_C_mean", "acc_A_std", "acc_B_std", "acc_C_std",
                 "p_A_vs_B", "p_B_vs_C"),
        outputs=("tables/token_lengths.csv", "tables/encode_routes.csv", "tables/table3.csv",
                 "tables/alpha_T_search.csv", "tables/table4.csv", "tables/table4_tests.csv",
                 "tables/table4_per_seed.csv", "tables/table5.csv", "tables/table6.csv", "tables/curves.csv",
                 "tables/epochs_to_target.csv", "tables/epoch_choice.csv", "tables/transformer.csv", "verdict.md",
                 *_figure("alpha_T_search"), *_figure("table4"), *_figure("per_epoch"),
                 *_figure("epochs_to_target"), "runs/dense/result.json"),
    ),
    Step(
        "06_edge_benchmark", "Seed 004: SQuAD on a Raspberry-Pi-5 budget",
        sections=("edge",),  # its own QA teacher (from MiniLM), students and benchmark
        metrics=("teacher_em", "teacher_f1", "student_em", "student_f1", "student_speedup",
                 "quantized_student_speedup"),
        outputs=("tables/table2.csv", "tables/scores.csv", "tables/variants.csv", "tables/paired_speedups.csv",
                 "tables/evaluation_gap.csv", "tables/history.csv", "device/questions.json", *_figure("scores"), *_figure("variants"),
                 *_figure("softmax_temperature"), *_figure("triple_loss"), *_figure("history")),
    ),
    # The report reads every step before it, so it is stale whenever one of them re-ran. A step that has not
    # run does not stop it (the runner never refuses a step whose needs are missing): the report says "not run".
    Step(
        "07_report", "The report (PDF and HTML)",
        needs=("00_data_prep", "01_teacher", "02_distill", "03_grid", "04_compare", "05_hetero_kd",
               "06_edge_benchmark"),
        sections=("data", "teacher", "distill", "grid", "compare", "hetero", "edge", "benchmark", "compute"),
        metrics=("n_pages", "sections_not_run", "findings_with_verdict"),
        outputs=("report.typ", "manifest.json", *_figure("student_init"), "../report.pdf", "../report.html"),
    ),
)

BY_STEM = {s.stem: s for s in STEPS}


def get(name: str) -> Step:
    """A step by stem ("01_teacher") or number ("01"); a clear error otherwise."""
    for s in STEPS:
        if name in (s.stem, s.number):
            return s
    raise ValueError(f"no step {name!r}; steps are {', '.join(s.stem for s in STEPS)}")


def upstream(step: Step) -> list[Step]:
    """Every step that `step` depends on, directly or not, in study order."""
    wanted, todo = set(), list(step.needs)
    while todo:
        name = todo.pop()
        if name not in wanted:
            wanted.add(name)
            todo.extend(BY_STEM[name].needs)
    return [s for s in STEPS if s.stem in wanted]
