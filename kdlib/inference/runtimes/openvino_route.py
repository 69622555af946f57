"""The OpenVINO routes: the shared ONNX export compiled by OpenVINO's CPU plugin (fp32), and NNCF's static int8.
openvino and nncf are imported in the functions that use them: they are optional (the `openvino` extra)."""
from __future__ import annotations

import contextlib
import io
import logging
from pathlib import Path
from typing import Any

from kdlib.inference.openvino_calls import openvino_call
from kdlib.inference.runtimes.base import Runner
from kdlib.inference.runtimes.onnx_route import (
    _quiet,
    calibration_feeds,
    calibration_key,
    derived_key,
    shared_export,
    shared_files,
)


def openvino_route(model, runtime: str, precision: str, workdir: Path, threads: int, calibration=None) -> Runner:
    import openvino as ov

    path, names, outputs = shared_export(model, workdir / "model.onnx")
    core = ov.Core()
    xml = workdir / "openvino" / "model.xml"

    def save(folder: Path, quantise: bool) -> None:
        ov_model = core.read_model(str(path))
        if quantise:
            ov_model = nncf_int8(ov_model, calibration_feeds(calibration, names))
        # compress_to_fp16=False: keep fp32 weights, so the fp32 route is fp32 on disk too.
        ov.save_model(ov_model, str(folder / "model.xml"), compress_to_fp16=False)

    if precision == "int8_static":  # NNCF's passes are the slow part: once per model and calibration
        key = derived_key(model, "openvino", "int8_static", calibration_key(calibration))
        shared_files(key, ("model.xml", "model.bin"), lambda f: save(f, True), xml.parent)
    else:
        xml.parent.mkdir(exist_ok=True)
        save(xml.parent, False)
    return openvino_runner(core, xml, runtime, precision, [xml, xml.with_suffix(".bin")], names, outputs, threads)


def openvino_runner(core, model_file: Path, runtime: str, precision: str, files: list[Path], names, outputs,
                    threads: int) -> Runner:
    """A Runner of `model_file` (OpenVINO IR or ONNX) compiled by OpenVINO's CPU plugin, computing in
    the precision routes.openvino_config gives the route (f32, or bf16 where the route asks for it)."""
    import openvino as ov

    run = openvino_call(core, model_file, precision, threads, outputs)
    return Runner(f"{runtime}/{precision}", runtime, precision, run, files, names, outputs, threads, ov.__version__)


def nncf_int8(ov_model, feeds: list[dict[str, Any]]):
    """NNCF's post-training int8 quantisation of an OpenVINO model, calibrated on `feeds`."""
    import nncf


    nncf.set_log_level(logging.ERROR)
    # Its progress bars (rich) have no switch; they would fill a notebook's output.
    with _quiet("nncf"), contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        return nncf.quantize(ov_model, nncf.Dataset(feeds), model_type=nncf.ModelType.TRANSFORMER,
                             subset_size=len(feeds))
