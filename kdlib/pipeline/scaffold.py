"""`kdstudy init`: a profile for a user's own labelled texts, written from the quick profile.

    kdstudy init --data reviews.csv --text-column review --label-column rating [--teacher DIR] [--name NAME]

The data is read (and refused in one line if it is bad) before anything is written. The profile keeps the
quick profile's training settings and sets what depends on the data and the teacher:
- `data`: the file (relative to params/), its columns, and `max_length` from the measured token lengths (the
  95th percentile rounded up to a multiple of 16, at least 32, at most 512), with the share it truncates;
- the students: half the teacher's depth for 02, and the grid of 03 scaled to the teacher (depth 1/6, 1/3 and
  1/2 of it; FFN 1/16, 1/4 and all of its width), as the quick profile scales seed 000's grid to MiniLM;
- `steps`: 00-04 and the report. 05 and 06 reproduce papers on their own datasets, so they are off.

A header comment holds the data's facts and an estimate of the run's time on this machine, scaled from the
quick profile's measured step times (reports/quick/07_report/manifest.json) by training tokens and teacher
size; an estimate, not a measurement.
"""
from __future__ import annotations

import math
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from kdlib.core import datafile, models
from kdlib.core.io import read_json, write_text
from kdlib.inference import machine
from kdlib.pipeline.config import ParamsError, load_params
from kdlib.pipeline.paths import project_root, reports_root

BASE_PROFILE = "quick"
OWN_STEPS = ["00_data_prep", "01_teacher", "02_distill", "03_grid", "04_compare", "07_report"]
TRAINING_STEPS = ("01_teacher", "02_distill", "03_grid", "04_compare")  # their time grows with tokens


def profile_name(path: Path) -> str:
    """A profile name from a file or folder name: letters, digits, '-' and '_'."""
    stem = path.name.split(".")[0] if path.is_file() else path.name
    return re.sub(r"[^A-Za-z0-9_-]+", "_", stem).strip("_") or "own"


def token_lengths(dsd, tokenizer) -> np.ndarray:
    """Every row's input length in tokens, [CLS] and [SEP] included (pairs as pairs)."""
    out = []
    for ds in dsd.values():
        pairs = list(ds["text_pair"]) if "text_pair" in ds.column_names else None
        out += [len(ids) for ids in tokenizer(list(ds["text"]), pairs)["input_ids"]]
    return np.asarray(out)


def choose_max_length(lengths: np.ndarray) -> int:
    return int(min(512, max(32, 16 * math.ceil(np.percentile(lengths, 95) / 16))))


