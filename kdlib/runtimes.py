"""Inference runtimes: one registry of the routes a model can be benchmarked on, and an adapter per route.

A *route* is a (runtime, precision) pair from `ROUTES`, the only list of them in the project:
configuration checks, the benchmark and the tests all read it. For each route:

- `refusal(runtime, precision)` says why this machine cannot, or should not, run it (None when it can):
  an unknown name, a runtime package that is not installed, bf16 on a CPU without native bf16 (no
  avx512_bf16/amx_bf16 flag: torch would emulate it, slower than fp32), torch.compile without the C++
  compiler its inductor backend needs.
- `prepare(model, runtime, precision, workdir)` turns a PyTorch Hugging Face model into a `Runner`: a
  callable from a dict of int64 numpy inputs (input_ids, attention_mask, token_type_ids) to a dict of
  named float32 numpy outputs ({"logits": ...}, or {"start_logits": ..., "end_logits": ...} for QA),
  plus `size_mb`, the size of the artifact that route runs from (safetensors for torch, the .onnx file,
  OpenVINO's .xml + .bin). The benchmark harness (`kdlib.evaluate`) times every route through that one
  call, so the numbers differ only by runtime, not by harness.

Routes:
- torch/fp32, torch/bf16: eager PyTorch; bf16 is `torch.autocast` (weights stay fp32 on disk).
- torch/int8: `torch.ao.quantization.quantize_dynamic` on every Linear (int8 weights, activations
  quantised per batch). Kept although it is slow on some CPUs (2x slower than fp32 on an AVX2-only Zen 3):
  the comparison table shows where.
- torch_compile/fp32: `torch.compile` (inductor), one static specialisation per input shape.
- onnxruntime/fp32: an ONNX export run by ONNX Runtime's CPU provider (all graph optimisations).
- onnxruntime/int8: the export fused by ONNX Runtime's transformer optimizer (`optimize_model`,
  model_type "bert": SkipLayerNormalization, BiasGelu), then dynamically quantised, MatMul only: int8
  weights, uint8 activations quantised per batch at run time (QOperator: MatMulInteger).
- onnxruntime/int8_static: the fused export statically quantised (`quantize_static`, QDQ format, MatMul
  only) with activation ranges calibrated (MinMax) on real tokenised inputs passed to `prepare`.
- openvino/fp32: the ONNX export read and compiled by OpenVINO's CPU plugin with an f32 inference
  precision hint (the plugin would otherwise pick bf16 on AMX CPUs).
- openvino/int8_static: that model quantised by NNCF (`nncf.quantize`, transformer preset) on the
  calibration inputs; needs the optional `nncf` package (the `openvino` extra).

Static routes (`STATIC_PRECISIONS`) need `prepare(..., calibration=[{input_ids: ..., ...}, ...])`: int64
batches of real tokenised text (random ids give activation ranges that real text never has).

The int8 format follows ONNX Runtime's guidance for CPUs (the `quantize_static` docstring, and
onnxruntime.ai/docs/performance/model-optimizations/quantization.html), picked from the CPU flags by
`int8_format`: uint8 activations x int8 weights (U8S8) on x86; on x86 without VNNI the weights are
quantised to 7 bits (`reduce_range`), because the AVX2/AVX-512 U8S8 kernel (VPMADDUBSW) adds pairs of
products in int16 and can saturate, which VNNI's VPDPBUSD (int32 accumulation) cannot; on ARM int8
activations (S8S8). Per-tensor weights (per_channel=False): ORT's fastest on CPU.

ONNX exporter: `torch.onnx.export(..., dynamo=True)` (torch.export + onnxscript), with dynamic batch and
sequence dimensions: the exporter torch maintains (the TorchScript one, `dynamo=False`, is deprecated).
Candidates tried on MiniLM (torch 2.13, onnxruntime 1.31, transformers 5.23, OpenVINO 2026.4):
- dynamo export: logits equal to PyTorch's (~1e-8). ORT's quantiser failed on it because the graph records
  value_info (shapes) for initializers, and `quantize_dynamic` transposes Gemm weights into MatMul
  weights in place, so ONNX shape inference then fails with "Inferred shape and existing shape differ in
  dimension 0" (the classifier weight). ORT's `quant_pre_process` does not help (its symbolic shape
  inference fails on this graph). Dropping the recorded value_info before fusing and quantising does:
  ORT re-infers every shape itself. This is what the ONNX routes use.
- ORT's transformer optimizer fuses SkipLayerNormalization and BiasGelu on the dynamo graph but not
  Attention or EmbedLayerNormalization (its patterns match the TorchScript exporter's graph of eager
  attention, where it fuses all four); onnxscript's `optimize_for_ort` fuses the same two.
- transformers' own (experimental) `OnnxExporter` with `ort_fusions="cpu"` fuses Attention too, but it
  patches torch internals, warns of version drift and took 10-20 s per export; its int8 graph was not
  measurably faster than the dynamo one (2 shared cores, under load: small differences are noise).
- OpenVINO's `ov.convert_model` from the torch model gave the same speed as reading the ONNX export, so
  the OpenVINO routes read the one export both runtimes share; OpenVINO does its own fusions, and NNCF's
  int8 was the fastest route of the MiniLM teacher we measured on an AVX-512 VNNI CPU (Zen 4).
The export is saved as one self-contained .onnx file (no external .data), so its size on disk is one
file's size.

Nothing heavy is imported at module level: configuration validation imports this module.
"""
from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import platform
import shutil
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

