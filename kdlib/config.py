"""The parameter schema of a study run, and its loading and validation.

A profile (params/<profile>.yaml) is a nested YAML mapping. Every key is declared below as a dataclass
field with its type and allowed range, so that a typo or a wrong value stops the run *before* anything
runs, with one message that names the file and the key. Nothing here imports torch: validation is fast.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class ParamsError(ValueError):
    """A parameter file is wrong. The message names the file and the key; no traceback is needed."""


def _range(lo=None, hi=None, choices=None):
    """Field metadata: numeric bounds (inclusive) or a set of allowed values."""
    return {"lo": lo, "hi": hi, "choices": choices}


@dataclass
class DataParams:
    dataset: str = "fin_sentiment"
    max_length: int = field(default=64, metadata=_range(8, 512))
    # Rows per split after a seeded, stratified subset; None keeps the whole split.
    train_size: int | None = field(default=None, metadata=_range(1))
    validation_size: int | None = field(default=None, metadata=_range(1))
    test_size: int | None = field(default=None, metadata=_range(1))


@dataclass
class TrainParams:
    epochs: float = field(default=3.0, metadata=_range(0.01, 1000))
    learning_rate: float = field(default=5e-5, metadata=_range(1e-7, 1.0))
    batch_size: int = field(default=32, metadata=_range(1, 4096))
    eval_batch_size: int = field(default=64, metadata=_range(1, 4096))
    weight_decay: float = field(default=0.01, metadata=_range(0.0, 1.0))
    warmup_ratio: float = field(default=0.1, metadata=_range(0.0, 0.99))


@dataclass
class TeacherParams(TrainParams):
    # An alias (minilm), a local folder, or a Hugging Face hub id (online users).
    model: str = "minilm"


@dataclass
class StudentParams:
    num_layers: int = field(default=3, metadata=_range(1, 48))
    # FFN (intermediate) size; None keeps the teacher's.
    intermediate_size: int | None = field(default=None, metadata=_range(1, 65536))
    # Which teacher layers initialise the student (see models.select_teacher_layers).
    init: str = field(default="alternate", metadata=_range(choices=("alternate", "first", "random", "scratch")))


@dataclass
class DistillParams(TrainParams):
    # Loss = alpha * CE(labels) + (1 - alpha) * T^2 * KL(teacher || student); see kdlib.losses.
    alpha: float = field(default=0.5, metadata=_range(0.0, 1.0))
    temperature: float = field(default=2.0, metadata=_range(0.01, 100.0))


@dataclass
class BenchmarkParams:
    batch_sizes: list[int] = field(default_factory=lambda: [1, 32])
    seq_len: int = field(default=64, metadata=_range(1, 512))
    threads: int | None = field(default=None, metadata=_range(1, 1024))
    precisions: list[str] = field(default_factory=lambda: ["fp32", "bf16"])
    warmup: int = field(default=3, metadata=_range(0, 1000))
    repeats: int = field(default=10, metadata=_range(1, 100000))


@dataclass
class ComputeParams:
    # bf16 autocast while training (CPUs with AMX/AVX512-BF16, or GPUs).
    bf16: bool = False
    # Batch rows of similar length together: less padding, so faster steps (same rows per epoch).
    group_by_length: bool = True
    # >1 launches training through torchrun with that many processes (GPUs, or CPU with gloo).
    nproc_per_node: int = field(default=1, metadata=_range(1, 64))
    # Compare cached-teacher KD with online-teacher KD (costs one more student training).
    compare_online_kd: bool = True


@dataclass
class StudyParams:
    profile: str
    seed: int = field(default=42, metadata=_range(0, 2**32 - 1))
    data: DataParams = field(default_factory=DataParams)
    teacher: TeacherParams = field(default_factory=TeacherParams)
    student: StudentParams = field(default_factory=StudentParams)
    distill: DistillParams = field(default_factory=DistillParams)
    benchmark: BenchmarkParams = field(default_factory=BenchmarkParams)
    compute: ComputeParams = field(default_factory=ComputeParams)
    # Where the file came from; not a parameter.
    source: str = field(default="<dict>", metadata={"internal": True})

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d.pop("source")
        return d

    def fingerprint(self) -> str:
        """A short content hash of the parameters (not of where they came from)."""
        blob = json.dumps(self.to_dict(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


# ----------------------------------------------------------------------------------------------------
# validation


def _type_name(tp) -> str:
    return getattr(tp, "__name__", str(tp).replace("typing.", ""))


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
        return [_check_value(v, args[0], meta, f"{where}[{i}]") for i, v in enumerate(value)]
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
    lo, hi, choices = meta.get("lo"), meta.get("hi"), meta.get("choices")
    if choices is not None and value not in choices:
        raise ParamsError(f"{where}: {value!r} is not one of {', '.join(map(str, choices))}")
    if lo is not None and value < lo:
        raise ParamsError(f"{where}: {value!r} is below the minimum {lo}")
    if hi is not None and value > hi:
        raise ParamsError(f"{where}: {value!r} is above the maximum {hi}")
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
        tp = hints[name]
        if dataclasses.is_dataclass(tp):
            kwargs[name] = _build(tp, raw[name], key)
        else:
            kwargs[name] = _check_value(raw[name], tp, dict(f.metadata), key)
    return cls(**kwargs)


def _check_names(p: StudyParams) -> None:
    """Cross-field checks: datasets and models must exist, names must be usable as folder names."""
    from kdlib import data, models  # local import: both are light until used

    if not p.profile.replace("-", "").replace("_", "").isalnum():
        raise ParamsError(f"profile: {p.profile!r} must be letters, digits, '-' or '_' (it names a folder)")
    known = data.list_datasets()
    if p.data.dataset not in known:
        raise ParamsError(f"data.dataset: unknown dataset {p.data.dataset!r} (known: {', '.join(known)})")
    problem = models.check_model_name(p.teacher.model)
    if problem:
        raise ParamsError(f"teacher.model: {problem}")
    for prec in p.benchmark.precisions:
        if prec not in ("fp32", "bf16"):
            raise ParamsError(f"benchmark.precisions: {prec!r} is not one of fp32, bf16")
    for bs in p.benchmark.batch_sizes:
        if bs < 1:
            raise ParamsError(f"benchmark.batch_sizes: {bs!r} is below the minimum 1")


def deep_merge(base: dict, extra: dict) -> dict:
    """`base` updated recursively with `extra` (a new dict; inputs untouched)."""
    out = dict(base)
    for k, v in (extra or {}).items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def from_dict(raw: dict, source: str = "<dict>") -> StudyParams:
    """Validate a parameter mapping. Errors are ParamsError('<source>: <key>: <problem>')."""
    try:
        p = _build(StudyParams, raw, "")
        _check_names(p)
    except ParamsError as e:
        raise ParamsError(f"{source}: {e}") from None
    p.source = source
    return p


def load_params(path: str | Path, overrides: dict | None = None) -> StudyParams:
    """Read, merge `overrides` into, and validate a YAML parameter file."""
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"{path}: no such parameter file")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ParamsError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(raw, dict):
        raise ParamsError(f"{path}: expected a mapping of keys at the top level")
    return from_dict(deep_merge(raw, overrides or {}), source=str(path))
