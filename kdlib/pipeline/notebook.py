"""What a step's notebook needs from the pipeline, in one import: `start` (its step, its parameters and
its folder) and the atomic writers it saves tables, figures and metrics with. A notebook then imports this
and its own study module, and nothing else of kdlib's plumbing."""
from __future__ import annotations

import os
from pathlib import Path

import tqdm.auto

# Re-exported for the notebooks: the writers live in kdlib.core.io, the folders in kdlib.pipeline.paths.
from kdlib.core.io import read_json, save_figure, write_csv, write_json, write_metrics, write_text  # noqa: F401
from kdlib.pipeline import sandbox, steps
from kdlib.pipeline.config import StudyParams, load_params
from kdlib.pipeline.paths import cache_root, reports_root, step_dir  # noqa: F401

QUIET_RUN = "KDSTUDY_QUIET_RUN"  # set by kdstudy run in its kernels' environment (runner.QUIET_KERNEL)


def start(stem: str, params_file: str | Path, check_models: bool = True, overrides: dict | None = None,
          experiment: str | None = None) -> tuple[steps.Step, StudyParams, Path]:
    """The step `stem`, the validated parameters of `params_file` (`check_models=False`: without looking its
    models up, for a step that loads none), and the step's output folder (created), with one line saying
    where the step writes. With `overrides` (merged into the profile, validated like the file) or an
    `experiment` name, the step runs in the sandbox: it writes under reports/sandbox/<experiment>/ and never
    into the profile's own folders (kdlib.pipeline.sandbox)."""
    step = steps.get(stem)
    if os.environ.get(QUIET_RUN):
        _quiet_kernel()
    if overrides or experiment:
        cfg = sandbox.profile(stem, params_file, overrides, experiment, check_models)
    else:
        cfg = load_params(params_file, check_models=check_models)
    out = step_dir(cfg.profile, step.stem)
    print(f"profile {cfg.profile}: writing to {out}")
    if warning := cfg.random_warning():
        print("WARNING: " + warning)
    return step, cfg, out


def _quiet_kernel() -> None:
    """A notebook run by `kdstudy run` gets no progress bars, progress tables or training log lines in its
    outputs; the runner's own log shows the step's progress, and opened in JupyterLab the same notebook keeps
    them all. The environment (runner.QUIET_KERNEL) turns off the bars that read it; two kinds do not:
    kdlib's own bars, which name themselves (`disable=desc is None`) and so override the environment, and
    transformers.Trainer's progress callback, picked from a module default (an HTML table in a notebook).
    Both are replaced here, before the study modules import them. transformers.trainer takes seconds to
    import, so only these kernels import it here (a notebook that trains imports it anyway)."""
    import transformers.trainer
    from transformers import TrainerCallback

    class SilentBar(tqdm.auto.tqdm):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **{**kwargs, "disable": True})

    tqdm.auto.tqdm = SilentBar
    transformers.trainer.DEFAULT_PROGRESS_CALLBACK = TrainerCallback