# runtime -> the precisions it offers. The one registry of routes.
ROUTES: dict[str, tuple[str, ...]] = {
    "torch": ("fp32", "bf16", "int8"),
    "torch_compile": ("fp32",),
    "onnxruntime": ("fp32", "int8", "int8_static"),
    "openvino": ("fp32", "int8_static"),
}
# Precisions whose quantiser fixes activation ranges from calibration inputs (prepare's `calibration`).
STATIC_PRECISIONS = frozenset({"int8_static"})
PRECISIONS: tuple[str, ...] = tuple(dict.fromkeys(p for ps in ROUTES.values() for p in ps))

# Python packages (import names) each runtime needs; the ONNX routes need the exporter's too.
_ONNX_EXPORT = ("onnx", "onnxscript")
REQUIRED_PACKAGES: dict[str, tuple[str, ...]] = {
    "torch": ("torch",),
    "torch_compile": ("torch",),
    "onnxruntime": ("onnxruntime", *_ONNX_EXPORT),
    "openvino": ("openvino", *_ONNX_EXPORT),
}
# Packages a single route needs beyond its runtime's.
ROUTE_PACKAGES: dict[tuple[str, str], tuple[str, ...]] = {("openvino", "int8_static"): ("nncf",)}
# CPU flags that mean native bf16 arithmetic (AVX-512 BF16 dot products or AMX tiles).
NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
# Model inputs a Runner may take, in the order ONNX graphs list them.
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")


# --------------------------------------------------------------------------
# What this machine can run
# --------------------------------------------------------------------------


def proc_cpuinfo() -> dict[str, str]:
    """First processor block of /proc/cpuinfo (empty off Linux)."""
    info: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if not line.strip():
                    break  # end of the first processor block
                key, _, value = line.partition(":")
                info[key.strip()] = value.strip()
    except OSError:
        pass
    return info


def cpu_flags() -> set[str]:
    """The CPU's feature flags. Tests replace this function to fake a CPU."""
    info = proc_cpuinfo()
    # x86 calls the field "flags", arm64 calls it "Features".
    return set((info.get("flags") or info.get("Features") or "").split())


def cpu_model() -> str:
    return proc_cpuinfo().get("model name") or platform.processor() or "unknown"


def bf16_supported() -> bool:
    """True only if the CPU has native bf16 instructions (AMX or AVX-512 BF16)."""
    return bool(cpu_flags() & NATIVE_BF16_FLAGS)


def _installed(package: str) -> bool:
    return importlib.util.find_spec(package) is not None


