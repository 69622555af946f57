"""The parameter schema of a study run, and its loading and validation.

A profile (params/<profile>.yaml) is a nested YAML mapping with one section per step (see
kdlib/pipeline/steps.py for which step reads which section). Every key is declared below as a dataclass field
with its type and allowed range; lists of sections (`grid.students`) are validated item by item. A typo
or a wrong value stops the run *before* anything runs, with one line that names the file and the key:

    params/my.yaml: grid.students[2].ffn: 0 is below the minimum 1

A relative path in a file is read from the file's folder, and loading makes it absolute, so every consumer
(the command line, the runner, a notebook whose working directory is notebooks/) sees the same folder. Every
model a file names is then looked up (its folder, the Hugging Face cache, or the hub with a short timeout),
so that a missing model, or a teacher make_student cannot shrink, stops `kdstudy check` rather than a step.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml

from kdlib.core import data, datafile, models, task
from kdlib.core.fingerprint import code_fingerprint
from kdlib.core.losses import LOSSES
from kdlib.inference import machine
from kdlib.inference.routes import ROUTES
from kdlib.pipeline.steps import STEPS
from kdlib.pipeline.steps import get as get_step


class ParamsError(ValueError):
    """A parameter file is wrong. The message names the file and the key; no traceback is needed."""


def _range(lo=None, hi=None, choices=None, check=None, min_items=None):
    """Field metadata: numeric bounds (inclusive), a set of allowed values, a named check ("dataset", "model",
    "runtime", "precision", "loss") run against the registries of kdlib, and for a list the fewest items it
    may hold (1 where a reader takes its first or largest item, or builds a table from it)."""
    return {"lo": lo, "hi": hi, "choices": choices, "check": check, "min_items": min_items}


# Fields left out of a record (to_dict, fingerprints, unit keys) while unset: options that only some
# datasets or profiles read, so that adding them changed no existing key.
_UNSET = {"omit_unset": True}


# ----------------------------------------------------------------------------------------------------
# the sections


@dataclass
class TrainParams:
    epochs: float = field(default=3.0, metadata=_range(0.01, 1000))
    learning_rate: float = field(default=5e-5, metadata=_range(1e-7, 1.0))
    batch_size: int = field(default=32, metadata=_range(1, 4096))
    eval_batch_size: int = field(default=64, metadata=_range(1, 4096))
    weight_decay: float = field(default=0.01, metadata=_range(0.0, 1.0))
    warmup_ratio: float = field(default=0.1, metadata=_range(0.0, 0.99))


@dataclass
class DataParams:
    """The classification task of steps 00-04: seed 000's, or the user's own."""
    # A registered dataset (kdlib.core.data), a file (.csv, .tsv, .jsonl, .parquet) or a folder of train /
    # validation / test files (relative: to this file's folder), or a hub dataset id (online only).
    dataset: str = field(default="fin_sentiment")
    max_length: int = field(default=64, metadata=_range(8, 512))
    # Rows per split after a seeded, stratified subset; None keeps the whole split.
    train_size: int | None = field(default=None, metadata=_range(1))
    validation_size: int | None = field(default=None, metadata=_range(1))
    test_size: int | None = field(default=None, metadata=_range(1))
    # A file's or hub dataset's columns (default: text, label) and its encoding (default: UTF-8). Unset, they
    # are left out of the record (a registered dataset has its own columns).
    text_column: str | None = field(default=None, metadata=_UNSET)
    label_column: str | None = field(default=None, metadata=_UNSET)
    text_pair_column: str | None = field(default=None, metadata=_UNSET)  # sentence pairs: the second text
    encoding: str | None = field(default=None, metadata=_UNSET)
    # Rows with an empty text or label stop the run, naming them; true drops them (00 counts them).
    drop_empty: bool | None = field(default=None, metadata=_UNSET)
    # Set on loading, never in a file: a hash of the file's bytes and of the code that reads it, so that
    # every unit built on a user's data is keyed by what the data is, not by its path.
    content: str | None = field(default=None, metadata={**_UNSET, "internal": True})


@dataclass
class TeacherParams(TrainParams):
    # An alias (minilm), a local folder (relative: to this file's folder) with config.json, or a Hugging Face
    # hub id (in the local cache, or looked up on the hub when it is on).
    model: str = field(default="minilm", metadata=_range(check="model"))


@dataclass
class StudentParams:
    num_layers: int = field(default=3, metadata=_range(1, 48))
    # FFN (intermediate) size; None keeps the teacher's.
    intermediate_size: int | None = field(default=None, metadata=_range(1, 65536))
    # Which teacher layers initialise the student (see models.select_teacher_layers).
    init: str = field(default="alternate", metadata=_range(choices=("alternate", "first", "random", "scratch")))


@dataclass
class DistillParams(TrainParams):
    """Step 02: one student, distilled beside its no-KD twin."""
    student: StudentParams = field(default_factory=StudentParams)
    # A name from kdlib.core.losses' registry; soft_target = alpha * CE + (1 - alpha) * T^2 * KL.
    loss: str = field(default="soft_target", metadata=_range(check="loss"))
    alpha: float = field(default=0.5, metadata=_range(0.0, 1.0))
    temperature: float = field(default=2.0, metadata=_range(0.01, 100.0))
    # Also train with the teacher run online on every batch (costs one more student training).
    compare_online_kd: bool = True
    # None: the online run trains as long as the cached one, and their accuracies are compared. A fraction:
    # the online run and a cached run of the same steps train this part of an epoch only, compared step for
    # step (the same losses, the same accuracy) and for their cost per step.
    online_kd_epochs: float | None = field(default=None, metadata=_range(0.01, 100))


@dataclass
class StudentShape:
    """One student of the grid: depth and FFN (intermediate) size; the hidden size is the teacher's."""
    layers: int = field(default=3, metadata=_range(1, 48))
    ffn: int = field(default=1536, metadata=_range(1, 65536))


