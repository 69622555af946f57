"""Extractive question answering (SQuAD v1.1): windows over long contexts, the official EM/F1, answer
extraction, and the QA teacher and students of step 06.

The light part (windows, metric, extraction) imports only numpy and `tokenizers`, so the standalone
benchmark (kdlib/bench.py) runs it on a small device; training imports torch and transformers when called.

- Windows: question + a slice of the context, at most `max_length` tokens; consecutive slices overlap by
  `stride` tokens (the tokenizers library's meaning of stride, which transformers passes through), so an
  answer cut by one window is whole in the next.
- Metric: the official SQuAD v1.1 script's rules, rewritten because `evaluate` cannot load it offline:
  answers are lower-cased, punctuation and the articles a/an/the removed, whitespace collapsed; EM and
  token F1 take the maximum over the reference answers; both are reported in percent.
- Extraction: per window the `n_best` highest start and end logits; a span is valid when both ends lie in
  the context, end >= start and it has at most `max_answer_length` tokens; the best score start + end over
  all windows of a question wins, and its characters are cut from the context by the token offsets.
"""
from __future__ import annotations

import collections
import re
import string
from dataclasses import dataclass

import numpy as np

TOKEN_INPUTS = ("input_ids", "token_type_ids", "attention_mask")

# ----------------------------------------------------------------------------------------------------
# the official SQuAD v1.1 metric


def normalize_answer(text: str) -> str:
    """Lower case, no punctuation, no articles (a, an, the), single spaces (SQuAD v1.1's evaluate script)."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def _f1_tokens(prediction: list[str], truth: list[str]) -> float:
    common = collections.Counter(prediction) & collections.Counter(truth)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(prediction), same / len(truth)
    return 2 * precision * recall / (precision + recall)


def exact_match(prediction: str, truth: str, normalize=normalize_answer) -> float:
    return float(normalize(prediction) == normalize(truth))


def f1(prediction: str, truth: str, normalize=normalize_answer) -> float:
    return _f1_tokens(normalize(prediction).split(), normalize(truth).split())


def squad_scores(predictions: dict[str, str], references: dict[str, list[str]], normalize=normalize_answer,
                 first_reference_only: bool = False) -> dict[str, float]:
    """EM and F1 in percent over the questions of `references` (id -> reference answers); a question with
    no prediction scores 0. The keyword arguments reproduce common mistakes (see `gap_analysis`)."""
    if not references:
        raise ValueError("no reference answers to score against")
    em = f = 0.0
    for qid, truths in references.items():
        truths = truths[:1] if first_reference_only else truths
        pred = predictions.get(qid, "")
        em += max(exact_match(pred, t, normalize) for t in truths)
        f += max(f1(pred, t, normalize) for t in truths)
    n = len(references)
    return {"exact_match": 100.0 * em / n, "f1": 100.0 * f / n}


def _no_normalisation(text: str) -> str:
    return text


def _strip_only(text: str) -> str:
    return text.strip()


# Ways to get SQuAD's EM/F1 wrong, each a plausible shortcut, scored on the same predictions.
EVALUATION_VARIANTS = {
    "official (normalised, max over references)": dict(),
    "first reference only": dict(first_reference_only=True),
    "lower case only": dict(normalize=lambda s: " ".join(s.lower().split())),
    "no normalisation": dict(normalize=_no_normalisation),
    "no normalisation, first reference only": dict(normalize=_no_normalisation, first_reference_only=True),
}


def gap_analysis(predictions: dict[str, str], references: dict[str, list[str]]) -> list[dict]:
    """EM, F1 and their gap under each of EVALUATION_VARIANTS, on the same predictions."""
    rows = []
    for name, options in EVALUATION_VARIANTS.items():
        s = squad_scores(predictions, references, **options)
        rows.append({"evaluation": name, "exact_match": s["exact_match"], "f1": s["f1"],
                     "gap": s["f1"] - s["exact_match"]})
    return rows


# ----------------------------------------------------------------------------------------------------
# windows


@dataclass
class Window:
    """One window of one question: model inputs and, per token, its character span in the context
    (None for question and special tokens)."""
    question: int  # index of its question in the list that was encoded
    input_ids: list[int]
    token_type_ids: list[int]
    attention_mask: list[int]
    offsets: list[tuple[int, int] | None]

    def inputs(self) -> dict[str, np.ndarray]:
        """Batch-of-one int64 inputs, as every runtime takes them."""
        return {k: np.asarray([getattr(self, k)], dtype=np.int64) for k in TOKEN_INPUTS}


def window_tokenizer(tokenizer, max_length: int, stride: int):
    """A `tokenizers.Tokenizer` that cuts question + context into overlapping windows.

    `tokenizer`: a transformers fast tokenizer, a tokenizers.Tokenizer, or a tokenizer.json path."""
    from tokenizers import Tokenizer

    if isinstance(tokenizer, Tokenizer):
        tk = Tokenizer.from_str(tokenizer.to_str())
    elif hasattr(tokenizer, "backend_tokenizer"):
        tk = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
    else:
        tk = Tokenizer.from_file(str(tokenizer))
    if stride >= max_length:
        raise ValueError(f"stride {stride} must be below max_length {max_length}")
    tk.no_padding()
    tk.enable_truncation(max_length, stride=stride, strategy="only_second")
    return tk


def encode_windows(tk, questions: list[str], contexts: list[str]) -> list[Window]:
    """Every window of every (question, context) pair, in question order."""
    windows = []
    # Leading spaces in a question would only take room from the context (as in transformers' run_qa).
    encodings = tk.encode_batch([(q.lstrip(), c) for q, c in zip(questions, contexts)])
    for i, enc in enumerate(encodings):
        for part in [enc, *enc.overflowing]:
            offsets = [o if s == 1 else None for o, s in zip(part.offsets, part.sequence_ids)]
            windows.append(Window(i, list(part.ids), list(part.type_ids), list(part.attention_mask), offsets))
    return windows


def token_span(window: Window, start_char: int, end_char: int) -> tuple[int, int]:
    """Token positions of the character span [start_char, end_char) in the window; (0, 0), the [CLS]
    token, when the span is not wholly inside the window's slice of the context."""
    inside = [i for i, o in enumerate(window.offsets) if o is not None]
    if not inside or window.offsets[inside[0]][0] > start_char or window.offsets[inside[-1]][1] < end_char:
        return 0, 0
    start = next(i for i in inside if window.offsets[i][1] > start_char)
    end = next(i for i in reversed(inside) if window.offsets[i][0] < end_char)
    return start, end