def refusal(runtime: str, precision: str) -> str | None:
    """Why this machine cannot (or should not) run `precision` on `runtime`; None when it can."""
    if runtime not in ROUTES:
        return f"unknown runtime {runtime!r} (known: {', '.join(ROUTES)})"
    if precision not in ROUTES[runtime]:
        return f"{runtime} offers no {precision!r} (it offers: {', '.join(ROUTES[runtime])})"
    needed = (*REQUIRED_PACKAGES[runtime], *ROUTE_PACKAGES.get((runtime, precision), ()))
    missing = [p for p in needed if not _installed(p)]
    if missing:
        return f"package(s) not installed: {', '.join(missing)}"
    if precision == "bf16" and not bf16_supported():
        return "no native bf16 on this CPU (neither avx512_bf16 nor amx_bf16): emulated bf16 is slower than fp32"
    if runtime == "torch_compile":
        # Inductor compiles C++ kernels with $CXX or g++ (torch._inductor.config.cpp.cxx).
        compiler = os.environ.get("CXX", "g++")
        if shutil.which(compiler) is None:
            return f"torch.compile (inductor) needs a C++ compiler; {compiler!r} is not on PATH"
    return None


def needs_calibration(runtime: str, precision: str) -> bool:
    """Whether `prepare` needs calibration inputs for this route (static quantisation)."""
    return precision in STATIC_PRECISIONS


def int8_format(flags: set[str] | None = None) -> dict[str, Any]:
    """ONNX Runtime's int8 settings for this CPU (see the module docstring): activation type, weight type and
    reduce_range, as names of `onnxruntime.quantization.QuantType`."""
    flags = cpu_flags() if flags is None else flags
    x86 = bool(flags & {"sse4_1", "avx", "avx2", "avx512f"})
    if not x86:  # ARM's int8 kernels prefer symmetric int8 activations
        return {"activation_type": "QInt8", "weight_type": "QInt8", "reduce_range": False}
    vnni = bool(flags & {"avx512_vnni", "avx_vnni", "amx_int8"})
    return {"activation_type": "QUInt8", "weight_type": "QInt8", "reduce_range": not vnni}


def available_routes() -> dict[tuple[str, str], str | None]:
    """Every route of ROUTES with its refusal reason (None: runnable here)."""
    return {(r, p): refusal(r, p) for r, ps in ROUTES.items() for p in ps}


# --------------------------------------------------------------------------
# Runners
# --------------------------------------------------------------------------


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


def prepare(model, runtime: str, precision: str, workdir: str | Path | None = None,
            threads: int | None = None, calibration: list[dict[str, Any]] | None = None) -> Runner:
    """Build the (runtime, precision) route of a PyTorch Hugging Face model, writing its files into `workdir`.

    Raises ValueError with the refusal reason if this machine should not run the route. `threads` is the
    intra-op thread count baked into ONNX Runtime / OpenVINO sessions (None: torch's current count);
    torch routes use whatever `torch.set_num_threads` is in force when called. The model is put in eval
    mode (the torch routes run it as it is). `calibration`: batches of real tokenised inputs (dicts of int64
    arrays: input_ids, attention_mask, token_type_ids) for the static routes; other routes ignore it.
    """
    reason = refusal(runtime, precision)
    if reason:
        raise ValueError(f"cannot run {runtime}/{precision}: {reason}")
    if needs_calibration(runtime, precision) and not calibration:
        raise ValueError(f"{runtime}/{precision} is static quantisation: pass calibration=[{{'input_ids': ..., "
                         f"'attention_mask': ...}}, ...], batches of real tokenised inputs")
    import torch

    tmp = None
    if workdir is None:
        tmp = tempfile.TemporaryDirectory(prefix=f"kd-{runtime}-{precision}-")
        workdir = tmp.name
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    threads = threads or torch.get_num_threads()
    model.eval()
    builder = {"torch": _torch_route, "torch_compile": _torch_route,
               "onnxruntime": _onnxruntime_route, "openvino": _openvino_route}[runtime]
    runner = builder(model, runtime, precision, workdir, threads, calibration)
    runner._tmp = tmp
    return runner


def random_batch(batch_size: int, seq_len: int, vocab_size: int, input_names=INPUT_NAMES,
                 seed: int = 0) -> dict[str, Any]:
    """A fixed random int64 batch (same ids for the same shape and seed); no padding, token type 0."""
    import numpy as np

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
    import inspect

    params = inspect.signature(model.forward).parameters
    return tuple(n for n in INPUT_NAMES if n in params)


def _tensor_outputs(output) -> dict[str, Any]:
    """The tensor fields of a ModelOutput (logits, start_logits, ...), dropping None/tuples."""
    import torch

    return {k: v for k, v in output.items() if torch.is_tensor(v)}


