"""What every route returns: a `Runner` (int64 numpy inputs -> named float32 numpy outputs), and the inputs
a model takes."""
from __future__ import annotations

import contextlib
import inspect
import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from kdlib.inference.routes import INPUT_NAMES


@dataclass
class Runner:
    """One prepared route: call it with int64 numpy inputs, get named float32 numpy outputs."""

    name: str  # "<runtime>/<precision>"
    runtime: str
    precision: str
    fn: Callable[[dict[str, Any]], dict[str, Any]] = field(repr=False)
    files: list[Path]  # the artifact on disk this route runs from
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    threads: int | None = None  # the thread count baked into the session (None: torch's current count)
    version: str = ""  # the runtime package's version
    # Keeps a temporary workdir alive as long as the runner.
    _tmp: Any = field(default=None, repr=False)

    @property
    def size_mb(self) -> float:
        """Size of the route's files on disk, in MB (1e6 bytes)."""
        return sum(p.stat().st_size for p in self.files) / 1e6

    def __call__(self, inputs: dict[str, Any]) -> dict[str, Any]:
        return self.fn(inputs)


def random_batch(batch_size: int, seq_len: int, vocab_size: int, input_names=INPUT_NAMES,
                 seed: int = 0) -> dict[str, Any]:
    """A fixed random int64 batch (same ids for the same shape and seed); no padding, token type 0."""

    rng = np.random.default_rng(seed)
    # In BERT vocabularies ids below ~1000 are special/unused tokens; avoid them when we can.
    input_ids = rng.integers(1000 if vocab_size > 1000 else 0, vocab_size, size=(batch_size, seq_len),
                             dtype=np.int64)
    full = {"input_ids": input_ids, "attention_mask": np.ones_like(input_ids),
            "token_type_ids": np.zeros_like(input_ids)}
    return {k: full[k] for k in input_names}


def example_inputs(model, batch_size: int = 2, seq_len: int = 8, seed: int = 0) -> dict[str, Any]:
    """`random_batch` with the inputs `model` takes."""
    return random_batch(batch_size, seq_len, model.config.vocab_size, model_input_names(model), seed)


def model_input_names(model) -> tuple[str, ...]:
    """Which of INPUT_NAMES the model's forward takes (DistilBERT, e.g., has no token_type_ids)."""

    params = inspect.signature(model.forward).parameters
    return tuple(n for n in INPUT_NAMES if n in params)


def _tensor_outputs(output) -> dict[str, Any]:
    """The tensor fields of a ModelOutput (logits, start_logits, ...), dropping None/tuples."""

    return {k: v for k, v in output.items() if torch.is_tensor(v)}


@contextlib.contextmanager
def _quiet(*loggers: str):
    """Silence the exporters' and quantiser's chatter (progress, harmless warnings) for a block."""
    saved = [(logging.getLogger(name), logging.getLogger(name).level) for name in loggers]
    for logger, _ in saved:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            warnings.simplefilter("ignore", FutureWarning)
            yield
    finally:
        for logger, level in saved:
            logger.setLevel(level)