@dataclass
class GeneralDistillParams(TrainParams):
    """Distillation on unlabelled in-domain text (hidden states and attentions) before task KD."""
    enabled: bool = True
    # Which grid students also get this route (by shape); empty = none.
    students: list[StudentShape] = field(default_factory=list)
    loss: str = field(default="tinybert", metadata=_range(check="loss"))
    max_texts: int | None = field(default=None, metadata=_range(1))


@dataclass
class GridParams(TrainParams):
    """Step 03: seed 000's grid of students (layers x FFN size), all distilled from one cached teacher."""
    students: list[StudentShape] = field(default_factory=lambda: [StudentShape(l, f) for l in (1, 2, 3)
                                                                  for f in (96, 384, 1536)],
                                         metadata=_range(min_items=1))
    init: str = field(default="alternate", metadata=_range(choices=("alternate", "first", "random", "scratch")))
    loss: str = field(default="soft_target", metadata=_range(check="loss"))
    alpha: float = field(default=0.5, metadata=_range(0.0, 1.0))
    temperature: float = field(default=2.0, metadata=_range(0.01, 100.0))
    general_distill: GeneralDistillParams = field(default_factory=GeneralDistillParams)
    # The cost of online-teacher KD is measured on two students over this fraction of an epoch.
    online_probe_epochs: float = field(default=0.1, metadata=_range(0.01, 100))


ROUTE_NAMES = tuple(f"{r}/{p}" for r, precisions in ROUTES.items() for p in precisions)