def _save_safetensors(model, path: Path) -> Path:
    from safetensors.torch import save_model

    save_model(model, str(path))  # stores tied tensors once
    return path


def _torch_route(model, runtime: str, precision: str, workdir: Path, threads: int, calibration=None) -> Runner:
    import torch

    if precision == "int8":
        module = torch_dynamic_int8(model)
        files = [workdir / "model.int8.pt"]  # packed int8 weights: safetensors cannot hold them
        torch.save(module.state_dict(), files[0])
    else:
        files = [_save_safetensors(model, workdir / "model.safetensors")]
        # dynamic=False: one static graph per input shape, the fastest for a fixed benchmark batch.
        module = torch.compile(model, dynamic=False) if runtime == "torch_compile" else model
    device = next(model.parameters()).device
    names = model_input_names(model)

    def run(inputs):
        autocast = (torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16"
                    else contextlib.nullcontext())
        with torch.inference_mode(), autocast:
            out = module(**{k: torch.from_numpy(v).to(device) for k, v in inputs.items()})
        # float() first: numpy has no bf16.
        return {k: v.float().cpu().numpy() for k, v in _tensor_outputs(out).items()}

    with torch.inference_mode():  # output names from the eager model: compiling here would be wasted
        outputs = tuple(_tensor_outputs(model(**{k: torch.from_numpy(v).to(device)
                                                 for k, v in example_inputs(model).items()})))
    return Runner(f"{runtime}/{precision}", runtime, precision, run, files, names, outputs, None, torch.__version__)


def torch_dynamic_int8(model):
    """A copy of `model` with every nn.Linear replaced by torch's dynamically quantised int8 Linear."""
    import copy

    import torch

    with _quiet("torch"), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization announces its move to torchao
        return torch.ao.quantization.quantize_dynamic(copy.deepcopy(model).eval(), {torch.nn.Linear},
                                                      dtype=torch.qint8)


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


def export_onnx(model, path: str | Path) -> tuple[Path, tuple[str, ...], tuple[str, ...]]:
    """Export `model` to one self-contained ONNX file with dynamic batch and sequence axes.

    Returns (path, input names, output names). See the module docstring for the exporter choice.
    """
    import onnx
    import torch

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


_EXPORTS: dict[str, tuple[Path, tuple[str, ...], tuple[str, ...]]] = {}  # model content -> its export
_EXPORT_DIR: list[tempfile.TemporaryDirectory] = []  # where they live, for the life of the process


def shared_export(model, path: str | Path) -> tuple[Path, tuple[str, ...], tuple[str, ...]]:
    """export_onnx, done once per model content in a process, copied to `path`: every ONNX Runtime and
    OpenVINO route of a model reads the same graph, and exporting (10-20 s for MiniLM) is their slowest step."""
    import hashlib
    import shutil

    from kdlib.distill import model_fingerprint

    config = model.config.to_json_string(use_diff=False) if hasattr(model, "config") else ""
    key = hashlib.sha256(f"{type(model).__name__}-{model_fingerprint(model)}-{config}".encode()).hexdigest()[:24]
    if key not in _EXPORTS:
        if not _EXPORT_DIR:
            _EXPORT_DIR.append(tempfile.TemporaryDirectory(prefix="kd-exports-"))
        _EXPORTS[key] = export_onnx(model, Path(_EXPORT_DIR[0].name) / f"{key}.onnx")
    source, names, outputs = _EXPORTS[key]
    shutil.copyfile(source, path)
    return Path(path), names, outputs


def _strip_value_info(path: Path) -> Path:
    """Drop a graph's recorded shapes in place: ORT's quantiser re-infers them (see the module docstring)."""
    import onnx

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
    import numpy as np

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


