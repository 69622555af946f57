"""Step 06's QA data and training: the SQuAD questions drawn for each role, their window datasets, a
QA model, batched answers, and one memoised QA training run (the light SQuAD parts are in
kdlib/core/squad.py, which the standalone benchmark uses too)."""
from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import datasets
from transformers import AutoModelForQuestionAnswering, set_seed

from kdlib.core import data, models
from kdlib.core.distill import fit, predict_outputs
from kdlib.core.models import _from_pretrained
from kdlib.core.squad import extract_answers, input_rows, training_rows
from kdlib.pipeline import memo
from kdlib.pipeline.config import TrainParams
from kdlib.studies.train import TRAINING_CODE, adopt_run, memo_params


def load_examples(edge, seed: int) -> dict[str, list[dict]]:
    """SQuAD v1.1 examples: `train` (edge.train_size questions), `select` (questions held out of train for
    choosing the best epoch, so the validation questions are read once), `transfer` (edge.transfer_size more
    train questions, for the teacher to label) and `eval` (edge.eval_size questions of the validation
    split, with all their reference answers). Seeded draws, disjoint."""

    dsd = data.load(edge.dataset)
    train = dsd["train"].shuffle(seed=seed)
    n_train = min(edge.train_size or len(train), len(train) - edge.select_size)
    n_held = n_train + edge.select_size
    val = dsd["validation"].shuffle(seed=seed)
    n_eval = min(edge.eval_size or len(val), len(val))
    return {"train": list(train.select(range(n_train))),
            "select": list(train.select(range(n_train, n_held))),
            "transfer": list(train.select(range(n_held, min(n_held + edge.transfer_size, len(train))))),
            "eval": list(val.select(range(n_eval)))}


def window_datasets(examples: dict[str, list[dict]], tk) -> dict:
    """datasets.Dataset of training rows (train, select), of transfer and eval windows (inputs only: their
    answers are not read), and the eval windows themselves (for answer extraction)."""

    out = {name: datasets.Dataset.from_dict(training_rows(examples[name], tk)) for name in ("train", "select")}
    out["transfer"] = datasets.Dataset.from_dict(input_rows(examples.get("transfer", []), tk)[0])
    eval_rows, out["eval_windows"] = input_rows(examples["eval"], tk)
    out["eval"] = datasets.Dataset.from_dict(eval_rows)
    return out


def predict_answers(model, tokenizer, eval_ds, windows, examples, edge, batch_size: int = 32) -> dict[str, str]:
    """The model's answer to each eval question (batched torch inference, then extraction)."""

    out = predict_outputs(model, eval_ds, tokenizer, task="qa", batch_size=batch_size)
    answers = extract_answers(windows, [e["context"] for e in examples], out["start_logits"].numpy(),
                              out["end_logits"].numpy(), edge.n_best, edge.max_answer_length)
    return {e["id"]: a for e, a in zip(examples, answers)}


def load_qa_model(name_or_dir: str, seed: int, attention_dropout: float | None = None):
    """A BertForQuestionAnswering (a fresh span head when the weights have none), seeded; `attention_dropout`
    replaces the config's attention-probability dropout where given (None keeps it)."""
    set_seed(seed)
    overrides = {} if attention_dropout is None else {"attention_probs_dropout_prob": attention_dropout}
    return _from_pretrained(AutoModelForQuestionAnswering, name_or_dir, **overrides)


def train_qa(name: str, out_dir, model, tokenizer, train_ds, select_ds, hp: TrainParams, seed: int,
             key_parts: dict, bf16: bool, teacher_cache: str | None = None, alpha: float = 1.0,
             temperature: float = 1.0, same_as: Path | None = None) -> dict:
    """One memoised QA training run in <out_dir>/runs/<name>/, its model saved to <out_dir>/models/<name>/.

    alpha = 1: fine-tuning on the gold spans; alpha < 1: soft-target KD on the start and end distributions
    at `temperature` (teacher outputs from `train_ds`'s teacher_* columns) plus alpha times the span loss.
    The epoch kept is the best on `select_ds` (kdlib.core.distill.fit)."""



    out_dir = Path(out_dir)
    run_dir, model_dir = out_dir / "runs" / name, out_dir / "models" / name
    params = memo_params({"name": name, "seed": seed, "bf16": bf16, "teacher_cache": teacher_cache,
                          "alpha": alpha, "temperature": temperature, "schedule": dataclasses.asdict(hp),
                          **key_parts})  # key_parts: the data settings, the teacher
    key = memo.unit_key("qa-run", (*TRAINING_CODE, "core.squad"), params)
    adopt_run(run_dir, key, same_as, model_dir)  # the same run recorded by another step
    if not (model_dir / "config.json").exists():
        (run_dir / "result.json").unlink(missing_ok=True)  # its model is gone: redo the run

    def build(folder):
        set_seed(seed)
        res = fit(model, tokenizer, train_ds, select_ds, select_ds, folder / "checkpoints", hp, seed,
                  alpha=alpha, temperature=temperature, bf16=bf16, group_by_length=True, task="qa",
                  loss="ce" if alpha >= 1 else "soft_target", run_name=name)
        models.save_model(res["trainer"].model, tokenizer, model_dir)
        shutil.rmtree(folder / "checkpoints", ignore_errors=True)
        return {"history": res["history"], "best_epoch": res["best_epoch"], "select": res["test"],
                "train_step_seconds": res["train_step_seconds"], "train_wall_seconds": res["train_wall_seconds"],
                "train_windows": len(train_ds), "name": name}

    result = memo.run_unit(run_dir, key, build, params=params)
    result["model_dir"] = str(model_dir)
    return result