@dataclass
class CompareParams:
    """Step 04: every compression family, timed on every runtime this CPU runs well."""
    runtimes: list[str] = field(default_factory=lambda: ["torch", "onnxruntime"],
                                metadata=_range(check="runtime"))
    precisions: list[str] = field(default_factory=lambda: ["fp32", "int8"], metadata=_range(check="precision"))
    # The first fraction also prunes 03's half-depth student.
    head_prune_fractions: list[float] = field(default_factory=lambda: [0.5], metadata=_range(0.0, 0.99, min_items=1))
    magnitude_sparsities: list[float] = field(default_factory=lambda: [0.5], metadata=_range(0.0, 0.99))
    # The taxonomy's factorization row is the last rank's.
    svd_ranks: list[int] = field(default_factory=lambda: [64, 128], metadata=_range(1, 65536, min_items=1))
    # Epochs of KD from the cached teacher logits after pruning or factorising (0: none).
    recovery_epochs: float = field(default=1.0, metadata=_range(0.0, 100))
    # Rows that static int8 quantisation reads to fix its activation ranges (training rows).
    calibration_size: int = field(default=128, metadata=_range(1, 100000))
    # The ALBERT-style student: factorised embedding size E, and its depth (None: the teacher's).
    albert_embedding_size: int = field(default=128, metadata=_range(1, 65536))
    albert_layers: int | None = field(default=None, metadata=_range(1, 48))
    # Each route's run: its timing budget per model in seconds (None: benchmark.max_seconds). Those runs only
    # nominate the contenders, which `head_to_head` times again side by side with benchmark.max_seconds.
    route_seconds: float | None = field(default=None, metadata=_range(0.01, 3600))
    # Routes of runtimes x precisions left out ("runtime/precision"), e.g. a graph runtime's fp32 where its
    # quantised routes are what the step compares. None: none.
    skip_routes: list[str] | None = field(default=None, metadata={**_range(choices=ROUTE_NAMES), **_UNSET})


ENCODE_ROUTES = ("torch/fp32", "torch/bf16", "torch_compile/fp32", "onnxruntime/fp32", "onnxruntime/int8",
                 "openvino/fp32", "openvino/bf16")  # openvino/bf16: built by kdlib.studies.hetero.embed


@dataclass
class HeteroTransformerParams:
    """Step 05, beyond the paper: a small transformer student whose extra head learns from the coarse teacher,
    against plain KD from the fine teacher, on a training subset (the teachers are the dense ones)."""
    enabled: bool = True
    layers: int = field(default=1, metadata=_range(1, 48))  # initialised from the encoder's first layers
    train_size: int | None = field(default=4400, metadata=_range(1))
    test_size: int | None = field(default=2000, metadata=_range(1))  # test posts (and validation posts if epochs > 1)
    max_length: int = field(default=64, metadata=_range(8, 512))
    seeds: int = field(default=3, metadata=_range(1, 100))
    epochs: int = field(default=1, metadata=_range(1, 100))
    learning_rate: float = field(default=5e-4, metadata=_range(1e-7, 1.0))  # the body's
    # The new heads' (None: learning_rate). They start from random weights and a short run gives them few steps.
    head_learning_rate: float | None = field(default=None, metadata=_range(1e-7, 1.0))
    batch_size: int = field(default=32, metadata=_range(1, 4096))
    alpha: float = field(default=0.5, metadata=_range(0.0, 1.0))
    temperature: float = field(default=4.0, metadata=_range(0.01, 100.0))


@dataclass
class HeteroParams:
    """Step 05: seed 003's heterogeneous KD on 20 Newsgroups, on cached sentence embeddings."""
    dataset: str = field(default="newsgroups20", metadata=_range(check="dataset"))
    encoder: str = field(default="minilm", metadata=_range(check="model"))
    max_length: int = field(default=256, metadata=_range(8, 512))
    # Rows per split (stratified, seeded) before encoding; None keeps the whole split (seed 003's counts).
    train_size: int | None = field(default=None, metadata=_range(1))
    validation_size: int | None = field(default=None, metadata=_range(1))
    test_size: int | None = field(default=None, metadata=_range(1))
    # Encoding routes ("runtime/precision"), in order of preference, probed on a few documents; the first one
    # that runs here and whose embeddings match torch fp32's encodes (torch/fp32 is always probed, as the
    # reference).
    encode_routes: list[str] = field(default_factory=lambda: ["torch/bf16", "onnxruntime/fp32"],
                                     metadata=_range(choices=ENCODE_ROUTES))
    seeds: int = field(default=5, metadata=_range(1, 100))
    # Tables 5 and 6: every run is trained at least this many epochs (early stopping off until then).
    curve_epochs: int = field(default=22, metadata=_range(1, 1000))
    # Worker processes for the independent single-threaded runs (dense students, transformer students).
    workers: int = field(default=2, metadata=_range(1, 256))
    transformer: HeteroTransformerParams = field(default_factory=HeteroTransformerParams)
    teacher_hidden: list[int] = field(default_factory=lambda: [700, 512, 256, 64], metadata=_range(1, 65536))
    student_hidden: list[int] = field(default_factory=lambda: [64], metadata=_range(1, 65536))
    epochs: int = field(default=100, metadata=_range(1, 1000))
    patience: int = field(default=10, metadata=_range(1, 1000))
    batch_size: int = field(default=128, metadata=_range(1, 65536))
    learning_rate: float = field(default=1e-3, metadata=_range(1e-7, 1.0))
    # The search picks the best alpha and temperature of each convention: none to pick from is an error.
    alphas: list[float] = field(default_factory=lambda: [0.1, 0.3, 0.5, 0.7, 0.9],
                                metadata=_range(0.0, 1.0, min_items=1))
    temperatures: list[float] = field(default_factory=lambda: [1.0, 4.0, 12.0, 23.0, 28.0],
                                      metadata=_range(0.01, 100.0, min_items=1))
    conventions: list[str] = field(default_factory=lambda: ["ours", "paper"],
                                   metadata=_range(choices=("ours", "paper"), min_items=1))