def quantize_onnx(model, path: Path, workdir: Path, precision: str, names: tuple[str, ...],
                  calibration: list[dict[str, Any]] | None = None) -> Path:
    """Fuse, then quantise an exported graph (MatMul only) in this CPU's int8 format; returns the new file."""
    import onnx
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_dynamic, quantize_static)

    fused = fuse_for_onnxruntime(model, path, workdir / "model.fused.onnx")
    fmt = int8_format()
    # Fused ops (SkipLayerNormalization, ...) are outside ONNX's shape inference: their outputs are float.
    extra = {"DefaultTensorType": onnx.TensorProto.FLOAT}
    out = workdir / f"model.{precision}.onnx"
    with _quiet(""):  # the root logger: ORT advises pre-processing, which fails on this graph (see above)
        if precision == "int8":  # dynamic: activations are always uint8, quantised per batch
            quantize_dynamic(fused, out, op_types_to_quantize=["MatMul"], weight_type=QuantType[fmt["weight_type"]],
                             reduce_range=fmt["reduce_range"], extra_options=extra)
        else:
            feeds = iter(calibration_feeds(calibration, names))

            class Batches(CalibrationDataReader):
                def get_next(self):
                    return next(feeds, None)

            quantize_static(fused, out, Batches(), quant_format=QuantFormat.QDQ, op_types_to_quantize=["MatMul"],
                            activation_type=QuantType[fmt["activation_type"]],
                            weight_type=QuantType[fmt["weight_type"]], reduce_range=fmt["reduce_range"],
                            calibrate_method=CalibrationMethod.MinMax, extra_options=extra)
    fused.unlink()  # an intermediate: the route runs from `out` alone
    return out


def _onnxruntime_route(model, runtime: str, precision: str, workdir: Path, threads: int,
                       calibration=None) -> Runner:
    import onnxruntime as ort

    path, names, outputs = shared_export(model, workdir / "model.onnx")
    if precision != "fp32":
        path = quantize_onnx(model, path, workdir, precision, names, calibration)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1  # the graph is a chain: no parallel branches to feed
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def run(inputs):
        return dict(zip(outputs, session.run(list(outputs), inputs)))

    return Runner(f"{runtime}/{precision}", runtime, precision, run, [path], names, outputs, threads,
                  ort.__version__)


OPENVINO_CONFIG = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"}


def _openvino_route(model, runtime: str, precision: str, workdir: Path, threads: int, calibration=None) -> Runner:
    import openvino as ov

    path, names, outputs = shared_export(model, workdir / "model.onnx")
    core = ov.Core()
    ov_model = core.read_model(str(path))
    if precision == "int8_static":
        ov_model = nncf_int8(ov_model, calibration_feeds(calibration, names))
    xml = workdir / "openvino" / "model.xml"
    xml.parent.mkdir(exist_ok=True)
    # compress_to_fp16=False: keep fp32 weights, so the fp32 route is fp32 on disk too.
    ov.save_model(ov_model, str(xml), compress_to_fp16=False)
    # The f32 hint keeps the layers left in float at fp32 (the plugin would otherwise pick bf16 on AMX CPUs).
    return openvino_runner(core, xml, runtime, precision, [xml, xml.with_suffix(".bin")], names, outputs, threads)


def openvino_runner(core, model_file: Path, runtime: str, precision: str, files: list[Path], names, outputs,
                    threads: int, inference_precision: str = "f32") -> Runner:
    """A Runner of `model_file` (OpenVINO IR or ONNX) compiled by OpenVINO's CPU plugin, computing in
    `inference_precision` ("f32"; "bf16" for step 05's encoder on CPUs with native bf16)."""
    import openvino as ov

    settings = {**OPENVINO_CONFIG, "INFERENCE_PRECISION_HINT": inference_precision, "INFERENCE_NUM_THREADS": threads}
    compiled = core.compile_model(str(model_file), "CPU", settings)
    request = compiled.create_infer_request()
    ports = [compiled.output(name) for name in outputs]

    def run(inputs):
        result = request.infer(inputs)
        return {name: result[port] for name, port in zip(outputs, ports)}

    return Runner(f"{runtime}/{precision}", runtime, precision, run, files, names, outputs, threads, ov.__version__)


def nncf_int8(ov_model, feeds: list[dict[str, Any]]):
    """NNCF's post-training int8 quantisation of an OpenVINO model, calibrated on `feeds`."""
    import nncf

    import io

    nncf.set_log_level(logging.ERROR)
    # Its progress bars (rich) have no switch; they would fill a notebook's output.
    with _quiet("nncf"), contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        return nncf.quantize(ov_model, nncf.Dataset(feeds), model_type=nncf.ModelType.TRANSFORMER,
                             subset_size=len(feeds))
