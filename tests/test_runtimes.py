"""The route registry, refusals, and the runners' outputs and sizes (kdlib.inference.runtimes)."""
from __future__ import annotations

import copy
import importlib
import math
import os
import re
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
from transformers import BertConfig, BertForQuestionAnswering, BertForSequenceClassification, BertModel

from kdlib.inference import machine, routes
from kdlib.inference import runtimes as rt
from kdlib.inference import timing as ev
from kdlib.inference.runtimes import onnx_route

TINY = dict(vocab_size=1000, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
            num_labels=3)
FAST = dict(batch_size=2, seq_len=8, warmup=1, repeats=2)
ALL_ROUTES = [(r, p) for r, ps in rt.ROUTES.items() for p in ps]
STATIC_ROUTES = [(r, p) for r, p in ALL_ROUTES if rt.needs_calibration(r, p)]
QUANTISED = sorted(rt.QUANTISED_GRAPH_ROUTES)
INT8_ROUTES = [(r, p) for r, p in ALL_ROUTES if p.startswith("int8")]
# Calibration batches for the static routes: shapes unlike the export example's, some rows padded.
CALIBRATION = [rt.random_batch(4, 12, 1000, seed=10 + i) for i in range(4)]
for _batch in CALIBRATION:
    _batch["attention_mask"][0, 6:] = 0


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return BertForSequenceClassification(BertConfig(**TINY)).eval()


@pytest.fixture(scope="module")
def bench(tiny, tmp_path_factory):
    """One Benchmark for the module: each route is prepared (exported, compiled) once and reused."""
    return ev.Benchmark(tiny, "tiny", workdir=tmp_path_factory.mktemp("routes"))


@pytest.fixture(scope="module")
def static_runners(tiny, tmp_path_factory):
    """The static routes, prepared once each with CALIBRATION (Benchmark prepares routes without it)."""
    folder = tmp_path_factory.mktemp("static")
    return {(r, p): rt.prepare(tiny, r, p, folder / f"{r}-{p}", calibration=CALIBRATION)
            for r, p in STATIC_ROUTES if not rt.refusal(r, p)}


def runner_or_skip(bench, runtime, precision, static_runners=None):
    reason = rt.refusal(runtime, precision)
    if reason:
        pytest.skip(f"{runtime}/{precision} refused here: {reason}")
    if rt.needs_calibration(runtime, precision):
        return static_runners[(runtime, precision)]
    return bench.runner(runtime, precision)


def padded_batch(model, batch_size=3, seq_len=11):
    """A batch unlike the export example (other shape, padded rows), to exercise the dynamic axes."""
    inputs = rt.example_inputs(model, batch_size, seq_len, seed=1)
    inputs["attention_mask"][1, 7:] = 0
    inputs["attention_mask"][2, 4:] = 0
    return inputs


# ---------------------------------------------------------------- registry and refusals


def test_routes_registry_is_the_source_of_precisions():
    assert rt.ROUTES["torch"][0] == "fp32"  # the reference route exists
    assert set(rt.PRECISIONS) == {p for ps in rt.ROUTES.values() for p in ps}
    assert set(rt.REQUIRED_PACKAGES) == set(rt.ROUTES)


def test_the_route_registry_imports_without_torch():
    # Configuration validation and the artifact loader read the registry of routes: it must stay cheap.
    code = "import sys, kdlib.inference.routes as r; r.refusal('torch', 'fp32'); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("runtime,precision,words", [
    ("tensorrt", "fp32", "unknown runtime"),
    ("torch_compile", "int8", "offers no"),
    ("onnxruntime", "bf16", "offers no"),
])
def test_unknown_routes_are_refused_with_a_reason(runtime, precision, words):
    assert words in rt.refusal(runtime, precision)


@pytest.mark.parametrize("flags", [set(), {"avx2", "avx512f", "avx512_vnni"}])
def test_bf16_refused_without_native_flags(monkeypatch, flags):
    monkeypatch.setattr(machine, "cpu_flags", lambda: flags)
    reason = rt.refusal("torch", "bf16")
    assert "avx512_bf16" in reason and "amx_bf16" in reason
    assert rt.refusal("torch", "fp32") is None  # only bf16 depends on the flags