@dataclass
class EdgeParams:
    """Step 06: extractive QA (SQuAD v1.1) on a Raspberry-Pi-5 budget."""
    dataset: str = field(default="squad", metadata=_range(check="dataset"))
    teacher: str = field(default="minilm", metadata=_range(check="model"))
    train_size: int | None = field(default=2000, metadata=_range(1))
    eval_size: int | None = field(default=300, metadata=_range(1))
    max_length: int = field(default=256, metadata=_range(32, 512))
    stride: int = field(default=128, metadata=_range(1, 512))
    max_answer_length: int = field(default=30, metadata=_range(1, 512))
    n_best: int = field(default=20, metadata=_range(1, 100))
    epochs: float = field(default=2.0, metadata=_range(0.01, 100))
    learning_rate: float = field(default=1e-4, metadata=_range(1e-7, 1.0))
    batch_size: int = field(default=16, metadata=_range(1, 4096))
    # Training questions held out of train_size to pick each run's best epoch (validation is read once).
    select_size: int = field(default=64, metadata=_range(1, 100000))
    # KD's transfer set: this many more train questions (after train_size + select_size) whose answers go
    # unused. The teacher labels their windows (its start/end logits, and its most likely start and end as
    # the span), and the KD students train on them beside the train questions; the no-KD twins cannot.
    transfer_size: int = field(default=0, metadata=_range(0, 1000000))
    # Dropout on the attention probabilities while training (None: the model's own, 0.1 for BERT). The
    # students are cut from the trained teacher and keep its setting. Any dropout there makes PyTorch's CPU
    # attention take its unfused path, which is far slower at long windows (docs/benchmarks/attention_dropout.py).
    attention_dropout: float | None = field(default=None, metadata=_range(0.0, 1.0))
    # Which teacher layers the students start from (kdlib.core.models.select_teacher_layers): alternate (evenly spaced from
    # the first to the last: [0, 3, 5] of 6) or stride (one layer out of two from the first: [0, 2, 4] of 6).
    student_init: str = field(default="alternate", metadata=_range(choices=("alternate", "stride")))
    # The students' schedule; None: the teacher's (epochs, learning_rate).
    student_epochs: float | None = field(default=None, metadata=_range(0.01, 100))
    student_learning_rate: float | None = field(default=None, metadata=_range(1e-7, 1.0))
    # Students: alpha * span CE + (1 - alpha) * T^2 * KL on the start and on the end distributions.
    alpha: float = field(default=0.5, metadata=_range(0.0, 1.0))
    temperature: float = field(default=2.0, metadata=_range(0.01, 100.0))
    # The headline student is the half-depth one, else the first.
    students: list[StudentShape] = field(default_factory=lambda: [StudentShape(3, 1536), StudentShape(1, 1536)],
                                         metadata=_range(min_items=1))
    # The pi5 benchmark profile: batch 1, this many threads (capped at the machine's cores).
    threads: int = field(default=4, metadata=_range(1, 1024))
    # Runtimes tried for the students (each with every precision it offers); the teacher runs torch fp32.
    runtimes: list[str] = field(default_factory=lambda: ["torch", "onnxruntime"], metadata=_range(check="runtime"))


