"""Inference runtimes: an adapter per route, one module per runtime (torch_route, onnx_route, openvino_route),
and `prepare`, which builds any route. The registry of routes is kdlib/inference/routes.py (light: configuration
validation reads it); its names are re-exported here, so `runtimes.ROUTES` and `runtimes.prepare` sit together.

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
  OpenVINO's .xml + .bin). The benchmark harness (`kdlib.inference.timing`) times every route through that one
  call, so the numbers differ only by runtime, not by harness.

Routes:
- torch/fp32, torch/bf16: eager PyTorch; bf16 casts the weights to bf16 (autocast, which converts them at every
  call, was slower than bf16 weights at both batch sizes on an AMX CPU).
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
- Both ONNX Runtime int8 routes keep each layer's FFN output MatMul (the one after the GELU) in fp32 and
  quantise the weights per output channel (`onnx_route.ffn_output_matmuls`). With every MatMul in int8 and
  one scale per tensor, 06's half-depth SQuAD student lost several F1 points, more than 06's 97% allows;
  with both changes it kept its fp32 F1, at some of the speed (each recipe's F1 and time, and the cost on a
  classifier: docs/benchmarks/int8_ffn_output.json).
- openvino/fp32: the ONNX export read and compiled by OpenVINO's CPU plugin with an f32 inference
  precision hint (the plugin would otherwise pick bf16 on AMX CPUs).
- openvino/bf16: the same export computed in bf16 (inference precision hint bf16); refused without native
  bf16, like torch/bf16.
- openvino/int8_static: that model quantised by NNCF (`nncf.quantize`, transformer preset) on the
  calibration inputs, what it leaves unquantised computed in bf16 where the CPU has native bf16 and in f32
  elsewhere (`routes.openvino_precision`); needs the optional `nncf` package (the `openvino` extra).

Static routes (`STATIC_PRECISIONS`) need `prepare(..., calibration=[{input_ids: ..., ...}, ...])`: int64
batches of real tokenised text (random ids give activation ranges that real text never has).

The int8 format follows ONNX Runtime's guidance for CPUs (the `quantize_static` docstring, and
onnxruntime.ai/docs/performance/model-optimizations/quantization.html), picked from the CPU flags by
`int8_format`: uint8 activations x int8 weights (U8S8) on x86; on x86 without VNNI the weights are
quantised to 7 bits (`reduce_range`), because the AVX2/AVX-512 U8S8 kernel (VPMADDUBSW) adds pairs of
products in int16 and can saturate, which VNNI's VPDPBUSD (int32 accumulation) cannot; on ARM int8
activations (S8S8).

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

"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import torch

from kdlib.inference.routes import (  # noqa: F401
    INPUT_NAMES,
    PRECISIONS,
    REQUIRED_PACKAGES,
    ROUTE_PACKAGES,
    ROUTES,
    STATIC_PRECISIONS,
    int8_format,
    needs_calibration,
    refusal,
)
from kdlib.inference.runtimes.base import Runner, example_inputs, model_input_names, random_batch  # noqa: F401
from kdlib.inference.runtimes.onnx_route import (  # noqa: F401
    calibration_feeds,
    export_dir,
    export_onnx,
    fuse_for_onnxruntime,
    onnxruntime_route,
    quantize_onnx,
    shared_export,
    use_export_dir,
)
from kdlib.inference.runtimes.openvino_route import nncf_int8, openvino_route, openvino_runner  # noqa: F401
from kdlib.inference.runtimes.torch_route import torch_dynamic_int8, torch_route  # noqa: F401


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

    tmp = None
    if workdir is None:
        tmp = tempfile.TemporaryDirectory(prefix=f"kd-{runtime}-{precision}-")
        workdir = tmp.name
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    threads = threads or torch.get_num_threads()
    model.eval()
    builder = {"torch": torch_route, "torch_compile": torch_route,
               "onnxruntime": onnxruntime_route, "openvino": openvino_route}[runtime]
    runner = builder(model, runtime, precision, workdir, threads, calibration)
    runner._tmp = tmp
    return runner


# The runtimes that run a graph built from the model (an export, quantised or not), not the model itself.
GRAPH_RUNTIMES = ("onnxruntime", "openvino")
# The graph routes whose prepare builds more than the shared export (a quantised graph, in export_dir()).
QUANTISED_GRAPH_ROUTES = frozenset({("onnxruntime", "int8"), ("onnxruntime", "int8_static"),
                                    ("openvino", "int8_static")})


def build_graphs(model, routes: list[tuple[str, str]], threads: int, calibration, folder: str) -> None:
    """A build worker's job (kdlib.pipeline.workers.map_jobs): `model`'s ONNX export and its quantised graphs for
    `routes`, built into `folder`, the caller's export_dir(), where the caller's own prepare of those routes then
    finds them: the same files it would have built (tests/test_runtimes.py compares them byte for byte, but for
    the numbers OpenVINO gives its nodes). Exporting and quantising run mostly in one Python thread, so two
    workers build two models at once. A route that fails here is left to the caller's prepare, which reports it."""
    use_export_dir(folder)
    model.eval()
    for runtime, precision in routes:
        try:
            with tempfile.TemporaryDirectory(prefix="kd-build-") as work:
                if (runtime, precision) in QUANTISED_GRAPH_ROUTES:
                    prepare(model, runtime, precision, work, threads, calibration)
                elif runtime in GRAPH_RUNTIMES:
                    shared_export(model, Path(work) / "model.onnx")
        except Exception:  # noqa: BLE001 - the caller's own prepare meets the error again and reports it in its row
            continue