@pytest.mark.parametrize("flags", [{"avx512_bf16"}, {"amx_bf16", "amx_tile"}])
def test_bf16_accepted_with_native_flags(monkeypatch, flags):
    monkeypatch.setattr(machine, "cpu_flags", lambda: flags)
    assert rt.refusal("torch", "bf16") is None and machine.bf16_supported()


def test_missing_package_is_refused(monkeypatch):
    real = routes._installed
    monkeypatch.setattr(routes, "_installed", lambda name: name != "openvino" and real(name))
    assert "openvino" in rt.refusal("openvino", "fp32")
    assert rt.refusal("openvino", "fp32") != rt.refusal("onnxruntime", "fp32")


def test_torch_compile_refused_without_compiler(monkeypatch):
    monkeypatch.setenv("CXX", "no-such-compiler-xyz")
    assert "compiler" in rt.refusal("torch_compile", "fp32")


def test_prepare_raises_for_a_refused_route(tiny):
    with pytest.raises(ValueError, match="unknown runtime"):
        rt.prepare(tiny, "nope", "fp32")


# ---------------------------------------------------------------- every route


@pytest.mark.parametrize("runtime,precision", [r for r in ALL_ROUTES if r not in STATIC_ROUTES])
def test_every_route_runs_or_is_refused_with_a_reason(bench, runtime, precision):
    row = bench.run(ev.BenchmarkSettings(**FAST), runtime, precision)
    assert (row["runtime"], row["precision"]) == (runtime, precision)
    if rt.refusal(runtime, precision):
        assert row["status"] == "refused" and row["reason"] == rt.refusal(runtime, precision)
        assert math.isnan(row["latency_ms_median"])
    else:
        assert row["status"] == "ok", row["reason"]
        assert 0 < row["latency_ms_median"] <= row["latency_ms_p95"] and row["size_mb"] > 0
        assert row["runtime_version"]


# ---------------------------------------------------------------- outputs agree


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino", "torch_compile"])
def test_fp32_graph_runtimes_match_torch(bench, tiny, runtime):
    """The issue's "done when": the same call on a torch runner and a graph runner, outputs within 1e-4."""
    reference = runner_or_skip(bench, "torch", "fp32")
    other = runner_or_skip(bench, runtime, "fp32")
    for batch_size, seq_len in [(3, 11), (1, 5)]:
        inputs = padded_batch(tiny, batch_size, seq_len) if batch_size == 3 else rt.example_inputs(tiny, 1, 5)
        expected, got = reference(inputs), other(inputs)
        assert set(got) == set(expected) == {"logits"}
        assert got["logits"].dtype == np.float32 and got["logits"].shape == (batch_size, 3)
        np.testing.assert_allclose(got["logits"], expected["logits"], atol=1e-4, rtol=0)


def test_torch_runner_matches_the_model(bench, tiny):
    inputs = padded_batch(tiny)
    with torch.inference_mode():
        direct = tiny(**{k: torch.from_numpy(v) for k, v in inputs.items()}).logits.numpy()
    np.testing.assert_array_equal(runner_or_skip(bench, "torch", "fp32")(inputs)["logits"], direct)


def test_int8_is_close_to_fp32_and_smaller(bench, tiny):
    import onnx

    fp32 = runner_or_skip(bench, "onnxruntime", "fp32")
    int8 = runner_or_skip(bench, "onnxruntime", "int8")
    inputs = padded_batch(tiny)
    a, b = fp32(inputs)["logits"], int8(inputs)["logits"]
    # Loose by design: int8 weights and per-batch activation scales; within 10% of the logits' scale.
    assert np.abs(a - b).max() <= 0.1 * np.abs(a).max()
    assert not np.array_equal(a, b)  # it really is another computation
    graph = onnx.load(str(int8.files[0])).graph
    weights = {i.name for i in graph.initializer}
    assert {n.op_type for n in graph.node} & {"MatMulInteger", "DynamicQuantizeMatMul"}
    # Every MatMul by a weight is quantised but the FFN outputs; those left multiply activations (attention).
    from kdlib.inference.runtimes.onnx_route import ffn_output_matmuls

    by_weight = {n.name for n in graph.node if n.op_type == "MatMul" and set(n.input) & weights}
    assert by_weight and by_weight == set(ffn_output_matmuls(onnx.load(str(int8.files[0]))))
    assert int8.size_mb < fp32.size_mb


