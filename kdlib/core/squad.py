"""Extractive question answering (SQuAD v1.1): windows over long contexts, the official EM/F1, answer
extraction, and the QA teacher and students of step 06.

The light part (windows, metric, extraction) imports only numpy and `tokenizers`, so the standalone
benchmark (kdlib/inference/bench.py) runs it on a small device. Step 06's QA data and training are in
kdlib/studies/edge/qa.py.

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
from tokenizers import Tokenizer

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




def input_rows(examples, tk) -> tuple[dict[str, list], list[Window]]:
    """Columns of token inputs only (no answer read), and the windows."""
    windows = encode_windows(tk, [e["question"] for e in examples], [e["context"] for e in examples])
    return {k: [getattr(w, k) for w in windows] for k in TOKEN_INPUTS}, windows