@dataclass
class BenchmarkParams:
    """Timing settings shared by every step that measures speed."""
    # Every timing table has a row per batch size; verdicts time at the largest.
    batch_sizes: list[int] = field(default_factory=lambda: [1, 32], metadata=_range(1, 65536, min_items=1))
    seq_len: int = field(default=64, metadata=_range(1, 512))
    threads: int | None = field(default=None, metadata=_range(1, 1024))
    runtimes: list[str] = field(default_factory=lambda: ["torch"], metadata=_range(check="runtime"))
    precisions: list[str] = field(default_factory=lambda: ["fp32", "bf16"],
                                  metadata=_range(check="precision", min_items=1))  # none: no timing rows
    warmup: int = field(default=3, metadata=_range(0, 1000))
    repeats: int = field(default=10, metadata=_range(1, 100000))
    # Step 04 stops timing a route once its timed calls add up to this (after 5 calls); None: all repeats.
    max_seconds: float | None = field(default=None, metadata=_range(0.01, 3600))
    # Every timing stops once the 95% confidence interval of each median it takes is within +-tolerance of it
    # (after 5 calls): no more repeats than the spread needs. None: all repeats.
    tolerance: float | None = field(default=0.03, metadata=_range(0.001, 0.5))


@dataclass
class ComputeParams:
    # The training precision of every step: bf16 autocast, fp32, or auto: bf16 where the hardware has native
    # bf16 (a GPU that supports it, or a CPU with avx512_bf16 or AMX, where it trains faster), fp32 elsewhere
    # (emulated bf16 is slower than fp32). Every run records the precision it used.
    precision: str = field(default="auto", metadata=_range(choices=("auto", "fp32", "bf16")))
    # Batch rows of similar length together: less padding, so faster steps (same rows per epoch).
    group_by_length: bool = True
    # >1 launches training through torchrun with that many processes (GPUs, or CPU with gloo).
    nproc_per_node: int = field(default=1, metadata=_range(1, 64))
    # Processes that train independent students side by side (steps 02 and 03), one torch thread each, so a
    # student's numbers do not depend on it (kdlib/pipeline/workers.py).
    workers: int = field(default=2, metadata=_range(1, 256))

    @property
    def bf16(self) -> bool:
        """Whether training runs in bf16 autocast on this machine (`precision` resolved)."""
        if self.precision != "auto":
            return self.precision == "bf16"
        if torch.cuda.is_available():
            return torch.cuda.is_bf16_supported()
        return machine.bf16_supported()


@dataclass
class VerdictsParams:
    """`kdstudy verdicts`: the runs behind the report's findings, repeated over these seeds (kdlib/studies/verdicts.py)."""
    seeds: list[int] = field(default_factory=lambda: [42, 43, 44, 45, 46], metadata=_range(0, 2**32 - 1, min_items=1))
    claims: list[str] = field(default_factory=lambda: ["half_depth_retention", "fast_student", "layer_vs_ffn"],
                              metadata=_range(choices=("half_depth_retention", "fast_student", "layer_vs_ffn",
                                                               "edge_speedup")))