@pytest.mark.parametrize("runtime", ["torch", "openvino"])
def test_bf16_route_close_to_fp32(monkeypatch, tiny, tmp_path, runtime):
    # Faking native support exercises the bf16 paths on any CPU (the timing would be meaningless).
    if rt.refusal(runtime, "fp32"):
        pytest.skip(rt.refusal(runtime, "fp32"))
    monkeypatch.setattr(machine, "cpu_flags", lambda: {"avx512_bf16"})
    inputs = padded_batch(tiny)
    a = rt.prepare(tiny, "torch", "fp32", tmp_path / "a")(inputs)["logits"]
    runner = rt.prepare(tiny, runtime, "bf16", tmp_path / "b")
    b = runner(inputs)["logits"]
    assert b.dtype == np.float32
    assert np.abs(a - b).max() <= 0.05 * np.abs(a).max()  # bf16 keeps 8 bits of mantissa
    assert next(tiny.parameters()).dtype == torch.float32  # the route cast a copy, not the model


def test_openvino_computes_what_int8_leaves_unquantised_in_bf16_only_where_native(monkeypatch):
    from kdlib.inference import routes

    monkeypatch.setattr(machine, "cpu_flags", lambda: {"avx2", "avx512_bf16"})
    assert [routes.openvino_precision(p) for p in ("fp32", "bf16", "int8_static")] == ["f32", "bf16", "bf16"]
    monkeypatch.setattr(machine, "cpu_flags", lambda: {"avx2"})
    assert [routes.openvino_precision(p) for p in ("fp32", "int8_static")] == ["f32", "f32"]


def test_question_answering_outputs_are_named(tiny, tmp_path):
    """Outputs are a dict by name, so QA models (start/end logits) go through the same routes."""
    torch.manual_seed(0)
    qa = BertForQuestionAnswering(BertConfig(**{**TINY, "num_labels": 2})).eval()  # start, end
    inputs = padded_batch(qa)
    expected = rt.prepare(qa, "torch", "fp32", tmp_path / "t")(inputs)
    if rt.refusal("onnxruntime", "fp32"):
        pytest.skip(rt.refusal("onnxruntime", "fp32"))
    got = rt.prepare(qa, "onnxruntime", "fp32", tmp_path / "o")(inputs)
    assert set(got) == set(expected) == {"start_logits", "end_logits"}
    for key in got:
        np.testing.assert_allclose(got[key], expected[key], atol=1e-4, rtol=0)


def test_predict_through_a_runner_matches_torch(bench, tiny):
    rng = np.random.default_rng(0)
    examples = [{"input_ids": rng.integers(1, 1000, size=n).tolist(), "label": i % 3} for i, n in enumerate([3, 9, 5, 2, 7])]
    expected, labels = ev.predict(tiny, examples, batch_size=2)
    got, labels2 = ev.predict(runner_or_skip(bench, "onnxruntime", "fp32"), examples, batch_size=2)
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)
    assert labels.tolist() == labels2.tolist() == [0, 1, 2, 0, 1]


# ---------------------------------------------------------------- quantised routes


def test_static_routes_are_registered_and_need_calibration():
    assert STATIC_ROUTES and all(p in rt.STATIC_PRECISIONS for _, p in STATIC_ROUTES)
    assert not rt.needs_calibration("onnxruntime", "int8")  # dynamic: scales from each batch at run time
    assert {("torch", "int8"), ("onnxruntime", "int8"), ("onnxruntime", "int8_static"),
            ("openvino", "int8_static")} <= set(ALL_ROUTES)


