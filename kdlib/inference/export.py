"""`kdstudy export`: one model on one inference route as a deployable folder, and `load_artifact` to use it.

    kdstudy export --model DIR --runtime onnx|openvino --precision fp32|int8|int8_static|bf16 --out DIR [--params F]

An artifact folder holds:
- the route's model file(s): `model.onnx` (ONNX Runtime) or `model.xml` + `model.bin` (OpenVINO), built by
  `kdlib.inference.runtimes.prepare` exactly as the benchmark built them (the same export, fusion and quantisation);
- the tokenizer (`tokenizer.json` and its config);
- `manifest.json`: the route, the source model, the files and their sizes, the CPU (model and flags) it was
  built on, the label names, the maximum length, and the accuracy measured *through the artifact* on the
  study's test split of the parameter file's dataset (`--params`), or null and the reason when no
  parameter file was given.

The precisions are the route registry's, as 04's tables name them: on ONNX Runtime int8 is its dynamic
quantisation (no calibration needed) and int8_static its static one; OpenVINO's int8_static (or `int8`) is
NNCF's static one. A static route is calibrated on the parameter file's training split (so it needs `--params`).

`load_artifact(folder)` returns a `Predictor` (texts -> label names or logits) that needs only numpy, the
`tokenizers` library and the runtime: no torch, no transformers.
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from kdlib.core.io import write_json
from kdlib.core.metrics import classification_metrics
from kdlib.core.task import task_data
from kdlib.inference import machine
from kdlib.inference import runtimes as rt
from kdlib.inference.artifact import MANIFEST, Predictor, load_artifact

# The command's runtime names -> the route registry's.
RUNTIMES = {"onnx": "onnxruntime", "openvino": "openvino"}
# (runtime, the command's precision) -> the registry's precision: every route of the registry under its own
# name (what 04's tables print), and `int8` on OpenVINO for its only int8, the static one.
PRECISIONS = {**{(runtime, p): p for runtime in RUNTIMES.values() for p in rt.ROUTES[runtime]},
              ("openvino", "int8"): "int8_static"}
DEFAULT_MAX_LENGTH = 128  # without --params; the study's profiles set data.max_length
# Canonical names of the route's files inside the artifact.
MODEL_FILES = {".onnx": "model.onnx", ".xml": "model.xml", ".bin": "model.bin"}


def route_of(runtime: str, precision: str) -> tuple[str, str]:
    """The registry route for the command's --runtime and --precision; ValueError for unknown names."""
    if runtime not in RUNTIMES:
        raise ValueError(f"unknown runtime {runtime!r} (choose from: {', '.join(RUNTIMES)})")
    key = (RUNTIMES[runtime], precision)
    if key not in PRECISIONS:
        choices = sorted(p for r, p in PRECISIONS if r == key[0])
        raise ValueError(f"unknown precision {precision!r} for {runtime} (choose from: {', '.join(choices)})")
    return key[0], PRECISIONS[key]


def export(model_dir: str | Path, runtime: str, precision: str, out: str | Path, cfg=None,
           threads: int | None = None) -> dict[str, Any]:
    """Write the artifact folder `out` for the classifier in `model_dir`; returns its manifest. `cfg`, the
    study's parameters (loaded by the caller from --params), gives the data to calibrate and score on."""
    route = route_of(runtime, precision)
    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise ValueError(f"model folder {model_dir} not found (no config.json there)")
    reason = rt.refusal(*route)
    if reason:
        raise ValueError(f"cannot export to {route[0]}/{route[1]}: {reason}")
    if rt.needs_calibration(*route) and cfg is None:
        raise ValueError(f"{runtime} {precision} is calibrated on real text: pass --params (its training split)")

    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    max_length = cfg.data.max_length if cfg is not None else DEFAULT_MAX_LENGTH
    splits = _task_splits(cfg, tokenizer) if cfg is not None else None
    calibration = None
    if rt.needs_calibration(*route):
        calibration = calibration_batches(splits["tokenised"]["train"], tokenizer, cfg.compare.calibration_size,
                                          max_length)

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="kd-export-") as work:
        runner = rt.prepare(model, *route, workdir=work, threads=threads, calibration=calibration)
        files = [shutil.copyfile(p, out / MODEL_FILES[p.suffix]) for p in runner.files]
    tokenizer.save_pretrained(out)
    labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
    manifest = {
        "route": {"runtime": route[0], "precision": route[1], "runtime_version": runner.version},
        "source_model": str(model_dir.resolve()),
        "files": {Path(p).name: round(Path(p).stat().st_size / 1e6, 3) for p in files},
        "size_mb": round(sum(Path(p).stat().st_size for p in files) / 1e6, 3),
        "built_on": machine.describe(),
        "int8_format": rt.int8_format() if route[1].startswith("int8") else None,
        "labels": labels,
        "max_length": max_length,
        "input_names": list(runner.input_names),
        "output_names": list(runner.output_names),
        "pad_token": tokenizer.pad_token,
        "pad_token_id": tokenizer.pad_token_id,
        "calibration_examples": len(calibration) if calibration else None,
        "accuracy": None,
        "accuracy_note": "not measured: no --params given",
    }
    _write_manifest(out, manifest)
    if splits is not None:  # measured through the artifact as a user loads it
        manifest.update(accuracy=_accuracy(load_artifact(out), splits, labels, cfg),
                        accuracy_note=f"test split of {cfg.data.dataset} as profile {cfg.profile} defines it")
        _write_manifest(out, manifest)
    return manifest


def _write_manifest(out: Path, manifest: dict) -> None:
    write_json(out / MANIFEST, manifest)


def _task_splits(cfg, tokenizer) -> dict[str, Any]:
    dsd, names, tokenised = task_data(cfg, tokenizer)
    return {"raw": dsd, "names": names, "tokenised": tokenised}


def calibration_batches(tokenised, tokenizer, size: int, max_length: int) -> list[dict[str, Any]]:
    """The first `size` rows of a tokenised split as int64 batches of one, padded to max_length."""

    rows = tokenised.select(range(min(size, len(tokenised))))
    names = [k for k in rt.INPUT_NAMES if k in rows.column_names]
    padded = tokenizer.pad([{k: row[k] for k in names} for row in rows], padding="max_length",
                           max_length=max_length, return_tensors="np")
    return [{k: np.asarray(padded[k][i:i + 1], dtype=np.int64) for k in names} for i in range(len(rows))]


def _accuracy(predictor: "Predictor", splits, labels: list[str], cfg) -> dict[str, Any]:
    if list(splits["names"]) != labels:
        raise ValueError(f"the model's labels {labels} are not the dataset's {list(splits['names'])}")
    test = splits["raw"]["test"]
    pairs = list(test["text_pair"]) if "text_pair" in test.column_names else None
    predicted = predictor.logits(list(test["text"]), pairs=pairs).argmax(axis=-1)
    return {**classification_metrics(predicted, list(test["label"])), "n": len(test), "split": "test",
            "dataset": cfg.data.dataset}


# --------------------------------------------------------------------------
# Using an artifact (numpy, tokenizers and the runtime only)
# --------------------------------------------------------------------------




