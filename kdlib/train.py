"""The study's training steps: fine-tune the teacher, distil a student beside its no-KD twin.

Notebooks call `launch(...)`; it runs the step in this process, or, when the profile asks for several
processes (compute.nproc_per_node > 1), through torchrun, which runs this same file as a script:

    torchrun --nproc_per_node 2 -m kdlib.train teacher --params params/smoke.yaml
    torchrun --nproc_per_node 2 -m kdlib.train distill --params params/smoke.yaml

Every run writes its result (runs/<name>/result.json) only after it finished; a run whose result exists
for the same inputs is not repeated, so an interrupted step resumes where it stopped.
"""
from __future__ import annotations

import argparse
import copy
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from kdlib import config as config_mod
from kdlib import data, models
from kdlib.config import StudyParams
from kdlib.outputs import cache_root, read_json, step_dir, write_csv, write_json

TEACHER_STEP = "01_teacher"
DISTILL_STEP = "02_distill"


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


# ----------------------------------------------------------------------------------------------------
# data


def prepare_data(cfg: StudyParams):
    """The profile's dataset: loaded, then subset (stratified, seeded) to the profile's sizes."""
    dsd = data.load(cfg.data.dataset)
    sizes = {"train": cfg.data.train_size, "validation": cfg.data.validation_size, "test": cfg.data.test_size}
    return data.stratified_subset(dsd, sizes, seed=cfg.seed)


def tokenize(dsd, tokenizer, max_length: int):
    """Token ids (truncated to max_length, not padded: batches are padded to their longest row) and label."""

    def encode(batch):
        return tokenizer(batch["text"], truncation=True, max_length=max_length)

    keep = {"label"}
    return dsd.map(encode, batched=True,
                   remove_columns=[c for c in dsd["train"].column_names if c not in keep],
                   desc="tokenize")


def label_names(dsd) -> list[str]:
    return list(dsd["train"].features["label"].names)


# ----------------------------------------------------------------------------------------------------
# runs


# The modules whose code decides a run's numbers: a change to any of them re-trains.
NUMERIC_CODE = ("data.py", "models.py", "losses.py", "distill.py", "train.py")


def code_fingerprint() -> str:
    h = hashlib.sha256()
    for name in NUMERIC_CODE:
        h.update((Path(__file__).parent / name).read_bytes())
    return h.hexdigest()[:16]


def _key(*parts) -> str:
    """The identity of a run: its parameters and the code that computes it."""
    blob = json.dumps([code_fingerprint(), *parts], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _predictions_frame(logits, labels, names) -> pd.DataFrame:
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    frame = pd.DataFrame({"label": labels, "prediction": logits.argmax(axis=1)})
    for i, n in enumerate(names):
        frame[f"p_{n}"] = probs[:, i].round(6)
    return frame


def _run(name: str, out_dir: Path, key: str, train_fn, names, save_to: Path | None = None,
         tokenizer=None) -> dict:
    """Run `train_fn` unless runs/<name>/result.json already holds a result for `key`.

    With `save_to`, the trained model is saved there (safetensors) before the result is recorded, and a
    recorded result counts only while that model is still there.
    """
    run_dir = out_dir / "runs" / name
    result_path = run_dir / "result.json"
    if result_path.exists() and (save_to is None or (save_to / "config.json").exists()):
        done = read_json(result_path)
        if done.get("key") == key:
            done["reused"] = True
            return done
    out = train_fn(run_dir / "checkpoints")
    result = {k: v for k, v in out.items() if k not in ("test_logits", "test_labels", "trainer")}
    result.update(name=name, key=key, reused=False)
    if is_main_process():
        if save_to is not None:
            models.save_model(out["trainer"].model, tokenizer, save_to)
        write_csv(run_dir / "history.csv", pd.DataFrame(result["history"]))
        write_csv(run_dir / "test_predictions.csv", _predictions_frame(out["test_logits"], out["test_labels"], names))
        write_json(result_path, result)
        shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)  # complete: they only served resuming
    return result


def train_teacher(cfg: StudyParams, out_dir: Path | None = None) -> dict:
    """Fine-tune the teacher on the task; save it (safetensors) under <out_dir>/model."""
    from transformers import set_seed

    from kdlib.distill import fit

    out_dir = Path(out_dir or step_dir(cfg.profile, TEACHER_STEP))
    dsd = prepare_data(cfg)
    names = label_names(dsd)
    tokenizer = models.load_tokenizer(cfg.teacher.model)
    tok = tokenize(dsd, tokenizer, cfg.data.max_length)
    key = _key("teacher", cfg.seed, cfg.data, cfg.teacher, cfg.compute.bf16, cfg.compute.group_by_length)
    model_dir = out_dir / "model"

    def train(ckpt_dir):
        set_seed(cfg.seed)
        model = models.load_classifier(cfg.teacher.model, names)
        return fit(model, tokenizer, tok["train"], tok["validation"], tok["test"], ckpt_dir, cfg.teacher,
                   cfg.seed, bf16=cfg.compute.bf16, group_by_length=cfg.compute.group_by_length,
                   history_csv=ckpt_dir.parent / "history.csv")

    result = _run("teacher", out_dir, key, train, names, save_to=model_dir, tokenizer=tokenizer)
    if not is_main_process():  # rank 0 saves the model and writes the summary
        return {"result": result}
    summary = {
        "result": result,
        "params": models.count_parameters(_load_saved(model_dir)),
        "label_names": names,
        "model_dir": str(model_dir),
        "split_sizes": {k: len(v) for k, v in dsd.items()},
    }
    write_json(out_dir / "runs" / "summary.json", summary)
    return summary