@pytest.mark.parametrize("runtime,precision", STATIC_ROUTES)
def test_static_route_without_calibration_is_a_clear_error(tiny, runtime, precision):
    if rt.refusal(runtime, precision):
        pytest.skip(rt.refusal(runtime, precision))
    with pytest.raises(ValueError, match="calibration"):
        rt.prepare(tiny, runtime, precision)


def test_nncf_route_refused_without_nncf(monkeypatch):
    real = routes._installed
    monkeypatch.setattr(routes, "_installed", lambda name: name != "nncf" and real(name))
    assert "nncf" in rt.refusal("openvino", "int8_static")
    assert "nncf" not in (rt.refusal("openvino", "fp32") or "")  # only the NNCF route needs it


@pytest.mark.parametrize("flags,expected", [
    ({"avx2", "avx512f", "avx512_vnni"}, ("QUInt8", False)),  # VNNI: int32 accumulation, full 8 bits
    ({"avx2", "avx_vnni"}, ("QUInt8", False)),
    ({"avx", "avx2"}, ("QUInt8", True)),  # AVX2 only: 7-bit weights against int16 saturation
    ({"avx2", "avx512f"}, ("QUInt8", True)),  # AVX-512 without VNNI: the same kernel, the same risk
    ({"fp", "asimd", "asimddp"}, ("QInt8", False)),  # ARM
])
def test_int8_format_follows_the_cpu_flags(flags, expected):
    fmt = rt.int8_format(flags)
    assert (fmt["activation_type"], fmt["reduce_range"]) == expected and fmt["weight_type"] == "QInt8"


def _int8_weights(path):
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    return [numpy_helper.to_array(t) for t in graph.initializer if t.data_type == onnx.TensorProto.INT8]


@pytest.fixture(scope="module")
def tiny_onnx(tiny, tmp_path_factory):
    if rt.refusal("onnxruntime", "int8"):
        pytest.skip(rt.refusal("onnxruntime", "int8"))
    return rt.export_onnx(tiny, tmp_path_factory.mktemp("export") / "model.onnx")


def test_routes_of_one_model_share_one_export(monkeypatch, tiny, tmp_path):
    """ONNX Runtime and OpenVINO routes of the same weights export once per process; other weights export anew."""
    if rt.refusal("onnxruntime", "fp32"):
        pytest.skip(rt.refusal("onnxruntime", "fp32"))
    calls = []
    real = onnx_route.export_onnx
    monkeypatch.setattr(onnx_route, "export_onnx", lambda model, path: calls.append(path) or real(model, path))
    monkeypatch.setattr(onnx_route, "_EXPORTS", {})
    monkeypatch.setattr(onnx_route, "_EXPORT_DIR", [tmp_path / "exports"])
    (tmp_path / "exports").mkdir()
    first = rt.shared_export(tiny, tmp_path / "a.onnx")
    again = rt.shared_export(copy.deepcopy(tiny), tmp_path / "b.onnx")
    assert len(calls) == 1 and first[1:] == again[1:]
    assert (tmp_path / "a.onnx").read_bytes() == (tmp_path / "b.onnx").read_bytes()
    other = copy.deepcopy(tiny)
    with torch.no_grad():
        other.classifier.bias.add_(1.0)
    rt.shared_export(other, tmp_path / "c.onnx")
    assert len(calls) == 2