def answer_chars(example: dict) -> tuple[int, int]:
    """[start, end) characters of an example's first answer."""
    start = int(example["answers"]["answer_start"][0])
    return start, start + len(example["answers"]["text"][0])


def training_rows(examples, tk) -> dict[str, list]:
    """Columns for training: token inputs plus the gold start and end token of each window."""
    examples = list(examples)
    windows = encode_windows(tk, [e["question"] for e in examples], [e["context"] for e in examples])
    cols = {k: [] for k in (*TOKEN_INPUTS, "start_positions", "end_positions")}
    for w in windows:
        start, end = token_span(w, *answer_chars(examples[w.question]))
        for k in TOKEN_INPUTS:
            cols[k].append(getattr(w, k))
        cols["start_positions"].append(start)
        cols["end_positions"].append(end)
    return cols


# ----------------------------------------------------------------------------------------------------
# answer extraction


def best_span(start_logits, end_logits, offsets, n_best: int = 20, max_answer_length: int = 30):
    """(score, start_char, end_char) of the best valid span of one window, or None if none is valid."""
    start_logits, end_logits = np.asarray(start_logits), np.asarray(end_logits)
    n = min(len(offsets), len(start_logits))
    starts = np.argsort(start_logits[:n])[::-1][:n_best]
    ends = np.argsort(end_logits[:n])[::-1][:n_best]
    best = None
    for s in starts:
        if offsets[s] is None:
            continue
        for e in ends:
            if offsets[e] is None or e < s or e - s + 1 > max_answer_length:
                continue
            score = float(start_logits[s] + end_logits[e])
            if best is None or score > best[0]:
                best = (score, offsets[s][0], offsets[e][1])
    return best


def extract_answers(windows: list[Window], contexts: list[str], start_logits, end_logits, n_best: int = 20,
                    max_answer_length: int = 30) -> list[str]:
    """The answer text of each question: the best valid span over all of its windows ("" if none)."""
    best: dict[int, tuple] = {}
    for w, s, e in zip(windows, start_logits, end_logits):
        span = best_span(s, e, w.offsets, n_best, max_answer_length)
        if span is not None and (w.question not in best or span[0] > best[w.question][0]):
            best[w.question] = span
    return [contexts[i][best[i][1]:best[i][2]] if i in best else "" for i in range(len(contexts))]


def references_of(examples) -> dict[str, list[str]]:
    return {e["id"]: list(e["answers"]["text"]) for e in examples}


def first_sentence_baseline(examples) -> dict[str, str]:
    """A trivial answer: the context's first sentence (a floor that any learning must clear)."""
    return {e["id"]: re.split(r"(?<=[.!?])\s", e["context"].strip(), maxsplit=1)[0] for e in examples}