def _load_saved(folder: Path):
    from transformers import AutoModelForSequenceClassification

    return AutoModelForSequenceClassification.from_pretrained(folder)


def distill_student(cfg: StudyParams, out_dir: Path | None = None, teacher_dir: Path | None = None) -> dict:
    """Distil one student from the fine-tuned teacher, beside its no-KD twin (and online KD if asked).

    All runs start from the same student weights (a copy of one `make_student`) and the same seed, so
    they differ only in the loss and in where the teacher logits come from.
    """
    from transformers import AutoTokenizer, set_seed

    from kdlib.distill import fit, teacher_logits, with_teacher_logits

    out_dir = Path(out_dir or step_dir(cfg.profile, DISTILL_STEP))
    teacher_dir = Path(teacher_dir or step_dir(cfg.profile, TEACHER_STEP) / "model")
    if not (teacher_dir / "config.json").exists():
        raise FileNotFoundError(f"no fine-tuned teacher in {teacher_dir}: run step {TEACHER_STEP} first")
    tokenizer = AutoTokenizer.from_pretrained(teacher_dir)
    teacher = _load_saved(teacher_dir)
    dsd = prepare_data(cfg)
    names = label_names(dsd)
    tok = tokenize(dsd, tokenizer, cfg.data.max_length)

    cache = teacher_logits(teacher, tok["train"], tokenizer, cache_root() / "teacher_outputs",
                           batch_size=cfg.distill.eval_batch_size)
    student = make_configured_student(teacher, cfg)
    d = cfg.distill
    base_key = (cfg.seed, cfg.data, cfg.student, d, cfg.compute.bf16, cfg.compute.group_by_length, cache.path.name)
    plans = {
        "kd_cached": dict(train_ds=with_teacher_logits(tok["train"], cache.logits), alpha=d.alpha),
        "nokd": dict(train_ds=tok["train"], alpha=1.0),
    }
    if cfg.compute.compare_online_kd:
        plans["kd_online"] = dict(train_ds=tok["train"], alpha=d.alpha, teacher=teacher)
    results = {}
    for name, plan in plans.items():
        def train(ckpt_dir, plan=plan):
            set_seed(cfg.seed)
            return fit(copy.deepcopy(student), tokenizer, plan["train_ds"], tok["validation"], tok["test"], ckpt_dir,
                       d, cfg.seed, teacher=plan.get("teacher"), alpha=plan["alpha"], temperature=d.temperature,
                       bf16=cfg.compute.bf16, group_by_length=cfg.compute.group_by_length,
                       history_csv=ckpt_dir.parent / "history.csv")

        # The cached-KD student is the one the study keeps (and benchmarks).
        save_to = out_dir / "student_model" if name == "kd_cached" else None
        results[name] = _run(name, out_dir, _key(name, *base_key), train, names, save_to, tokenizer)
    summary = {
        "runs": results,
        "cache": {"file": cache.path.name, "hit": cache.hit, "seconds": cache.seconds, "rows": len(cache.logits)},
        "student_params": models.count_parameters(student),
        "teacher_params": models.count_parameters(teacher),
        "student_layers": list(student.config.kd_teacher_layers),
        "label_names": names,
    }
    if is_main_process():
        write_json(out_dir / "runs" / "summary.json", summary)
    return summary


def make_configured_student(teacher, cfg: StudyParams):
    s = cfg.student
    return models.make_student(teacher, s.num_layers, s.intermediate_size, init=s.init, seed=cfg.seed)


# ----------------------------------------------------------------------------------------------------
# launching


STEPS = {"teacher": (train_teacher, TEACHER_STEP), "distill": (distill_student, DISTILL_STEP)}


def launch(step: str, cfg: StudyParams) -> dict:
    """Run a training step here, or under torchrun when the profile asks for several processes."""
    fn, folder = STEPS[step]
    if cfg.compute.nproc_per_node <= 1:
        return fn(cfg)
    out_dir = step_dir(cfg.profile, folder)
    params_json = write_json(out_dir / "runs" / "params.json", {**cfg.to_dict(), "_source": cfg.source})
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc_per_node={cfg.compute.nproc_per_node}", "-m", "kdlib.train", step, "--params", str(params_json)]
    subprocess.run(cmd, check=True)
    return read_json(out_dir / "runs" / "summary.json")


def _load_any(path: str) -> StudyParams:
    if path.endswith(".json"):
        raw = read_json(path)
        source = raw.pop("_source", path)
        return config_mod.from_dict(raw, source=source)
    return config_mod.load_params(path)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kdlib.train", description=__doc__.splitlines()[0])
    parser.add_argument("step", choices=sorted(STEPS))
    parser.add_argument("--params", required=True, help="a params/*.yaml file (or the JSON that launch writes)")
    args = parser.parse_args(argv)
    try:
        cfg = _load_any(args.params)
    except config_mod.ParamsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    STEPS[args.step][0](cfg)
    return 0


if __name__ == "__main__":
    sys.exit(main())