def test_graphs_built_by_workers_are_the_ones_built_here_and_not_built_again(monkeypatch, tiny, tmp_path):
    """04 builds the graphs of its routes on two worker processes (`build_graphs`) before it times them: the
    route's own prepare here then exports and quantises nothing, and gets the very files it would have built."""
    from kdlib.pipeline.workers import map_jobs

    routes = [r for r in QUANTISED if not rt.refusal(*r)]
    if not routes:
        pytest.skip("no quantised graph route runs here")
    other = copy.deepcopy(tiny)
    with torch.no_grad():
        other.classifier.bias.add_(1.0)
    models = {"tiny": tiny, "other": other}

    def files_of(runner):
        # OpenVINO numbers the nodes it makes with a counter of the process ("Constant_189423"): the same graph
        # built in another process, or later in this one, differs in those numbers alone
        return {p.suffix: re.sub(rb'name="([A-Za-z]+)_\d+"', rb'name="\1_N"', p.read_bytes()) if p.suffix == ".xml"
                else p.read_bytes() for p in runner.files}

    monkeypatch.setattr(onnx_route, "_EXPORTS", {})
    monkeypatch.setattr(onnx_route, "_EXPORT_DIR", [tmp_path / "here"])
    (tmp_path / "here").mkdir()
    built_here = {(n, r): files_of(rt.prepare(m, *r, tmp_path / f"{n}-{r[0]}-{r[1]}", 1, calibration=CALIBRATION))
                  for n, m in models.items() for r in routes}

    monkeypatch.setattr(onnx_route, "_EXPORTS", {})
    monkeypatch.setattr(onnx_route, "_EXPORT_DIR", [tmp_path / "workers"])
    (tmp_path / "workers").mkdir()
    map_jobs(rt.build_graphs, [{"model": m} for m in models.values()],
             {"routes": routes, "threads": 1, "calibration": CALIBRATION, "folder": str(tmp_path / "workers")}, 2)
    calls = []
    for name in ("export_onnx", "quantize_onnx"):
        monkeypatch.setattr(onnx_route, name, lambda *a, name=name, **k: calls.append(name))
    # the module, not the route function the package exports under its name
    monkeypatch.setattr(importlib.import_module("kdlib.inference.runtimes.openvino_route"), "nncf_int8",
                        lambda *a, **k: calls.append("nncf_int8"))
    for (n, r), files in built_here.items():
        runner = rt.prepare(models[n], *r, tmp_path / f"again-{n}-{r[0]}-{r[1]}", 1, calibration=CALIBRATION)
        assert files_of(runner) == files, (n, r)
    assert calls == []


def test_a_build_job_leaves_a_route_it_cannot_build_to_the_route_itself(monkeypatch, tiny, tmp_path):
    """A static route without calibration fails in its own run, as a row; the build job before it skips it."""
    route = next((r for r in QUANTISED if rt.needs_calibration(*r) and not rt.refusal(*r)), None)
    if route is None:
        pytest.skip("no static graph route runs here")
    monkeypatch.setattr(onnx_route, "_EXPORTS", {})
    monkeypatch.setattr(onnx_route, "_EXPORT_DIR", [])  # the job moves this process's export folder
    rt.build_graphs(tiny, [route], 1, None, str(tmp_path))  # no error here
    with pytest.raises(ValueError, match="calibration"):
        rt.prepare(tiny, *route, tmp_path / "run", 1)


def test_a_build_job_run_here_keeps_this_process_s_exports(monkeypatch, tiny, tmp_path):
    """map_jobs runs a single job (or every job under torchrun) in this process: building into this process's own
    export folder leaves it, and the exports already in it, where they are."""
    monkeypatch.setattr(onnx_route, "_EXPORTS", {})
    monkeypatch.setattr(onnx_route, "_EXPORT_DIR", [])
    own = rt.export_dir()
    first = rt.shared_export(tiny, tmp_path / "a.onnx")
    rt.build_graphs(tiny, [("onnxruntime", "fp32")], 1, None, str(own))
    assert rt.export_dir() == own and own.is_dir()
    assert rt.shared_export(tiny, tmp_path / "b.onnx")[1:] == first[1:]


