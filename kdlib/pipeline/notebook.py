"""What a step's notebook needs from the pipeline, in one import: `start` (its step, its parameters and
its folder) and the atomic writers it saves tables, figures and metrics with. A notebook then imports this
and its own study module, and nothing else of kdlib's plumbing."""
from __future__ import annotations

from pathlib import Path

# Re-exported for the notebooks: the writers live in kdlib.core.io, the folders in kdlib.pipeline.paths.
from kdlib.core.io import read_json, save_figure, write_csv, write_json, write_metrics, write_text  # noqa: F401
from kdlib.pipeline import steps
from kdlib.pipeline.config import StudyParams, load_params
from kdlib.pipeline.paths import cache_root, reports_root, step_dir  # noqa: F401


def start(stem: str, params_file: str | Path, check_models: bool = True) -> tuple[steps.Step, StudyParams, Path]:
    """The step `stem`, the validated parameters of `params_file` (`check_models=False`: without looking its
    models up, for a step that loads none), and the step's output folder (created), with one line saying
    where the step writes."""
    step = steps.get(stem)
    cfg = load_params(params_file, check_models=check_models)
    out = step_dir(cfg.profile, step.stem)
    print(f"profile {cfg.profile}: writing to {out}")
    return step, cfg, out
