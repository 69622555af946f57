"""The study's training steps: fine-tune the teacher, distil a student beside its no-KD twin.

Notebooks call `launch(...)`; it runs the step in this process, or, when the profile asks for several
processes (compute.nproc_per_node > 1), through torchrun, which runs this same file as a script:

    torchrun --nproc_per_node 2 -m kdlib.studies.train teacher --params params/smoke.yaml
    torchrun --nproc_per_node 2 -m kdlib.studies.train distill --params params/smoke.yaml

Every training run is a memoised unit (kdlib/pipeline/memo.py): runs/<name>/result.json is written only after
the run finished and its model was saved, and a run whose key (parameters, inputs and the code that
computes it) matches a recorded one is not repeated, so an interrupted step resumes where it stopped.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from transformers import AutoModelForSequenceClassification, AutoTokenizer, set_seed

from kdlib.core import models, task
from kdlib.core.distill import fit, teacher_logits, with_teacher_logits
from kdlib.core.fingerprint import model_fingerprint, weights_fingerprint
from kdlib.core.io import read_json, write_csv, write_json
from kdlib.pipeline import config as config_mod
from kdlib.pipeline import memo
from kdlib.pipeline.config import StudyParams, TrainParams, to_plain
from kdlib.pipeline.paths import cache_root, step_dir
from kdlib.pipeline.workers import JOB_THREADS, map_jobs, torch_threads

TEACHER_STEP = "01_teacher"
DISTILL_STEP = "02_distill"
# The modules whose code decides a training run's numbers: a real change to any of them re-trains
# (comments and docstrings do not count; see memo.code_fingerprint). This module only orchestrates: what
# it decides (sizes, hyperparameters, which loss) is in each run's parameters, which are in its key.
TRAINING_CODE = ("core.data", "core.models", "core.losses", "core.adaptors", "core.heads", "core.distill")


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


# ----------------------------------------------------------------------------------------------------
# runs


def _predictions_frame(logits, labels, names) -> pd.DataFrame:
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    frame = pd.DataFrame({"label": labels, "prediction": logits.argmax(axis=1)})
    for i, n in enumerate(names):
        frame[f"p_{n}"] = probs[:, i].round(6)
    return frame




def adopt_run(run_dir: Path, key: str, same_as: Path | None, model_dir: Path | None = None) -> None:
    """Copy the unit of `key` that another step recorded in `same_as` (its runs/<name>, and the model it saved
    at the same place relative to its folder) rather than train it again: a verdict's seed that is the
    profile's own seed asks for runs the profile's steps hold under the same keys. Nothing without that key."""
    if same_as is None or not memo.adopt(run_dir, key, [Path(same_as) / "runs" / run_dir.name]):
        return
    if model_dir is not None:
        shutil.copytree(Path(same_as) / model_dir.relative_to(run_dir.parents[1]), model_dir, dirs_exist_ok=True)


def run_training(name: str, out_dir: Path, key: str, train_fn, names, params: dict, save_to: Path | None = None,
                 tokenizer=None, same_as: Path | None = None) -> dict:
    """One training run as a memoised unit in <out_dir>/runs/<name>/.

    With `save_to`, the trained model is saved there (safetensors) before the result is recorded, and a
    recorded result counts only while that model is still there. `same_as`: another step's folder that may
    hold the same run (adopt_run).
    """
    run_dir = out_dir / "runs" / name
    adopt_run(run_dir, key, same_as, save_to)
    if save_to is not None and not (save_to / "config.json").exists():
        (run_dir / "result.json").unlink(missing_ok=True)  # its model is gone: the run must be redone

    def build(folder: Path) -> dict:
        out = train_fn(folder / "checkpoints")
        result = {k: v for k, v in out.items() if k not in ("test_logits", "test_labels", "test_outputs", "trainer")}
        result["name"] = name
        if is_main_process():
            if save_to is not None:
                models.save_model(out["trainer"].model, tokenizer, save_to)
            write_csv(folder / "history.csv", pd.DataFrame(result["history"]))
            write_csv(folder / "test_predictions.csv", _predictions_frame(out["test_logits"], out["test_labels"], names))
        return result

    result = memo.run_unit(run_dir, key, build, params=params, files=("history.csv", "test_predictions.csv"),
                           record=is_main_process())
    if is_main_process():
        shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)  # complete: they only served resuming
    return result


def train_teacher(cfg: StudyParams, out_dir: Path | None = None) -> dict:
    """Fine-tune the teacher on the task; save it (safetensors) under <out_dir>/model."""


    out_dir = Path(out_dir or step_dir(cfg.profile, TEACHER_STEP))
    tokenizer = models.load_tokenizer(cfg.teacher.model)
    dsd, names, tok = task.task_data(cfg, tokenizer)
    params = memo_params({"seed": cfg.seed, "data": cfg.data, "teacher": cfg.teacher, "bf16": cfg.compute.bf16,
                          "group_by_length": cfg.compute.group_by_length,
                          "source": source_fingerprint(cfg.teacher.model)})
    key = memo.unit_key("teacher", TRAINING_CODE, params)
    model_dir = out_dir / "model"

    def train(ckpt_dir):
        set_seed(cfg.seed)
        model = models.load_classifier(cfg.teacher.model, names)
        return fit(model, tokenizer, tok["train"], tok["validation"], tok["test"], ckpt_dir, cfg.teacher,
                   cfg.seed, bf16=cfg.compute.bf16, group_by_length=cfg.compute.group_by_length,
                   history_csv=ckpt_dir.parent / "history.csv", run_name="teacher")

    result = run_training("teacher", out_dir, key, train, names, params, save_to=model_dir, tokenizer=tokenizer)
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


def source_fingerprint(name: str) -> str:
    """What a pretrained model is, by content where it is on disk: a local folder (or an alias's, such as
    `minilm`) by its files, so a retrained model saved at the same path is not reused stale; a hub id by
    its name."""
    folder = Path(models.resolve_model(name))
    return weights_fingerprint(folder)[:16] if folder.is_dir() else name


def memo_params(params: dict) -> dict:
    """Resolved parameters as plain JSON values (dataclasses to dicts), for a unit's result.json."""

    return {k: to_plain(v) if dataclasses.is_dataclass(v) else v for k, v in params.items()}