def test_a_quantised_route_quantises_once_per_weights_and_calibration(monkeypatch, tiny, tmp_path):
    """Preparing ONNX Runtime's static int8 route of the same weights and calibration again (04 times the
    contenders a second time) copies the first quantised graph; other calibration batches quantise anew."""
    if rt.refusal("onnxruntime", "int8_static"):
        pytest.skip(rt.refusal("onnxruntime", "int8_static"))
    calls = []
    real = onnx_route.quantize_onnx
    monkeypatch.setattr(onnx_route, "quantize_onnx", lambda *a, **k: calls.append(a[3]) or real(*a, **k))
    calibration = [rt.example_inputs(tiny, 1, 12, seed=s) for s in range(2)]
    first = rt.prepare(tiny, "onnxruntime", "int8_static", tmp_path / "a", 1, calibration=calibration)
    again = rt.prepare(tiny, "onnxruntime", "int8_static", tmp_path / "b", 1, calibration=calibration)
    assert calls == ["int8_static"]
    assert first.files[0].read_bytes() == again.files[0].read_bytes() and first.files[0] != again.files[0]
    rt.prepare(tiny, "onnxruntime", "int8_static", tmp_path / "c", 1,
               calibration=[rt.example_inputs(tiny, 1, 12, seed=s) for s in range(2, 4)])
    assert calls == ["int8_static", "int8_static"]


@pytest.mark.parametrize("flags,limit", [({"avx2"}, 64), ({"avx2", "avx512_vnni"}, 127)])
def test_reduce_range_gives_7_bit_weights_without_vnni(monkeypatch, tiny, tiny_onnx, tmp_path, flags, limit):
    """On a CPU without VNNI the quantised weights use 7 bits ([-64, 63]), with VNNI all 8 (up to 127)."""
    monkeypatch.setattr(machine, "cpu_flags", lambda: flags)
    path, names, _ = tiny_onnx
    weights = _int8_weights(rt.quantize_onnx(tiny, path, tmp_path, "int8", names))
    assert weights
    assert max(int(np.abs(w.astype(int)).max()) for w in weights) == limit


@pytest.mark.parametrize("precision", ["int8", "int8_static"])
def test_int8_routes_keep_each_ffn_output_matrix_in_fp32(tiny, tiny_onnx, tmp_path, precision):
    """The MatMul after each layer's GELU stays a float MatMul on its fp32 weights; the others are quantised."""
    import onnx

    from kdlib.inference.runtimes.onnx_route import ffn_output_matmuls

    path, names, _ = tiny_onnx
    fused = rt.fuse_for_onnxruntime(tiny, path, tmp_path / "fused.onnx")
    kept = ffn_output_matmuls(onnx.load(str(fused)))
    assert len(kept) == tiny.config.num_hidden_layers
    calibration = [rt.example_inputs(tiny, 1, 12, seed=s) for s in range(4)] if precision == "int8_static" else None
    graph = onnx.load(str(rt.quantize_onnx(tiny, path, tmp_path, precision, names, calibration))).graph
    float_matmuls = {n.name for n in graph.node if n.op_type == "MatMul"}
    assert set(kept) <= float_matmuls
    assert _int8_weights(tmp_path / f"model.{precision}.onnx")  # the rest is int8


def _separated(model):
    """`model` with its classifier scaled up, so its logits (not near-ties) say which class wins."""
    import copy

    out = copy.deepcopy(model)
    with torch.no_grad():
        out.classifier.weight.mul_(40.0)
    return out.eval()


@pytest.mark.parametrize("runtime,precision", INT8_ROUTES)
def test_int8_routes_agree_with_torch_fp32(tiny, tmp_path, runtime, precision):
    """Loose by design (int8 weights and activations): logits within 10% of their scale (25% for static
    routes, whose activation ranges are fixed by calibration, not measured per batch), the same class on at
    least 14 of 16 rows (near-ties may flip)."""
    if rt.refusal(runtime, precision):
        pytest.skip(rt.refusal(runtime, precision))
    model = _separated(tiny)
    inputs = rt.example_inputs(model, 16, 12, seed=3)
    inputs["attention_mask"][::3, 8:] = 0
    expected = rt.prepare(model, "torch", "fp32")(inputs)["logits"]
    runner = rt.prepare(model, runtime, precision, tmp_path, calibration=CALIBRATION)
    got = runner(inputs)["logits"]
    assert got.dtype == np.float32 and got.shape == expected.shape
    tolerance = 0.25 if rt.needs_calibration(runtime, precision) else 0.1
    assert np.abs(got - expected).max() <= tolerance * np.abs(expected).max()
    assert (got.argmax(-1) == expected.argmax(-1)).sum() >= 14
    assert not np.array_equal(got, expected)  # it really is another computation


