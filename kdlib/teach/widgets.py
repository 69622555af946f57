"""Sliders for trying settings by hand in JupyterLab: T and alpha on 05's dense students (seconds a point)."""
from __future__ import annotations

import time

import ipywidgets as widgets
import pandas as pd
from IPython.display import display

from kdlib.studies.hetero import dense


def student_point(hp, splits, teacher_logits: dict, seed: int, kind: str, temperature: float, alpha: float) -> dict:
    """One dense student trained with (T, alpha), early-stopped on validation: its validation accuracy (the
    number to choose by) and the seconds it took."""
    started = time.perf_counter()
    run = dense.train_student(hp, splits, kind, seed, teacher_logits, alpha=alpha, temperature=temperature,
                              test=False)
    return {"student": kind, "T": temperature, "alpha": alpha, "val_accuracy": run.best["val_accuracy"],
            "best_epoch": run.best_epoch, "seconds": round(time.perf_counter() - started, 1)}


def temperature_alpha(hp, splits, teacher_logits: dict, seed: int):
    """Sliders for T (log scale) and alpha and a button: each click trains student A or B with those settings
    and adds a row to the table below it, so points can be compared."""
    temperature = widgets.FloatLogSlider(value=2.0, base=10, min=0, max=1.3, step=0.05, description="T")
    alpha = widgets.FloatSlider(value=0.5, min=0.0, max=1.0, step=0.05, description="alpha")
    kind = widgets.ToggleButtons(options=["A", "B"], description="student")
    button = widgets.Button(description="train", button_style="primary")
    output, rows = widgets.Output(), []

    def train(_):
        rows.append(student_point(hp, splits, teacher_logits, seed, kind.value, round(temperature.value, 2),
                                  alpha.value))
        with output:
            output.clear_output(wait=True)
            display(pd.DataFrame(rows))

    button.on_click(train)
    return widgets.VBox([widgets.HBox([temperature, alpha]), widgets.HBox([kind, button]), output])