@dataclass
class StudyParams:
    profile: str
    seed: int = field(default=42, metadata=_range(0, 2**32 - 1))
    data: DataParams = field(default_factory=DataParams)
    teacher: TeacherParams = field(default_factory=TeacherParams)
    distill: DistillParams = field(default_factory=DistillParams)
    grid: GridParams = field(default_factory=GridParams)
    compare: CompareParams = field(default_factory=CompareParams)
    hetero: HeteroParams = field(default_factory=HeteroParams)
    edge: EdgeParams = field(default_factory=EdgeParams)
    benchmark: BenchmarkParams = field(default_factory=BenchmarkParams)
    compute: ComputeParams = field(default_factory=ComputeParams)
    verdicts: VerdictsParams = field(default_factory=VerdictsParams)
    # The steps this profile runs (numbers or names); unset: all. A profile on a user's own data runs the
    # steps any classification task can (00-04 and the report); 05 and 06 reproduce papers on their data.
    steps: list[str] | None = field(default=None, metadata={**_UNSET, "min_items": 1})
    # Where the file came from; not a parameter.
    source: str = field(default="<dict>", metadata={"internal": True})

    def to_dict(self) -> dict:
        d = _drop_unset(self, dataclasses.asdict(self))
        d.pop("source")
        return d

    def runs(self, stem: str) -> bool:
        """Whether the profile runs step `stem` (all steps unless `steps` names some)."""
        return self.steps is None or stem in self.steps

    def random_models(self) -> dict[str, str]:
        """The model keys that name random weights ("random:<config>"), with their values: a profile for shape
        and speed only, whose accuracies mean nothing."""
        return {key: getattr(owner, attr) for key, owner, attr in _model_fields(self)
                if models.is_random(getattr(owner, attr))}

    def random_warning(self) -> str | None:
        """One line saying that this profile's accuracies are meaningless, or None when its models are trained."""
        found = self.random_models()
        if not found:
            return None
        named = ", ".join(f"{k} = {v}" for k, v in found.items())
        return (f"Random weights ({named}): every accuracy, F1 and agreement of this profile is meaningless. "
                f"Its shapes, parameter counts and times are real.")

    def fingerprint(self, sections: typing.Iterable[str] | None = None) -> str:
        """A short content hash of the parameters (all, or only the named top-level sections)."""
        d = self.to_dict()
        if sections is not None:
            d = {k: d[k] for k in sections}
        blob = json.dumps(d, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def to_plain(obj) -> dict:
    """A parameter section as plain values for a record or a unit's key: its unset options left out."""
    return _drop_unset(obj, dataclasses.asdict(obj))


def _drop_unset(obj, d: dict) -> dict:
    """`d` (asdict of the dataclass `obj`) without its unset `omit_unset` fields, at every depth."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if f.metadata.get("omit_unset") and value is None:
            d.pop(f.name)
        elif dataclasses.is_dataclass(value):
            d[f.name] = _drop_unset(value, d[f.name])
    return d


# ----------------------------------------------------------------------------------------------------
# validation


def _names_check(kind: str, value: str) -> str | None:
    """A problem with a name that must exist in one of kdlib's registries, or None."""
    if kind == "dataset":  # 05's and 06's own datasets (data.dataset may also be a file: _check_data)
        known = data.list_datasets()
        return None if value in known else f"unknown dataset {value!r} (known: {', '.join(known)})"
    if kind == "model":
        return None  # looked up by _check_models, once a relative folder is resolved (it needs the file's folder)
    if kind in ("runtime", "precision"):
        known = sorted(ROUTES) if kind == "runtime" else sorted({p for ps in ROUTES.values() for p in ps})
        return None if value in known else f"{value!r} is not one of {', '.join(known)}"
    if kind == "loss":
        return None if value in LOSSES else f"unknown loss {value!r} (known: {', '.join(sorted(LOSSES))})"
    raise AssertionError(kind)


def _check_value(value, tp, meta: dict, where: str):
    """Return `value` converted to `tp`, or raise ParamsError naming `where`."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):  # Optional[X]
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _check_value(value, inner, meta, where)
    if origin is list:
        if not isinstance(value, list):
            raise ParamsError(f"{where}: expected a list, got {value!r}")
        if len(value) < (meta.get("min_items") or 0):
            need = meta["min_items"]
            raise ParamsError(f"{where}: must not be empty" if need == 1 else f"{where}: needs at least {need} items")
        return [_check_value(v, args[0], meta, f"{where}[{i}]") for i, v in enumerate(value)]
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, where)
    if tp is bool:
        if not isinstance(value, bool):
            raise ParamsError(f"{where}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ParamsError(f"{where}: expected an integer, got {value!r}")
    elif tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ParamsError(f"{where}: expected a number, got {value!r}")
        value = float(value)
    elif tp is str:
        if not isinstance(value, str):
            raise ParamsError(f"{where}: expected a string, got {value!r}")
    lo, hi, choices, check = (meta.get(k) for k in ("lo", "hi", "choices", "check"))
    if choices is not None and value not in choices:
        raise ParamsError(f"{where}: {value!r} is not one of {', '.join(map(str, choices))}")
    if lo is not None and value < lo:
        raise ParamsError(f"{where}: {value!r} is below the minimum {lo}")
    if hi is not None and value > hi:
        raise ParamsError(f"{where}: {value!r} is above the maximum {hi}")
    if check is not None:
        problem = _names_check(check, value)
        if problem:
            raise ParamsError(f"{where}: {problem}")
    return value


def _build(cls, raw: Any, where: str):
    """Build dataclass `cls` from mapping `raw`, checking every key."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ParamsError(f"{where or 'top level'}: expected a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if not f.metadata.get("internal")}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        key = f"{where}.{unknown[0]}" if where else unknown[0]
        raise ParamsError(f"{key}: unknown key (known here: {', '.join(fields)})")
    kwargs = {}
    for name, f in fields.items():
        key = f"{where}.{name}" if where else name
        if name not in raw:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ParamsError(f"{key}: required key is missing")
            continue
        kwargs[name] = _check_value(raw[name], hints[name], dict(f.metadata), key)
    return cls(**kwargs)