def test_onnxruntime_int8_is_fused_then_quantised(bench, tiny):
    import onnx

    ops = {n.op_type for n in onnx.load(str(runner_or_skip(bench, "onnxruntime", "int8").files[0])).graph.node}
    assert {"SkipLayerNormalization", "BiasGelu"} <= ops  # ORT's transformer fusions ran first
    assert ops & {"MatMulInteger", "DynamicQuantizeMatMul"}


def test_onnxruntime_static_is_qdq(bench, static_runners):
    import onnx

    runner = runner_or_skip(bench, "onnxruntime", "int8_static", static_runners)
    ops = [n.op_type for n in onnx.load(str(runner.files[0])).graph.node]
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops and "SkipLayerNormalization" in ops
    assert "MatMulInteger" not in ops  # activations have calibrated, fixed scales: no per-batch quantisation


def test_torch_int8_replaces_every_linear(bench):
    runner = runner_or_skip(bench, "torch", "int8")
    state = torch.load(runner.files[0], weights_only=False)
    packed = [k for k in state if k.endswith("_packed_params._packed_params")]
    assert len(packed) == sum(isinstance(m, torch.nn.Linear) for m in bench.model.modules())


@pytest.mark.slow  # two exports per route
@pytest.mark.parametrize("runtime,precision", INT8_ROUTES)
def test_int8_routes_serve_question_answering_and_encoders(tmp_path, runtime, precision):
    """Every route maps outputs by name: QA's start/end logits and a base model's last_hidden_state."""
    if rt.refusal(runtime, precision):
        pytest.skip(rt.refusal(runtime, precision))
    torch.manual_seed(0)
    config = BertConfig(**{**TINY, "num_labels": 2})
    for model, keys in [(BertForQuestionAnswering(config), {"start_logits", "end_logits"}),
                        (BertModel(config, add_pooling_layer=False), {"last_hidden_state"})]:
        model.eval()
        inputs = padded_batch(model)
        expected = rt.prepare(model, "torch", "fp32")(inputs)
        got = rt.prepare(model, runtime, precision, tmp_path / type(model).__name__, calibration=CALIBRATION)(inputs)
        assert set(got) == set(expected) == keys
        for key in keys:
            assert got[key].shape == expected[key].shape
            assert np.abs(got[key] - expected[key]).max() <= 0.1 * np.abs(expected[key]).max(), key


# ---------------------------------------------------------------- size on disk


@pytest.mark.parametrize("runtime,precision", ALL_ROUTES)
def test_size_mb_is_the_files_on_disk(bench, static_runners, runtime, precision):
    runner = runner_or_skip(bench, runtime, precision, static_runners)
    assert runner.files and all(p.is_file() for p in runner.files)
    assert runner.size_mb == pytest.approx(sum(os.path.getsize(p) for p in runner.files) / 1e6)


def test_sizes_are_about_the_fp32_weights(bench, tiny):
    """Each fp32 artifact holds the weights once (plus a small graph description), not twice."""
    weights_mb = sum(t.numel() * 4 for t in tiny.state_dict().values()) / 1e6
    for runtime in ("torch", "onnxruntime", "openvino"):
        if rt.refusal(runtime, "fp32"):
            continue
        size = bench.runner(runtime, "fp32").size_mb
        assert 0.9 * weights_mb <= size <= 1.5 * weights_mb, (runtime, size, weights_mb)


# ---------------------------------------------------------------- benchmark_models