def grid_students(layers: int, ffn: int) -> list[dict]:
    depths = sorted({max(1, layers // 6), max(1, layers // 3), max(1, layers // 2)})
    widths = sorted({max(1, ffn // 16), max(1, ffn // 4), ffn})
    return [{"layers": d, "ffn": w} for d in depths for w in widths]


def encoder_size(config: dict) -> int:
    """An encoder's weights in its layers and embeddings (what a training step's time grows with)."""
    h, f = config["hidden_size"], config["intermediate_size"]
    return config["num_hidden_layers"] * (4 * h * h + 2 * h * f) + config.get("vocab_size", 0) * h


def time_estimate(n_train: int, max_length: int, teacher_config: dict) -> tuple[float | None, str]:
    """(seconds, how it was estimated) from the quick profile's recorded step times; None without them."""
    # the quick profile's own run, else the one committed with the project
    roots = [reports_root() / BASE_PROFILE, project_root() / "reports" / BASE_PROFILE]
    root = next((r for r in roots if (r / "07_report" / "manifest.json").exists()), roots[0])
    manifest, data = root / "07_report" / "manifest.json", root / "00_data_prep" / "metrics.json"
    if not manifest.exists() or not data.exists():
        return None, "no estimate: the quick profile has no recorded run here (kdstudy run --params params/quick.yaml)"
    m, quick = read_json(manifest), read_json(data)
    quick_cfg = load_params(project_root() / "params" / f"{BASE_PROFILE}.yaml", check_models=False)
    seconds = {w["step"]: w["seconds"] for w in m["wall_times"] if w.get("seconds")}
    scale = ((n_train / quick["n_train"]) * (max_length / quick_cfg.data.max_length)
             * encoder_size(teacher_config) / encoder_size(models.model_config(quick_cfg.teacher.model)))
    total = sum(s * (scale if step in TRAINING_STEPS else 1.0) for step, s in seconds.items() if step in OWN_STEPS)
    cpu, here = m.get("cpu", {}), machine.describe()
    same = (cpu.get("model"), cpu.get("flags")) == (here["cpu"], here["flags"])
    return total, (f"the quick profile's step times on {cpu.get('model')} ({cpu.get('flags')}), scaled by training "
                   f"rows x max_length x teacher size ({scale:.2f}x)"
                   + ("" if same else f"; this machine is a {here['cpu']} ({here['flags']}): expect another time"))


def init_profile(data: str | Path, text_column: str, label_column: str, teacher: str = "minilm",
                 name: str | None = None, text_pair_column: str | None = None, encoding: str | None = None,
                 drop_empty: bool = False, train_size: int | None = None, params_dir: str | Path | None = None,
                 force: bool = False) -> tuple[Path, dict]:
    """Write <params_dir>/<name>.yaml (default: the project's params/) for the data; returns its path and the
    facts in its header."""
    params_dir = Path(params_dir or project_root() / "params")
    params_dir.mkdir(parents=True, exist_ok=True)
    data = Path(data).expanduser().resolve()
    dsd = datafile.read(data, text_column, label_column, text_pair_column, encoding, drop_empty)  # bad: DataFileError
    name = name or profile_name(data)
    out = params_dir / f"{name}.yaml"
    if out.exists() and not force:
        raise ParamsError(f"{out}: exists already (choose another --name, or --force to replace it)")
    teacher_dir = Path(teacher).expanduser()
    teacher = str(teacher_dir.resolve()) if teacher_dir.is_dir() else teacher
    problem = models.check_model_name(teacher, models.STUDENT_MODEL_TYPES)
    if problem:
        raise ParamsError(f"--teacher: {problem}")
    config = models.model_config(teacher)
    lengths = token_lengths(dsd, models.load_tokenizer(teacher))
    max_length = choose_max_length(lengths)
    labels = pd.Series([n for ds in dsd.values() for n in ds.features["label"].int2str(list(ds["label"]))])
    share = labels.value_counts(normalize=True)
    layers, ffn = config["num_hidden_layers"], config["intermediate_size"]
    if train_size is not None and not 0 < train_size <= len(dsd["train"]):
        raise ParamsError(f"--train-size: {train_size} is not between 1 and the {len(dsd['train']):,} training rows")
    seconds, how = time_estimate(train_size or len(dsd["train"]), max_length, config)
    facts = {
        "rows": {s: len(ds) for s, ds in dsd.items()},
        "classes": {k: round(float(v), 3) for k, v in share.items()},
        "tokens_p50_p95_max": [int(np.percentile(lengths, 50)), int(np.percentile(lengths, 95)), int(lengths.max())],
        "max_length": max_length, "truncated_share": float((lengths > max_length).mean()),
        "estimate_seconds": seconds, "estimate": how, "teacher": teacher, "train_size": train_size,
    }

    base = load_params(project_root() / "params" / f"{BASE_PROFILE}.yaml", check_models=False).to_dict()
    base["profile"] = name
    base["data"] = {"dataset": _relative(data, params_dir), "text_column": text_column, "label_column": label_column,
                    **({"text_pair_column": text_pair_column} if text_pair_column else {}),
                    **({"encoding": encoding} if encoding else {}), **({"drop_empty": True} if drop_empty else {}),
                    "max_length": max_length, "train_size": train_size, "validation_size": None, "test_size": None}
    base["teacher"]["model"] = _relative(Path(teacher), params_dir) if Path(teacher).is_dir() else teacher
    base["distill"]["student"]["num_layers"] = max(1, layers // 2)
    students = grid_students(layers, ffn)
    base["grid"]["students"] = students
    base["grid"]["general_distill"]["students"] = [s for s in students if s["ffn"] == ffn][::2][:2]
    base["verdicts"]["claims"] = [c for c in base["verdicts"]["claims"] if c != "edge_speedup"]
    base["steps"] = OWN_STEPS
    text = _header(name, data, facts) + yaml.safe_dump(base, sort_keys=False, width=120)
    write_text(out, text)
    load_params(out)  # the profile it wrote must load: the same checks as kdstudy check
    return out, facts


def _relative(path: Path, folder: Path) -> str:
    """`path` as the profile writes it: relative to the params folder (config reads it from there)."""
    return os.path.relpath(Path(path).resolve(), folder.resolve())


def _header(name: str, data: Path, facts: dict) -> str:
    rows = ", ".join(f"{s} {n:,}" for s, n in facts["rows"].items()) + (
        f" (train_size: {facts['train_size']:,} of them are used)" if facts["train_size"] else "")
    classes = ", ".join(f"{k} {v:.1%}" for k, v in facts["classes"].items())
    p50, p95, top = facts["tokens_p50_p95_max"]
    estimate = (f"about {facts['estimate_seconds'] / 60:.0f} minutes ({facts['estimate']})"
                if facts["estimate_seconds"] is not None else facts["estimate"])
    return "\n".join([
        f"# {name}: written by kdstudy init from the quick profile, for {data.name}.",
        f"# Rows: {rows}. Classes: {classes}.",
        f"# Tokens per text (teacher's tokenizer, [CLS]/[SEP] included): median {p50}, 95th percentile {p95}, "
        f"max {top}; max_length {facts['max_length']} truncates {facts['truncated_share']:.1%} of the texts.",
        f"# Time on this machine: {estimate}.",
        "# Steps 05 and 06 reproduce papers on their own datasets: off here (steps).",
        f"# Run: kdstudy run --params {name}.yaml (from this folder); the model to ship lands in reports/{name}/deploy/.",
        "", ""])
