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
        metrics=("n_train", "n_validation", "n_test", "n_classes", "majority_share_test", "truncated_share"),
        outputs=("tables/class_balance.csv", "tables/length_stats.csv",
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