def test_benchmark_models_rows_and_refusals(monkeypatch, tiny):
    from types import SimpleNamespace

    from kdlib.studies.results import benchmark_models

    monkeypatch.setattr(machine, "cpu_flags", lambda: {"avx2"})  # no native bf16: bf16 must be refused
    params = SimpleNamespace(batch_sizes=[1, 2], seq_len=8, threads=1, tolerance=None, max_seconds=None,
                             precisions=["fp32", "bf16"], warmup=0, repeats=2,
                             runtimes=["torch", "onnxruntime", "nope"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        frame = benchmark_models({"a": tiny, "b": tiny}, params, baseline="a")
    # onnxruntime offers no bf16 (no row); "nope" is unknown: every requested precision refused.
    routes = {("torch", "fp32"), ("torch", "bf16"), ("onnxruntime", "fp32"), ("nope", "fp32"), ("nope", "bf16")}
    assert set(zip(frame.runtime, frame.precision)) == routes
    assert len(frame) == len(routes) * 2 * 2  # x batch sizes x models
    refused = frame[frame.status == "refused"]
    assert set(zip(refused.runtime, refused.precision)) == {("torch", "bf16"), ("nope", "fp32"), ("nope", "bf16")}
    assert refused.reason.str.len().min() > 0 and refused.latency_ms_median.isna().all()
    ok = frame[frame.status == "ok"]
    if not rt.refusal("onnxruntime", "fp32"):
        assert len(ok) == 2 * 2 * 2
    assert (ok.threads == 1).all() and (ok.cpu_flags == "avx2").all()

    # Speed-ups are taken round by round from one timing in turn: the baseline against itself is exactly 1,
    # and each spread brackets its median.
    assert (ok[ok.name == "a"].speedup_vs_a == 1.0).all()
    assert (ok[(ok.name == "a") & (ok.runtime == "torch") & (ok.precision == "fp32")].speedup_vs_a_torch_fp32 == 1.0).all()
    assert ok.speedup_vs_a_torch_fp32.notna().all() and (ok.speedup_vs_a_torch_fp32 > 0).all()
    assert (ok.speedup_vs_a_torch_fp32_p25 <= ok.speedup_vs_a_torch_fp32).all()
    assert (ok.speedup_vs_a_torch_fp32 <= ok.speedup_vs_a_torch_fp32_p75).all()
    assert frame[frame.status == "refused"].speedup_vs_a.isna().all()


def test_openvino_splits_a_batch_over_one_stream_per_thread_and_joins_it_in_order(tiny, tmp_path):
    """A batch runs as parts on streams of one thread each; the rows come back in order, as one call on the
    whole batch gives them; one row (and one thread) runs the latency-mode graph alone."""
    if rt.refusal("openvino", "fp32"):
        pytest.skip(rt.refusal("openvino", "fp32"))
    import openvino as ov

    from kdlib.inference.openvino_calls import openvino_call

    runner = rt.prepare(tiny, "openvino", "fp32", tmp_path / "ov", threads=2)
    xml = next(p for p in runner.files if p.suffix == ".xml")
    whole = ov.Core().compile_model(str(xml), "CPU", routes.openvino_config("fp32", 2)).create_infer_request()
    for rows in (1, 2, 7):
        inputs = rt.random_batch(rows, 10, 1000, seed=rows)
        inputs["attention_mask"][0, 5:] = 0
        expected = whole.infer(inputs)[0]
        got = runner(inputs)["logits"]
        assert got.shape == (rows, 3)
        np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)
    one_thread = openvino_call(ov.Core(), xml, "fp32", 1, ["logits"])
    np.testing.assert_allclose(one_thread(inputs)["logits"], expected, atol=1e-5, rtol=0)


def test_openvino_config_names_latency_or_throughput_mode():
    assert routes.openvino_config("fp32", 2)["PERFORMANCE_HINT"] == "LATENCY"
    split = routes.openvino_config("fp32", 2, streams=2)
    assert (split["PERFORMANCE_HINT"], split["NUM_STREAMS"], split["INFERENCE_NUM_THREADS"]) == ("THROUGHPUT", 2, 2)