def _load_saved(folder: Path):
    return AutoModelForSequenceClassification.from_pretrained(folder)


def load_teacher(cfg: StudyParams):
    """The fine-tuned teacher of step 01 and its tokenizer; a clear error when 01 has not run."""

    teacher_dir = step_dir(cfg.profile, TEACHER_STEP, create=False) / "model"
    if not (teacher_dir / "config.json").exists():
        raise FileNotFoundError(f"no fine-tuned teacher in {teacher_dir}: run step {TEACHER_STEP} first")
    return _load_saved(teacher_dir), AutoTokenizer.from_pretrained(teacher_dir)


_INPUTS: dict = {}


def kd_inputs(cfg: StudyParams, batch_size: int, reload: bool = False) -> dict:
    """What the students of steps 02 and 03 train from: the fine-tuned teacher, its tokenizer, the label
    names, the task's tokenized splits and the teacher's logits on the training split (the cache file, built
    by the first process that asks). Loaded once per process, so a worker's jobs share them; `reload`: read
    them again (a step's own call, whose summary says whether it built the cache)."""
    key = json.dumps({"cfg": to_plain(cfg), "batch_size": batch_size}, sort_keys=True, default=str)
    if reload or key not in _INPUTS:
        teacher, tokenizer = load_teacher(cfg)
        _, names, tok = task.task_data(cfg, tokenizer)
        cache = teacher_logits(teacher, tok["train"], tokenizer, cache_root() / "teacher_outputs", batch_size=batch_size)
        _INPUTS.clear()  # one profile and seed at a time
        _INPUTS[key] = {"teacher": teacher, "tokenizer": tokenizer, "names": names, "tok": tok, "cache": cache,
                        "cached_ds": with_teacher_logits(tok["train"], cache.logits)}
    return _INPUTS[key]