def _check_study(p: StudyParams) -> None:
    """Cross-field checks."""
    if not p.profile.replace("-", "").replace("_", "").isalnum():
        raise ParamsError(f"profile: {p.profile!r} must be letters, digits, '-' or '_' (it names a folder)")
    shapes = [(s.layers, s.ffn) for s in p.grid.students]
    for i, s in enumerate(p.grid.general_distill.students):
        if (s.layers, s.ffn) not in shapes:
            raise ParamsError(f"grid.general_distill.students[{i}]: ({s.layers}, {s.ffn}) is not a student "
                              f"of grid.students")
    for i, shape in enumerate(shapes):
        if shape in shapes[:i]:
            raise ParamsError(f"grid.students[{i}]: {shape} appears twice")
    if p.edge.stride >= p.edge.max_length:
        raise ParamsError(f"edge.stride: {p.edge.stride} must be below edge.max_length ({p.edge.max_length})")
    if p.steps is not None:
        try:
            p.steps = [s.stem for s in STEPS if s.stem in {get_step(name).stem for name in p.steps}]
        except ValueError as e:
            raise ParamsError(f"steps: {e}") from None


def _hub_off() -> str | None:
    """The variable that turns the hub off, if one does."""
    return next((v for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
                 if os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on")), None)


def _check_data(p: StudyParams, folder: Path, look_up: bool) -> None:
    """Resolve `data.dataset` (a registered name, a file or folder read from `folder`, or a hub id), record a
    file's content, and with `look_up` read the data, so that bad data stops `kdstudy check` in one line."""
    d = p.data
    kind = task.source_kind(d.dataset)
    if kind == "hub" and (folder / d.dataset).exists():  # a folder named without a path, beside the file
        kind = "file"
    if kind == "registry":
        for name in ("text_column", "label_column", "text_pair_column", "encoding", "drop_empty"):
            if getattr(d, name) is not None:
                raise ParamsError(f"data.{name}: only for a file or hub dataset ({d.dataset!r} is registered "
                                  f"with its own columns)")
        return
    if kind == "file":
        path = (folder / Path(d.dataset).expanduser()).resolve()
        if not path.exists():
            if look_up:
                raise ParamsError(f"data.dataset: no file or folder {path} (a relative path is read from {folder}; "
                                  f"registered datasets: {', '.join(data.list_datasets())})")
            return
        d.dataset = str(path)
        try:
            d.content = datafile.content_digest(path) + "-" + code_fingerprint("core.datafile", "core.task")[:16]
        except datafile.DataFileError as e:
            raise ParamsError(f"data.dataset: {e}") from None
    elif look_up and _hub_off():
        raise ParamsError(f"data.dataset: unknown dataset {d.dataset!r}: not registered ({', '.join(data.list_datasets())}), "
                          f"no file or folder of that name in {folder}, and the hub is off ({_hub_off()} is set)")
    if look_up:
        try:
            task.load(d)
        except datafile.DataFileError as e:
            raise ParamsError(f"data: {e}") from None


def _model_fields(obj, where: str = ""):
    """(key, owner, attribute) of every field naming a model (check "model") in the dataclass `obj`."""
    for f in dataclasses.fields(obj):
        key = f"{where}.{f.name}" if where else f.name
        if f.metadata.get("check") == "model":
            yield key, obj, f.name
        elif dataclasses.is_dataclass(getattr(obj, f.name)):
            yield from _model_fields(getattr(obj, f.name), key)


def _local(value: str, folder: Path) -> str:
    """The path rule: `value` names a local folder when <folder>/<value> is one (returned absolute), else it
    is an alias or a hub id (returned as it is). A "random:<folder>" spec follows the same rule."""
    if models.is_random(value):
        return models.RANDOM_PREFIX + _local(value[len(models.RANDOM_PREFIX):], folder)
    path = folder / value
    return str(path.resolve()) if path.is_dir() else value


def _model_kinds(p: StudyParams) -> dict[str, tuple[str, ...]]:
    """The model types a model key accepts: those make_student shrinks for a teacher, BERT alone for 05's
    transformer student (a BERT class loads it); keys not here take any model that loads."""
    kinds = {"teacher.model": models.STUDENT_MODEL_TYPES, "edge.teacher": models.STUDENT_MODEL_TYPES}
    return kinds | ({"hetero.encoder": ("bert",)} if p.hetero.transformer.enabled else {})


def _check_models(p: StudyParams, folder: Path, look_up: bool) -> None:
    """Apply the path rule to every model key; with `look_up`, refuse a model that cannot be found (folder,
    Hugging Face cache, or hub) or that cannot make the students its steps build."""
    kinds = _model_kinds(p)
    problems: dict[tuple[str, tuple[str, ...]], str | None] = {}  # one look-up per model, though several keys name it
    for key, owner, attr in _model_fields(p):
        value = _local(getattr(owner, attr), folder)
        setattr(owner, attr, value)
        if not look_up:
            continue
        need = (value, kinds.get(key, ()))
        if need not in problems:
            problems[need] = models.check_model_name(*need)
        if problems[need]:
            relative = not Path(value).is_absolute() and value not in models.MODEL_ALIASES
            hint = f"; a relative folder is read from {folder}" if relative else ""
            raise ParamsError(f"{key}: {problems[need]}{hint}")


def deep_merge(base: dict, extra: dict) -> dict:
    """`base` updated recursively with `extra` (a new dict; inputs untouched)."""
    out = dict(base)
    for k, v in (extra or {}).items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def from_dict(raw: dict, source: str = "<dict>", folder: str | Path | None = None,
              check_models: bool = True) -> StudyParams:
    """Validate a parameter mapping. Errors are ParamsError('<source>: <key>: <problem>').

    Relative folders are read from `folder` (default: the working directory). `check_models=False` skips the
    models' look-up (only for reading a profile without running it: the report, tests of the schema)."""
    try:
        p = _build(StudyParams, raw, "")
        _check_study(p)
        _check_data(p, Path(folder or Path.cwd()).resolve(), check_models)
        _check_models(p, Path(folder or Path.cwd()).resolve(), check_models)
    except ParamsError as e:
        raise ParamsError(f"{source}: {e}") from None
    p.source = source
    return p


def load_params(path: str | Path, overrides: dict | None = None, check_models: bool = True) -> StudyParams:
    """Read, merge `overrides` into, and validate a YAML parameter file (see from_dict for `check_models`);
    relative folders in it are read from the file's folder."""
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"{path}: no such parameter file")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ParamsError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(raw, dict):
        raise ParamsError(f"{path}: expected a mapping of keys at the top level")
    return from_dict(deep_merge(raw, overrides or {}), str(path), path.parent, check_models)
