"""The registry of inference routes: each (runtime, precision) pair the study can time, the packages each
needs, and why this machine cannot run one (`refusal`). The only list of routes in the project: configuration
checks, the benchmark and the tests read it. Light on purpose: it imports no runtime."""
from __future__ import annotations

import importlib.util
import os
import shutil
from typing import Any

from kdlib.inference import machine

# runtime -> the precisions it offers. The one registry of routes.
ROUTES: dict[str, tuple[str, ...]] = {
    "torch": ("fp32", "bf16", "int8"),
    "torch_compile": ("fp32",),
    "onnxruntime": ("fp32", "int8", "int8_static"),
    "openvino": ("fp32", "bf16", "int8_static"),
}


# The code that decides how a route runs a model (kdlib modules, as memo keys name them): every memoised
# timing or output of a route is keyed by it.
RUNTIME_CODE = ("inference.runtimes", "inference.routes", "inference.openvino_calls")


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


# Model inputs a Runner may take, in the order ONNX graphs list them.
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")


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
    if precision == "bf16" and not machine.bf16_supported():
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
    flags = machine.cpu_flags() if flags is None else flags
    x86 = bool(flags & {"sse4_1", "avx", "avx2", "avx512f"})
    if not x86:  # ARM's int8 kernels prefer symmetric int8 activations
        return {"activation_type": "QInt8", "weight_type": "QInt8", "reduce_range": False}
    vnni = bool(flags & {"avx512_vnni", "avx_vnni", "amx_int8"})
    return {"activation_type": "QUInt8", "weight_type": "QInt8", "reduce_range": not vnni}


def openvino_precision(precision: str) -> str:
    """OpenVINO's inference precision for a route: bf16 for openvino/bf16, and for what int8_static leaves
    unquantised on a CPU with native bf16; f32 otherwise (the plugin would pick bf16 on AMX CPUs by itself,
    so the fp32 route says f32)."""
    if precision == "bf16" or (precision == "int8_static" and machine.bf16_supported()):
        return "bf16"
    return "f32"


def onnxruntime_options(threads: int):
    """ONNX Runtime session options for a timed session: `threads` intra-op threads, one inter-op thread (the
    graph is a chain: no parallel branches to feed), every graph optimisation, and no spinning. A spinning
    session's threads spin on after each call and take the cores from the model timed next in the same round:
    the PyTorch teacher timed in turn with one ran far slower than alone, which inflated every ONNX Runtime
    speed-up over it (a spinning session is faster alone; see docs/conventions.md)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def openvino_config(precision: str, threads: int | None = None, streams: int | None = None) -> dict:
    """OpenVINO CPU compile settings for a route's precision: the inference precision of `openvino_precision`,
    `threads` where given (every place that compiles a model uses these), and latency mode (one call uses
    every thread), or with `streams`, throughput mode: that many streams sharing the threads, each running
    calls of its own."""
    mode = ({"PERFORMANCE_HINT": "THROUGHPUT", "NUM_STREAMS": streams} if streams
            else {"PERFORMANCE_HINT": "LATENCY"})
    return {**mode, "INFERENCE_PRECISION_HINT": openvino_precision(precision),
            **({"INFERENCE_NUM_THREADS": threads} if threads else {})}