def _distill_plans(cfg: StudyParams, inputs: dict) -> dict:
    """02's runs by name: the cached-KD student, its no-KD twin and (with compare_online_kd) online KD, or the
    online-KD probe beside a cached run of the same steps."""
    d = cfg.distill
    cached_kd = dict(train_ds=inputs["cached_ds"], alpha=d.alpha, loss=d.loss, hp=d)
    online_kd = dict(train_ds=inputs["tok"]["train"], alpha=d.alpha, loss=d.loss, teacher=inputs["teacher"], hp=d)
    plans = {"kd_cached": cached_kd, "nokd": dict(train_ds=inputs["tok"]["train"], alpha=1.0, loss="ce", hp=d)}
    probe_hp = dataclasses.replace(d, epochs=d.online_kd_epochs) if d.online_kd_epochs is not None else None
    if d.compare_online_kd and probe_hp is None:
        plans["kd_online"] = online_kd
    elif d.compare_online_kd:
        plans["kd_cached_probe"] = {**cached_kd, "hp": probe_hp}
        plans["kd_online_probe"] = {**online_kd, "hp": probe_hp}
    return plans


def distill_run(cfg: StudyParams, out_dir: Path, same_as: Path | None, name: str) -> dict:
    """One run of step 02 (`_distill_plans`) as a memoised unit, with JOB_THREADS torch threads (a job for
    kdlib.pipeline.workers.map_jobs)."""
    d = cfg.distill
    inputs = kd_inputs(cfg, d.eval_batch_size)
    teacher, tokenizer, tok = inputs["teacher"], inputs["tokenizer"], inputs["tok"]
    plan = _distill_plans(cfg, inputs)[name]
    student = make_configured_student(teacher, cfg)
    params = student_spec(cfg, student, plan["hp"], plan["loss"], plan["alpha"], d.temperature,
                          "online" if "teacher" in plan else (inputs["cache"].path.name if plan["alpha"] < 1 else None),
                          teacher=teacher, threads=JOB_THREADS)

    def train(ckpt_dir):
        set_seed(cfg.seed)
        with torch_threads(JOB_THREADS):
            return fit(student, tokenizer, plan["train_ds"], tok["validation"], tok["test"], ckpt_dir, plan["hp"],
                       cfg.seed, teacher=plan.get("teacher"), alpha=plan["alpha"], temperature=d.temperature,
                       loss=plan["loss"], bf16=cfg.compute.bf16, group_by_length=cfg.compute.group_by_length,
                       history_csv=ckpt_dir.parent / "history.csv", run_name=name)

    # The cached-KD student is the one the study keeps (and benchmarks).
    save_to = out_dir / "student_model" if name == "kd_cached" else None
    key = memo.unit_key("student", TRAINING_CODE, params)
    return run_training(name, out_dir, key, train, inputs["names"], params, save_to, tokenizer, same_as)