def random_span_baseline(examples, seed: int = 0, max_words: int = 4) -> dict[str, str]:
    """A trivial answer: 1 to `max_words` consecutive words of the context, drawn at random."""
    rng = np.random.default_rng(seed)
    out = {}
    for e in examples:
        words = e["context"].split()
        n = int(rng.integers(1, max_words + 1))
        start = int(rng.integers(0, max(1, len(words) - n + 1)))
        out[e["id"]] = " ".join(words[start:start + n])
    return out


# ----------------------------------------------------------------------------------------------------
# data and training for step 06 (torch, transformers and datasets are imported here, not at the top)


def load_examples(edge, seed: int) -> dict[str, list[dict]]:
    """SQuAD v1.1 examples: `train` (edge.train_size questions), `select` (questions held out of train for
    choosing the best epoch, so the validation questions are read once), `transfer` (edge.transfer_size more
    train questions, for the teacher to label) and `eval` (edge.eval_size questions of the validation
    split, with all their reference answers). Seeded draws, disjoint."""
    from kdlib import data

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


def input_rows(examples, tk) -> tuple[dict[str, list], list[Window]]:
    """Columns of token inputs only (no answer read), and the windows."""
    windows = encode_windows(tk, [e["question"] for e in examples], [e["context"] for e in examples])
    return {k: [getattr(w, k) for w in windows] for k in TOKEN_INPUTS}, windows


def window_datasets(examples: dict[str, list[dict]], tk) -> dict:
    """datasets.Dataset of training rows (train, select), of transfer and eval windows (inputs only: their
    answers are not read), and the eval windows themselves (for answer extraction)."""
    import datasets

    out = {name: datasets.Dataset.from_dict(training_rows(examples[name], tk)) for name in ("train", "select")}
    out["transfer"] = datasets.Dataset.from_dict(input_rows(examples.get("transfer", []), tk)[0])
    eval_rows, out["eval_windows"] = input_rows(examples["eval"], tk)
    out["eval"] = datasets.Dataset.from_dict(eval_rows)
    return out


def predict_answers(model, tokenizer, eval_ds, windows, examples, edge, batch_size: int = 32) -> dict[str, str]:
    """The model's answer to each eval question (batched torch inference, then extraction)."""
    from kdlib.distill import predict_outputs

    out = predict_outputs(model, eval_ds, tokenizer, task="qa", batch_size=batch_size)
    answers = extract_answers(windows, [e["context"] for e in examples], out["start_logits"].numpy(),
                              out["end_logits"].numpy(), edge.n_best, edge.max_answer_length)
    return {e["id"]: a for e, a in zip(examples, answers)}


def load_qa_model(name_or_dir: str, seed: int):
    """A BertForQuestionAnswering (a fresh span head when the weights have none), seeded."""
    from transformers import AutoModelForQuestionAnswering, set_seed

    from kdlib.models import _from_pretrained

    set_seed(seed)
    return _from_pretrained(AutoModelForQuestionAnswering, name_or_dir)


@dataclass
class TrainSettings:
    """The hyperparameters fit() reads, from the edge section."""
    epochs: float
    learning_rate: float
    batch_size: int
    eval_batch_size: int = 64
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1


def train_qa(name: str, out_dir, model, tokenizer, train_ds, select_ds, hp: TrainSettings, seed: int,
             key_parts: dict, bf16: bool, teacher_cache: str | None = None, alpha: float = 1.0,
             temperature: float = 1.0) -> dict:
    """One memoised QA training run in <out_dir>/runs/<name>/, its model saved to <out_dir>/models/<name>/.

    alpha = 1: fine-tuning on the gold spans; alpha < 1: soft-target KD on the start and end distributions
    at `temperature` (teacher outputs from `train_ds`'s teacher_* columns) plus alpha times the span loss.
    The epoch kept is the best on `select_ds` (kdlib.distill.fit)."""
    import dataclasses
    from pathlib import Path

    from transformers import set_seed

    from kdlib import memo, models
    from kdlib.distill import fit
    from kdlib.train import TRAINING_CODE, memo_params

    out_dir = Path(out_dir)
    run_dir, model_dir = out_dir / "runs" / name, out_dir / "models" / name
    params = memo_params({"name": name, "seed": seed, "bf16": bf16, "teacher_cache": teacher_cache,
                          "alpha": alpha, "temperature": temperature, "schedule": dataclasses.asdict(hp),
                          **key_parts})  # key_parts: the data settings, the teacher
    key = memo.unit_key("qa-run", (*TRAINING_CODE, "qa"), params)
    if not (model_dir / "config.json").exists():
        (run_dir / "result.json").unlink(missing_ok=True)  # its model is gone: redo the run

    def build(folder):
        import shutil

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
