"""The ONNX export every graph runtime reads, and the ONNX Runtime routes: fp32, dynamic int8 on the fused
graph, static int8 (QDQ) calibrated on real inputs. onnxruntime is imported in the functions that run it:
it is an optional dependency (the `bench` extra installs it alone on a small device)."""
from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np
import onnx
import torch

from kdlib.core.fingerprint import model_fingerprint
from kdlib.inference import routes
from kdlib.inference.runtimes.base import Runner, _quiet, _tensor_outputs, example_inputs


def export_onnx(model, path: str | Path) -> tuple[Path, tuple[str, ...], tuple[str, ...]]:
    """Export `model` to one self-contained ONNX file with dynamic batch and sequence axes.

    Returns (path, input names, output names). See the module docstring for the exporter choice.
    """

    path = Path(path)
    inputs = {k: torch.from_numpy(v) for k, v in example_inputs(model).items()}
    names = tuple(inputs)
    with torch.inference_mode():
        outputs = tuple(_tensor_outputs(model(**inputs)))

    class Outputs(torch.nn.Module):
        """Outputs as a tuple in `outputs` order, which the exporter names."""

        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask=None, token_type_ids=None):
            given = dict(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
            out = self.inner(**{k: v for k, v in given.items() if v is not None})
            return tuple(out[k] for k in outputs)

    batch, seq = torch.export.Dim("batch"), torch.export.Dim("seq")
    wrapper = Outputs(model).eval()  # a new Module starts in training mode: dropout would be exported
    with _quiet("torch.onnx", "torch.export"):
        program = torch.onnx.export(
            wrapper, (), kwargs=inputs, input_names=list(names), output_names=list(outputs),
            dynamic_shapes={k: {0: batch, 1: seq} for k in names}, dynamo=True, verbose=False,
        )
    proto = program.model_proto
    # Recorded shapes go stale when ORT's quantiser transposes weights; ORT re-infers them anyway.
    del proto.graph.value_info[:]
    # Per-node debug metadata (stack traces, module paths) would be most of a small model's file.
    for node in proto.graph.node:
        del node.metadata_props[:]
    onnx.save_model(proto, str(path), save_as_external_data=False)
    return path, names, outputs


def shared_export(model, path: str | Path) -> tuple[Path, tuple[str, ...], tuple[str, ...]]:
    """export_onnx, done once per model content in a process (or by its build workers: `build_graphs`), copied
    to `path`: every ONNX Runtime and OpenVINO route of a model reads the same graph, and exporting (10-20 s for
    MiniLM) is their slowest step."""
    key = export_key(model)
    if key not in _EXPORTS:
        graph, names_file = export_dir() / f"{key}.onnx", export_dir() / f"{key}.json"
        if not names_file.exists():  # written last: the export is whole once it is there
            _, names, outputs = export_onnx(model, graph)
            part = names_file.with_suffix(".part")
            part.write_text(json.dumps({"inputs": names, "outputs": outputs}))
            part.rename(names_file)
        names = json.loads(names_file.read_text())
        _EXPORTS[key] = graph, tuple(names["inputs"]), tuple(names["outputs"])
    source, names, outputs = _EXPORTS[key]
    shutil.copyfile(source, path)
    return Path(path), names, outputs


def export_key(model) -> str:
    """What decides a model's export: its class, weights and configuration."""
    config = model.config.to_json_string(use_diff=False) if hasattr(model, "config") else ""
    return hashlib.sha256(f"{type(model).__name__}-{model_fingerprint(model)}-{config}".encode()).hexdigest()[:24]


def shared_files(key: str, files: tuple[str, ...], build: Callable[[Path], Any], dest: Path) -> list[Path]:
    """The `files` that `build(folder)` writes, built once per `key` in a process and copied into `dest`: a
    quantised graph is timed in a route's run and again beside the other contenders (04), and quantising
    (calibration, NNCF's passes) takes seconds to tens of seconds a model."""
    folder = export_dir() / key
    if not folder.is_dir():
        part = folder.with_name(f"{key}.part")
        shutil.rmtree(part, ignore_errors=True)
        part.mkdir(parents=True)
        build(part)
        part.rename(folder)
    dest.mkdir(parents=True, exist_ok=True)
    return [Path(shutil.copyfile(folder / name, dest / name)) for name in files]


def derived_key(model, *parts) -> str:
    """The `shared_files` key of a graph built from a model's export: the export's key and what else decides
    the graph (the route, the int8 format, the calibration's digest)."""
    return hashlib.sha256("-".join(map(str, (export_key(model), *parts))).encode()).hexdigest()[:24]


def calibration_key(calibration: list[dict[str, Any]] | None) -> str:
    """A digest of calibration batches (their arrays' bytes, in order)."""
    digest = hashlib.sha256()
    for batch in calibration or []:
        for name in sorted(batch):
            digest.update(name.encode() + np.ascontiguousarray(np.asarray(batch[name], dtype=np.int64)).tobytes())
    return digest.hexdigest()[:24]


def export_dir() -> Path:
    """The folder of this process's shared exports and quantised graphs (made at first use, removed at exit)."""
    if not _EXPORT_DIR:
        if not _OWN_EXPORT_DIR:
            _OWN_EXPORT_DIR.append(tempfile.TemporaryDirectory(prefix="kd-exports-"))
        _EXPORT_DIR.append(Path(_OWN_EXPORT_DIR[0].name))
    return _EXPORT_DIR[0]


def use_export_dir(folder: str | Path) -> None:
    """Build into `folder` (another process's export_dir()) from now on: a build worker's graphs are then found
    there by that process's own prepare."""
    if _EXPORT_DIR and _EXPORT_DIR[0] == Path(folder):  # already there (a job run in this process)
        return
    _EXPORT_DIR[:] = [Path(folder)]
    _EXPORTS.clear()


def _strip_value_info(path: Path) -> Path:
    """Drop a graph's recorded shapes in place: ORT's quantiser re-infers them (see the module docstring)."""

    proto = onnx.load(str(path))
    del proto.graph.value_info[:]
    onnx.save_model(proto, str(path), save_as_external_data=False)
    return path


def fuse_for_onnxruntime(model, path: Path, out: Path) -> Path:
    """ONNX Runtime's transformer fusions of an exported graph (LayerNorm, Gelu, Attention where its patterns
    match), the step before quantising: quantised MatMuls would no longer match the fusion patterns."""
    from onnxruntime.transformers.optimizer import optimize_model

    config = model.config
    with _quiet("", "onnxruntime", "fusion_base", "onnx_model"):
        # opt_level=0: the graph fusions only, not ORT's session optimisations for this very machine.
        optimized = optimize_model(str(path), model_type="bert", opt_level=0,
                                   num_heads=getattr(config, "num_attention_heads", 0),
                                   hidden_size=getattr(config, "hidden_size", 0))
        optimized.save_model_to_file(str(out))
    return _strip_value_info(out)


def calibration_feeds(calibration: list[dict[str, Any]], input_names: tuple[str, ...]) -> list[dict[str, Any]]:
    """Calibration batches as a graph's int64 feeds (zeros for token_type_ids where a batch lacks them)."""

    feeds = []
    for batch in calibration:
        feed = {k: np.asarray(batch[k], dtype=np.int64) for k in input_names if k in batch}
        if "input_ids" not in feed:
            raise ValueError(f"a calibration batch has no input_ids (keys: {sorted(batch)})")
        if "attention_mask" in input_names and "attention_mask" not in feed:
            feed["attention_mask"] = np.ones_like(feed["input_ids"])
        if "token_type_ids" in input_names and "token_type_ids" not in feed:
            feed["token_type_ids"] = np.zeros_like(feed["input_ids"])
        feeds.append(feed)
    return feeds


# GELU as ONNX Runtime's fusions name it, and the ops of the unfused erf/tanh formula.
_GELU_OPS = frozenset({"Gelu", "BiasGelu", "FastGelu", "QuickGelu"})
_GELU_PARTS = frozenset({"Erf", "Tanh"})


def ffn_output_matmuls(proto: onnx.ModelProto) -> list[str]:
    """The MatMuls that read a GELU's output (each layer's FFN output matrix): the ones the int8 routes keep
    in fp32. A GELU's output has a few large values among many near zero, and one 8-bit scale per tensor for
    that input rounds the small ones away (Bondarenko et al. 2021, "Understanding and Overcoming the
    Challenges of Efficient Transformer Quantization"). Fused GELUs are found by name, unfused ones by the
    erf or tanh a few nodes up."""

    producer = {out: node for node in proto.graph.node for out in node.output}

    def from_gelu(tensor: str, hops: int = 4) -> bool:
        node = producer.get(tensor)
        if node is None or hops == 0:
            return False
        if node.op_type in _GELU_OPS or node.op_type in _GELU_PARTS:
            return True
        return node.op_type in ("Mul", "Add", "Div") and any(from_gelu(t, hops - 1) for t in node.input)

    return [n.name for n in proto.graph.node if n.op_type == "MatMul" and n.input and from_gelu(n.input[0])]


def quantize_onnx(model, path: Path, workdir: Path, precision: str, names: tuple[str, ...],
                  calibration: list[dict[str, Any]] | None = None) -> Path:
    """Fuse, then quantise an exported graph (MatMul only, per-channel weights, the FFN output matrices kept
    in fp32: `ffn_output_matmuls`) in this CPU's int8 format; returns the new file."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )

    fused = fuse_for_onnxruntime(model, path, workdir / "model.fused.onnx")
    fmt = routes.int8_format()
    # Fused ops (SkipLayerNormalization, ...) are outside ONNX's shape inference: their outputs are float.
    extra = {"DefaultTensorType": onnx.TensorProto.FLOAT}
    # Per-channel weights: a scale per output row, as cheap to run as one per tensor (measured on a QA student)
    common = {"op_types_to_quantize": ["MatMul"], "per_channel": True, "weight_type": QuantType[fmt["weight_type"]],
              "reduce_range": fmt["reduce_range"], "nodes_to_exclude": ffn_output_matmuls(onnx.load(str(fused))),
              "extra_options": extra}
    out = workdir / f"model.{precision}.onnx"
    with _quiet(""):  # the root logger: ORT advises pre-processing, which fails on this graph (see above)
        if precision == "int8":  # dynamic: activations are always uint8, quantised per batch
            quantize_dynamic(fused, out, **common)
        else:
            feeds = iter(calibration_feeds(calibration, names))

            class Batches(CalibrationDataReader):
                def get_next(self):
                    return next(feeds, None)

            quantize_static(fused, out, Batches(), quant_format=QuantFormat.QDQ,
                            activation_type=QuantType[fmt["activation_type"]],
                            calibrate_method=CalibrationMethod.MinMax, **common)
    fused.unlink()  # an intermediate: the route runs from `out` alone
    return out


def onnxruntime_route(model, runtime: str, precision: str, workdir: Path, threads: int,
                       calibration=None) -> Runner:
    import onnxruntime as ort

    path, names, outputs = shared_export(model, workdir / "model.onnx")
    if precision != "fp32":
        key = derived_key(model, "ort", precision, routes.int8_format(),
                          calibration_key(calibration if precision == "int8_static" else None))
        file = f"model.{precision}.onnx"
        path = shared_files(key, (file,),
                            lambda folder: quantize_onnx(model, path, folder, precision, names, calibration),
                            workdir)[0]
    session = ort.InferenceSession(str(path), routes.onnxruntime_options(threads), providers=["CPUExecutionProvider"])

    def run(inputs):
        return dict(zip(outputs, session.run(list(outputs), inputs)))

    return Runner(f"{runtime}/{precision}", runtime, precision, run, [path], names, outputs, threads,
                  ort.__version__)


_EXPORTS: dict[str, tuple[Path, tuple[str, ...], tuple[str, ...]]] = {}  # model content -> its export


# Where they live: this process's own folder, or (a build worker) its caller's. The own folder is held apart,
# for the life of the process: dropping it would delete it, and the exports other routes copy from.
_EXPORT_DIR: list[Path] = []
_OWN_EXPORT_DIR: list[tempfile.TemporaryDirectory] = []