def distill_student(cfg: StudyParams, out_dir: Path | None = None, same_as: Path | None = None) -> dict:
    """Distil one student from the fine-tuned teacher, beside its no-KD twin (and online KD if asked).

    All runs start from the same student weights (one `make_student`, same seed) and the same seed, so
    they differ only in the loss and in where the teacher logits come from. With `online_kd_epochs`, online
    KD is a probe: it and a cached run of the same steps (the summary's `online_probe`) train that part of
    an epoch only. The runs go side by side on compute.workers processes, one thread each; the two probes
    first, together, so each probe's time is taken beside the other's.
    """
    out_dir = Path(out_dir or step_dir(cfg.profile, DISTILL_STEP))
    d = cfg.distill
    inputs = kd_inputs(cfg, d.eval_batch_size, reload=True)  # builds the teacher-logits cache before the workers
    teacher, cache = inputs["teacher"], inputs["cache"]
    plans = list(_distill_plans(cfg, inputs))
    order = sorted(plans, key=lambda n: not n.endswith("_probe"))
    # (under torchrun, map_jobs runs each rank's jobs in turn, in the rank)
    done = dict(zip(order, map_jobs(distill_run, [{"name": n} for n in order],
                                    {"cfg": cfg, "out_dir": out_dir, "same_as": same_as}, cfg.compute.workers)))
    results = {n: done[n] for n in plans}  # the plans' order
    probe = {name.removesuffix("_probe"): results.pop(name) for name in ("kd_cached_probe", "kd_online_probe")
             if name in results}
    student = make_configured_student(teacher, cfg)
    summary = {
        "runs": results,
        "epochs": d.epochs,
        **({"online_probe": {"epochs": d.online_kd_epochs, "runs": probe}} if probe else {}),
        "cache": {"file": cache.path.name, "built_now": cache.built_now, "build_seconds": cache.build_seconds,
                  "seconds": cache.seconds, "rows": len(cache.logits)},
        "student_params": models.count_parameters(student),
        "teacher_params": models.count_parameters(teacher),
        "student_layers": list(student.config.kd_teacher_layers),
        "label_names": inputs["names"],
    }
    if is_main_process():
        write_json(out_dir / "runs" / "summary.json", summary)
    return summary


def student_origin(teacher, student) -> dict:
    """Where a student starts, by content: the weights of the teacher it is built from and its own initial
    weights. Every student's key holds both (classification and QA alike): a retrained teacher, even one
    made by the same recipe, retrains every student built from it, the no-KD twin included."""
    return {"teacher": model_fingerprint(teacher)[:16], "init_weights": model_fingerprint(student)[:16]}


def student_spec(cfg: StudyParams, student, hp, loss: str, alpha: float, temperature: float,
                 teacher_outputs: str | None, bf16: bool | None = None, *, teacher,
                 threads: int | None = None) -> dict:
    """Everything that decides a student run's numbers, in one canonical form, so that the same run
    asked for by two steps (02's student and the grid's student of the same shape) has one key.

    `teacher_outputs`: the cache file the teacher logits come from, "online", or None (no teacher);
    `teacher`: the model the student was built from; `threads`: the torch threads it trains with, where
    the caller fixes them (the order of a sum, so the last bits of every weight, depends on them).
    """

    c = student.config
    return {"seed": cfg.seed, "data": to_plain(cfg.data),
            "student": {"layers": c.num_hidden_layers, "ffn": c.intermediate_size, "init": c.kd_init,
                        "teacher_layers": list(c.kd_teacher_layers)},
            "train": {f.name: getattr(hp, f.name) for f in dataclasses.fields(TrainParams)},
            "loss": loss, "alpha": alpha, "temperature": temperature if alpha < 1 else None,
            "teacher_outputs": teacher_outputs, "bf16": cfg.compute.bf16 if bf16 is None else bf16,
            "group_by_length": cfg.compute.group_by_length, **student_origin(teacher, student),
            **({"threads": threads} if threads is not None else {})}


def make_configured_student(teacher, cfg: StudyParams):
    s = cfg.distill.student
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
           f"--nproc_per_node={cfg.compute.nproc_per_node}", "-m", "kdlib.studies.train", step,
           "--params", str(params_json)]
    subprocess.run(cmd, check=True)
    return read_json(out_dir / "runs" / "summary.json")


def _load_any(path: str) -> StudyParams:
    if path.endswith(".json"):
        raw = read_json(path)
        source = raw.pop("_source", path)
        return config_mod.from_dict(raw, source=source)
    return config_mod.load_params(path)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kdlib.studies.train", description=__doc__.splitlines()[0])
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
