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
- torch_compile/fp32: `torch.compile` (inductor), one static specialisation per input shape.
- onnxruntime/fp32: an ONNX export run by ONNX Runtime's CPU provider (all graph optimisations).
- onnxruntime/int8: that export after ORT's dynamic quantisation, MatMul only (int8 weights, activations
  quantised per batch at run time; Gemm layers are turned into MatMul by ORT and included).
- openvino/fp32: the same ONNX export read and compiled by OpenVINO's CPU plugin with an f32 inference
  precision hint (the plugin would otherwise pick bf16 on AMX CPUs).

ONNX exporter: `torch.onnx.export(..., dynamo=True)` (torch.export + onnxscript), with dynamic batch and
sequence dimensions. Both exporters give logits equal to PyTorch's (~1e-8) on BERT, and ONNX Runtime runs
both graphs about equally fast (MiniLM, 2 threads, seq 64: fp32 5.7 ms either at batch 1, 154 vs 149 ms
at batch 32); dynamo is the exporter torch maintains (the TorchScript one is deprecated). Its one snag:
it records value_info (shapes) for initializers, and ORT's `quantize_dynamic` transposes Gemm weights
into MatMul weights in place, so ONNX shape inference then fails with "Inferred shape and existing
shape differ in dimension 0: (32) vs (3)" (the classifier weight). `quant_pre_process` does not help (its
symbolic shape inference fails on this graph); dropping the recorded value_info before quantising does,
as ORT re-infers every shape itself. The export is saved
as one self-contained .onnx file (no external .data), so its size on disk is one file's size.

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
    "torch": ("fp32", "bf16"),
    "torch_compile": ("fp32",),
    "onnxruntime": ("fp32", "int8"),
    "openvino": ("fp32",),
}
PRECISIONS: tuple[str, ...] = tuple(dict.fromkeys(p for ps in ROUTES.values() for p in ps))

# Python packages (import names) each runtime needs; the ONNX routes need the exporter's too.
_ONNX_EXPORT = ("onnx", "onnxscript")
REQUIRED_PACKAGES: dict[str, tuple[str, ...]] = {
    "torch": ("torch",),
    "torch_compile": ("torch",),
    "onnxruntime": ("onnxruntime", *_ONNX_EXPORT),
    "openvino": ("openvino", *_ONNX_EXPORT),
}
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
    missing = [p for p in REQUIRED_PACKAGES[runtime] if not _installed(p)]
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
            threads: int | None = None) -> Runner:
    """Build the (runtime, precision) route of a PyTorch Hugging Face model, writing its files into `workdir`.

    Raises ValueError with the refusal reason if this machine should not run the route. `threads` is the
    intra-op thread count baked into ONNX Runtime / OpenVINO sessions (None: torch's current count);
    torch routes use whatever `torch.set_num_threads` is in force when called. The model is put in eval
    mode (the torch routes run it as it is).
    """
    reason = refusal(runtime, precision)
    if reason:
        raise ValueError(f"cannot run {runtime}/{precision}: {reason}")
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
    runner = builder(model, runtime, precision, workdir, threads)
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


def _torch_route(model, runtime: str, precision: str, workdir: Path, threads: int) -> Runner:
    import torch

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


def _onnxruntime_route(model, runtime: str, precision: str, workdir: Path, threads: int) -> Runner:
    import onnxruntime as ort

    path, names, outputs = export_onnx(model, workdir / "model.onnx")
    if precision == "int8":
        from onnxruntime.quantization import QuantType, quantize_dynamic

        int8 = workdir / "model.int8.onnx"
        with _quiet(""):  # the root logger: ORT advises pre-processing, which fails on this graph (see above)
            quantize_dynamic(path, int8, weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"])
        path = int8
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1  # the graph is a chain: no parallel branches to feed
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def run(inputs):
        return dict(zip(outputs, session.run(list(outputs), inputs)))

    return Runner(f"{runtime}/{precision}", runtime, precision, run, [path], names, outputs, threads,
                  ort.__version__)


def _openvino_route(model, runtime: str, precision: str, workdir: Path, threads: int) -> Runner:
    import openvino as ov

    path, names, outputs = export_onnx(model, workdir / "model.onnx")
    core = ov.Core()
    xml = workdir / "openvino" / "model.xml"
    xml.parent.mkdir(exist_ok=True)
    # compress_to_fp16=False: keep fp32 weights, so the fp32 route is fp32 on disk too.
    ov.save_model(core.read_model(str(path)), str(xml), compress_to_fp16=False)
    compiled = core.compile_model(str(xml), "CPU", {
        "INFERENCE_NUM_THREADS": threads,
        "INFERENCE_PRECISION_HINT": "f32",
        "PERFORMANCE_HINT": "LATENCY",
    })
    request = compiled.create_infer_request()
    ports = [compiled.output(name) for name in outputs]

    def run(inputs):
        result = request.infer(inputs)
        return {name: result[port] for name, port in zip(outputs, ports)}

    return Runner(f"{runtime}/{precision}", runtime, precision, run, [xml, xml.with_suffix(".bin")],
                  names, outputs, threads, ov.__version__)
